"""Start to ``/-/ready`` with state restored, alone and repeated (``make bench``'s phase 5 does
it once, after minutes of other phases).

The first run makes the fleet in ``--workdir`` (``benchmarks/fleet.py``: the inventory source,
heartbeats for every data set, one full check cycle against the simulator, so every account
has its state); later runs reuse it. Then ``--starts`` starts of ``channel-agent run``, each
timed from process start to ``/-/ready`` (wall seconds and the agent's CPU seconds at that
moment) and stopped (SIGTERM to exit, wall and CPU: the stop writes the restore snapshot the
next start reads, ``agent/storage/snapshot.py``). ``--checkout DIR`` runs the ``agent``
package of another checkout (for A/B against main, interleaved: ``--checkout /work/main
--checkout .`` alternates them). Each checkout starts on its own copy of the fleet, after one
start that is not counted: the inventory's validated forms depend on the validating code's
files (``agent/inventory/validated.py:rules``), so a checkout's first start validates every
row (and, with the snapshot, its stop writes the snapshot the counted starts read).

    .venv/bin/python benchmarks/restart.py --accounts 10000 --starts 5 \\
        --checkout ../main --checkout .
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.fleet import build_fleet, wait_for_fleet  # noqa: E402
from benchmarks.run import (  # noqa: E402
    AgentProcess,
    compile_sources,
    cpu_seconds,
    full_cycle,
    heartbeats,
    start_simulator,
)


async def prepare(workdir: Path, args: argparse.Namespace) -> None:
    """The fleet with every account checked once and every data set's heartbeat."""
    workdir.mkdir(parents=True, exist_ok=True)
    sim, sim_url = start_simulator(workdir, args.accounts, latency=0.0)
    try:
        args.concurrency, args.check_timeout, args.max_rps = 100, "5s", 0
        config = build_fleet(workdir, args.accounts, args, sim_url, "10s")
        agent = AgentProcess(config, workdir, None)
        agent.start()
        try:
            wait_for_fleet(workdir, args.accounts)
            if args.datasets:
                await heartbeats(agent.url, args.accounts, args.datasets, 1000, singles=0)
            await full_cycle(agent, sim_url, args.accounts, None)
        finally:
            agent.stop()
        # restarts check at a pace that leaves the start alone (the simulator is gone)
        build_fleet(workdir, args.accounts, args, sim_url, "1h")
    finally:
        sim.terminate()
        sim.wait(timeout=30)


def start_once(config: Path, workdir: Path,
               checkout: Path | None) -> tuple[float, float, float, float]:
    """One start and stop: (wall seconds, agent CPU seconds) from process start to
    ``/-/ready``, then from SIGTERM to its exit (the stop writes the restore snapshot)."""
    if checkout is None:
        os.environ.pop("PYTHONPATH", None)
    else:  # ahead of the editable install's finder, which comes after sys.path
        os.environ["PYTHONPATH"] = str(checkout.resolve())
    agent = AgentProcess(config, workdir, None)
    before = children_cpu()
    try:
        wall = agent.start()
        cpu = cpu_seconds(agent.pid)
    finally:
        stopping = time.monotonic()
        try:
            agent.stop()
        except subprocess.TimeoutExpired:  # main before cbf6e02 did, now and then
            assert agent.proc is not None
            agent.proc.kill()
            agent.proc.wait()
            print(f"[restart] {checkout or 'this venv'}: no exit within 60 s of SIGTERM, "
                  f"killed", file=sys.stderr, flush=True)
            return wall, cpu, math.inf, math.inf
    return wall, cpu, time.monotonic() - stopping, children_cpu() - before - cpu


def children_cpu() -> float:
    """CPU seconds of the children waited for so far (an agent's, once it exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--datasets", type=int, default=2)
    parser.add_argument("--starts", type=int, default=5, help="starts per checkout")
    parser.add_argument("--checkout", type=Path, action="append", default=[],
                        help="run the agent package of this checkout (repeat to alternate)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="default: var/restart-<accounts>")
    args = parser.parse_args(argv)
    workdir = (args.workdir or Path(f"var/restart-{args.accounts}")).resolve()
    compile_sources()
    for checkout in args.checkout:
        compile_sources(checkout)
    if not (workdir / "var" / "agent.db").exists():
        print(f"[restart] making the fleet in {workdir}", file=sys.stderr, flush=True)
        asyncio.run(prepare(workdir, args))
    checkouts = args.checkout or [None]
    copies = {}
    for n, checkout in enumerate(checkouts):
        copies[checkout] = copy = workdir.with_name(f"{workdir.name}.{n}")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(workdir, copy)
        start_once(copy / "config.yaml", copy, checkout)  # its validated forms, not counted
    results: dict[str, list[tuple[float, float, float, float]]] = {str(c): [] for c in checkouts}
    for i in range(args.starts):
        for checkout in checkouts:
            copy = copies[checkout]
            run = start_once(copy / "config.yaml", copy, checkout)
            results[str(checkout)].append(run)
            print(f"[restart] {i + 1}/{args.starts} {checkout or 'this venv'}: "
                  f"ready {run[0]:.2f} s, CPU {run[1]:.2f} s; stop {run[2]:.2f} s, "
                  f"CPU {run[3]:.2f} s", file=sys.stderr, flush=True)
    print(f"\nstart to /-/ready, {args.accounts} accounts x {args.datasets} data sets restored"
          f" (and SIGTERM to exit)")
    for checkout, runs in results.items():
        figures = []
        for n, what in enumerate(("wall", "CPU", "stop wall", "stop CPU")):
            values = sorted(run[n] for run in runs)
            figures.append(f"{what} median {statistics.median(values):.2f} s "
                           f"({values[0]:.2f}-{values[-1]:.2f})")
        print(f"{checkout}: " + ", ".join(figures))


if __name__ == "__main__":
    main()
