"""The Age samples of a cached collector (token ages, data staleness), compressed ahead of the
scrape.

An Age's value is whole seconds from its start to the scrape's second, so these lines change
once a second with no change of state: at 50,000 accounts x 2 data sets they are 200,000 lines
(~22 MB of text) that formatting and compressing at every scrape cost ~100 ms. They are kept
instead per chunk of ``CHUNK`` blocks, compressed, with the CRC-32 and length of the text and
the second they were rendered for. A scrape takes a chunk as it is when nothing in it changed
since and it is at most ``lag`` seconds behind the scrape's second, and renders it otherwise;
the exposition's background task renders the chunks that changed and those of each new second
while scrapes are expected (``Exposition.keep_fresh``), so a scrape joins ready bytes.

What that costs in truth: an age may show a value up to ``lag`` seconds (1 by default) behind
the clock, never behind a change of state (a changed account's chunk is always re-rendered);
up to ``MAX_AGE_LAG`` (10) when the background falls behind the ages and the scrape comes on
its pace (``Exposition._ready_ages``; the lag is exported).
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from agent.metrics.gzipstream import Pieces, deflate

CHUNK = 4  # blocks (of 16 accounts) per chunk: what a change of one account re-renders
POOLED = 8  # chunks to render at once from which compressing them in a thread pays
# accounts of a chunk up to which a change is cut into its template (LiveFamilies._splice)
# rather than the template made again from all of them
SPLICE = 8


# an account's lines of one live family: one %-template of their prefixes ("name{labels}
# %d\n" each) and their start seconds; a chunk's keeps its starts in an array
AgeLines = tuple[str, list[int]]


class LiveFamilies:
    """The live families of one cache: per family and chunk of accounts a %-template of its
    lines and their start seconds, with the last rendering; per family and account, how
    many characters and lines of its chunk's template are the account's."""

    def __init__(self, families: int, accounts: int, per_chunk: int) -> None:
        self.accounts, self.per_chunk = accounts, per_chunk
        chunks = (accounts + per_chunk - 1) // per_chunk
        self.templates: list[list[tuple[str, array]]] = [
            [("", array("q"))] * chunks for _ in range(families)]
        self.widths = [array("I", [0]) * accounts for _ in range(families)]
        self.counts = [array("I", [0]) * accounts for _ in range(families)]
        # the second each chunk was rendered for; None: never, or changed since
        self.seconds: list[list[int | None]] = [[None] * chunks for _ in range(families)]
        self.rendered = [Pieces(chunks) for _ in range(families)]

    def replace(self, f: int, c: int, fresh: dict[int, tuple[AgeLines, ...]]) -> None:
        """Put the ``fresh`` lines of some accounts of chunk ``c`` in family ``f``'s
        template (the others' are taken from the template itself); the chunk is rendered
        anew if that changed it. (Kept per account, the lines were as large again.)"""
        if len(fresh) <= SPLICE:
            self._splice(f, c, fresh)
            return
        template, starts = self.templates[f][c]
        widths, counts = self.widths[f], self.counts[f]
        members = range(c * self.per_chunk, min(self.accounts, (c + 1) * self.per_chunk))
        spans = []  # per account: where its lines are in the template and its starts
        at = at_start = 0
        for i in members:
            spans.append((at, at + widths[i], at_start, at_start + counts[i]))
            at, at_start = at + widths[i], at_start + counts[i]
        first = members.start
        if all(fresh[i][f] == (template[a:b], starts[s:e].tolist())
               for i in fresh for a, b, s, e in (spans[i - first],)):
            return  # most refreshes: a check changed the token ages, not the data's
        texts, new_starts = [], array("q")
        for i, (a, b, s, e) in zip(members, spans, strict=True):
            if i in fresh:
                text, own = fresh[i][f]
                widths[i], counts[i] = len(text), len(own)
            else:
                text, own = template[a:b], starts[s:e]
            texts.append(text)
            new_starts.extend(own)
        self.templates[f][c] = ("".join(texts), new_starts)
        self.seconds[f][c] = None

    def _splice(self, f: int, c: int, fresh: dict[int, tuple[AgeLines, ...]]) -> None:
        """:meth:`replace` for a few accounts (a check cycle's background pass finds one or
        two per chunk): each one's lines are found by summing the widths before it and cut
        in, rather than the chunk's ``per_chunk`` accounts walked one by one. The template
        and its starts are new objects (a rendering under way holds the old ones)."""
        template, starts = self.templates[f][c]
        widths, counts = self.widths[f], self.counts[f]
        first = c * self.per_chunk
        changed = False
        for i in fresh:  # each one's span from the widths as they are, its own updated after
            a, s = sum(widths[first:i]), sum(counts[first:i])
            b, e = a + widths[i], s + counts[i]
            text, own = fresh[i][f]
            if text == template[a:b] and own == starts[s:e].tolist():
                continue  # most refreshes: a check changed the token ages, not the data's
            template = template[:a] + text + template[b:]
            starts = starts[:s] + array("q", own) + starts[e:]
            widths[i], counts[i] = len(text), len(own)
            changed = True
        if changed:
            self.templates[f][c] = (template, starts)
            self.seconds[f][c] = None

    def template(self, f: int, c: int) -> tuple[str, array]:
        """Chunk ``c`` of family ``f`` as one %-template of its lines and their starts."""
        return self.templates[f][c]

    def text(self, f: int, c: int, second: int) -> bytes:
        """Chunk ``c`` of family ``f`` at ``second``: one %-template of its lines filled with
        whole seconds, a quarter of the time of formatting line by line with floats."""
        return fill(self.template(f, c), second)

    def stale(self, second: int, lag: int) -> list[tuple[int, int]]:
        """(family, chunk) of every chunk changed since its rendering or rendered more than
        ``lag`` seconds before ``second``."""
        oldest = second - lag
        return [(f, c) for f, chunks in enumerate(self.seconds)
                for c, done in enumerate(chunks) if done is None or done < oldest]

    def lag(self, second: int) -> int:
        """Whole seconds by which the oldest rendered chunk is behind ``second`` (0 when
        every chunk was rendered for ``second`` or later, or none ever was)."""
        oldest = min((min(done for done in chunks if done is not None)
                      for chunks in self.seconds if any(done is not None for done in chunks)),
                     default=second)
        return max(0, second - oldest)

    def changed(self) -> list[tuple[int, int]]:
        """(family, chunk) of every chunk changed since its rendering."""
        return [(f, c) for f, chunks in enumerate(self.seconds)
                for c, done in enumerate(chunks) if done is None]

    def render(self, todo: list[tuple[int, int]], second: int,
               pool: ThreadPoolExecutor | None = None) -> None:
        """Render the chunks ``todo`` at ``second``; with a ``pool``, compress them there
        while the next are formatted (zlib lets go of the GIL)."""
        if pool is None or len(todo) < POOLED:
            for f, c in todo:
                self._keep(f, c, second, pack(self.text(f, c, second)))
            return
        # a few chunks per job: a Future per chunk cost as much as formatting it
        pending = []
        for start in range(0, len(todo), POOLED):
            some = todo[start:start + POOLED]
            pending.append((some, pool.submit(pack_all, [self.text(f, c, second)
                                                         for f, c in some])))
        for some, done in pending:
            for (f, c), packed in zip(some, done.result(), strict=True):
                self._keep(f, c, second, packed)

    def keep(self, f: int, c: int, template: tuple[str, array], second: int,
             packed: tuple[bytes, int, int]) -> None:
        """Keep chunk ``c`` of family ``f`` rendered elsewhere (:func:`pack` in a thread)
        from ``template`` at ``second``, unless it changed since or is already rendered for
        a later second."""
        done = self.seconds[f][c]
        if self.templates[f][c] is template and (done is None or done < second):
            self._keep(f, c, second, packed)

    def _keep(self, f: int, c: int, second: int, packed: tuple[bytes, int, int]) -> None:
        self.seconds[f][c] = second
        self.rendered[f].set(c, *packed)

    def family(self, f: int) -> tuple[list[bytes], int, int]:
        """Family ``f``'s rendered chunks (every one rendered), their CRC-32 and length."""
        return self.rendered[f].joined()

    def plain_parts(self, f: int, second: int) -> tuple[int, Iterator[bytes]]:
        """Family ``f``'s lines at ``second`` (for a scraper without gzip): their length and
        the chunks' text, rendered as they are sent (and once before, for the length:
        kept, they would be as large as the family's text)."""
        # the templates as they are now: a change while the chunks are sent replaces one in
        # self.templates, not in this list, so the length stays true
        templates = [self.template(f, c) for c in range(len(self.seconds[f]))]
        size = sum([len(fill(template, second)) for template in templates])
        return size, (fill(template, second) for template in templates)


def pack(text: bytes) -> tuple[bytes, int, int]:
    """A chunk's text compressed, with its CRC-32 and length (in the compression thread,
    zlib lets go of the GIL)."""
    return deflate(text), zlib.crc32(text), len(text)


def pack_all(texts: list[bytes]) -> list[tuple[bytes, int, int]]:
    return [pack(text) for text in texts]


def fill(template: tuple[str, array], second: int) -> bytes:
    """A chunk's lines at ``second``: its %-template filled with whole seconds."""
    text, starts = template
    # bytes' % formats whole numbers in about half the time of str's
    return text.encode() % tuple([second - s if s < second else 0 for s in starts])
