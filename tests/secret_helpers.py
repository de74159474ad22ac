"""A real exec secret helper for the tests: a Python script speaking the Datadog protocol.

It answers from a JSON file (key -> value), counts its runs in a file beside it, fails or
hangs on demand, and writes on stderr whatever ``stderr`` in the state file says (tests plant
secrets there to check redaction).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SCRIPT = r'''#!{python}
import json, os, sys, time
from pathlib import Path
here = Path(__file__).parent
state = json.loads((here / "state.json").read_text())
with open(here / "runs", "a") as f:
    f.write("run\n")
request = json.load(sys.stdin)
(here / "seen.json").write_text(json.dumps({{"argv": sys.argv, "env": dict(os.environ)}}))
if state.get("stderr"):
    sys.stderr.write(state["stderr"])
if state.get("hang"):
    time.sleep(state["hang"])
if state.get("exit"):
    sys.exit(state["exit"])
if "secrets" not in request and state.get("write_exit"):
    sys.exit(state["write_exit"])
db = json.loads((here / "db.json").read_text())
if "secrets" in request:
    with open(here / "batches", "a") as f:
        f.write(f"{{len(request['secrets'])}}\n")
    out = {{}}
    for key in request["secrets"]:
        if key in state.get("errors", []):
            out[key] = {{"value": None, "error": "backend failed for " + db.get(key, "")}}
        else:
            out[key] = {{"value": db.get(key), "error": None}}
    sys.stdout.write(json.dumps(out) + state.get("garbage", ""))
else:
    db[request["key"]] = request["value"]
    (here / "db.json.tmp").write_text(json.dumps(db))
    os.replace(here / "db.json.tmp", here / "db.json")  # the test reads it meanwhile
'''


class Helper:
    """The script plus its data in ``directory``."""

    def __init__(self, directory: Path, db: dict[str, str] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / "helper.py"
        self.path.write_text(SCRIPT.format(python=sys.executable))
        os.chmod(self.path, 0o700)
        self.set_db(db or {})
        self.set_state()

    def set_db(self, db: dict[str, str]) -> None:
        self._write("db.json", db)

    def db(self) -> dict[str, str]:
        return json.loads((self.directory / "db.json").read_text())

    def set_state(self, **state: object) -> None:
        self._write("state.json", state)

    def _write(self, name: str, data: object) -> None:
        """Whole or not at all: the helper may be reading it right now."""
        tmp = self.directory / f".{name}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.directory / name)

    def runs(self) -> int:
        runs = self.directory / "runs"
        return len(runs.read_text().splitlines()) if runs.exists() else 0

    def seen(self) -> dict:
        """The argv and environment of the last run."""
        return json.loads((self.directory / "seen.json").read_text())

    def batches(self) -> list[int]:
        path = self.directory / "batches"
        return [int(n) for n in path.read_text().split()] if path.exists() else []
