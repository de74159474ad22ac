"""The fleet: every configured account with its latest state, held in memory.

The scheduler writes check results here; metrics, the status API and the landing page read
from here. Every change is written through to the :class:`StateStore` at once. A reconnect
recorded by another process (``channel-agent reconnect``) is read back from the store at the
account's next check, so it shows without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from agent.channel import Account, CheckResult
from agent.checks.sharding import Shard, account_key
from agent.config.loader import Config
from agent.storage.state import AccountState, StateStore


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
        shard = config.agent.shard
        configured = config.accounts()
        if shard.count == 1:  # the usual: every account is this replica's, no key to make
            accounts = {(account.channel, account.name): account for account in configured}
        else:
            accounts = {account.key: account for account in configured
                        if shard.owns(account_key(account.channel, account.name))}
        grants = self.store.load_grants()
        restored = self.store.load_accounts() if accounts.keys() - self.states.keys() else {}
        restored_clients = (self.store.load_client_validity()
                            if config.channels.keys() - self.client_valid.keys() else {})
        states = {}
        for key, account in accounts.items():
            state = self.states.get(key) or restored.get(key)
            if state is None:
                state = AccountState(channel=account.channel, account=account.name,
                                     region=account.region)
            # the Account's strings, not the stored row's copies: one of each per account
            state.account, state.region = account.name, account.region
            if key in grants:
                state.apply_grant(grants[key])
            states[key] = state
        self.accounts = accounts
        self.states = states
        self.shard = shard
        self.configured = len(configured)
        self.generation += 1
        self.client_valid = {
            name: self.client_valid.get(name, restored_clients.get(name))
            for name in config.channels
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
