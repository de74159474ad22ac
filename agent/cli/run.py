"""channel-agent run and channel-agent demo: the long-running agent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import gc
import json
import logging
import math
import os
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click
import yaml
from aiohttp import web

from agent.channel import Demo
from agent.checks.scheduler import HARD_TIMEOUT_GRACE
from agent.checks.sharding import Shard, parse_shard
from agent.cli.common import EXIT_CONFIG_ERROR, command_name, config_option
from agent.cli.loading import exit_with_problems, load_or_exit, load_with
from agent.config.durations import format_duration, parse_duration
from agent.config.loader import AgentSettings, Config, ConfigError, build_config
from agent.freshness.timestamps import iso
from agent.plugins import Plugins, load_plugins
from agent.redact import setup_logging
from agent.service import AgentService, HttpOptions
from agent.web.appkeys import DEFAULT_RUNBOOK_BASE_URL, PageSettings
from agent.web.auth import WebSecurity, insecure_listen_problem, is_loopback
from agent.web.listener import Listener
from agent.web.server import make_app, split_listen_address

log = logging.getLogger("agent")
GC_THRESHOLD = (5_000, 10, 100)  # CPython's default: (700, 10, 10)

listen_option = click.option(
    "--web.listen-address", "listen_address", metavar="HOST:PORT", default=None,
    help="Address to serve /metrics and the status API on (overrides agent.listen_address).",
)
log_level_option = click.option(
    "--log.level", "log_level", default="info", show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)


def web_security_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--web.config.file, --web.read-without-auth and --web.allow-insecure."""
    options = [
        click.option(
            "--web.config.file", "web_config_file", metavar="FILE", default=None,
            help="Prometheus exporter-toolkit web configuration (TLS, basic auth, headers, "
                 "rate limit); re-read when it changes. Without it nothing is protected.",
        ),
        click.option(
            "--web.read-without-auth", "read_without_auth", is_flag=True,
            help="With basic_auth_users, serve the read-only endpoints (GET: /metrics, the "
                 "pages, /api/v1/status, /api/v1/accounts, /-/healthy, /-/ready) without "
                 "credentials. Endpoints that change state always need them.",
        ),
        click.option(
            "--web.allow-insecure", "allow_insecure", is_flag=True,
            help="Listen on a non-loopback address without a web configuration (only when "
                 "something in front of the agent protects it).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _shard(ctx: click.Context, param: click.Parameter, value: str | None) -> Shard | None:
    try:
        return None if value is None else parse_shard(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def web_security_or_exit(path: str | None, read_without_auth: bool) -> WebSecurity:
    """The web config of ``--web.config.file``; on any problem print every one and exit 2."""
    try:
        return WebSecurity(path, read_without_auth=read_without_auth)
    except ConfigError as exc:
        exit_with_problems("the web configuration", exc)


class CannotListen(Exception):
    """The listening socket could not be bound: nothing has been served or announced."""

    def __init__(self, address: str, error: OSError) -> None:
        super().__init__(address, error)
        self.address = address
        self.error = error

    def message(self, option: str) -> str:
        """One line: the address, why, and what to do (``option`` sets another address)."""
        if self.error.errno == errno.EADDRINUSE:
            return (f"error: cannot listen on {self.address}: the address is already in use "
                    f"(another agent, demo or program listens there); stop it, or choose "
                    f"another address with {option}")
        if self.error.errno and self.error.errno > 0:
            reason = os.strerror(self.error.errno).lower()
        else:  # socket.gaierror: a host name that does not resolve
            reason = (self.error.strerror or str(self.error)).lower()
        return f"error: cannot listen on {self.address}: {reason}; choose another address " \
               f"with {option}"


def serve_or_exit(server: Coroutine[Any, Any, None], option: str) -> None:
    """Run ``server``; if it cannot listen, say so in one line and exit 2."""
    try:
        asyncio.run(server)
    except CannotListen as exc:
        click.echo(exc.message(option), err=True)
        sys.exit(EXIT_CONFIG_ERROR)


shard_option = click.option(
    "--shard", metavar="INDEX/COUNT", default=None, callback=_shard,
    help="Check only the accounts of shard INDEX of COUNT (overrides agent.shard); "
         "auto/COUNT takes INDEX from a host name ending in -INDEX (a StatefulSet pod).",
)


@click.command()
@config_option
@listen_option
@shard_option
@web_security_options
@click.option("--web.runbook-base-url", "runbook_base_url", metavar="URL",
              default=DEFAULT_RUNBOOK_BASE_URL, show_default=True,
              help="Where docs/runbooks/ can be read; account pages link <URL>/<Alert>.md. "
                   "Set the same URL as channel_alerts_runbook_info in the alert rules.")
@log_level_option
def run(config_path: str, listen_address: str | None, shard: Shard | None,
        web_config_file: str | None, read_without_auth: bool, allow_insecure: bool,
        runbook_base_url: str, log_level: str) -> None:
    """Run the agent: check every account on a schedule and serve /metrics.

    SIGHUP or POST /-/reload re-reads the configuration file.

    \b
    Example:
      channel-agent run --config /etc/channel-agent/config.yaml --web.listen-address :9877 \\
        --web.config.file /etc/channel-agent/web.yml
      channel-agent run --config config.yaml --shard 1/3     # one of three replicas
    """
    setup_logging(log_level)
    # what is loaded until ready (configuration, accounts, restored state) lives as long as
    # the process: a collection walking it gets nothing back (~2,000 objects of garbage at
    # 10,000 accounts) and cost ~10% of start to ready. tune_gc() turns it on again.
    gc.disable()
    try:
        config, plugins = load_or_exit(config_path)
        security = web_security_or_exit(web_config_file, read_without_auth)

        def load() -> Config:  # at start and at every reload; --shard wins over agent.shard
            loaded = load_with(config_path, plugins)
            if shard is None:
                return loaded
            return dataclasses.replace(loaded,
                                       agent=dataclasses.replace(loaded.agent, shard=shard))

        if shard is not None:
            config = dataclasses.replace(config,
                                         agent=dataclasses.replace(config.agent, shard=shard))
        serve_or_exit(serve(config, plugins, listen_address or config.agent.listen_address,
                            security=security, allow_insecure=allow_insecure, loader=load,
                            pages=PageSettings(runbook_base_url=runbook_base_url)),
                      "--web.listen-address HOST:PORT (or agent.listen_address in the "
                      "configuration)")
    finally:
        gc.enable()  # when `run` ends before ready (tests call it in their process)


async def serve(config: Config, plugins: Plugins, address: str,
                http: HttpOptions | None = None, *, security: WebSecurity | None = None,
                allow_insecure: bool = False,
                loader: Callable[[], Config] | None = None,
                on_listening: Callable[[str], None] | None = None,
                pages: PageSettings | None = None) -> None:
    """Serve until SIGINT or SIGTERM; SIGHUP reloads the configuration through ``loader``.

    :class:`CannotListen` when the address cannot be bound. ``on_listening`` gets the URL
    served once the socket is bound and the service started."""
    security = security or WebSecurity(None)
    host, port = split_listen_address(address)
    problem = insecure_listen_problem(host, security, allow_insecure)
    if problem:
        raise click.UsageError(problem)
    service = AgentService(config, plugins, http, loader=loader)
    runner = web.AppRunner(make_app(service, security, pages), access_log=None)
    await runner.setup()
    listener = Listener(runner, host, port, security)
    started = False
    try:
        try:
            await listener.start()
        except OSError as exc:
            raise CannotListen(address, exc) from None
        await service.start()
        started = True
        tune_gc()
        if security.config is None and not is_loopback(host):
            log.warning("INSECURE: serving %s without a web configuration "
                        "(--web.allow-insecure): anyone who can reach it can read every "
                        "account's state, trigger checks and reload the configuration",
                        listener.url)
        log.info("listening on %s, %d of %d account(s) (shard %s), config %s",
                 listener.url, len(service.fleet.accounts), service.fleet.configured,
                 service.fleet.shard, config.source)
        if on_listening is not None:
            on_listening(listener.url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        reloads: set[asyncio.Task] = set()

        def reload() -> None:
            task = asyncio.create_task(service.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)
        await stop.wait()
        log.info("shutting down")
    finally:
        await listener.stop()
        await service.stop(snapshot=started)  # a start that failed has no snapshot to write
        await runner.cleanup()


def tune_gc() -> None:
    """At 10,000 accounts the default collector thresholds cost ~10% of the agent's CPU and
    stall the loop for 100-200 ms at each full pass (docs/performance.md): what was loaded
    so far (config, accounts, restored state, the scheduler's timetable) lives as long as
    the process, so it is moved out of the collector's sight, and the young generation may grow
    to more than the objects of the checks in flight before it is examined."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD[0], GC_THRESHOLD[1], GC_THRESHOLD[2])
    gc.enable()  # off while `run` loaded


@click.command()
@click.option("--web.listen-address", "listen_address", metavar="HOST:PORT",
              default="127.0.0.1:9877", show_default=True)
@web_security_options
@click.option("--check-interval", default="15s", show_default=True,
              help="How often each demo account is checked.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo keeps its state and token files (default: a temporary dir).")
@log_level_option
def demo(listen_address: str, web_config_file: str | None, read_without_auth: bool,
         allow_insecure: bool, check_interval: str, workdir: Path | None,
         log_level: str) -> None:
    """Run the agent against each channel's built-in simulator, until Ctrl-C.

    The Amazon Ads simulator serves Login with Amazon and the Ads API on loopback with one
    account per scenario (healthy, revoked, throttled, 5xx, ...).

    \b
    Example:
      channel-agent demo --web.listen-address 127.0.0.1:9877
      curl -s localhost:9877/metrics | grep channel_credential_valid
    """
    setup_logging(log_level)
    security = web_security_or_exit(web_config_file, read_without_auth)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="channel-demo-")))
        serve_or_exit(_demo(workdir, listen_address, check_interval, security, allow_insecure),
                  "--web.listen-address HOST:PORT")


def _demo_timeout(check_interval: str) -> str:
    try:
        return format_duration(min(10.0, parse_duration(check_interval) / 2))
    except ValueError:
        return "10s"  # the config validation reports the bad interval


DEMO_QUERY = ("SELECT max(finished_at) FROM sync_runs WHERE channel = :channel "
              "AND account = :account AND dataset = :dataset")


def _demo_warehouse(workdir: Path, demos: dict[str, Demo]) -> Path:
    """A SQLite "data warehouse" with each demo's last syncs, read by a real sql source."""
    path = workdir / "warehouse.db"
    now = time.time()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DROP TABLE IF EXISTS sync_runs")
        db.execute("CREATE TABLE sync_runs (channel TEXT, account TEXT, dataset TEXT, "
                   "finished_at TEXT)")
        db.executemany("INSERT INTO sync_runs VALUES (?, ?, ?, ?)", [
            (name, account, dataset, iso(now - hours * 3600))
            for name, channel_demo in demos.items()
            for account, dataset, hours in channel_demo.data_syncs()
        ])
    return path


DEMO_INVENTORY = "demo_connections"


def _demo_connections(warehouse: Path, sections: dict[str, dict[str, Any]]) -> list[str]:
    """Move the demo accounts into a ``connections`` table of the warehouse, one row per
    account, as a platform keeps them (an account with its own data sets stays in the
    file: rows carry no data sets); return the channels the table feeds."""
    rows = []
    for channel, section in sections.items():
        kept = []
        for account in section.get("accounts", []):
            if account.get("datasets"):
                kept.append(account)
                continue
            # the demo's merchants have one account name in every channel (the landing page
            # puts a merchant's connections side by side)
            row = {"channel": channel, "account": account["name"],
                   "label_merchant": account["name"]}
            row.update({key: json.dumps(value) if isinstance(value, list) else value
                        for key, value in account.items() if key not in ("name", "datasets")})
            rows.append(row)
        section["accounts"] = kept
    columns = list(dict.fromkeys(column for row in rows for column in row))
    with contextlib.closing(sqlite3.connect(warehouse)) as db, db:
        db.execute("DROP TABLE IF EXISTS connections")
        db.execute(f"CREATE TABLE connections ({', '.join(columns)})")
        db.executemany(f"INSERT INTO connections VALUES ({', '.join('?' for _ in columns)})",
                       [[row.get(column) for column in columns] for row in rows])
    return sorted({row["channel"] for row in rows})


def _demo_banner(workdir: Path, config_file: Path, warehouse: Path, demos: dict[str, Demo],
                 settings: AgentSettings, url: str) -> None:
    """What the demo serves and how to try it; printed once it listens. Every command is
    printed as this shell runs it (command_name)."""
    me = command_name()
    click.echo(f"Channel Health Agent demo (state and tokens in {workdir})")
    click.echo(f"  metrics:      {url}/metrics")
    click.echo(f"  status page:  {url}/")
    click.echo(f"  status API:   {url}/api/v1/status")
    click.echo(f"  config file:  {config_file}")
    click.echo(f"  reconnect:    {me} reconnect --list --config {config_file}")
    for name, channel_demo in demos.items():
        for line in channel_demo.describe():
            click.echo(f"  {name}: {line}")
    click.echo(f"  accounts:     table connections in {warehouse} (inventory source "
               f"{DEMO_INVENTORY}: add a row, it is checked within one interval); see them: "
               f"{me} inventory --config {config_file}")
    click.echo(f"  data freshness: syncs in {warehouse} (table sync_runs); report one:")
    click.echo(f"    {me} mark-synced amazon_ads --account acme-us "
               f"--dataset sb_campaigns_daily --url {url}")
    click.echo(first_results_line(settings) + " Ctrl-C stops.")


def first_results_line(settings: AgentSettings) -> str:
    """When the first results are in, at the latest: each account's first check starts at
    its own offset within one interval (agent.checks.scheduler.offset) and ends within the
    check timeout, retries included (the scheduler cancels it a grace second later)."""
    interval, timeout = settings.check_interval, settings.check_timeout
    bound = math.ceil(interval + timeout + HARD_TIMEOUT_GRACE)
    return (f"Every account is checked every {format_duration(interval)}; the first results "
            f"are all in within {format_duration(bound)} (a first check "
            f"starts within {format_duration(interval)} and may take up to the "
            f"{format_duration(timeout)} check timeout).")


async def _demo(workdir: Path, listen_address: str, check_interval: str,
                security: WebSecurity, allow_insecure: bool) -> None:
    plugins = load_plugins()
    demos = {name: cls.demo() for name, cls in sorted(plugins.channels.items())}
    demos = {name: d for name, d in demos.items() if d is not None}
    if not demos:
        raise click.ClickException("no installed channel plugin ships a demo simulator")
    sections = {}
    try:
        for name, channel_demo in demos.items():
            sections[name] = await channel_demo.start(workdir / name)
        warehouse = _demo_warehouse(workdir, demos)
        fed = _demo_connections(warehouse, sections)
        data = {
            "agent": {"listen_address": listen_address,
                      "state_path": str(workdir / "agent.db"),
                      "check_interval": check_interval,
                      "check_timeout": _demo_timeout(check_interval)},
            "freshness_sources": {
                Demo.WAREHOUSE_SOURCE: {"type": "sql", "url": f"sqlite:///{warehouse}",
                                        "query": DEMO_QUERY, "interval": check_interval,
                                        "timeout": _demo_timeout(check_interval)},
                Demo.HEARTBEAT_SOURCE: {"type": "heartbeat"},
            },
            # the accounts a platform has, from its own database (README: Account inventory)
            "inventory_sources": {
                DEMO_INVENTORY: {"type": "sql", "url": f"sqlite:///{warehouse}",
                                 "query": "SELECT * FROM connections", "channels": fed,
                                 "interval": check_interval,
                                 "timeout": _demo_timeout(check_interval)},
            } if fed else {},
            "channels": sections,
        }
        try:
            config = build_config(data, plugins.channels, source="<demo>", base_dir=workdir)
        except ConfigError as exc:
            raise click.ClickException(f"the demo configuration is invalid:\n{exc}") from None
        # The same configuration as a file, for the other commands (reconnect, check) and for
        # reloads (edit it, then SIGHUP or POST /-/reload).
        config_file = workdir / "config.yaml"
        config_file.write_text(yaml.safe_dump(data, sort_keys=False))
        banner = functools.partial(_demo_banner, workdir, config_file, warehouse, demos,
                                   config.agent)
        await serve(config, plugins, listen_address, security=security,
                    allow_insecure=allow_insecure,
                    loader=lambda: load_with(config_file, plugins),
                    on_listening=banner)
    finally:
        for channel_demo in demos.values():
            await channel_demo.stop()
