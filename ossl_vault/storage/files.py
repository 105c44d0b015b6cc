"""Atomic file writes (docs/format.md section 1): temp file, fsync, rename, fsync of the directory.

The one way anything in a vault directory is replaced, so that a crash or kill -9
at any instant leaves the old file or the new one. And :func:`flocked`, the
audit log's lock, which every read takes.

Paths are plain ``str``: ``pathlib`` costs a cold read 5 ms (it loads ``re``,
``urllib.parse``, ``ipaddress``). :func:`plain`, :func:`join` and :func:`parent`
spell a path exactly as ``str(Path(...))`` did, so error messages keep their
text; :func:`exists`, :func:`is_dir`, :func:`is_file`, :func:`read_bytes`,
:func:`remove` and :func:`make_dir` do what ``Path``'s methods did (a missing
path is not there; EACCES raises).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager

TMP_PREFIX = ".tmp."
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)  # pathlib's ignored errors


def plain(path: str | os.PathLike[str]) -> str:
    """``str(pathlib.Path(path))``: no empty or "." parts, no trailing "/"; two leading
    "/" stay two (POSIX leaves them to the system), more become one; "" is "."."""
    text = os.fspath(path)
    slashes = len(text) - len(text.lstrip("/"))
    root = "//" if slashes == 2 else "/" if slashes else ""
    return root + "/".join(p for p in text.split("/") if p and p != ".") or "."


def join(base: str, rel: str) -> str:
    """``str(Path(base) / rel)`` for a :func:`plain` ``base`` and a relative ``rel`` whose
    parts are plain (a record's path: no empty, "." or ".." part)."""
    if base == ".":
        return rel
    return base + rel if base.endswith("/") else f"{base}/{rel}"


def parent(path: str) -> str:
    """``str(Path(path).parent)`` for a :func:`plain` path."""
    return os.path.dirname(path) or "."


def _mode(path: str | os.PathLike[str]) -> int | None:
    """``st_mode`` (links followed), None where ``Path.exists`` would say False."""
    try:
        return os.stat(plain(path)).st_mode
    except OSError as e:
        if e.errno in _MISSING:
            return None
        raise
    except ValueError:  # a path the system cannot take (a NUL byte)
        return None


def exists(path: str | os.PathLike[str]) -> bool:
    """``Path(path).exists()``."""
    return _mode(path) is not None


def is_dir(path: str | os.PathLike[str]) -> bool:
    """``Path(path).is_dir()``."""
    mode = _mode(path)
    return mode is not None and stat.S_ISDIR(mode)


def is_file(path: str | os.PathLike[str]) -> bool:
    """``Path(path).is_file()``."""
    mode = _mode(path)
    return mode is not None and stat.S_ISREG(mode)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """``Path(path).read_bytes()``."""
    with open(plain(path), "rb") as f:
        return f.read()


NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC  # os.open flags of read_no_follow


def read_no_follow(path: str | os.PathLike[str]) -> bytes:
    """A file's bytes, refusing a symbolic link at ``path`` itself (OSError, ELOOP): the
    one read of a record file, a journal or a temporary file whose folders are checked."""
    return read_fd(os.open(plain(path), NO_FOLLOW))


def read_fd(fd: int) -> bytes:
    """Every byte of an open file, which it closes: os.read until the end (a record
    file is one read and the read that finds the end, with no file object made)."""
    try:
        chunks = [os.read(fd, 1 << 16)]
        while chunks[-1]:
            chunks.append(os.read(fd, 1 << 20))
    finally:
        os.close(fd)
    return b"".join(chunks)


def remove(path: str | os.PathLike[str]) -> None:
    """``Path(path).unlink(missing_ok=True)``."""
    try:
        os.unlink(plain(path))
    except FileNotFoundError:
        pass


def make_dir(path: str | os.PathLike[str], mode: int = 0o777) -> None:
    """``Path(path).mkdir(mode, exist_ok=True)``: a missing parent raises, an existing
    directory does not."""
    path = plain(path)
    try:
        os.mkdir(path, mode)
    except OSError as e:
        if isinstance(e, FileNotFoundError) or not is_dir(path):
            raise


class LockTimeout(Exception):
    """:func:`flocked` waited ``timeout`` seconds in vain."""


@contextmanager
def flocked(path: str | os.PathLike[str], timeout: float) -> Iterator[None]:
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
                raise LockTimeout(os.fspath(path))
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        yield  # closing fd releases the lock
    finally:
        os.close(fd)


def no_links(root: str | os.PathLike[str], rel: str) -> None:
    """Refuse (IntegrityError) a path under ``root`` that passes through a symbolic link.

    No writer makes one, and one committed to git (``secrets/db -> /home/x``)
    would carry a read or a write outside the vault. Stops at the first part
    that does not exist: nothing below it does either.
    """
    from ossl_vault.errors import IntegrityError

    path = os.fspath(root)
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


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new."""
    path = plain(path)  # as Path(path) named it: "out/" is the file "out"
    tmp = write_temp(path, data, mode)
    try:
        install(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def write_temp(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> str:
    """The first half of :func:`atomic_write`: ``data`` durable in a temp file beside ``path``."""
    folder = parent(plain(path))
    # 64 random bits: with 32, a bulk commit staging 20,000 files in one folder met a
    # name already taken about once in 20 runs (the birthday bound), and failed
    for tries in range(1, 65):
        tmp = join(folder, f"{TMP_PREFIX}{os.getpid()}.{os.urandom(8).hex()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            break
        except FileExistsError:  # O_EXCL never opens another's file: draw again
            if tries == 64:  # not chance: a filesystem that says so of every name
                raise
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)  # whatever the umask
            os.fsync(f.fileno())
    except BaseException:
        remove(tmp)
        raise
    return tmp


def install(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """The second half: rename the temporary file into place, fsync the directory."""
    path = plain(path)
    os.rename(tmp, path)
    fsync_dir(parent(path))


def atomic_write_many(
    directory: str | os.PathLike[str], files: dict[str, bytes], mode: int = 0o600
) -> None:
    """:func:`atomic_write` of many files into one directory, with one fsync of it.

    Each file is whole (written and fsynced) before it is renamed into place;
    the directory's fsync then makes every rename durable at once.
    """
    if not files:
        return
    from concurrent.futures import ThreadPoolExecutor

    directory = plain(directory)
    written = [
        (join(directory, f"{TMP_PREFIX}{os.getpid()}.{os.urandom(8).hex()}"),
         join(directory, name))
        for name in files
    ]  # fmt: skip

    def write(tmp: str, data: bytes) -> None:
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
            remove(tmp)
        raise
    fsync_dir(directory)
