"""Atomic file writes (docs/format.md section 1): temp file, fsync, rename, fsync of the directory.

The one way anything in a vault directory is replaced, so that a crash or kill -9
at any instant leaves the old file or the new one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TMP_PREFIX = ".tmp."


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new."""
    tmp = write_temp(path, data, mode)
    try:
        install(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_temp(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """The first half of :func:`atomic_write`: ``data`` durable in a temp file beside ``path``."""
    tmp = path.parent / f"{TMP_PREFIX}{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)  # whatever the umask
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def install(tmp: Path, path: Path) -> None:
    """The second half: rename the temporary file into place, fsync the directory."""
    os.rename(tmp, path)
    _fsync_dir(path.parent)
