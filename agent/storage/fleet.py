"""The fleet: every configured account with its latest state, held in memory.

The scheduler writes check results here; metrics, the status API and the landing page read
from here. Every change is written through to the :class:`StateStore` at once. A reconnect
recorded by another process (``channel-agent reconnect``) is read back from the store at the
account's next check, so it shows without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from agent import steps
from agent.channel import Account, CheckResult
from agent.checks.sharding import Shard, account_key
from agent.config.loader import Config
from agent.steps import Steps, drain
from agent.storage.state import AccountState, StateStore


@dataclass
class FleetPlan:
    """What :meth:`Fleet.adopt` puts in place (made by :meth:`Fleet.prepare`)."""

    accounts: dict[tuple[str, str], Account]
    states: dict[tuple[str, str], AccountState]
    renamed: list[tuple[AccountState, Account]]  # states in use whose strings change
    shard: Shard
    configured: int
    channels: list[str]
    restored_clients: dict[str, bool | None]


class Fleet:
    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.accounts: dict[tuple[str, str], Account] = {}
        self.states: dict[tuple[str, str], AccountState] = {}
        self.client_valid: dict[str, bool | None] = {}
        self.shard = Shard()
        self.configured = 0  # accounts in the configuration, this shard's and the others'
        # bumped when the set of accounts is replaced; watchers then start over
        self.generation = 0
        self._watchers: list[set[tuple[str, str]]] = []

    def configure(self, config: Config) -> None:
        """Adopt the accounts of ``config`` that this replica's shard owns (at start and at
        every reload); state of accounts no longer configured (or owned) is dropped from
        memory, so they leave no series; accounts new to memory get their stored state back
        (so one removed and added again resumes)."""
        self.adopt(drain(self.prepare(config)))

    def prepare(self, config: Config) -> Steps[FleetPlan]:
        """:meth:`configure`'s work, in steps (:mod:`agent.steps`), changing nothing seen:
        what :meth:`adopt` then puts in place at once. Between the two only check results
        may come (they change states in place, which the plan shares)."""
        shard = config.agent.shard
        configured = config.accounts()
        accounts: dict[tuple[str, str], Account] = {}
        for start in range(0, len(configured), steps.STEP):
            part = configured[start:start + steps.STEP]
            if shard.count == 1:  # the usual: every account is this replica's, no key to make
                accounts.update({(account.channel, account.name): account for account in part})
            else:
                accounts.update({account.key: account for account in part
                                 if shard.owns(account_key(account.channel, account.name))})
            yield
        grants = self.store.load_grants()
        current = self.states
        new = not accounts.keys() <= current.keys()
        yield
        restored = (yield from self.store.load_accounts_steps()) if new else {}
        states: dict[tuple[str, str], AccountState] = {}
        renamed: list[tuple[AccountState, Account]] = []
        for n, (key, account) in enumerate(accounts.items(), 1):
            state = current.get(key)
            if state is None:
                state = restored.get(key)
                if state is None:
                    state = AccountState(channel=account.channel, account=account.name,
                                         region=account.region)
                # the Account's strings, not the stored row's copies: one of each per account
                state.account, state.region = account.name, account.region
            elif state.account is not account.name or state.region is not account.region:
                renamed.append((state, account))  # a state in use: changed in adopt()
            if key in grants:
                state.apply_grant(grants[key])
            states[key] = state
            if n % steps.STEP == 0:
                yield
        restored_clients = (self.store.load_client_validity()
                            if config.channels.keys() - self.client_valid.keys() else {})
        return FleetPlan(accounts, states, renamed, shard, len(configured),
                         list(config.channels), restored_clients)

    def adopt(self, plan: FleetPlan) -> None:
        """Put a :meth:`prepare`'s plan in place."""
        for state, account in plan.renamed:
            state.account, state.region = account.name, account.region
        self.accounts = plan.accounts
        self.states = plan.states
        self.shard = plan.shard
        self.configured = plan.configured
        self.generation += 1
        self.client_valid = {
            name: self.client_valid.get(name, plan.restored_clients.get(name))
            for name in plan.channels
        }

    def __iter__(self) -> Iterator[tuple[Account, AccountState]]:
        for key, account in self.accounts.items():
            yield account, self.states[key]

    def record(self, account: Account, result: CheckResult) -> AccountState:
        state = self.states.get(account.key)
        if state is None:  # removed from the config while its check ran
            return AccountState(channel=account.channel, account=account.name,
                                region=account.region)
        transition = state.apply(result, self.clock(), self.store.load_grant(*account.key))
        self.save(state)
        if transition is not None:
            self.store.save_transition(state.key, transition)
        if result.client_valid is not None and self.client_valid.get(account.channel) != (
            result.client_valid
        ):
            self.client_valid[account.channel] = result.client_valid
            self.store.save_client_validity(account.channel, result.client_valid)
        return state

    def save(self, state: AccountState) -> None:
        """Persist a changed state (and tell the watchers). Every change goes through here."""
        self.store.save_account(state)
        for keys in self._watchers:
            keys.add(state.key)

    def watch(self) -> set[tuple[str, str]]:
        """A set that collects the key of every account whose state changes from now on;
        the caller empties it when it has dealt with them."""
        keys: set[tuple[str, str]] = set()
        self._watchers.append(keys)
        return keys
