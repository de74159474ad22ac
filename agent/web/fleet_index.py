"""The account list at fleet scale: sorted, filtered views kept up to date as accounts change.

The landing page and ``/api/v1/accounts`` show 100 accounts of 10,000, filtered, with the
longest-broken first. Sorting or filtering the fleet per request would make every page cost as
much as the fleet is large. Instead every filter value (a channel, a state, a reason, stale or
not, a label, a source it depends on) keeps the sorted list of the accounts it matches, and the
per-channel counts of the summary are kept too. They are updated from the changes the fleet and
the freshness tracker report (:meth:`Fleet.watch`, :meth:`FreshnessTracker.watch`) and when a
data set turns stale with time (a heap of deadlines, one live entry per account). A page walks,
from its cursor, the shortest list among the filter's values and skips what the other values
(or the name search) exclude. "Fed by a source that is down" is the union of the lists of the
sources down now (a handful of sources; the union costs as much as the accounts they feed).

The lists are ``SortedList``s (sortedcontainers): a change is a removal and an insertion in
O(log n), where a Python list's ``insort`` moves half the list (at 50,000 accounts, a refresh
after 1,000 changes spent most of its time shifting list items). A full rebuild (start, reload,
a new inventory list) runs in steps of ``rebuild_step`` accounts: the web side's background
task yields to the loop between two steps (:meth:`AccountIndex.step`), and the previous index
serves what does not refresh until the new one is complete; a page asked for meanwhile finishes
the rebuild first (:meth:`AccountIndex.refresh`).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from sortedcontainers import SortedList

from agent.freshness.tracker import FreshnessTracker
from agent.state_words import STATES
from agent.storage.fleet import Fleet
from agent.storage.state import BROKEN, AccountState, state_word

RANK = {word: rank for rank, word in enumerate(STATES)}
COUNT_LIMIT = 2000  # a page counts its matches by walking at most this many accounts
REBUILD_STEP = 2000  # accounts indexed per step of a full rebuild

Key = tuple[str, str]
SortKey = tuple[int, float, str, str]  # (rank of the state, broken since, channel, account)
Facet = tuple[str, ...]
ALL: Facet = ("all",)
EMPTY: SortedList = SortedList()  # what a facet no account is in lists (never changed)


@dataclass(frozen=True)
class Filters:
    """What the account list is narrowed to; every field None (or "") matches every account."""

    channel: str | None = None
    state: str | None = None
    reason: str | None = None
    stale: bool | None = None
    label: tuple[str, str] | None = None  # (name, value)
    name: str = ""  # a case-insensitive part of the account's name
    source_down: bool = False  # fed by an inventory source, or a data set's source, now down

    def facets(self) -> list[Facet]:
        facets: list[Facet] = []
        if self.channel is not None:
            facets.append(("channel", self.channel))
        if self.state is not None:
            facets.append(("state", self.state))
        if self.reason is not None:
            facets.append(("reason", self.reason))
        if self.stale is not None:
            facets.append(("stale", "yes" if self.stale else "no"))
        if self.label is not None:
            facets.append(("label", *self.label))
        return facets


@dataclass
class Page:
    """One page of the list. ``next`` and ``prev`` are the cursors of the neighbouring pages
    (None at either end); ``total`` is None when counting would walk past COUNT_LIMIT."""

    keys: list[Key]
    next: SortKey | None
    prev: SortKey | None
    total: int | None


class AccountIndex:
    def __init__(self, fleet: Fleet, freshness: FreshnessTracker,
                 clock: Callable[[], float] = time.time,
                 down_sources: Callable[[], Iterable[tuple[str, str]]] = tuple,
                 rebuild_step: int = REBUILD_STEP) -> None:
        """``down_sources`` gives the (kind, name) of every source down now: "inventory" or
        "freshness" and the source's name."""
        self.fleet = fleet
        self.freshness = freshness
        self.clock = clock
        self.down_sources = down_sources
        self.rebuild_step = rebuild_step
        self._fleet_changes = fleet.watch()
        self._freshness_changes = freshness.watch()
        self._generations: tuple[int, int] | None = None
        self._build: Iterator[None] | None = None  # the rebuild under way, one step a next()
        self._building: tuple[int, int] | None = None  # the generations it indexes
        self._sort: dict[Key, SortKey] = {}
        self._member: dict[Key, frozenset[Facet]] = {}
        self._lists: dict[Facet, SortedList] = {}
        self.counts: Counter[tuple[str, str]] = Counter()  # (channel, state) -> accounts
        self._stale: dict[Key, int] = {}  # stale data sets per account
        self.stale_datasets = 0
        self._deadlines: list[tuple[float, Key]] = []  # when a data set may turn stale
        self._deadline_of: dict[Key, float] = {}  # the live entry of each account
        self._last_checks: dict[Key, float | None] = {}
        self._cycle_left: set[Key] = set()  # accounts not yet checked in this cycle
        self._cycle_end = 0.0
        self.last_cycle_finished: float | None = None

    # --- keeping up to date ----------------------------------------------------------------

    def refresh(self) -> None:
        """Fold in what changed since the last call (every page and summary calls it); a
        rebuild under way is finished first."""
        while self.step():
            pass

    def step(self) -> bool:
        """One step of the work :meth:`refresh` does: a slice of a full rebuild when the
        accounts or data sets were replaced (True: call again), else the fold of what changed
        (False). The web side's background task calls it, yielding to the loop in between."""
        generations = (self.fleet.generation, self.freshness.generation)
        if self._generations != generations:
            if self._build is None or self._building != generations:  # replaced again
                self._building, self._build = generations, self._rebuild(generations)
            if next(self._build, StopIteration) is not StopIteration:
                return True
            self._build = None
        self._fold()
        return False

    def _fold(self) -> None:
        now = self.clock()
        changed = set(self._fleet_changes)
        # a heartbeat or a data set past its deadline changes the account's staleness only
        staleness_only = self._freshness_changes - changed
        self._fleet_changes.clear()
        self._freshness_changes.clear()
        while self._deadlines and self._deadlines[0][0] < now:
            due, key = heapq.heappop(self._deadlines)
            if self._deadline_of.get(key) == due:
                del self._deadline_of[key]
                if key not in changed:
                    staleness_only.add(key)
        for key in changed:
            self._update(key, now)
        for key in staleness_only:
            self._update_staleness(key, now)

    def _rebuild(self, generations: tuple[int, int]) -> Iterator[None]:
        """The accounts or data sets were replaced (start, reload): index them all again, in
        steps (each ``yield`` is a pause), into new tables that replace the old ones at the
        end. What changes meanwhile is collected from the start and folded in after."""
        self._fleet_changes.clear()
        self._freshness_changes.clear()
        last_checks = {key: state.last_check for key, state in self.fleet.states.items()}
        keys = list(self.fleet.accounts)
        sorts: dict[Key, SortKey] = {}
        members: dict[Key, frozenset[Facet]] = {}
        stales: dict[Key, int] = {}
        deadline_of: dict[Key, float] = {}
        counts: Counter[tuple[str, str]] = Counter()
        step = self.rebuild_step
        for start in range(0, len(keys), step):
            now = self.clock()
            for key in keys[start:start + step]:
                entry = self._entry(key, now)
                if entry is None:  # gone; the next generation rebuilds
                    continue
                sorts[key], members[key], stales[key], deadline = entry
                counts[(key[0], STATES[sorts[key][0]])] += 1
                if deadline is not None:
                    deadline_of[key] = deadline
            yield
        ordered = sorted(sorts.values())
        yield
        grouped: dict[Facet, list[SortKey]] = {}
        for start in range(0, len(ordered), step):
            for sort in ordered[start:start + step]:
                for facet in members[sort[2:]]:
                    facet_sorts = grouped.get(facet)
                    if facet_sorts is None:
                        grouped[facet] = [sort]
                    else:
                        facet_sorts.append(sort)
            yield
        lists = {facet: SortedList(facet_sorts) for facet, facet_sorts in grouped.items()}
        # already in order: SortedList's sort of each is a linear pass
        self._sort, self._member, self._lists = sorts, members, lists
        self.counts.clear()
        self.counts.update(counts)
        self._stale, self.stale_datasets = stales, sum(stales.values())
        self._deadlines = [(due, key) for key, due in deadline_of.items()]
        heapq.heapify(self._deadlines)
        self._deadline_of = deadline_of
        self._last_checks = last_checks
        self._cycle_left = set(keys)
        self._cycle_end = 0.0
        self._generations = generations

    def _entry(self, key: Key, now: float
               ) -> tuple[SortKey, frozenset[Facet], int, float | None] | None:
        """The account's sort key, the facets it is in, its stale data sets and when the next
        one turns stale; None when it is gone."""
        account = self.fleet.accounts.get(key)
        state = self.fleet.states.get(key)
        if account is None or state is None:
            return None
        word = state_word(state)
        stale, deadline = self._staleness(key, now)
        sort = (RANK[word], broken_since(state), *key)
        member = frozenset({
            ALL, ("channel", key[0]), ("state", word), ("stale", "yes" if stale else "no"),
            *([("reason", state.reason)] if state.reason else []),
            *(("label", name, value) for name, value in account.labels.items()),
            *(("source", kind, name) for kind, name in self._sources(account.source, key)),
        })
        return sort, member, stale, deadline

    def _update(self, key: Key, now: float) -> None:
        entry = self._entry(key, now)
        if entry is None:  # gone; the next generation rebuilds
            return
        sort, member, stale, deadline = entry
        old_sort = self._sort.get(key)
        old_member = self._member.get(key, frozenset())
        if old_sort != sort:
            for facet in old_member:
                self._lists[facet].discard(old_sort)
            for facet in member:
                self._add(facet, sort)
        else:
            for facet in old_member - member:
                self._lists[facet].discard(sort)
            for facet in member - old_member:
                self._add(facet, sort)
        if old_sort is not None:
            self.counts[(key[0], STATES[old_sort[0]])] -= 1
        self.counts[(key[0], STATES[sort[0]])] += 1
        self._sort[key], self._member[key] = sort, member
        self._keep_staleness(key, stale, deadline)
        state = self.fleet.states[key]
        if state.last_check is not None and state.last_check != self._last_checks.get(key):
            self._checked(key, state.last_check)

    def _add(self, facet: Facet, sort: SortKey) -> None:
        sorts = self._lists.get(facet)
        if sorts is None:
            self._lists[facet] = SortedList([sort])
        else:
            sorts.add(sort)

    def _update_staleness(self, key: Key, now: float) -> None:
        """:meth:`_update` for an account whose state did not change: at 50,000 accounts a
        batch of heartbeats marks thousands, and most stay on the same side of stale (their
        lists, counts and sort key stay as they are)."""
        if key not in self._sort:
            self._update(key, now)
            return
        stale, deadline = self._staleness(key, now)
        if (stale > 0) != (self._stale.get(key, 0) > 0):  # it moves between the stale lists
            self._update(key, now)
            return
        self._keep_staleness(key, stale, deadline)

    def _keep_staleness(self, key: Key, stale: int, deadline: float | None) -> None:
        self.stale_datasets += stale - self._stale.get(key, 0)
        self._stale[key] = stale
        if deadline is not None and deadline < self._deadline_of.get(key, float("inf")):
            self._deadline_of[key] = deadline
            heapq.heappush(self._deadlines, (deadline, key))

    def _sources(self, inventory: str, key: Key) -> set[tuple[str, str]]:
        """The sources the account depends on: its inventory source, its data sets' sources."""
        sources = {("freshness", d.source) for d in self.freshness.by_account.get(key, ())}
        return sources | ({("inventory", inventory)} if inventory != "config" else set())

    def _staleness(self, key: Key, now: float) -> tuple[int, float | None]:
        """How many of the account's data sets are stale, and when the next one turns stale."""
        stale, deadline = 0, None
        for dataset in self.freshness.by_account.get(key, ()):
            value = self.freshness.values.get(dataset.key)
            if value is None:  # no data yet: not stale
                continue
            due = value.last_updated + dataset.max_age
            if now > due:
                stale += 1
            elif deadline is None or due < deadline:
                deadline = due
        return stale, deadline

    def _checked(self, key: Key, when: float) -> None:
        """A check cycle ends when every account was checked since the previous one ended."""
        self._last_checks[key] = when
        self._cycle_left.discard(key)
        self._cycle_end = max(self._cycle_end, when)
        if not self._cycle_left:
            self.last_cycle_finished = self._cycle_end
            self._cycle_left = set(self._sort)
            self._cycle_end = 0.0

    # --- reading ---------------------------------------------------------------------------

    def page(self, filters: Filters, limit: int, after: SortKey | None = None,
             before: SortKey | None = None) -> Page:
        """Up to ``limit`` accounts matching ``filters`` after the cursor ``after`` (or before
        ``before``), in the list's order."""
        self.refresh()
        facets = filters.facets()
        if filters.source_down:
            base = self._fed_by_down_sources()
            wanted = set(facets)
        else:
            lists = ([self._lists.get(facet, EMPTY) for facet in facets]
                     or [self._lists.get(ALL, EMPTY)])
            base = min(lists, key=len)
            wanted = set(facets) if len(facets) > 1 else set()
        name = filters.name.lower()
        residual = bool(wanted) or bool(name)

        def matches(sort: SortKey) -> bool:
            return ((not name or name in sort[3].lower())
                    and (not wanted or wanted <= self._member[sort[2:]]))

        if before is not None:
            end = base.bisect_left(before)
            rows = _take(matches, base.islice(0, end, reverse=True), limit + 1)
            has_prev, rows = len(rows) > limit, rows[:limit][::-1]
            has_next = bool(_take(matches, base.islice(end), 1))
        else:
            start = base.bisect_right(after) if after is not None else 0
            rows = _take(matches, base.islice(start), limit + 1)
            has_next, rows = len(rows) > limit, rows[:limit]
            has_prev = start > 0 and bool(_take(matches, base.islice(0, start, reverse=True), 1))
        if not residual:
            total: int | None = len(base)
        elif len(base) <= COUNT_LIMIT:
            total = sum(1 for sort in base if matches(sort))
        else:
            total = None
        return Page(keys=[(sort[2], sort[3]) for sort in rows],
                    next=rows[-1] if has_next and rows else None,
                    prev=rows[0] if has_prev and rows else None,
                    total=total)

    def _fed_by_down_sources(self) -> SortedList:
        lists = [self._lists.get(("source", *source), EMPTY) for source in self.down_sources()]
        if len(lists) == 1:
            return lists[0]
        return SortedList({sort for sorts in lists for sort in sorts})

    def labelled(self, name: str, value: str) -> list[Key]:
        """The accounts with the label ``name=value``, in the list's order."""
        return [(sort[2], sort[3]) for sort in self._lists.get(("label", name, value), EMPTY)]

    def stale_accounts(self) -> int:
        self.refresh()
        return len(self._lists.get(("stale", "yes"), EMPTY))

    def reasons(self) -> list[str]:
        """The reasons some account has now (for the filter's choices)."""
        return sorted(facet[1] for facet, sorts in self._lists.items()
                      if facet[0] == "reason" and sorts)

    def labels(self) -> list[str]:
        """The label names some account has now."""
        return sorted({facet[1] for facet, sorts in self._lists.items()
                       if facet[0] == "label" and sorts})


def broken_since(state: AccountState) -> float:
    """The sort time of a broken account (0 for others, which sort by name): since when it is
    broken, else since when its state holds, else when it last worked."""
    if state_word(state) not in BROKEN:
        return 0.0
    return state.broken_since or state.state_since or state.last_valid or 0.0


def _take(matches: Callable[[SortKey], bool], sorts: Iterator[SortKey],
          count: int) -> list[SortKey]:
    taken: list[SortKey] = []
    for sort in sorts:
        if matches(sort):
            taken.append(sort)
            if len(taken) == count:
                break
    return taken
