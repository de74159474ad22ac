"""Applying a source's new answer to its last good list: the diff and the removal guard.

Pure functions over plain data, run in a worker thread (a first list of 50,000 rows takes a
while to validate): :func:`evaluate` turns the answer's rows into the source's next list.
Rows whose canonical text did not change (same digest) keep their :class:`Account` object as
it was, so an unchanged refresh validates nothing and changes nothing downstream. A row that
arrives exactly as last time (the same columns and values, same digest of the answer's own
row) is not even normalised: an unchanged refresh costs a digest and a lookup per row.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.channel import Account, Channel
from agent.inventory.rows import RowInvalid, RowProblem, normalise, validate_row
from agent.inventory.source import InventorySource
from agent.inventory.store import NO_FORM, Form
from agent.inventory.validated import decode, encode, form_decoder, rules
from agent.secrets.registry import SecretStores

Key = tuple[str, str]


@dataclass
class SourceList:
    """A source's accepted accounts, with a digest of the canonical row each came from (the
    diff compares digests: bytes an account instead of the row's text): 16 bytes, followed
    by the 16 of the answer's row as it came (:func:`answer_digest`) once one was accepted."""

    accounts: dict[Key, Account] = field(default_factory=dict)
    digests: dict[Key, bytes] = field(default_factory=dict)
    # accounts restored without their token: validated again at the next answer
    incomplete: set[Key] = field(default_factory=set)
    # of the whole answer the list was made from (an Answer's), None if it had none
    answer: bytes | None = None

    def made_from(self, rows: Sequence[Any]) -> bool:
        """``rows`` is the answer this list was made from, as a whole (:class:`Answer`):
        evaluating it again would give this list, so it need not be."""
        digest = getattr(rows, "digest", None)
        return digest is not None and digest == self.answer and not self.incomplete


@dataclass
class Held:
    """A list that would remove too many accounts, waiting for ``removal_hold``."""

    digest: bytes  # of the answer's account keys: a different list starts the wait again
    since: float
    removing: int
    of: int
    rows: Sequence[Any]  # the answer, applied when the hold ends


@dataclass
class Outcome:
    """What one answer does: the next list (None: keep the current one), the rows skipped,
    and what the state file must change: canonical rows to write, accounts to forget."""

    new: SourceList | None
    problems: list[RowProblem]
    held: Held | None = None
    added: int = 0
    removed: int = 0
    changed: int = 0
    write: dict[Key, str] = field(default_factory=dict)
    forms: dict[Key, Form] = field(default_factory=dict)  # the validated form of each written
    forget: list[Key] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def evaluate(source: InventorySource, current: SourceList, rows: Sequence[Any],
             channels: Mapping[str, type[Channel]], base_dir: Path, now: float,
             held: Held | None, revalidate: bool = False,
             stores: SecretStores | None = None) -> Outcome:
    """The source's next list from ``rows``; ``held`` is the answer waiting, if any.

    One pass over the rows: a row that came as last time costs a digest and a lookup; a
    changed row its normalisation and a digest lookup; only new or changed rows (in their
    canonical form) are validated."""
    old = current.accounts
    new = SourceList(answer=getattr(rows, "digest", None))
    outcome = Outcome(new, [])
    problems = outcome.problems
    first_row: dict[Key, int] = {}
    labels = source.labels
    for i, raw in enumerate(rows, 1):
        seen = answer_digest(raw)
        if seen is not None and not revalidate:
            key, came = seen
            kept = current.digests.get(key)
            if kept is not None and kept.endswith(came) and key not in first_row and \
                    key not in current.incomplete:
                previous = old[key]
                first_row[previous.key] = i
                new.accounts[previous.key], new.digests[previous.key] = previous, kept
                continue
        candidate = normalise(source.name, i, raw, channels)
        if isinstance(candidate, RowProblem):
            problems.append(candidate)
            continue
        key = candidate.key
        if key in first_row:
            problems.append(RowProblem(source.name, i, "/".join(key),
                                       f"the same account as row {first_row[key]}; this row "
                                       f"is skipped"))
            continue
        first_row[key] = i
        digest = row_digest(candidate.text)
        if seen is not None:
            digest += seen[1]
        previous = old.get(key)
        if previous is not None and not revalidate and key not in current.incomplete and \
                current.digests.get(key, b"")[:DIGEST] == digest[:DIGEST]:
            new.accounts[key], new.digests[key] = previous, digest
            continue
        try:
            account = validate_row(candidate, source=source.name, channel_cls=channels[key[0]],
                                   static_labels=labels, base_dir=base_dir, stores=stores)
        except RowInvalid as exc:
            problems.append(RowProblem(source.name, i, "/".join(key), "; ".join(exc.messages)))
            if previous is not None:  # keep what worked; report the row until it is fixed
                new.accounts[key], new.digests[key] = previous, current.digests[key]
                if key in current.incomplete:
                    new.incomplete.add(key)
            continue
        new.accounts[key], new.digests[key] = account, digest
        outcome.write[key] = candidate.text
        if previous is None:
            outcome.added += 1
        elif previous != account:
            outcome.changed += 1
    # made after the loop, not beside each account: the forms are dropped once written, and
    # allocated among the accounts they would keep the allocator's arenas (~4 MB at 10,000)
    outcome.forms = {key: validated_form(channels[key[0]], new.accounts[key], labels, base_dir)
                     for key in outcome.write}
    outcome.forget = [key for key in old if key not in first_row]
    outcome.removed = len(outcome.forget)
    if old and outcome.removed > source.max_removal * len(old):
        keys = _digest(first_row)
        if held is None or held.digest != keys:
            held = Held(keys, now, outcome.removed, len(old), rows)
        if now - held.since < source.removal_hold:
            held.rows = rows
            return Outcome(None, problems, held=held)
    return outcome


def restore(source: InventorySource, texts: Sequence[str],
            channels: Mapping[str, type[Channel]], base_dir: Path,
            stores: SecretStores | None = None,
            forms: Sequence[Form] = (),
            keys: Sequence[Key] = ()) -> tuple[SourceList, dict[Key, Form]]:
    """The list the state file kept; rows that no longer validate are left out. ``forms``:
    each row's validated form, used where it was made under the rules of now and still fits
    (``keys``: each row's account, so such a row's text need not be read); the other rows
    are validated, and their new forms returned, for the state file."""
    from agent.inventory.credentials import WITHHELD_SUFFIX
    from agent.inventory.rows import restored

    result = SourceList()
    remade: dict[Key, Form] = {}
    labels = source.labels
    name = source.name
    current: dict[str, str] = {}  # each channel's rules
    for i, text in enumerate(texts, 1):
        validated, made_under = forms[i - 1] if i <= len(forms) else NO_FORM
        account = None
        if validated is not None and i <= len(keys):
            key = (sys.intern(keys[i - 1][0]), sys.intern(keys[i - 1][1]))  # as normalise's
            channel_cls = channels.get(key[0])
            if channel_cls is None:
                continue
            if made_under == current.get(key[0]) or made_under == current.setdefault(
                    key[0], _rules(channel_cls, labels, base_dir)):
                account = decode(channel_cls, key, validated, text, name, stores)
        if account is None:
            candidate = restored(name, i, text)
            if isinstance(candidate, RowProblem) or candidate.key[0] not in channels:
                continue
            key, channel_cls = candidate.key, channels[candidate.key[0]]
            try:
                account = validate_row(candidate, source=source.name, channel_cls=channel_cls,
                                       static_labels=labels, base_dir=base_dir, stores=stores)
            except RowInvalid:
                continue
            remade[key] = validated_form(channel_cls, account, labels, base_dir)
        result.accounts[key] = account
        result.digests[key] = row_digest(text)
        if WITHHELD_SUFFIX in text:
            result.incomplete.add(key)
    return result, remade


def restore_snapshot(source: InventorySource, rows: Sequence[SnapshotRow],
                     channels: Mapping[str, type[Channel]], base_dir: Path,
                     stores: SecretStores | None = None) -> SourceList | None:
    """:func:`restore` from the restore snapshot's rows (:func:`snapshot_rows`), made from
    the same kept list; None when a row's form was made under other rules or does not fit
    any more (the caller then restores the kept list itself, validating what it must)."""
    result = SourceList()
    accounts, digests, incomplete_keys = result.accounts, result.digests, result.incomplete
    labels = source.labels
    name = source.name
    # each channel's rules and decoder, looked up once (None: a channel not configured now)
    per_channel: dict[str, tuple[str, Callable[..., Account | None]] | None] = {}
    for channel, account, form, made_under, digest, incomplete, text in rows:
        known = per_channel.get(channel, _UNSEEN)
        if known is _UNSEEN:
            channel_cls = channels.get(channel)
            known = per_channel[channel] = None if channel_cls is None else (
                _rules(channel_cls, labels, base_dir), form_decoder(channel_cls, name, stores))
        if known is None:
            continue
        if made_under != known[0]:
            return None
        key = (channel, account)
        restored = known[1](key, form, text)
        if restored is None:
            return None
        accounts[key] = restored
        digests[key] = digest
        if incomplete:
            incomplete_keys.add(key)
    return result


_UNSEEN: Any = object()


# one kept row as the restore snapshot has it: channel, account, the validated form (parsed),
# the digest of its rules, the row's digest, whether its token was withheld, and the row's
# text where the form needs it (validated.reads_row), else None
SnapshotRow = tuple[str, str, Any, str, bytes, bool, "str | None"]


def snapshot_rows(texts: Sequence[str], forms: Sequence[Form],
                  keys: Sequence[Key]) -> list[SnapshotRow] | None:
    """A kept list (:func:`agent.inventory.store.load_list`) as the restore snapshot keeps it:
    what :func:`restore` would compute from each row, done now. None when a row has no
    validated form (the next start validates it: the snapshot cannot stand in for that)."""
    from agent.inventory.credentials import WITHHELD_SUFFIX
    from agent.inventory.validated import reads_row

    rows: list[SnapshotRow] = []
    intern = sys.intern
    for text, (validated, made_under), (channel, account) in zip(texts, forms, keys,
                                                                 strict=True):
        if validated is None or made_under is None:
            return None
        try:  # raw_decode: a third less than json.loads, 50,000 times at a stop
            form, end = _decode(validated)
        except ValueError:
            return None
        if end != len(validated):
            return None
        rows.append((intern(channel), intern(account), _shared(form), intern(made_under),
                     row_digest(text), WITHHELD_SUFFIX in text,
                     text if '"store"' in validated and reads_row(form) else None))
    return rows


_decode = json.JSONDecoder().raw_decode
# the parts of a parsed form that every account repeats: its region, its labels' values and
# where its secrets come from (the secret files' paths are each account's own)
_REPEATED = frozenset({"region", "labels", "source", "store", "mode"})


def _shared(value: Any, repeated: bool = False) -> Any:
    """A parsed form with its keys (and the values accounts repeat) interned: ``marshal``
    then writes each once and refers to it after, so the snapshot is a fifth smaller and read
    back faster, and the restored settings share their keys."""
    cls = value.__class__
    if cls is dict:
        intern = sys.intern
        return {intern(key): _shared(item, repeated or key in _REPEATED)
                for key, item in value.items()}
    if cls is list:
        return [_shared(item, repeated) for item in value]
    if cls is str and repeated:
        return sys.intern(value)
    return value


def validated_form(channel_cls: type[Channel], account: Account, labels: Mapping[str, str],
                   base_dir: Path) -> Form:
    """What the state file keeps beside a row for ``account``, validated from it."""
    text = encode(channel_cls, account)
    return NO_FORM if text is None else (text, _rules(channel_cls, labels, base_dir))


def _rules(channel_cls: type[Channel], labels: Mapping[str, str], base_dir: Path) -> str:
    return rules(channel_cls, tuple(sorted(labels.items())), base_dir)


DIGEST = 16  # bytes


def row_digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=DIGEST).digest()


def answer_digest(raw: Any) -> tuple[Key, bytes] | None:
    """A row as the source answered it: its account key and a digest of its columns and
    values, in their order (a row whose columns come in another order just takes the longer
    way); None for a row without a string channel and account (normalise says why)."""
    if not isinstance(raw, Mapping):
        return None
    channel, account = raw.get("channel"), raw.get("account")
    if channel.__class__ is not str or account.__class__ is not str:
        return None
    text = repr(list(raw.items()))
    return (channel, account), hashlib.blake2b(text.encode(), digest_size=DIGEST).digest()


def _digest(keys: Mapping[Key, Any]) -> bytes:
    text = "\n".join(sorted(f"{channel}/{account}" for channel, account in keys))
    return hashlib.sha256(text.encode()).digest()
