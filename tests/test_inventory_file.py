"""The ``file`` inventory source against real files: glob, YAML and JSON, re-read on change,
and a file being written never taken as a shorter list."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.inventory import InventoryError
from agent.inventory.file import FileInventory


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str, mtime: float) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


@pytest.fixture
def clock():
    return Clock()


def inventory(tmp_path: Path, clock: Clock, settle: float = 2.0) -> FileInventory:
    return FileInventory("files", {"files": tmp_path / "inv" / "**" / "*.y*ml", "settle": settle,
                                   "channels": ("fake",), "interval": 60.0, "timeout": 5.0,
                                   "labels": {}}, clock=clock)


@pytest.fixture
def directory(tmp_path):
    (tmp_path / "inv" / "eu").mkdir(parents=True)
    return tmp_path / "inv"


async def test_files_matching_the_glob_are_read_and_reread_only_when_they_change(
        tmp_path, directory, clock):
    old = clock.now - 60
    write(directory / "na.yaml", "- {channel: fake, account: acme}\n", old)
    write(directory / "eu" / "eu.yml", "- channel: fake\n  account: globex\n  region: eu\n", old)
    write(directory / "notes.txt", "not matched", old)
    source = inventory(tmp_path, clock)
    rows = await source.fetch()
    assert [r["account"] for r in rows] == ["globex", "acme"]  # sorted by path
    assert await source.fetch() is None  # nothing changed: nothing read

    write(directory / "na.yaml", "- {channel: fake, account: acme}\n"
                                 "- {channel: fake, account: initech}\n", old + 1)
    assert [r["account"] for r in await source.fetch()] == ["globex", "acme", "initech"]
    (directory / "eu" / "eu.yml").unlink()
    assert [r["account"] for r in await source.fetch()] == ["acme", "initech"]


async def test_a_file_being_written_is_not_taken_as_a_shorter_list(tmp_path, directory, clock):
    full = "".join(f"- {{channel: fake, account: a{i}}}\n" for i in range(5))
    write(directory / "all.yaml", full, clock.now - 60)
    source = inventory(tmp_path, clock)
    assert len(await source.fetch()) == 5

    # The producer rewrites the file in place and has written two lines so far: valid YAML,
    # but a shorter list. Changed within `settle`: the previous version stands.
    write(directory / "all.yaml", full[:full.index("a2")].rsplit("\n", 1)[0] + "\n", clock.now)
    assert await source.fetch() is None
    clock.now += 1
    assert await source.fetch() is None

    write(directory / "all.yaml", full + "- {channel: fake, account: a5}\n", clock.now)
    clock.now += 5  # settled
    assert len(await source.fetch()) == 6


async def test_a_new_file_is_used_once_it_settles(tmp_path, directory, clock):
    source = inventory(tmp_path, clock)
    assert await source.fetch() == []
    write(directory / "new.yaml", "- {channel: fake, account: acme}\n", clock.now)
    assert await source.fetch() is None
    clock.now += 3
    assert len(await source.fetch()) == 1


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.yaml", "- {channel: fake, account: acme\n", "bad.yaml is not valid YAML (line 2)"),
    ("map.yaml", "channel: fake\n", "map.yaml must hold a list of accounts"),
    ("bad.json", '[{"channel": "fake",', "bad.json is not valid JSON (line 1)"),
])
async def test_a_file_that_does_not_parse_fails_the_refresh(tmp_path, directory, clock, name,
                                                           text, message):
    write(directory / name, text, clock.now - 60)
    source = FileInventory("files", {"files": directory / "*", "settle": 2.0, "timeout": 5.0,
                                     "channels": ("fake",), "interval": 60.0, "labels": {}},
                           clock=clock)
    with pytest.raises(InventoryError) as caught:
        await source.fetch()
    assert caught.value.reason == "bad_response" and message in str(caught.value)


async def test_json_files(tmp_path, clock):
    path = tmp_path / "accounts.json"
    write(path, json.dumps([{"channel": "fake", "account": "acme", "labels": {"a": "b"}}]),
          clock.now - 60)
    source = FileInventory("files", {"files": tmp_path / "*.json", "settle": 2.0, "timeout": 5.0,
                                     "channels": ("fake",), "interval": 60.0, "labels": {}},
                           clock=clock)
    assert (await source.fetch())[0]["labels"] == {"a": "b"}
