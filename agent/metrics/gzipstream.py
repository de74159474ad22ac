"""The gzip response of /metrics as concatenated pieces: each piece raw-deflated on its own
(ending byte-aligned, so cached pieces and fresh ones join into one valid deflate stream) and
the CRC-32 of the whole combined from the pieces' own (:func:`crc32_combine`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

LEVEL = 1  # zlib level: ~6x faster than 6, and the text still shrinks ~20x
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, OS unknown


def deflate(data: bytes, final: bool = False) -> bytes:
    """Raw deflate of ``data`` on its own, ending byte-aligned so pieces can be concatenated.

    A block (a few KB) gets a 4 KB window: setting up zlib's default 32 KB one costs five
    times as much as compressing the block, for the same output."""
    if not data and not final:
        return b""
    window = -15 if len(data) > 4096 else -12
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, window)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else
                                                        zlib.Z_SYNC_FLUSH)


def inflate(packed: bytes) -> bytes:
    """The text of pieces made by :func:`deflate` (not final), as they are or concatenated."""
    return zlib.decompressobj(-15).decompress(packed)


_CRC_POLY = 0xEDB88320  # CRC-32, reflected


def _multmodp(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial (bit-reflected), as zlib's multmodp."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1


def _x2n_table() -> list[int]:
    table = [1 << 30]  # x^1
    for _ in range(31):
        table.append(_multmodp(table[-1], table[-1]))
    return table


_X2N = _x2n_table()  # x^(2^k) modulo the polynomial


def _crc32_combine_python(crc1: int, crc2: int, len2: int) -> int:
    """zlib's crc32_combine in Python: crc1 multiplied by x^(8 len2); ~30 us."""
    p, k, n = 1 << 31, 3, len2
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _multmodp(p, crc1) ^ crc2


def _zlib_crc32_combine() -> Callable[[int, int, int], int] | None:
    """zlib's own crc32_combine (~1 us), which Python's zlib module does not expose, from the
    shared library that module uses; None where there is none to load (the Python port then
    serves). Checked against the port before it is trusted."""
    name = ctypes.util.find_library("z")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)
        combine = getattr(library, "crc32_combine64", None) or library.crc32_combine
    except (OSError, AttributeError):
        return None
    combine.restype = ctypes.c_ulong
    combine.argtypes = [ctypes.c_ulong, ctypes.c_ulong, ctypes.c_int64]
    probe = (0x12345678, 0x9ABCDEF0, 100_003)
    return combine if combine(*probe) == _crc32_combine_python(*probe) else None


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A + B from those of A and B and B's length (zlib's crc32_combine)."""
    return _COMBINE(crc1, crc2, len2)


_COMBINE = _zlib_crc32_combine() or _crc32_combine_python


@functools.cache
def compression_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-gzip")


def gzip_trailer(crc: int, size: int) -> bytes:
    return crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")


class Pieces:
    """One family's text as compressed pieces in order (blocks of accounts, chunks of ages),
    each with its text's CRC-32 and length. Pieces are joined and their CRCs combined per
    group of ``GROUP``, kept until a piece of the group changes: a scrape after a few
    changes re-joins and re-combines a few groups, not the whole family."""

    GROUP = 16

    def __init__(self, count: int) -> None:
        self.packed = [b""] * count
        self.crcs = [(0, 0)] * count  # CRC-32 and length of each piece's text
        self.groups: list[tuple[bytes, int, int] | None] = [None] * (
            (count + self.GROUP - 1) // self.GROUP)
        self.total: tuple[list[bytes], int, int] | None = None

    def set(self, i: int, packed: bytes, crc: int, size: int) -> None:
        self.packed[i], self.crcs[i] = packed, (crc, size)
        self.groups[i // self.GROUP] = None
        self.total = None

    def joined(self) -> tuple[list[bytes], int, int]:
        """The groups' joined streams, and the CRC-32 and length of the whole text."""
        if self.total is None:
            body, crc, size = [], 0, 0
            for g, group in enumerate(self.groups):
                if group is None:
                    pieces = range(g * self.GROUP, min(len(self.packed), (g + 1) * self.GROUP))
                    group_crc = group_size = 0
                    for i in pieces:
                        piece_crc, piece_size = self.crcs[i]
                        group_crc = crc32_combine(group_crc, piece_crc, piece_size)
                        group_size += piece_size
                    group = self.groups[g] = (b"".join([self.packed[i] for i in pieces]),
                                              group_crc, group_size)
                body.append(group[0])
                crc, size = crc32_combine(crc, group[1], group[2]), size + group[2]
            self.total = (body, crc, size)
        return self.total
