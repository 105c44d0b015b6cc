"""Atomic file writes (docs/format.md section 1): temp file, fsync, rename, fsync of the directory.

The one way anything in a vault directory is replaced, so that a crash or kill -9
at any instant leaves the old file or the new one. And :func:`flocked`, the
audit log's lock, which every read takes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp."


class LockTimeout(Exception):
    """:func:`flocked` waited ``timeout`` seconds in vain."""


@contextmanager
def flocked(path: Path, timeout: float) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on ``path`` (created 0600), waiting up to ``timeout`` seconds.

    The same lock as filelock's ``FileLock`` on that file (flock on Unix),
    without importing filelock on the read path. The file stays in place, so
    every waiter locks the same inode.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise LockTimeout(str(path))
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        yield  # closing fd releases the lock
    finally:
        os.close(fd)


def no_links(root: Path, rel: str) -> None:
    """Refuse (IntegrityError) a path under ``root`` that passes through a symbolic link.

    No writer makes one, and one committed to git (``secrets/db -> /home/x``)
    would carry a read or a write outside the vault. Stops at the first part
    that does not exist: nothing below it does either.
    """
    from ossl_vault.errors import IntegrityError

    path = str(root)
    for part in rel.split("/"):
        path += "/" + part
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                raise IntegrityError(
                    f"'{rel}' in vault '{root}' passes through a symbolic link",
                    hint="no record file or folder is ever one: remove it and restore "
                    "the vault from a backup",
                )
        except (FileNotFoundError, NotADirectoryError):
            return


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
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
    tmp = path.parent / f"{TMP_PREFIX}{os.getpid()}.{os.urandom(4).hex()}"
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
    fsync_dir(path.parent)


def atomic_write_many(directory: Path, files: dict[str, bytes], mode: int = 0o600) -> None:
    """:func:`atomic_write` of many files into one directory, with one fsync of it.

    Each file is whole (written and fsynced) before it is renamed into place;
    the directory's fsync then makes every rename durable at once.
    """
    if not files:
        return
    from concurrent.futures import ThreadPoolExecutor

    written = [
        (directory / f"{TMP_PREFIX}{os.getpid()}.{os.urandom(8).hex()}", directory / name)
        for name in files
    ]

    def write(tmp: Path, data: bytes) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())

    try:
        # concurrent fsyncs share the file system's journal commits: far fewer waits
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(write, [t for t, _ in written], files.values()))
        for tmp, path in written:
            os.rename(tmp, path)
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
