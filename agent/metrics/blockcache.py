"""An IncrementalCollector's samples formatted per key (account), kept per block of ``BLOCK``
keys and per family, compressed (:mod:`agent.metrics.exposition` assembles them).

A change of an account re-formats only the families whose samples changed (told by a
digest of the account's labels and samples, per family, kept from the last rendering: a
cycle changes a few families of every account) and re-compresses their blocks (the block
inflated, the account's part replaced); an account whose samples did not change at all is
not formatted. Its ages go to :class:`~agent.metrics.ages.LiveFamilies`. Only the
compressed text is kept: at 50,000 accounts the plain text is 100 MB, and what a scraper
without gzip gets is inflated from the blocks as it is sent (:meth:`BlockCache.static_parts`).
"""

from __future__ import annotations

import heapq
import itertools
import math
import operator
import zlib
from array import array
from collections.abc import Hashable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from prometheus_client.core import Metric

from agent.metrics.ages import CHUNK, AgeLines, LiveFamilies
from agent.metrics.formats import OPENMETRICS, TEXT, Format
from agent.metrics.gzipstream import Pieces, crc32_combine, deflate, inflate
from agent.metrics.incremental import Age, IncrementalCollector
from agent.metrics.samplelines import (
    escape,
    escape_free,
    label_names_of,
    prefix_format,
    sample_name,
)

BLOCK = 16  # accounts per compressed block
STREAM = 16  # blocks per piece of the plain text streamed to a scraper without gzip
# What an account's digest of a family is before its first rendering, and after a rendering
# with a value whose hash() another value shares (SPECIAL): the family is formatted next time.
UNKNOWN = hash("channel-agent: family not rendered")
# Values hash() confuses with others: -1 with -2 (CPython's -1 means an error), the
# infinities with +-314159; as a value or as an Age's time (an Age equals its 1-tuple). An
# account with one is formatted in full.
SPECIAL = frozenset({-1.0, math.inf, -math.inf, (-1.0,), (math.inf,), (-math.inf,)})
VALUE = operator.itemgetter(2)  # a sample's value


class Families:
    """Metric families, as ``generate_latest`` wants a collector."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


class BlockCache:
    """An IncrementalCollector's samples, formatted per key (account) and kept per block."""

    def __init__(self, collector: IncrementalCollector,
                 changed: set[Hashable] | None = None) -> None:
        """``changed``: the watch set of the cache this one replaces (a watch set is never
        dropped by the collector: one per cache would add up)."""
        self.collector = collector
        self.changed = collector.watch() if changed is None else changed
        self.families = collector.families()
        keys = [k for k in self.families if k not in collector.scrape_families_keys]
        self.static = [k for k in keys if k not in collector.live_families]
        self.live = [k for k in keys if k in collector.live_families]
        # family -> index in static, or ~index in live
        slots = self.slots = {k: i for i, k in enumerate(self.static)} | {
            k: ~i for i, k in enumerate(self.live)}
        self.sample_names = {k: sample_name(f) for k, f in self.families.items()}
        label_names = {k: list(label_names_of(f)) for k, f in self.families.items()}
        # The families with the fewest labels: when those are the key's leading labels,
        # such a family's samples have no labels of their own, and their prefixes differ
        # only by name: the labels' text is formatted once per key (shared).
        fewest = min((label_names[k] for k in slots if k not in collector.free_families),
                     key=len, default=[])
        self.shared = {bare: prefix_format("", fewest, bare) for bare in (False, True)}
        self.shared_count = len(fewest)
        # without region -> family -> (%-format of a sample's labels, a function picking
        # the label values in its order, slot, the sample name where the family has the
        # shared labels only, the sample name); an empty region leaves the label out; no
        # format for the free families (free_labels). Families with the same label names
        # get the same format object: a data set's samples format their labels once.
        formats: dict[str, str] = {}

        def plan(k: str, slot: int, bare: bool) -> tuple:
            fmt, pick = (prefix_format("", label_names[k], bare)
                         if k not in collector.free_families else (None, None))
            return (fmt if fmt is None else formats.setdefault(fmt, fmt), pick, slot,
                    self.sample_names[k] if label_names[k] == fewest else None,
                    self.sample_names[k])

        self.plans = {bare: {k: plan(k, slot, bare) for k, slot in slots.items()}
                      for bare in (False, True)}
        # per format (Format.openmetrics): the HELP and TYPE lines of each family
        self.headers = {om: {k: header(f, fmt) for k, f in self.families.items()}
                        for om, fmt in ((False, TEXT), (True, OPENMETRICS))}
        self.packed_headers = {om: {k: deflate(h) for k, h in headers.items()}
                               for om, headers in self.headers.items()}
        self.seen: Hashable = None  # the collector's generation

    def rebuild_all(self, now: float) -> None:
        """Start over: the set of accounts (or the channels' settings) changed."""
        self.start(now)
        self.update(now)

    def start(self, now: float) -> None:
        """Lay out the cache for the collector's accounts, every one of them still to be
        rendered (:meth:`update`, at once or a slice at a time): until then the cache is
        incomplete (:attr:`complete`)."""
        self.keys = self.collector.keys()
        self.index = {key: i for i, key in enumerate(self.keys)}
        n = len(self.keys)
        blocks = (n + BLOCK - 1) // BLOCK
        # The static families' text is kept compressed only, per block; per family and
        # account, the length of the account's text in its block, to replace it there,
        # and a digest of what the text is made from (the account's labels and its samples
        # of the family), to tell whether it changed without formatting it.
        # (Kept as text too, per account, it was 2.5 KB an account: 125 MB at 50,000.)
        self.sizes = [array("I", [0]) * n for _ in self.static]
        self.digests = [array("q", [UNKNOWN]) * n for _ in self.static]
        # per account, a digest of its labels and all its samples (the ages' starts too):
        # an account marked changed whose samples are the same is not formatted at all
        self.whole = array("q", [UNKNOWN]) * n
        self.packed = [Pieces(blocks) for _ in self.static]
        self.ages_of = LiveFamilies(len(self.live), n, BLOCK * CHUNK)
        # when an account's samples change by themselves (a held access token expires): a
        # heap of (time, account), and the current time of each account (older entries of
        # the heap are stale)
        self.expiries: list[tuple[float, int]] = []
        self.expiry_of: dict[int, float] = {}
        # per format (om): the static families' stream, CRC-32 and length (assembled())
        self._assembled: dict[bool, tuple[list[bytes], int, int]] = {}
        self.changed.clear()
        # accounts changed and not rendered yet: those in the queue (in order) from
        # queued on, then pending (all of them at the start; update's limit)
        self.queue, self.queued = list(range(n)), 0
        self.pending: set[int] = set()
        self.complete = False  # every account rendered once
        self.seen = self.collector.generation()

    def mark_all_changed(self) -> None:
        self.changed.update(self.keys)

    def backlog(self) -> int:
        """About how many accounts are changed and not rendered yet (an upper bound)."""
        return len(self.changed) + len(self.pending) + len(self.queue) - self.queued

    def update(self, now: float, limit: int | None = None) -> bool:
        """Bring the cache up to date with the collector, or render at most ``limit`` of the
        accounts changed (the background's slices); whether it is up to date."""
        if self.seen != self.collector.generation():
            self.start(now)
        if self.changed:
            self.pending.update(self.index[key] for key in self.changed if key in self.index)
            self.changed.clear()
        while self.expiries and self.expiries[0][0] <= now:
            when, i = heapq.heappop(self.expiries)
            if self.expiry_of.get(i) == when:
                self.pending.add(i)
        if limit is None and self.queued < len(self.queue):
            self.pending.update(self.queue[self.queued:])
            self.queued = len(self.queue)
        if self.queued >= len(self.queue):
            if not self.pending:
                self.complete = True
                return True
            self.queue, self.queued, self.pending = sorted(self.pending), 0, set()
        end = len(self.queue) if limit is None else self.queued + limit
        self._refresh(self.queue[self.queued:end], now)
        self.queued = min(end, len(self.queue))
        done = self.queued >= len(self.queue) and not self.pending
        self.complete = self.complete or done
        return done

    def _refresh(self, accounts: Iterable[int], now: float) -> None:
        """Render ``accounts`` (in order) anew."""
        changed = False
        # chunk by chunk and block by block (``accounts`` come in order): the text of all
        # at once would be the size of the exposition
        for c, in_chunk in itertools.groupby(accounts, lambda i: i // (BLOCK * CHUNK)):
            ages = {}  # account -> its age lines of each live family
            for b, in_block in itertools.groupby(in_chunk, lambda i: i // BLOCK):
                fresh = {}  # account -> its text of each static family
                for i in in_block:
                    rendered = self._render_account(i, now)
                    if rendered is not None:
                        fresh[i], ages[i] = rendered
                members = range(b * BLOCK, min(len(self.keys), (b + 1) * BLOCK))
                for f in range(len(self.static)):
                    changed |= self._replace(f, b, members, fresh)
            for f in range(len(self.live) if ages else 0):
                self.ages_of.replace(f, c, ages)
        if changed:
            self._assembled.clear()

    def _replace(self, f: int, b: int, members: range,
                 fresh: dict[int, tuple[str | None, ...]]) -> bool:
        """Put the ``fresh`` text of some accounts of block ``b`` in family ``f``'s block
        (the others' text, and that of a ``fresh`` account whose text of ``f`` is None:
        unchanged, is taken from the block itself) and re-compress it, if one changed (a
        cycle changes a few families of most accounts, and most families of none)."""
        changed = [i for i, texts in fresh.items() if texts[f] is not None]
        if not changed:
            return False
        sizes, pieces = self.sizes[f], self.packed[f]
        if len(changed) == len(members):
            text = "".join([fresh[i][f] for i in members]).encode()
        else:
            old = inflate(pieces.packed[b])
            parts, at = [], 0
            for i in members:
                end = at + sizes[i]
                line = fresh[i][f] if i in fresh else None
                parts.append(old[at:end] if line is None else line.encode())
                at = end
            text = b"".join(parts)
        for i in changed:
            line = fresh[i][f]
            sizes[i] = len(line) if line.isascii() else len(line.encode())
        pieces.set(b, deflate(text), zlib.crc32(text), len(text))
        return True

    def assembled(self, om: bool = False) -> tuple[list[bytes], int, int]:
        """The cached families as deflate pieces (not finished), with the CRC-32 and the
        length of their text, in the text format or (``om``) OpenMetrics. Done at a scrape,
        not at every refresh: only the groups of blocks that changed since are re-joined
        and their CRCs re-combined (:class:`~agent.metrics.gzipstream.Pieces`)."""
        if om not in self._assembled:
            headers, packed_headers = self.headers[om], self.packed_headers[om]
            body: list[bytes] = []
            crc = size = 0
            for f, key in enumerate(self.static):
                body.append(packed_headers[key])
                crc, size = zlib.crc32(headers[key], crc), size + len(headers[key])
                pieces, family_crc, family_size = self.packed[f].joined()
                body += pieces
                crc, size = crc32_combine(crc, family_crc, family_size), size + family_size
            self._assembled[om] = (body, crc, size)
        return self._assembled[om]

    def _changed_families(self, i: int, raw: tuple[str, ...], samples: list, special: bool,
                          ) -> tuple[list[str | None], list[tuple[array, int]]]:
        """Which static families of account ``i`` must be formatted: "" for those (their
        text is built on it), None for those whose labels and samples are those of the last
        rendering (by a digest of them: its hash(), chained over the family's samples); and
        where to keep the new digests once they are (``column[i] = digest``)."""
        n = len(self.static)
        digests = [UNKNOWN] * n if special else [hash(raw)] * n
        if not special:
            slots = self.slots
            for sample in samples:
                f = slots[sample[0]]
                if f >= 0:
                    digests[f] = hash((digests[f], sample))
        lines: list[str | None] = [None] * n
        kept = []
        for f, (digest, column) in enumerate(zip(digests, self.digests, strict=True)):
            if column[i] != digest or digest == UNKNOWN:
                lines[f] = ""
                kept.append((column, digest))
        return lines, kept

    def _render_account(self, i: int, now: float,
                        ) -> tuple[tuple[str | None, ...], tuple[AgeLines, ...]] | None:
        """Format account ``i``'s samples; return its text of each static family (None
        where it did not change: not formatted) and its age lines of each live family, or
        None if none of its samples changed since the last time.

        Whether they changed is told by digests (hash()) of the account's labels and its
        samples, of all of them and of each static family's. hash() is equal for equal
        values, so a value spelled another way with the same digest keeps its last
        spelling: ``1`` after ``1.0``, ``0.0`` after ``-0.0``. The collectors give floats
        (``float()`` where a value starts as a bool or an int), and ``-0.0`` and ``0.0``
        are the same number to a parser. Different floats share a hash() where CPython maps
        both to one (SPECIAL: an account with one is formatted in full, and again at its
        next change) or where one is the other times a power of 2**61 (1.0 and 2.0**61):
        not values these families hold."""
        key = self.keys[i]
        # Prefixes (name and labels) are formatted anew rather than kept: kept per account
        # and sample they were half of the cache's memory (a third of the agent's at 50,000).
        raw = self.collector.labels(key)
        samples = list(self.collector.samples(key, now))
        self._expiry(i, key, now)
        special = not SPECIAL.isdisjoint(map(VALUE, samples))
        whole = UNKNOWN if special else hash((raw, *samples))
        if whole == self.whole[i] and whole != UNKNOWN:
            return None
        lines, kept = self._changed_families(i, raw, samples, special)
        labels = raw if escape_free(raw) else tuple([escape(value) for value in raw])
        bare = "" in labels  # the one label that may be empty: region
        plans = self.plans[bare]
        shared_format, shared_pick = self.shared[bare]
        shared = (shared_format % shared_pick(labels)
                  if len(labels) == self.shared_count else None)
        # a family's lines, concatenated as they come: most families have one line per
        # account ("" + line is that line, no copy), so no list and no join per family;
        # the samples of an unchanged family (None) are not formatted
        templates: list[list[str]] = [[] for _ in self.live]
        starts: list[list[int]] = [[] for _ in self.live]
        last_extra: tuple = ()
        values = labels
        last_fmt, text = None, ""  # the labels' text of the last sample with labels of its own
        # the hot loop of a rebuild: repr() is float_text() without Go's exponent style
        for family, extra, value in samples:
            fmt, pick, f, name, sname = plans[family]
            if f >= 0 and lines[f] is None:
                continue
            if name is not None and shared is not None:
                if f >= 0 and value.__class__ is not Age:  # most samples: one format, no copy
                    lines[f] += f"{name}{shared}{value!r}\n"
                    continue
                prefix = name + shared
            elif fmt is None:
                prefix = self._free_prefix(family, raw, extra)
            elif extra:
                if extra is not last_extra:  # a data set's samples share theirs
                    last_extra, values, last_fmt = extra, (*labels, *map(escape, extra)), None
                if fmt is not last_fmt:
                    last_fmt, text = fmt, fmt % pick(values)
                prefix = sname + text
            else:
                prefix = sname + fmt % pick(labels)
            if f >= 0:
                if value.__class__ is Age:
                    raise TypeError(f"family {family!r} is not live but got an Age value")
                lines[f] += f"{prefix}{value!r}\n"
            elif value.__class__ is Age:
                templates[~f].append(prefix.replace("%", "%%") + "%d\n")
                starts[~f].append(value.start)
            else:
                raise TypeError(f"family {family!r} is live but got a value, not an Age")
        texts = tuple(lines)
        ages = tuple([("".join(t), s) for t, s in zip(templates, starts, strict=True)])
        for column, digest in kept:  # now that the text is made
            column[i] = digest
        self.whole[i] = whole
        return texts, ages

    def _expiry(self, i: int, key: Hashable, now: float) -> None:
        """Keep when account ``i``'s samples change by themselves."""
        expiry = self.collector.changes_at(key, now)
        if expiry == math.inf:
            self.expiry_of.pop(i, None)
        elif self.expiry_of.get(i) != expiry:
            self.expiry_of[i] = expiry
            heapq.heappush(self.expiries, (expiry, i))
            if len(self.expiries) > 2 * len(self.expiry_of) + 64:  # mostly stale: compact
                self.expiries = [(when, j) for j, when in self.expiry_of.items()]
                heapq.heapify(self.expiries)

    def _free_prefix(self, family: str, labels: tuple[str, ...], extra: tuple) -> str:
        """The name and labels of a sample whose labels the collector chooses (an account's
        info series, with its inventory labels)."""
        pairs = sorted(self.collector.free_labels(labels, extra).items())
        text = ",".join([f'{name}="{escape(value)}"' for name, value in pairs])
        return f"{self.sample_names[family]}{{{text}}} "

    def static_parts(self, om: bool = False) -> tuple[int, Iterator[bytes]]:
        """The cached families' text, for a scraper that takes no gzip: its length and its
        pieces, decompressed from the blocks piece by piece as they are sent. Not kept: it
        is as large as the exposition (100 MB at 50,000 accounts), and Prometheus asks for
        gzip."""
        headers = self.headers[om]
        # the blocks as they are now: a refresh while the pieces are sent replaces a block
        # in self.packed, not in these copies, so the length stays true
        blocks = [pieces.packed.copy() for pieces in self.packed]
        size = sum(len(headers[key]) for key in self.static) + sum(
            [block_size for pieces in self.packed for _, block_size in pieces.crcs])

        def parts() -> Iterator[bytes]:
            for key, packed in zip(self.static, blocks, strict=True):
                yield headers[key]
                for start in range(0, len(packed), STREAM):
                    yield inflate(b"".join(packed[start:start + STREAM]))

        return size, parts()

    def ready_ages(self, now: float, lag: int, pool: ThreadPoolExecutor | None = None,
                   ) -> int:
        """Render the age chunks a scrape at ``now`` cannot take as they are: those changed
        since their rendering and those rendered more than ``lag`` seconds before ``now``'s
        second. Return by how many whole seconds the oldest chunk served is behind it."""
        second = int(now)
        todo = self.ages_of.stale(second, lag)
        if todo:
            self.ages_of.render(todo, second, pool)
        return self.ages_of.lag(second)

    def live_assembled(self, om: bool = False) -> tuple[list[bytes], int, int]:
        """The live families as deflate pieces (every chunk rendered: :meth:`ready_ages`),
        with the CRC-32 and the length of their text."""
        body: list[bytes] = []
        crc = size = 0
        for f, key in enumerate(self.live):
            header = self.headers[om][key]
            body.append(self.packed_headers[om][key])
            crc, size = zlib.crc32(header, crc), size + len(header)
            chunks, family_crc, family_size = self.ages_of.family(f)
            body.extend(chunks)
            crc, size = crc32_combine(crc, family_crc, family_size), size + family_size
        return body, crc, size

    def live_parts(self, now: float, om: bool = False) -> tuple[int, Iterator[bytes]]:
        """The live families at ``now``, as plain text (for a scraper that takes no gzip):
        its length and its pieces, rendered as they are sent."""
        headers = self.headers[om]
        second = int(now)
        families = [(headers[key], self.ages_of.plain_parts(f, second))
                    for f, key in enumerate(self.live)]
        size = sum(len(header) + family_size for header, (family_size, _) in families)

        def parts() -> Iterator[bytes]:
            for header, (_, chunks) in families:
                yield header
                yield from chunks

        return size, parts()


def header(family: Metric, fmt: Format) -> bytes:
    """The family's HELP and TYPE lines, exactly as ``fmt``'s encoder writes them."""
    empty = Metric(family.name, family.documentation, family.type)
    return fmt.encode(Families([empty]))
