"""Faults between the agent and Amazon, against the simulator over real loopback HTTP.

For every fault, on the token endpoint (Login with Amazon) and on the Ads API: the credential
keeps its last conclusive value, the right transient reason is counted, retries stay within
the check's budget and respect the rate limit (Retry-After, backoff), and once the fault
clears the next check is conclusive again. docs/reliability.md summarises the outcomes.

The three phases (baseline, fault, recovery) run every account's check concurrently, so the
whole matrix costs about one check budget per phase.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from channel_agent_amazon_ads.simulator import SimAccount, Simulator, SimulatorThread

from agent.config.loader import load_config
from agent.plugins import load_plugins
from agent.service import AgentService

# Generous enough that a loaded CI machine does not turn an answer into a timeout.
CHECK_TIMEOUT = 2.5  # the whole check, retries included
REQUEST_TIMEOUT = 1.0
INITIAL_BACKOFF = 0.1
JITTER = 0.1  # the Amazon channel's default
RETRY_AFTER = 1
SLACK = 0.5  # loopback delivery and event-loop scheduling, for the budget bound only


@dataclass(frozen=True)
class Fault:
    name: str  # as in the table of docs/reliability.md
    scenario: str | None  # the simulator's; None: the host is unreachable (see UNREACHABLE)
    reason: str | None  # the transient reason expected; None: the check absorbs the fault
    paths: tuple[str, ...] = ("token", "api")  # where it is tried: LwA or the Ads API
    min_gap: float = 0.0  # seconds at least between two attempts at one endpoint


FAULTS = (
    Fault("no answer (timeout)", "slow", "timeout"),
    Fault("slow trickle body", "trickle", "timeout"),
    Fault("connection reset", "connection_reset", "network"),
    Fault("truncated body", "truncated_body", "network"),
    Fault("DNS failure", None, "network", ("token",)),
    Fault("connection refused", None, "network", ("token",)),
    Fault("5xx", "server_error", "server_error", min_gap=INITIAL_BACKOFF * (1 - JITTER)),
    Fault("5xx burst, then recovery", "server_error_burst", None),
    Fault("HTML gateway page (502)", "html_gateway", "server_error"),
    Fault("429 with Retry-After", "throttled", "throttled", min_gap=RETRY_AFTER * 0.95),
    Fault("429 without Retry-After", "throttled_no_retry_after", "throttled",
          min_gap=INITIAL_BACKOFF * (1 - JITTER)),
    Fault("malformed JSON (200)", "malformed_json", "bad_response"),
    Fault("transient 401", "transient_401", None, ("api",)),
)
# Hosts that vanish during the fault phase, by the region their accounts are in.
UNREACHABLE = {"DNS failure": "fe", "connection refused": "eu"}


@dataclass
class Case:
    fault: Fault
    path: str  # "token" or "api"
    baseline: bool  # the conclusive value before the fault
    account: str

    @property
    def region(self) -> str:
        return UNREACHABLE.get(self.fault.name, "na")


def cases() -> list[Case]:
    found = []
    for i, fault in enumerate(FAULTS):
        for path in fault.paths:
            # a revoked baseline has no access token to reuse, so only the token path has it
            for baseline in (True, False) if path == "token" else (True,):
                name = f"f{i}-{path}-{'valid' if baseline else 'invalid'}"
                found.append(Case(fault, path, baseline, name))
    return found


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class World:
    """The simulator and two agents: "token" refreshes at every check (refresh_interval 0),
    so faults hit Login with Amazon; "api" reuses its access token, so they hit the Ads API."""

    def __init__(self, tmp: Path, sim: Simulator) -> None:
        self.tmp, self.sim = tmp, sim
        self.cases = cases()
        self.services: dict[str, AgentService] = {}
        for case in self.cases:
            sim.add_account(SimAccount.create(case.account, case.region, [42]))
            (tmp / f"{case.account}.token").write_text(sim.account(case.account).refresh_token)

    def write_config(self, path: str, endpoints: dict) -> Path:
        file = self.tmp / f"{path}.yaml"
        file.write_text(json.dumps({
            "agent": {"state_path": str(self.tmp / f"{path}.db"), "check_interval": "1h",
                      "check_timeout": f"{int(CHECK_TIMEOUT * 1000)}ms", "max_concurrency": 64},
            "channels": {"amazon_ads": {
                "client_id": self.sim.client_id, "client_secret": self.sim.client_secret,
                "endpoints": endpoints, "refresh_interval": "0" if path == "token" else "1h",
                "request_timeout": f"{int(REQUEST_TIMEOUT * 1000)}ms",
                # every account here is a different fault on one simulated host: one's 429s
                # must not pause the others (in production each region is its own host)
                "pause_host_on_429": False,
                "retry": {"initial_backoff": f"{int(INITIAL_BACKOFF * 1000)}ms",
                          "max_backoff": "200ms"},
                "accounts": [{"name": c.account, "region": c.region, "expected_profiles": [42],
                              "refresh_token_file": str(self.tmp / f"{c.account}.token")}
                             for c in self.cases if c.path == path],
            }},
        }))
        return file

    def start(self) -> None:
        plugins = load_plugins()
        for path in ("token", "api"):
            file = self.write_config(path, self.sim.endpoints())
            self.services[path] = AgentService(
                load_config(file, plugins.channels), plugins,
                loader=lambda file=file: load_config(file, plugins.channels))

    async def cut_the_network(self, cut: bool) -> None:
        """Point the token agent's eu and fe hosts at a closed port and an unresolvable name
        (or back at the simulator), through a configuration reload."""
        endpoints = self.sim.endpoints()
        if cut:
            dead = {"eu": f"http://127.0.0.1:{closed_port()}", "fe": "http://nonexistent.invalid"}
            for region, base in dead.items():
                endpoints["api_url"][region] = f"{base}/{region}"
            endpoints["token_url"] = {"na": endpoints["token_url"],
                                      **{r: f"{b}/auth/o2/token" for r, b in dead.items()}}
        self.write_config("token", endpoints)
        assert (await self.services["token"].reload()).ok

    async def check_all(self) -> dict[str, object]:
        async def check(case: Case):
            service = self.services[case.path]
            return case.account, await service.scheduler.check_now(
                service.find_account("amazon_ads", case.account))

        return dict(await asyncio.gather(*(check(case) for case in self.cases)))

    def failures(self) -> dict[tuple[str, str], float]:
        counts = {}
        for path, service in self.services.items():
            for metric in service.metrics.registry.collect():
                for s in metric.samples:
                    if s.name == "channel_check_failures_total":
                        counts[(path, s.labels["reason"])] = s.value
        return counts


@pytest.fixture
async def world(tmp_path):
    # on its own thread and loop, so the agents' work does not delay its answers
    sim = Simulator(slow_seconds=10, retry_after=RETRY_AFTER, trickle_seconds=0.05,
                    burst_length=2)
    with SimulatorThread(sim):
        world = World(tmp_path, sim)
        world.start()
        yield world
        for service in world.services.values():
            await service.stop()


async def test_every_fault_keeps_the_last_conclusive_value_and_heals(world):
    sim = world.sim
    for case in world.cases:
        sim.set_scenario(case.account, "healthy" if case.baseline else "revoked")
    baseline = await world.check_all()
    for case in world.cases:
        assert (baseline[case.account].valid, baseline[case.account].check_success) == (
            case.baseline, True), case.account

    for case in world.cases:
        sim.set_scenario(case.account, case.fault.scenario or "healthy")
    await world.cut_the_network(True)
    counted_before = world.failures()
    started = time.monotonic()
    during = await world.check_all()
    counted = {k: v - counted_before.get(k, 0) for k, v in world.failures().items()}

    problems = []
    expected_counts: dict[tuple[str, str], int] = {}
    for case in world.cases:
        state, fault = during[case.account], case.fault
        what = f"{fault.name} on {case.path}, last conclusive {case.baseline}"
        if fault.reason is None:  # absorbed by the check's retries
            if (state.valid, state.check_success, state.reason) != (True, True, None):
                problems.append(f"{what}: not absorbed ({state.reason}: {state.detail})")
            continue
        expected_counts[(case.path, fault.reason)] = (
            expected_counts.get((case.path, fault.reason), 0) + 1)
        if (state.valid, state.check_success, state.reason) != (
                case.baseline, False, fault.reason):
            problems.append(f"{what}: valid={state.valid} success={state.check_success} "
                            f"reason={state.reason} ({state.detail})")
        arrivals = [(t, p) for t, p, a, _ in sim.history if a == case.account and t >= started]
        late = [t - started for t, _ in arrivals if t - started > CHECK_TIMEOUT + SLACK]
        if late:
            problems.append(f"{what}: attempts {late}s after the check started")
        for endpoint in {p for _, p in arrivals}:
            times = [t for t, p in arrivals if p == endpoint]
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            if any(gap < fault.min_gap for gap in gaps):
                problems.append(f"{what}: retried {endpoint} after {min(gaps):.3f}s "
                                f"(at least {fault.min_gap}s)")
    print_summary(world.cases, during, sim.history, started)  # pytest -s: docs/reliability.md
    assert not problems, "\n".join(problems)
    assert {k: v for k, v in counted.items() if v} == expected_counts

    for case in world.cases:
        sim.set_scenario(case.account, "healthy")
    await world.cut_the_network(False)
    after = await world.check_all()
    unhealed = [a for a, state in after.items() if (state.valid, state.check_success) != (
        True, True)]
    assert not unhealed, unhealed


def print_summary(all_cases, states, history, started) -> None:
    print("\n| fault | where | before | outcome | valid after | requests seen | last one at |")
    for case in all_cases:
        state = states[case.account]
        times = [t - started for t, _, a, _ in history if a == case.account and t >= started]
        outcome = "conclusive (absorbed)" if state.reason is None else state.reason
        print(f"| {case.fault.name} | {case.path} | {int(case.baseline)} | {outcome} "
              f"| {int(state.valid)} | {len(times) or '-'} "
              f"| {f'{max(times):.2f}s' if times else '-'} |")


def test_the_reliability_document_lists_every_fault():
    document = (Path(__file__).parent.parent / "docs" / "reliability.md").read_text()
    missing = [fault.name for fault in FAULTS if f"| {fault.name} |" not in document]
    assert not missing, missing
