"""Replacing several files of a vault directory at once (docs/format.md section 1).

Each new file is first written in full in the vault's top directory
(``.tmp.*``, fsync), so that whatever a crash leaves there is found without
looking further. One file is then renamed into place. Several (a new blob
and the secret's file that names it, say) are named first in a journal,
``.commit`` (replaced atomically), one line per step, ``rename`` TAB TMP TAB
TARGET or ``delete`` TAB TARGET, paths relative to the vault; then the steps
run and the journal goes. A crash before the journal leaves the old state; one
after it leaves a journal the next writer finishes (:func:`settle`), and a
reader meanwhile reads each named file from its temporary file while that
still exists (:func:`read`), so it sees the new state.
"""

from __future__ import annotations

import errno
import os

from ossl_vault.errors import IntegrityError, VaultError
from ossl_vault.format.fields import DIGITS, HEX, is_hex, made_of, parse_name
from ossl_vault.storage.files import (
    TMP_PREFIX,
    atomic_write,
    exists,
    fsync_dir,
    is_dir,
    join,
    make_dir,
    no_links,
    parent,
    plain,
    read_bytes,
    read_no_follow,
    remove,
    write_temp,
)

JOURNAL = ".commit"

Step = tuple[str | None, str]  # (temporary file or None to delete, target), relative paths


def stage(root: str | os.PathLike[str], writes: list[tuple[str, bytes | None]]) -> list[Step]:
    """Write each new file's bytes to a durable temporary file in ``root``.

    Many files (a bulk change) are written on a few threads: concurrent fsyncs
    share the file system's journal commits, so 4,000 files cost far fewer waits.
    """
    root = plain(root)
    steps: list[Step | None] = [None] * len(writes)
    try:
        for i, (rel, data) in enumerate(writes):
            if data is None:
                steps[i] = (None, rel)
            else:
                make_parents(root, parent(join(root, rel)))

        def one(i: int) -> None:
            rel, data = writes[i]
            assert data is not None
            tmp = write_temp(join(root, JOURNAL), data)  # in the top directory
            steps[i] = (os.path.basename(tmp), rel)

        todo = [i for i, (_, data) in enumerate(writes) if data is not None]
        if len(todo) > 8:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(one, todo))
        else:
            for i in todo:
                one(i)
    except BaseException:
        discard(root, [s for s in steps if s is not None])
        raise
    return [s for s in steps if s is not None]


def write_unsynced(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a new file and fsync it; the caller fsyncs its directory once for many."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def make_parents(root: str | os.PathLike[str], directory: str | os.PathLike[str]) -> None:
    """Make ``directory`` and its missing parents (0700), each durably."""
    directory = plain(directory)
    missing = []
    while not is_dir(directory):
        missing.append(directory)
        directory = parent(directory)
    for d in reversed(missing):
        make_dir(d, 0o700)
        fsync_dir(parent(d))


def discard(root: str | os.PathLike[str], steps: list[Step]) -> None:
    """Remove the temporary files of a change that will not happen."""
    root = plain(root)
    for tmp, _ in steps:
        if tmp is not None:
            remove(join(root, tmp))


def apply(root: str | os.PathLike[str], steps: list[Step]) -> None:
    """Put staged files into place: one rename, or a journal and its steps."""
    if not steps:
        return
    root = plain(root)
    if len(steps) == 1:
        _run(root, steps)
        return
    text = "".join(f"rename\t{t}\t{r}\n" if t else f"delete\t{r}\n" for t, r in steps)
    atomic_write(join(root, JOURNAL), text.encode("ascii"))
    _run(root, steps)
    os.unlink(join(root, JOURNAL))
    fsync_dir(root)


def _run(root: str, steps: list[Step]) -> None:
    for tmp, rel in steps:  # a rename or unlink through a folder link would leave the vault
        no_links(root, rel)
        if tmp is not None and os.path.islink(join(root, tmp)):
            raise _damaged()  # renamed into place, it would be a link where a record goes
    touched: set[str] = set()
    for tmp, rel in steps:
        target = join(root, rel)
        if tmp is None:
            remove(target)
            touched.add(parent(target))
        elif exists(join(root, tmp)):  # else a rolled-forward step that already ran
            os.rename(join(root, tmp), target)
            touched.add(parent(target))
    for d in touched | {root}:
        fsync_dir(d)
    for tmp, rel in steps:  # directories a removed secret leaves empty
        if tmp is None:
            _prune(root, parent(join(root, rel)))


def _prune(root: str, directory: str) -> None:
    below = join(root, "secrets") + "/"  # only folders below secrets/ go
    while directory.startswith(below):
        try:
            os.rmdir(directory)
        except OSError:
            return
        directory = parent(directory)


def _is_tmp(name: str) -> bool:
    """A temporary file's name: ``.tmp.PID.HEX``, 1 to 10 digits and 8 to 16 lowercase hex
    digits (:func:`~ossl_vault.storage.files.write_temp` makes them)."""
    pid, dot, tag = name.removeprefix(TMP_PREFIX).partition(".")
    return (
        name.startswith(TMP_PREFIX)
        and 0 < len(pid) <= 10
        and made_of(pid, DIGITS)
        and dot == "."
        and 8 <= len(tag) <= 16
        and made_of(tag, HEX)
    )


def _target(rel: str) -> str:
    """A journal's TARGET: recipients.tsv, blobs/<hex64> or secrets/<NAME>.tsv, else refused."""
    if rel == "recipients.tsv" or (rel.startswith("blobs/") and is_hex(rel[len("blobs/") :], 64)):
        return rel
    if rel.startswith("secrets/") and rel.endswith(".tsv"):
        try:
            parse_name(rel[len("secrets/") : -len(".tsv")], "secret")
            return rel
        except VaultError:
            pass
    raise _damaged()


def _damaged() -> IntegrityError:
    return IntegrityError(
        f"the commit journal '{JOURNAL}' is damaged (docs/format.md section 1)",
        hint="it names a file outside the vault's records or is not a journal: "
        "restore the vault from a backup",
    )


def _read_own(path: str) -> bytes:
    """The journal's or a TMP's bytes; a symbolic link there is refused (git keeps links)."""
    try:
        return read_no_follow(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _damaged() from None
        raise


def _steps(root: str) -> list[Step] | None:
    """The journal's steps, every path checked: nothing outside the vault's records."""
    try:
        text = _read_own(join(root, JOURNAL)).decode("ascii")
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, IsADirectoryError, NotADirectoryError):
        raise _damaged() from None
    if text and not text.endswith("\n"):
        raise _damaged()
    steps: list[Step] = []
    for line in text.split("\n")[:-1]:  # LF alone ends a line, as bash reads it
        f = line.split("\t")
        if f[0] == "rename" and len(f) == 3 and _is_tmp(f[1]):
            steps.append((f[1], _target(f[2])))
        elif f[0] == "delete" and len(f) == 2:
            steps.append((None, _target(f[1])))
        else:
            raise _damaged()
    return steps


def settle(root: str | os.PathLike[str]) -> None:
    """Finish the journal a crashed writer left (caller holds the lock)."""
    root = plain(root)
    steps = _steps(root)
    if steps is None:
        return
    _run(root, steps)
    remove(join(root, JOURNAL))
    fsync_dir(root)


def read(root: str | os.PathLike[str], rel: str) -> bytes:
    """A file's bytes as the newest commit leaves them (FileNotFoundError when absent)."""
    root = plain(root)
    if os.path.lexists(join(root, JOURNAL)):  # a dangling link too: refused by _steps
        for tmp, target in _steps(root) or []:
            if target != rel:
                continue
            if tmp is None:
                raise FileNotFoundError(rel)
            try:
                return _read_own(join(root, tmp))
            except FileNotFoundError:
                break  # already renamed: the target holds it
    return read_bytes(join(root, rel))
