"""Start to ``/-/ready`` phase by phase, in process: the CPU seconds of each step ``channel-agent
run`` takes before it answers ``/-/ready``, so the floor under ``benchmarks/restart.py``'s
whole-process figure is visible.

Phases (each in a fresh process, so the imports are cold; the garbage collector off until
ready, as ``run`` has it):

- ``imports``: the modules ``run`` imports (``agent.cli.run``);
- ``config``: the plugins and the configuration (``load_or_exit``);
- ``state``: of the service's build, what reads the state file back: the accounts' states,
  the data freshness rows, each inventory source's kept list (the restore snapshot, when
  there is one: ``agent/storage/snapshot.py``);
- ``service``: the rest of ``AgentService(...)`` (metrics, data set declarations, scheduler);
- ``ready``: the web app, the listening socket and ``service.start()``;
- ``stop`` (after ready, not part of the start): ``service.stop()``, which writes the
  snapshot for the next start.

Uses the fleet ``benchmarks/restart.py`` made (``var/restart-<N>``), on a copy per checkout;
``--checkout DIR`` runs another checkout's ``agent`` package (repeat: A/B interleaved).

    .venv/bin/python benchmarks/start_phases.py --accounts 10000 --starts 5 \\
        --checkout ../main --checkout .
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("imports", "config", "state", "service", "ready", "total", "stop")

# What runs in the measured process: stdlib only until the first phase is timed.
CHILD = r"""
import gc, json, sys, time
gc.disable()
cpu = time.process_time
marks = {}
t = cpu()
import agent.cli.run as run
from aiohttp import web
marks["imports"] = cpu() - t

t = cpu()
config, plugins = run.load_or_exit(sys.argv[1])
marks["config"] = cpu() - t

spent = [0.0]
def timed(owner, name):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        start = cpu()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += cpu() - start
    setattr(owner, name, wrapper)

from agent.inventory.runner import InventoryRunner
from agent.storage.state import StateStore
timed(StateStore, "load_accounts")
timed(StateStore, "load_freshness")
timed(InventoryRunner, "_restored")
try:
    from agent.storage import snapshot
    timed(snapshot, "load")
except ImportError:  # a checkout without the snapshot
    snapshot = None

import asyncio

async def main():
    t = cpu()
    service = run.AgentService(config, plugins, None)
    built = cpu() - t
    marks["state"] = spent[0]
    marks["service"] = built - spent[0]
    t = cpu()
    runner = web.AppRunner(run.make_app(service, run.WebSecurity(None), None), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    await service.start()
    run.tune_gc()
    marks["ready"] = cpu() - t
    marks["total"] = sum(marks[p] for p in ("imports", "config", "state", "service", "ready"))
    t = cpu()
    await service.stop()
    await runner.cleanup()
    marks["stop"] = cpu() - t

asyncio.run(main())
print(json.dumps(marks))
"""


def run_once(config: Path, checkout: Path | None) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if checkout is not None:  # ahead of the editable install's finder
        env["PYTHONPATH"] = str(checkout.resolve())
    done = subprocess.run([sys.executable, "-c", CHILD, str(config)], env=env,
                          cwd=config.parent, capture_output=True, text=True, check=False,
                          timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"the measured start failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--starts", type=int, default=5, help="starts per checkout")
    parser.add_argument("--checkout", type=Path, action="append", default=[],
                        help="run the agent package of this checkout (repeat to alternate)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="the fleet restart.py made (default: var/restart-<accounts>)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from benchmarks.run import compile_sources

    workdir = (args.workdir or ROOT / f"var/restart-{args.accounts}").resolve()
    if not (workdir / "var" / "agent.db").exists():
        raise SystemExit(f"no fleet in {workdir}: run benchmarks/restart.py "
                         f"--accounts {args.accounts} first")
    compile_sources()
    for checkout in args.checkout:
        compile_sources(checkout)
    checkouts = args.checkout or [None]
    copies = {}
    for n, checkout in enumerate(checkouts):
        copies[checkout] = copy = workdir.with_name(f"{workdir.name}.phases{n}")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(workdir, copy)
        run_once(copy / "config.yaml", checkout)  # its validated forms (and snapshot)
    results: dict[str, list[dict[str, float]]] = {str(c): [] for c in checkouts}
    for i in range(args.starts):
        for checkout in checkouts:
            marks = run_once(copies[checkout] / "config.yaml", checkout)
            results[str(checkout)].append(marks)
            print(f"[phases] {i + 1}/{args.starts} {checkout or 'this venv'}: " + ", ".join(
                f"{p} {marks[p]:.2f}" for p in PHASES), file=sys.stderr, flush=True)
    print(f"\nCPU seconds per phase, in process, {args.accounts} accounts restored "
          f"(median, min-max of {args.starts})")
    print("| phase | " + " | ".join(str(c) for c in results) + " |")
    print("|---|" + "---|" * len(results))
    for phase in PHASES:
        cells = []
        for runs in results.values():
            values = sorted(m[phase] for m in runs)
            cells.append(f"{statistics.median(values):.2f} ({values[0]:.2f}-{values[-1]:.2f})")
        print(f"| {phase} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
