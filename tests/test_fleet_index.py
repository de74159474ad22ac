"""The account index behind the landing page and /api/v1/accounts: what a page shows must be
exactly what filtering and sorting the whole fleet would show, however the fleet changed."""

from __future__ import annotations

import random

import pytest

from agent.channel import CheckResult
from agent.config.loader import build_config
from agent.freshness.tracker import FreshnessTracker
from agent.storage.fleet import Fleet
from agent.storage.state import StateStore, state_word
from agent.web.fleet_index import RANK, AccountIndex, Filters, broken_since
from tests.fakes import FakeChannel

RESULTS = [
    CheckResult(valid=True),
    CheckResult(valid=False, reason="invalid_grant"),
    CheckResult(valid=False, reason="forbidden"),
    CheckResult(valid=None, reason="throttled"),
    CheckResult(valid=None, reason="timeout"),
]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path):
    def make(count: int = 60, channels: tuple[str, ...] = ("fake",)):
        data = {
            "agent": {"state_path": str(tmp_path / "agent.db")},
            "freshness_sources": {"pipeline": {"type": "heartbeat"}},
            "channels": {name: {
                "datasets": {"orders": {"source": "pipeline", "max_age": "1h"}},
                "accounts": [{"name": f"acct-{i:03d}", "region": "na"} for i in range(count)],
            } for name in channels},
        }
        classes = {name: type(f"Fake_{name}", (FakeChannel,), {"name": name})
                   for name in channels}
        config = build_config(data, classes, base_dir=tmp_path)
        clock = Clock()
        store = StateStore(tmp_path / "agent.db")
        fleet = Fleet(store, clock=clock)
        fleet.configure(config)
        for i, account in enumerate(fleet.accounts.values()):
            account.labels = {"merchant": f"m{i % 4}"}
        fleet.generation += 1  # the labels changed behind the fleet's back
        freshness = FreshnessTracker(store, clock=clock)
        freshness.configure(config)
        return fleet, freshness, AccountIndex(fleet, freshness, clock=clock), clock

    return make


def brute_force(fleet: Fleet, freshness: FreshnessTracker, filters: Filters,
                now: float) -> list[tuple[str, str]]:
    """The list as a full scan would make it."""
    rows = []
    for key, account in fleet.accounts.items():
        state = fleet.states[key]
        stale = any(freshness.values.get(d.key) is not None
                    and now - freshness.values[d.key].last_updated > d.max_age
                    for d in freshness.by_account.get(key, []))
        if ((filters.channel is None or key[0] == filters.channel)
                and (filters.state is None or state_word(state) == filters.state)
                and (filters.reason is None or state.reason == filters.reason)
                and (filters.stale is None or stale == filters.stale)
                and (filters.label is None
                     or account.labels.get(filters.label[0]) == filters.label[1])
                and filters.name.lower() in key[1].lower()):
            rows.append(((RANK[state_word(state)], broken_since(state), *key), key))
    return [key for _, key in sorted(rows)]


def walk(index: AccountIndex, filters: Filters, limit: int) -> list[tuple[str, str]]:
    """Every page from the first, following next; then back again with prev."""
    pages, cursor = [], None
    while True:
        page = index.page(filters, limit, after=cursor)
        pages.append(page.keys)
        if page.next is None:
            break
        assert len(page.keys) == limit
        cursor = page.next
    back = index.page(filters, limit, before=page.prev) if page.prev else None
    if back is not None:
        assert back.keys == pages[-2]
    return [key for keys in pages for key in keys]


FILTERS = [
    Filters(),
    Filters(state="invalid"),
    Filters(state="valid", channel="fake"),
    Filters(reason="invalid_grant"),
    Filters(stale=True),
    Filters(stale=False, state="unverified"),
    Filters(label=("merchant", "m1")),
    Filters(label=("merchant", "m2"), state="invalid"),
    Filters(name="00"),
    Filters(name="ACCT-01", stale=False),
    Filters(channel="nope"),
]


def test_pages_match_a_full_scan_through_random_changes(world):
    fleet, freshness, index, clock = world()
    rng = random.Random(17)
    accounts = list(fleet.accounts.values())
    orders = {a.key: freshness.datasets[(*a.key, "orders")] for a in accounts}
    for _ in range(6):
        for _ in range(40):
            clock.now += rng.uniform(0, 600)
            account = rng.choice(accounts)
            if rng.random() < 0.3:
                freshness.record(orders[account.key], clock.now - rng.uniform(0, 5400))
            else:
                fleet.record(account, rng.choice(RESULTS))
        for filters in FILTERS:
            expected = brute_force(fleet, freshness, filters, clock.now)
            assert walk(index, filters, limit=7) == expected, filters
            page = index.page(filters, 7)
            assert page.total in (None, len(expected))


def random_changes(fleet, freshness, clock, rng, count):
    """``count`` checks and heartbeats on random accounts, as the agent records them."""
    accounts = list(fleet.accounts.values())
    for _ in range(count):
        clock.now += rng.uniform(0, 600)
        account = rng.choice(accounts)
        if rng.random() < 0.3:
            dataset = freshness.datasets[(*account.key, "orders")]
            freshness.record(dataset, clock.now - rng.uniform(0, 5400))
        else:
            fleet.record(account, rng.choice(RESULTS))


def test_a_page_mid_rebuild_matches_a_full_scan(world):
    """The background rebuilds the index in steps, the fleet changing between two steps: what
    changed meanwhile is not lost, and a page asked for mid-rebuild finishes it first."""
    fleet, freshness, _, clock = world()
    index = AccountIndex(fleet, freshness, clock=clock, rebuild_step=7)
    rng = random.Random(23)
    for _ in range(8):
        random_changes(fleet, freshness, clock, rng, 20)
        for account in rng.sample(list(fleet.accounts.values()), 5):
            account.labels = {"merchant": f"m{rng.randrange(4)}"}
        fleet.generation += 1  # replaced (a reload, a new inventory list): a full rebuild
        for _ in range(rng.randrange(1, 14)):  # the background's steps, changes in between
            if not index.step():
                break
            random_changes(fleet, freshness, clock, rng, rng.randrange(4))
        for filters in FILTERS:
            expected = brute_force(fleet, freshness, filters, clock.now)
            assert walk(index, filters, limit=7) == expected, filters
        assert sum(index.counts.values()) == len(fleet.accounts)
        assert index.stale_datasets == len(brute_force(fleet, freshness, Filters(stale=True),
                                                       clock.now))


def test_until_a_rebuild_is_done_the_previous_index_answers(world):
    fleet, freshness, _, clock = world()
    index = AccountIndex(fleet, freshness, clock=clock, rebuild_step=7)
    index.refresh()
    before = index.labelled("merchant", "m1")
    for account in fleet.accounts.values():
        account.labels = {"merchant": "m9"}
    fleet.generation += 1
    assert index.step()  # one step of many
    assert index.labelled("merchant", "m1") == before and index.labels() == ["merchant"]
    assert index.page(Filters(label=("merchant", "m9")), 100).keys == brute_force(
        fleet, freshness, Filters(), clock.now)  # the page finished the rebuild
    assert index.labelled("merchant", "m1") == [] and not index.step()


def test_a_data_set_turns_stale_with_time_alone(world):
    fleet, freshness, index, clock = world(count=3)
    account = next(iter(fleet.accounts.values()))
    freshness.record(freshness.datasets[(*account.key, "orders")], clock.now - 3000)
    assert index.page(Filters(stale=True), 10).keys == []
    assert index.stale_datasets == 0
    clock.now += 601  # past the 1h threshold; nothing was recorded meanwhile
    assert index.page(Filters(stale=True), 10).keys == [account.key]
    assert index.stale_datasets == 1 and index.stale_accounts() == 1
    freshness.record(freshness.datasets[(*account.key, "orders")], clock.now)
    assert index.page(Filters(stale=True), 10).keys == []


def test_longest_broken_first_and_counts(world):
    fleet, freshness, index, clock = world(count=5, channels=("fake", "other"))
    accounts = {a.key: a for a in fleet.accounts.values()}
    for name in ("acct-003", "acct-001"):
        fleet.record(accounts[("fake", name)], CheckResult(valid=True))
    clock.now += 10
    fleet.record(accounts[("fake", "acct-003")], RESULTS[1])  # broken first
    clock.now += 10
    fleet.record(accounts[("fake", "acct-001")], RESULTS[2])
    clock.now += 10
    fleet.record(accounts[("fake", "acct-003")], RESULTS[3])  # still broken: unverified now
    fleet.record(accounts[("other", "acct-000")], RESULTS[0])
    page = index.page(Filters(), 4)
    assert page.keys == [("fake", "acct-001"), ("fake", "acct-003"), ("fake", "acct-000"),
                         ("fake", "acct-002")]
    assert fleet.states[("fake", "acct-003")].broken_since == 1_000_010.0  # kept
    assert index.counts[("fake", "invalid")] == 1 and index.counts[("fake", "unverified")] == 1
    assert index.counts[("fake", "pending")] == 3 and index.counts[("other", "valid")] == 1
    assert page.total == 10


def test_a_cycle_ends_when_every_account_was_checked(world):
    fleet, freshness, index, clock = world(count=3)
    index.refresh()
    accounts = list(fleet.accounts.values())
    for account in accounts[:2]:
        clock.now += 5
        fleet.record(account, RESULTS[0])
    index.refresh()
    assert index.last_cycle_finished is None
    fleet.record(accounts[0], RESULTS[0])  # again: still the same cycle
    clock.now += 5
    fleet.record(accounts[2], RESULTS[0])
    index.refresh()
    assert index.last_cycle_finished == clock.now


def test_source_down_lists_the_accounts_fed_by_a_source_that_is_down(world):
    fleet, freshness, _, clock = world(count=30)
    keys = list(fleet.accounts)
    for i, key in enumerate(keys):
        fleet.accounts[key].source = "crm" if i % 3 == 0 else "config"
        fleet.record(fleet.accounts[key], RESULTS[i % len(RESULTS)])
    fleet.generation += 1  # the sources changed behind the fleet's back
    down: list[tuple[str, str]] = []
    index = AccountIndex(fleet, freshness, clock=clock, down_sources=lambda: down)
    from_crm = [k for k in brute_force(fleet, freshness, Filters(), clock.now)
                if fleet.accounts[k].source == "crm"]

    assert walk(index, Filters(source_down=True), 4) == []
    down[:] = [("inventory", "crm")]
    assert walk(index, Filters(source_down=True), 4) == from_crm
    down[:] = [("freshness", "crm")]  # same name, other kind: feeds nobody
    assert walk(index, Filters(source_down=True), 4) == []
    down[:] = [("freshness", "pipeline"), ("inventory", "crm")]  # every account, once each
    assert walk(index, Filters(source_down=True), 7) == brute_force(
        fleet, freshness, Filters(), clock.now)
    page = index.page(Filters(source_down=True, state="invalid"), 100)
    assert page.keys == brute_force(fleet, freshness, Filters(state="invalid"), clock.now)
    assert page.total == len(page.keys) > 0
