"""What openssl told us about a file, remembered between runs: nothing secret, ever.

A cold ``get`` would otherwise start two extra openssl processes before the
two that read: ``openssl version`` (refusing anything below 3.0) and ``openssl
pkey -pubout`` (the identity's public key, whose SHA-256 finds its wrap). Both
answers depend only on a file: the openssl binary, the key file. They are
kept in one 0600 file under the user's cache directory
(``$XDG_CACHE_HOME/ossl-vault/openssl`` or ``~/.cache/ossl-vault/openssl``),
keyed by the file's path, device, inode, size, mtime and ctime, so a replaced
or edited file is looked at afresh; a key's *public* half and a version string
are all it ever holds.

A file changed within :data:`RACY` seconds of being looked at is not
remembered: its mtime could be reused by a second change in the same clock
tick (git's "racily clean" problem). A cache that is missing, unreadable, not
ours, or malformed is ignored and rebuilt; failing to write it is silent. It
can only save time, never change an answer.
"""

from __future__ import annotations

import _thread  # the C module: ``threading`` costs a cold read 1 ms
import binascii
import os
import time
from collections.abc import Callable

MAGIC = "ossl-vault-cache\t1"
MAX_ENTRIES = 64
MAX_BYTES = 256 * 1024
RACY = 2.0  # seconds: a file younger than this is not remembered

Key = tuple[str, str, int, int, int, int, int]  # kind, path, dev, ino, size, mtime, ctime

_lock = _thread.allocate_lock()
_entries: dict[Key, str] | None = None  # loaded on first use


def cache_path() -> str | None:
    """The cache file, or None when there is no home to keep it in."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        home = os.environ.get("HOME") or os.path.expanduser("~")
        if not home or home == "~":
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "ossl-vault", "openssl")


def key_of(kind: str, path: str, st: os.stat_result) -> Key:
    return (kind, path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def lookup(kind: str, path: str, st: os.stat_result) -> str | None:
    """What was remembered of ``path`` in the state ``st``; None if nothing."""
    with _lock:
        return _load().get(key_of(kind, path, st))


def remember(kind: str, path: str, st: os.stat_result, value: str) -> None:
    """Keep ``value`` (printable ASCII, no TAB) for ``path`` in the state ``st``."""
    if not value.isprintable() or "\t" in value or not value.isascii():
        return
    if time.time() - max(st.st_mtime, st.st_ctime) < RACY:
        return
    with _lock:
        entries = _load()
        key = key_of(kind, path, st)
        if entries.get(key) == value:
            return
        stale = [k for k in entries if k[:2] == key[:2]]  # the same file in an older state
        for k in stale:
            del entries[k]
        entries[key] = value
        while len(entries) > MAX_ENTRIES:
            del entries[next(iter(entries))]
        _save(entries)


def file_value(kind: str, path: str, compute: Callable[[], str]) -> str:
    """``compute()`` for the file at ``path``, remembered while the file stays the same.

    The file is looked at before and after ``compute`` runs; if it changed in
    between, the answer is used once and not remembered.
    """
    try:
        before = os.stat(path)
    except OSError:
        return compute()  # it reports the error
    path = os.path.abspath(path)  # the same name in another directory is another file
    found = lookup(kind, path, before)
    if found is not None:
        return found
    value = compute()
    try:
        after = os.stat(path)
    except OSError:
        return value
    if key_of(kind, path, after) == key_of(kind, path, before):
        remember(kind, path, after, value)
    return value


def encode_bytes(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def decode_bytes(text: str) -> bytes:
    return binascii.a2b_base64(text, strict_mode=True)


def _load() -> dict[Key, str]:
    global _entries
    if _entries is None:
        _entries = _read()
    return _entries


def _read() -> dict[Key, str]:
    path = cache_path()
    if path is None:
        return {}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            return {}  # not ours alone: another user could have written it
        data = os.read(fd, MAX_BYTES)
    except OSError:
        return {}
    finally:
        os.close(fd)
    return _parse(data)


def _parse(data: bytes) -> dict[Key, str]:
    try:
        lines = data.decode("ascii").split("\n")
    except UnicodeDecodeError:
        return {}
    if lines[0] != MAGIC or lines[-1] != "":
        return {}
    entries: dict[Key, str] = {}
    for line in lines[1:-1]:
        f = line.split("\t")
        if len(f) != 8 or not all(x.isdigit() for x in f[2:7]):
            return {}
        try:
            path = os.fsdecode(decode_bytes(f[1]))
        except (binascii.Error, ValueError):
            return {}
        dev, ino, size, mtime, ctime = (int(x) for x in f[2:7])
        entries[(f[0], path, dev, ino, size, mtime, ctime)] = f[7]
    return entries


def _save(entries: dict[Key, str]) -> None:
    """Replace the cache file (temp file and rename: readers never see half of it)."""
    path = cache_path()
    if path is None:
        return
    lines = [MAGIC]
    for (kind, name, *numbers), value in entries.items():
        fields = [kind, encode_bytes(os.fsencode(name)), *map(str, numbers), value]
        lines.append("\t".join(fields))
    data = ("\n".join(lines) + "\n").encode("ascii")
    directory = os.path.dirname(path)
    tmp = f"{path}.{os.getpid()}.{_thread.get_ident()}.tmp"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
