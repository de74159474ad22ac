"""The benchmark's "agent CPU per check / floor": the agent measured flat out, as the floor is,
as many times as the floor, medians compared, both spreads shown (benchmarks/run.py,
benchmarks/report.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.config.durations import parse_duration  # noqa: E402
from benchmarks.report import rows  # noqa: E402
from benchmarks.run import flat_out_schedule, kept_schedule  # noqa: E402

# concurrency 100, two requests of 50 ms per check: at most 1,000 checks a second answered
LATENCY_CAP = 100 / (2 * 0.05)


@pytest.mark.parametrize("n", [1000, 2000, 5000, 10_000, 50_000])
def test_the_default_schedule_has_more_due_than_the_latency_lets_through(n: int) -> None:
    interval, timeout = flat_out_schedule(n, "auto", "auto")
    seconds = parse_duration(interval)
    assert n / seconds >= min(n / 2, LATENCY_CAP)  # below 2,000 accounts: the 2 s floor
    assert parse_duration(timeout) < seconds  # the agent's configuration requires it
    if n >= 10_000:  # the figures of earlier rounds were taken at 10 s / 5 s
        assert (interval, timeout) == ("10s", "5s")


def test_explicit_settings_are_kept() -> None:
    assert flat_out_schedule(2000, "10s", "5s") == ("10s", "5s")


def test_a_cycle_at_the_schedules_pace_is_not_flat_out() -> None:
    # 2,000 accounts at 10 s: 200 checks/s is the schedule's pace, 456/s is the agent's
    assert kept_schedule({"checks_per_second": 199.0}, 2000, 10.0)
    assert not kept_schedule({"checks_per_second": 456.0}, 2000, 2.0)
    assert not kept_schedule({"checks_per_second": 305.0}, 10_000, 10.0)


def results(kept: bool) -> dict:
    cycle = {"cpu_ms_per_check": 1.0, "loop_cpu_ms_per_check": 0.9, "checks_per_second": 200,
             "scrape_p50_ms": 1.0, "scrape_p99_ms": 2.0, "scrapes": 3, "kept_schedule": kept}
    return {
        "cycle": cycle, "scraped": cycle, "paced": cycle, "peak_rss_mb": 100.0,
        "exposition": {"rebuild_ms": 1.0, "generate_latest_ms": 4.0, "ratio": 0.25,
                       "unchanged_scrape_ms": 1.0},
        "floor": {"cpu_ms_per_check": 0.4, "cpu_ms_per_check_runs": [0.5, 0.4, 0.45]},
        "restart_ready_s": 1.0, "first_ready_s": 1.0, "applied_s": 1.0,
        "heartbeats": {"per_second": 1.0, "single_per_second": 1.0, "count": 1, "batch": 1,
                       "seconds": 1.0},
        "sizes": {"series": 1, "plain_bytes": 1, "gzip_bytes": 1},
        "inventory": {"rows": 1, "unchanged_s": 1.0},
    }


def table(kept: bool) -> dict[str, str]:
    args = argparse.Namespace(accounts=2000, paced_interval="60s", scrape_interval=0.1,
                              check_interval="10s", datasets=2, heartbeat_batch=1000)
    return {row[0].strip(): row[1] for row in rows(args, results(kept))}


def test_the_table_shows_the_floors_spread_and_the_loops_share() -> None:
    shown = table(kept=False)
    assert shown["agent CPU per check / bare aiohttp floor"] == "1.00 / 0.45 ms = 2.22"
    assert shown["medians of the agent's 1 cycles / the floor's 3 runs"] == (
        "1.00 / 0.50, 0.40, 0.45 ms; ratio 2.00-2.50")
    assert shown["the first cycle / the floor's best run"] == "1.00 / 0.40 ms = 2.50"
    assert shown["of which the event loop's thread / the other threads (median cycle)"] == (
        "0.90 / 0.10 ms")
    assert shown["checks per second, flat out"] == "200"


def test_the_ratio_is_of_the_median_cycle_to_the_median_floor_run() -> None:
    args = argparse.Namespace(accounts=2000, paced_interval="60s", scrape_interval=0.1,
                              check_interval="10s", datasets=2, heartbeat_batch=1000)
    r = results(kept=False)
    r["cycles"] = [{**r["cycle"], "cpu_ms_per_check": cpu, "loop_cpu_ms_per_check": cpu - 0.05,
                    "sim_cpu_ms_per_check": 0.4} for cpu in (1.2, 0.9, 1.0)]
    r["floor"]["sim_cpu_ms_per_check_runs"] = [0.3, 0.5, 0.35]
    r["cycle"] = r["cycles"][0]
    shown = {row[0].strip(): row[1:] for row in rows(args, r)}
    assert shown["agent CPU per check / bare aiohttp floor"] == (
        "1.00 / 0.45 ms = 2.22", "<= 2.5", "0.89", "yes")
    assert shown["medians of the agent's 3 cycles / the floor's 3 runs"][0] == (
        "1.20, 0.90, 1.00 / 0.50, 0.40, 0.45 ms; ratio 1.80-3.00")
    assert shown["the first cycle / the floor's best run"][0] == "1.20 / 0.40 ms = 3.00"
    assert shown["of which the event loop's thread / the other threads (median cycle)"][0] == (
        "0.95 / 0.05 ms")
    assert shown["the simulator's CPU per check, serving the agent / the floor"][0] == (
        "0.40 / 0.35 ms")


def test_the_table_flags_a_cycle_that_was_not_flat_out() -> None:
    assert "NOT flat out" in table(kept=True)["checks per second, flat out"]


def test_start_to_ready_is_the_median_of_the_timed_starts() -> None:
    args = argparse.Namespace(accounts=10_000, paced_interval="60s", scrape_interval=0.1,
                              check_interval="10s", datasets=2, heartbeat_batch=1000)
    r = results(kept=False)
    r["restart_ready_runs"] = [0.82, 1.25, 0.79]  # one slow start does not decide the figure
    r["rows_ready_runs"] = [1.31, 0.9, 0.95]
    shown = {row[0].strip(): row[1:] for row in rows(args, r)}
    assert shown["start to /-/ready, state restored, median of 3 starts"] == (
        "0.82 s (0.82, 1.25, 0.79)", "<= 1 s", "0.82", "yes")
    assert shown["after a crash (no snapshot: restored from the rows), median of 3 starts"][0] == (
        "0.95 s (1.31, 0.90, 0.95)")


def test_a_results_file_with_one_start_shows_it_as_before() -> None:
    shown = {row[0].strip(): row[1:] for row in rows(argparse.Namespace(
        accounts=10_000, paced_interval="60s", scrape_interval=0.1, check_interval="10s",
        datasets=2, heartbeat_batch=1000), {**results(kept=False), "restart_ready_s": 1.25})}
    assert shown["start to /-/ready, state restored"] == ("1.25 s", "<= 1 s", "1.25", "NO")
