"""Writing a secret to a file without ever losing the previous one.

The new value goes to a temporary file in the same directory, is fsynced, and is renamed
over the old file (atomic on POSIX). The previous content is first kept as a timestamped
backup beside it, so a crash at any point leaves either the old or the new secret complete.
Backups never overwrite one another: two writes within a second get ``…Z.bak`` and
``…Z-1.bak``. A crash can leave a ``.<name>.*.tmp`` file behind; it is never read.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from pathlib import Path

from agent.secret import Secret


def write_secret_file(path: Path, secret: Secret, *, now: float | None = None) -> Path | None:
    """Atomically replace ``path`` with ``secret`` (mode 0600); return the backup's path, if any."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    previous = path.read_bytes() if path.exists() else b""
    if previous.strip():
        when = time.gmtime(now if now is not None else time.time())
        backup = _backup_path(path, time.strftime("%Y%m%dT%H%M%SZ", when), previous)
        _atomic_write(backup, previous)
    _atomic_write(path, (secret.reveal() + "\n").encode())
    return backup


def _backup_path(path: Path, stamp: str, content: bytes) -> Path:
    """A backup name for ``content`` that holds nothing else yet (or holds the same)."""
    for n in itertools.count():
        candidate = path.with_name(f"{path.name}.{stamp}{f'-{n}' if n else ''}.bak")
        if not candidate.exists() or candidate.read_bytes() == content:
            return candidate
    raise AssertionError("unreachable")


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
