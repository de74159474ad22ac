"""Consent links of ``channel-agent reconnect --link``, kept in the state database's
``reconnect_links`` table until the account holder uses them (or they expire)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass
class ReconnectLink:
    """A consent link waiting for the account holder (``channel-agent reconnect --link``).

    ``status``: open, claimed (the redirect arrived, the exchange is running), succeeded,
    failed, expired or cancelled. ``detail`` says how it ended."""

    state: str
    channel: str
    account: str
    region: str
    redirect_uri: str
    code_verifier: str
    consent_url: str
    created: float
    expires: float
    accept_missing_targets: bool = False
    status: str = "open"
    finished: float | None = None
    detail: str = ""

    def current_status(self, now: float) -> str:
        return "expired" if self.status == "open" and self.expires <= now else self.status


class LinkStore:
    """The reconnect links of :class:`agent.storage.state.StateStore` (mixed into it)."""

    _db: sqlite3.Connection

    def add_link(self, link: ReconnectLink, now: float) -> int:
        """Store an open link; it replaces the account's open ones (returns how many)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            replaced = self._cancel(link.channel, link.account, now,
                                    "replaced by a newer link").rowcount
            values = [getattr(link, name) for name in _LINK_COLUMNS]
            self._db.execute(
                f"INSERT INTO reconnect_links ({', '.join(_LINK_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in _LINK_COLUMNS)})",
                values,
            )
        return replaced

    def links(self) -> list[ReconnectLink]:
        rows = self._db.execute(
            f"SELECT {', '.join(_LINK_COLUMNS)} FROM reconnect_links ORDER BY created"
        )
        return [_link(row) for row in rows]

    def cancel_links(self, channel: str, account: str, now: float) -> int:
        """Withdraw the account's open links; returns how many there were."""
        return self._cancel(channel, account, now, "cancelled with channel-agent reconnect "
                                                   "--cancel").rowcount

    def _cancel(self, channel: str, account: str, now: float, detail: str) -> sqlite3.Cursor:
        return self._db.execute(
            "UPDATE reconnect_links SET status = 'cancelled', finished = ?, detail = ? "
            "WHERE channel = ? AND account = ? AND status = 'open'",
            (now, detail, channel, account),
        )

    def claim_link(self, state: str, now: float) -> ReconnectLink | None:
        """The link with this ``state``, claimed for use if it was open and unexpired.

        Returns None for an unknown state. The returned link's ``status`` is "claimed" when
        this call claimed it; otherwise it says why it cannot be used (expired, succeeded,
        failed, cancelled, or claimed by an earlier request)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                f"SELECT {', '.join(_LINK_COLUMNS)} FROM reconnect_links WHERE state = ?",
                (state,),
            ).fetchone()
            if row is None:
                return None
            link = _link(row)
            status = link.current_status(now)
            if status == "expired":
                self._finish(link.state, "expired", now, "the link expired before it was used")
            elif status == "open":
                status = "claimed"
                self._db.execute("UPDATE reconnect_links SET status = 'claimed' WHERE state = ?",
                                 (state,))
            link.status = status
            return link

    def finish_link(self, state: str, status: str, now: float, detail: str) -> None:
        with self._db:
            self._finish(state, status, now, detail)

    def _finish(self, state: str, status: str, now: float, detail: str) -> None:
        self._db.execute(
            "UPDATE reconnect_links SET status = ?, finished = ?, detail = ? WHERE state = ?",
            (status, now, detail, state),
        )

    def purge_links(self, before: float) -> None:
        """Forget links that ended (or expired) before ``before``."""
        self._db.execute(
            "DELETE FROM reconnect_links WHERE COALESCE(finished, expires) < ? "
            "AND status != 'claimed'",
            (before,),
        )


_LINK_COLUMNS = [
    "state",
    "channel",
    "account",
    "region",
    "redirect_uri",
    "code_verifier",
    "consent_url",
    "accept_missing_targets",
    "created",
    "expires",
    "status",
    "finished",
    "detail",
]


def _link(row: tuple) -> ReconnectLink:
    values = dict(zip(_LINK_COLUMNS, row, strict=True))
    values["accept_missing_targets"] = bool(values["accept_missing_targets"])
    return ReconnectLink(**values)
