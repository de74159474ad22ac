"""Writing a secret to a file without ever losing the previous one.

The new value goes to a temporary file in the same directory, is fsynced, and is renamed
over the old file (atomic on POSIX). The previous content is first kept as a timestamped
backup beside it, so a crash at any point leaves either the old or the new secret complete.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from agent.channel import Secret


def write_secret_file(path: Path, secret: Secret, *, now: float | None = None) -> Path | None:
    """Atomically replace ``path`` with ``secret`` (mode 0600); return the backup's path, if any."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if path.exists() and path.read_text().strip():
        when = time.gmtime(now if now is not None else time.time())
        stamp = time.strftime("%Y%m%dT%H%M%SZ", when)
        backup = path.with_name(f"{path.name}.{stamp}.bak")
        _atomic_write(backup, path.read_bytes())
    _atomic_write(path, (secret.reveal() + "\n").encode())
    return backup


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
