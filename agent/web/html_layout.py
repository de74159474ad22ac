"""What every page of the agent shares: the frame, the style sheet, state badges, times.

Pages are plain server-rendered HTML: they work without JavaScript, and everything shown goes
through :func:`esc`.
"""

from __future__ import annotations

import html
import time
from typing import Any

from aiohttp import web

from agent import __version__
from agent.freshness.timestamps import iso
from agent.freshness.tracker import human_age

LABELS = {"pending": "never checked", "no data yet": "no data yet"}
_BADGE = {"valid": "ok", "fresh": "ok", "invalid": "bad", "stale": "bad",
          "unverified": "warn", "pending": "idle", "no data yet": "idle"}

CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:10px 24px;display:flex;gap:24px;
 align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}header h1 a{color:#fff;text-decoration:none}
header .meta{color:#c9d1d9;font-size:13px}header nav{margin-left:auto;font-size:13px}
header nav a{color:#c9d1d9;margin-left:14px}
main{padding:16px 24px;max-width:1500px}
h2{font-size:15px;margin:22px 0 8px}
a{color:#0a58ca}
table{border-collapse:collapse;background:#fff;border:1px solid #d0d7de;width:100%}
th,td{padding:5px 10px;text-align:left;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f0f3f6;font-weight:600;font-size:12px;text-transform:uppercase;color:#57606a}
tr:hover td{background:#f8fafc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
 white-space:nowrap}
.ok{background:#dafbe1;color:#116329}.bad{background:#ffebe9;color:#a40e26}
.warn{background:#fff1d6;color:#8a4600}.idle{background:#eaeef2;color:#57606a}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;min-width:170px}
.card .n{font-size:24px;font-weight:600;display:block}.card .n a{text-decoration:none}
.card.alert{border-color:#cf222e;background:#fff5f5}.card.alert .n a{color:#a40e26}
.card .sub{color:#57606a;font-size:12px}
.counts{width:auto;min-width:640px}.counts td.zero a{color:#8c959f}
.counts td.hot a{color:#a40e26;font-weight:700}.counts td.warm a{color:#8a4600;font-weight:700}
form.filters{display:flex;gap:10px;flex-wrap:wrap;align-items:end;background:#fff;
 border:1px solid #d0d7de;border-radius:6px;padding:10px 12px;margin:16px 0 10px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#57606a;gap:2px}
input,select,button{font:inherit;padding:4px 6px;border:1px solid #d0d7de;border-radius:4px;
 background:#fff}
button{background:#1f883d;color:#fff;border-color:#1a7f37;cursor:pointer;padding:5px 14px}
.muted{color:#57606a}.small{font-size:12px}
.pager{display:flex;gap:18px;margin:10px 0;align-items:center}
.banner{background:#ffebe9;border:1px solid #cf222e;color:#82071e;border-radius:6px;
 padding:10px 14px;margin:10px 0}
pre.cmd{background:#24292f;color:#f0f6fc;padding:10px 12px;border-radius:6px;overflow-x:auto;
 white-space:pre-wrap;word-break:break-all}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:16px;
 margin-top:16px}
td.nowrap{white-space:nowrap}
.box{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:4px 16px 12px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:8px 0}
dl.facts dt{color:#57606a}dl.facts dd{margin:0}
.todo{border-left:4px solid #cf222e}
.chip{display:inline-block;background:#eaeef2;border-radius:4px;padding:0 6px;margin:1px 2px;
 font-size:12px}
"""


def esc(value: Any) -> str:
    return "" if value is None else html.escape(str(value))


def badge(word: str, text: str | None = None) -> str:
    """A coloured pill for a state word; ``text`` replaces the word shown."""
    shown = text if text is not None else LABELS.get(word, word)
    return f'<span class="badge {_BADGE.get(word, "idle")}">{esc(shown)}</span>'


def when(moment: float | None, now: float | None = None, *, never: str = "never") -> str:
    """A time as "3h12m ago" with the exact UTC time on hover (and in the markup)."""
    if moment is None:
        return f'<span class="muted">{esc(never)}</span>'
    now = time.time() if now is None else now
    delta = now - moment
    words = f"in {human_age(-delta)}" if delta < 0 else f"{human_age(delta)} ago"
    exact = iso(moment)
    return f'<time datetime="{esc(exact)}" title="{esc(exact)}">{esc(words)}</time>'


def page(title: str, body: str, *, status: int = 200, subtitle: str = "") -> web.Response:
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · Channel Health Agent</title><style>{CSS}</style></head>
<body><header><h1><a href="/">Channel Health Agent</a></h1>
<span class="meta">{esc(subtitle or f"version {__version__}")}</span>
<nav><a href="/">Accounts</a><a href="/metrics">Metrics</a><a href="/api/v1/status">Status JSON</a>
<a href="/-/healthy">Healthy</a><a href="/-/ready">Ready</a></nav></header>
<main>
{body}
</main></body></html>
"""
    return web.Response(text=text, status=status, content_type="text/html")


def error_page(status: int, title: str, message: str) -> web.Response:
    return page(title, f'<h2>{esc(title)}</h2><p class="banner">{esc(message)}</p>'
                       f'<p><a href="/">Back to the accounts</a></p>', status=status)
