"""The benchmark's fleet: N Amazon Ads accounts with their token files, D data sets each.

:func:`build_fleet` is the one place that decides how the agent learns about the accounts.
Today that is a generated configuration file listing every account; once inventory sources
exist (issue 13), a 50,000-account fleet is better described by one, and only this function
changes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

CLIENT_ID = "amzn1.application-oa2-client.bench"
CLIENT_SECRET = "bench-client-secret"
REGIONS = ("na", "eu", "fe")
HEARTBEAT_SOURCE = "pipeline"


def account_name(i: int) -> str:
    return f"acct-{i:06d}"


def refresh_token(i: int) -> str:
    return f"Atzr|bench-{i:06d}-refresh-token"


def dataset_name(j: int) -> str:
    return f"dataset_{j}"


def build_fleet(workdir: Path, n: int, args: argparse.Namespace, sim_url: str,
                check_interval: str) -> Path:
    """Token files, the client secret and the agent's configuration for ``n`` accounts with
    ``args.datasets`` heartbeat data sets each; returns the configuration's path."""
    secrets = workdir / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "client_secret").write_text(CLIENT_SECRET + "\n")
    accounts = []
    for i in range(n):
        name = account_name(i)
        token = secrets / f"{name}.token"
        if not token.exists():
            token.write_text(refresh_token(i) + "\n")
        accounts.append({"name": name, "region": REGIONS[i % 3],
                         "refresh_token_file": f"secrets/{name}.token"})
    channel: dict[str, Any] = {
        "client_id": CLIENT_ID, "client_secret_file": "secrets/client_secret",
        "refresh_interval": "0",  # every check refreshes: a token POST and a profiles GET
        "endpoints": {"token_url": f"{sim_url}/auth/o2/token",
                      "api_url": {r: f"{sim_url}/{r}" for r in REGIONS}},
    }
    if args.datasets:
        # channel-wide: every account gets them (36 h, like daily advertising reports)
        channel["datasets"] = {dataset_name(j): {"source": HEARTBEAT_SOURCE, "max_age": "36h"}
                               for j in range(args.datasets)}
    channel["accounts"] = accounts
    if args.max_rps:
        channel["max_requests_per_second"] = args.max_rps
    config: dict[str, Any] = {
        "agent": {"state_path": "var/agent.db", "check_interval": check_interval,
                  "check_timeout": args.check_timeout, "max_concurrency": args.concurrency},
        "channels": {"amazon_ads": channel},
    }
    if args.datasets:
        config["freshness_sources"] = {HEARTBEAT_SOURCE: {"type": "heartbeat"}}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # block style, as people write it
    return path


def simulator_accounts(n: int) -> list[dict[str, Any]]:
    return [{"name": account_name(i), "refresh_token": refresh_token(i),
             "region": REGIONS[i % 3], "profiles": [10_000_000 + i]} for i in range(n)]
