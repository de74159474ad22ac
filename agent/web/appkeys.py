"""What the handlers of the agent's web app find in it (``request.app[KEY]``)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from agent.service import AgentService
from agent.web.fleet_index import AccountIndex

# Where docs/runbooks/ of the agent's copy can be read; the alert rules say the same
# (deploy/prometheus/channel-agent.rules.yml, channel_alerts_runbook_info).
DEFAULT_RUNBOOK_BASE_URL = (
    "https://git.example.com/sre/channel-health-agent/-/blob/main/docs/runbooks")


@dataclass(frozen=True)
class PageSettings:
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL


SERVICE = web.AppKey("service", AgentService)
INDEX = web.AppKey("account_index", AccountIndex)
PAGES = web.AppKey("page_settings", PageSettings)
