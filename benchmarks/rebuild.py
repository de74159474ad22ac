"""The exposition's rebuild after a cycle against ``generate_latest``, in process: the figure of
``benchmarks/run.py``'s phase 4 in about a minute instead of a whole run.

    .venv/bin/python benchmarks/rebuild.py --accounts 10000             # 5 rounds
    .venv/bin/python benchmarks/rebuild.py --accounts 50000 --rounds 3
    .venv/bin/python benchmarks/rebuild.py --accounts 10000 --profile prof.txt  # + cProfile
    .venv/bin/python benchmarks/rebuild.py --accounts 2000 --verify     # + both parsed, compared

The fleet is ``benchmarks/memory.py``'s (the SQL inventory taken in, every account checked
successfully, a heartbeat per data set; no simulator, no network), the exposition rendered
once. Then, in each round, interleaved so both see the same load: ``generate_latest`` over
the registry; a cycle of checks recorded (``Fleet.record`` of a successful result for every
account: new check times, a new access token), then the rebuild as ``run.py`` times it
(``Exposition.invalidate()``: every account of every cached collector re-rendered, then a
gzip scrape). Both are timed by process CPU (the compression thread included) and by wall
clock. The ratio of the medians is the figure; each round's own ratio shows the spread.

Run from another tree (``python ../main/benchmarks/rebuild.py``), it measures that tree's
``agent`` package (the script puts its own tree first on ``sys.path``; printed as ``agent``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.memory import fleet_service, record_checks  # noqa: E402


def timed(fn: Any) -> tuple[float, float]:
    """Process CPU and wall seconds of ``fn()``, after a full collection."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


async def record_cycle(service: Any, round_: int) -> None:
    """What a cycle of successful checks records for every account: new check times and a
    new access token (as ``benchmarks/scrape.py``'s checks)."""
    now = time.time() + 300 * round_
    service.fleet.clock = lambda: now
    await record_checks(service, now)


AGES = ("channel_token_age_seconds", "channel_data_staleness_seconds")


def verify(service: Any, exposition: Any) -> int:
    """Parse the exposition and ``generate_latest`` and compare them; the samples compared."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    def parsed(text: bytes) -> dict[str, set]:
        return {family.name: {(s.name, tuple(sorted(s.labels.items())), s.value)
                              for s in family.samples}
                for family in text_string_to_metric_families(text.decode())}

    text, latest = exposition.render(), generate_latest(service.metrics.registry)
    ours, theirs = parsed(text), parsed(latest)
    # the process collector's CPU and memory move between the two renderings
    for name in [n for n in theirs if n.startswith("process_")]:
        ours.pop(name, None), theirs.pop(name, None)
    for name in AGES:  # an age may be a second behind the clock (agent.metrics.ages)
        near = {(n, labels): v for n, labels, v in theirs.get(name, ())}
        assert {(n, labels) for n, labels, _ in ours.get(name, ())} == set(near), name
        assert all(abs(v - near[n, labels]) <= 2 for n, labels, v in ours.get(name, ())), name
        ours.pop(name, None), theirs.pop(name, None)
    assert ours == theirs, sorted(set(ours) ^ set(theirs)) or [
        name for name in ours if ours[name] != theirs[name]][:5]
    return sum(map(len, ours.values()))


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from prometheus_client import generate_latest

    import agent
    from agent.metrics.exposition import Exposition

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        service = await fleet_service(Path(tmp), args.accounts, args.datasets)
        exposition = Exposition(service.metrics.registry)
        first_cpu, _ = timed(exposition.render_gzip)
        registry = service.metrics.registry
        latest: list[tuple[float, float]] = []
        rebuilt: list[tuple[float, float]] = []
        profile = cProfile.Profile() if args.profile else None

        def rebuild() -> None:
            if profile:
                profile.enable()
            exposition.invalidate()
            exposition.render_gzip()
            if profile:
                profile.disable()

        for r in range(args.rounds):
            latest.append(timed(lambda: generate_latest(registry)))
            await record_cycle(service, r + 1)
            rebuilt.append(timed(rebuild))
            print(f"round {r + 1}: generate_latest {latest[-1][0] * 1000:,.0f} ms CPU, "
                  f"rebuild {rebuilt[-1][0] * 1000:,.0f} ms CPU, "
                  f"ratio {rebuilt[-1][0] / latest[-1][0]:.3f}", file=sys.stderr, flush=True)
        samples = verify(service, exposition) if args.verify else None
        await service.stop()
        service.store.close()
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(args.sort).print_stats(50)
        Path(args.profile).write_text(out.getvalue())
        profile.dump_stats(f"{args.profile}.pstats")
    latest_cpu = statistics.median(c for c, _ in latest)
    rebuild_cpu = statistics.median(c for c, _ in rebuilt)
    return {
        "agent": str(Path(agent.__file__).parent.parent), "accounts": args.accounts,
        "datasets": args.datasets, "rounds": args.rounds,
        "load_average": round(os.getloadavg()[0], 2),
        "first_render_cpu_ms": round(first_cpu * 1000),
        "generate_latest_cpu_ms": round(latest_cpu * 1000),
        "rebuild_cpu_ms": round(rebuild_cpu * 1000),
        "ratio_cpu": round(rebuild_cpu / latest_cpu, 3),
        "ratio_cpu_best": round(min(c for c, _ in rebuilt) / min(c for c, _ in latest), 3),
        "ratios_cpu_per_round": [round(b[0] / a[0], 3) for a, b in zip(latest, rebuilt,
                                                                       strict=True)],
        "ratio_wall": round(statistics.median(w for _, w in rebuilt)
                            / statistics.median(w for _, w in latest), 3),
        "verified_samples": samples,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--datasets", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", default=None, help="cProfile of the rebuilds, to a file")
    parser.add_argument("--sort", default="tottime", help="--profile: pstats sort key")
    parser.add_argument("--verify", action="store_true",
                        help="at the end, parse the exposition and generate_latest's text "
                             "and compare them (slow at 50,000)")
    parser.add_argument("--workdir", default=None, help="where the fleet's files go")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args))))


if __name__ == "__main__":
    main()
