"""Splitting the accounts across replicas: rendezvous (highest-random-weight) hashing.

Every replica knows every account (they share one configuration) and checks only those whose
``channel/account`` key hashes to its own index. Each (shard, key) pair gets a weight from
SHA-256 and the key belongs to the shard with the highest weight, so:

- every replica computes the same owner without talking to the others;
- going from N to N+1 shards moves only the keys whose weight for the new shard beats their
  old owner's, about 1/(N+1) of them, and each moved key moves to the new shard.

SHA-256, not :func:`hash`: Python salts ``hash()`` per process, and replicas must agree.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

SHARD_HINT = ("must be INDEX/COUNT with 0 <= INDEX < COUNT, like 0/3, or auto/COUNT to take "
              "INDEX from a host name ending in -INDEX (a StatefulSet pod's ordinal)")
_SPEC = re.compile(r"\s*(\d+|auto)\s*/\s*(\d+)\s*")
_ORDINAL = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class Shard:
    """This replica's share of the accounts: shard ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: {SHARD_HINT}")

    def owns(self, key: str) -> bool:
        return self.count == 1 or owner(key, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def account_key(channel: str, account: str) -> str:
    """What is hashed: ``channel/account``, unique across the whole configuration."""
    return f"{channel}/{account}"


def weight(shard: int, key: str) -> int:
    digest = hashlib.sha256(f"{shard}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def owner(key: str, count: int) -> int:
    """The shard in ``range(count)`` that owns ``key``."""
    return max(range(count), key=lambda shard: weight(shard, key))


def parse_shard(text: str, hostname: Callable[[], str] = socket.gethostname) -> Shard:
    """``"INDEX/COUNT"`` or ``"auto/COUNT"``; raise ValueError with a message that says why.

    ``auto`` takes INDEX from the host name's trailing ``-N``: a StatefulSet names its pods
    ``<name>-0``, ``<name>-1``, ... and a pod's host name is its name.
    """
    match = _SPEC.fullmatch(text)
    if match is None:
        raise ValueError(SHARD_HINT)
    count = int(match.group(2))
    if count < 1:
        raise ValueError(f"COUNT must be at least 1; {SHARD_HINT}")
    if match.group(1) != "auto":
        index = int(match.group(1))
    else:
        name = hostname()
        ordinal = _ORDINAL.search(name)
        if ordinal is None:
            raise ValueError(f"auto/{count} takes INDEX from a host name ending in -INDEX, "
                             f"but this host is named '{name}'")
        index = int(ordinal.group(1))
    if index >= count:
        raise ValueError(f"INDEX {index} is not below COUNT {count}: a replica beyond the "
                         f"shard count would check nothing (raise COUNT with the replicas)")
    return Shard(index, count)
