import os
import stat

import pytest

from agent.channel import Secret
from agent.storage.secretfile import write_secret_file


def test_writes_0600_and_backs_up_previous(tmp_path):
    path = tmp_path / "acme.refresh_token"
    path.write_text("Atzr|old-token\n")
    backup = write_secret_file(path, Secret("Atzr|new-token"), now=0)
    assert path.read_text() == "Atzr|new-token\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert backup is not None and backup.read_text() == "Atzr|old-token\n"
    assert backup.name == "acme.refresh_token.19700101T000000Z.bak"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_first_write_has_no_backup(tmp_path):
    path = tmp_path / "new" / "token"
    assert write_secret_file(path, Secret("Atzr|first")) is None
    assert path.read_text() == "Atzr|first\n"


def test_failed_write_leaves_old_token_intact(tmp_path, monkeypatch):
    path = tmp_path / "token"
    path.write_text("Atzr|old\n")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_secret_file(path, Secret("Atzr|new"))
    assert path.read_text() == "Atzr|old\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_writes_within_one_second_keep_every_previous_token(tmp_path):
    path = tmp_path / "token"
    path.write_text("Atzr|one\n")
    for token in ("Atzr|two", "Atzr|three", "Atzr|three"):
        write_secret_file(path, Secret(token), now=0)
    backups = sorted(p.name for p in tmp_path.glob("token.*.bak"))
    assert backups == ["token.19700101T000000Z-1.bak", "token.19700101T000000Z-2.bak",
                       "token.19700101T000000Z.bak"]
    assert {p.read_text() for p in tmp_path.glob("token.*.bak")} == {
        "Atzr|one\n", "Atzr|two\n", "Atzr|three\n"}
