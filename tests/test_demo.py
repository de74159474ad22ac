"""`channel-agent demo` end to end: every scenario's account shows the right state."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import free_port

pytestmark = pytest.mark.integration

# account -> (channel_credential_valid, channel_credential_check_success, reason)
EXPECTED = {
    "acme-us": (1, 1, None),
    "globex-eu": (0, 1, "invalid_grant"),
    "initech-us": (0, 1, "profile_missing"),
    "umbrella-fe": (0, 1, "forbidden"),
    "hooli-eu": (None, 0, "throttled"),
    "stark-na": (None, 0, "server_error"),
    "wayne-fe": (None, 0, "bad_response"),
    "wonka-eu": (None, 0, "server_error"),
    "cyberdyne-fe": (1, 1, None),
    "soylent-na": (0, 1, "unauthorized"),
}


def test_demo_shows_every_scenario_within_one_interval(tmp_path):
    port = free_port()
    interval = 4
    proc = subprocess.Popen(
        [Path(sys.executable).parent / "channel-agent", "demo", "--web.listen-address",
         f"127.0.0.1:{port}", "--check-interval", f"{interval}s", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        started = time.monotonic()
        found = {}
        # one interval for the checks, plus the slowest transient check's time budget
        while time.monotonic() - started < interval + 10 and len(found) < len(EXPECTED):
            time.sleep(0.5)
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            except httpx.HTTPError:
                continue
            found = _by_account(text)
        assert {a: found.get(a) for a in EXPECTED} == EXPECTED
        if shutil.which("promtool") or os.environ.get("CI"):
            check = subprocess.run(["promtool", "check", "metrics"], input=text,
                                   capture_output=True, text=True)
            assert check.returncode == 0 and not (check.stdout + check.stderr).strip()
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=15)[0]
    assert "http://127.0.0.1:" in output and "globex-eu (eu): revoked" in output
    assert proc.returncode == 0, output


def _by_account(text):
    values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            account = s.labels.get("account")
            if s.name == "channel_credential_last_check_timestamp_seconds":
                values.setdefault(account, {})["checked"] = True
            elif s.name == "channel_credential_valid":
                values.setdefault(account, {})["valid"] = int(s.value)
            elif s.name == "channel_credential_check_success":
                values.setdefault(account, {})["success"] = int(s.value)
            elif s.name == "channel_credential_failure_reason":
                values.setdefault(account, {})["reason"] = s.labels["reason"]
    return {a: (v.get("valid"), v.get("success"), v.get("reason"))
            for a, v in values.items() if v.get("checked")}
