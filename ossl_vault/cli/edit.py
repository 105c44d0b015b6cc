"""``edit NAME``: change a value in $EDITOR, or only its metadata and expiry.

The value is written to a 0600 file in a fresh 0700 directory on a tmpfs
where one exists ($XDG_RUNTIME_DIR, /dev/shm), so it does not reach a disk;
the file is overwritten and removed afterwards whatever happens, and a new
version is stored only when the text changed.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ossl_vault.cli.common import (
    EPILOG,
    Context,
    complete_secret,
    note,
    pass_ctx,
    password_source,
    reader_options,
    warn,
)
from ossl_vault.errors import NotFoundError, OperationError, UsageError
from ossl_vault.openssl import proc
from ossl_vault.ops import lifecycle, sources


def private_dirs() -> list[str]:
    """Where the value may be written, best first: memory-backed directories."""
    found = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        found.append(runtime)
    shm = "/dev/shm"  # noqa: S108 (memory-backed; the file itself is 0600 in a 0700 mkdtemp)
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        found.append(shm)
    return found


@contextmanager
def scratch_file(value: bytes, name: str) -> Iterator[Path]:
    """A 0600 file holding ``value`` in a 0700 directory; shredded and removed after."""
    places = private_dirs()
    if not places:
        warn("no tmpfs found ($XDG_RUNTIME_DIR, /dev/shm): the value goes to the temp dir")
    directory = Path(tempfile.mkdtemp(prefix="ossl-vault-edit.", dir=places[0] if places else None))
    path = directory / (name.replace("/", "_") + ".txt")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        yield path
    finally:
        _shred(directory)


def _shred(directory: Path) -> None:
    """Overwrite each file (editors may leave backups beside it) with zeros, then remove all."""
    for entry in directory.iterdir():
        try:
            size = entry.stat().st_size
            with open(entry, "r+b") as f:
                f.write(b"\0" * size)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            pass
        entry.unlink(missing_ok=True)
    directory.rmdir()


def editor_argv() -> list[str]:
    """$VISUAL, else $EDITOR, else vi; split as a shell would (``code --wait``)."""
    text = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        argv = shlex.split(text)
    except ValueError:
        raise UsageError(f"cannot parse $EDITOR {text!r}") from None
    if not argv:
        raise UsageError("$EDITOR is empty")
    return argv


@click.command(epilog=EPILOG)
@click.argument("name", shell_complete=complete_secret)
@click.option("--meta", multiple=True, metavar="KEY=VALUE",
              help="Only change metadata (repeatable; KEY= removes); no editor.")  # fmt: skip
@click.option("--expires", metavar="WHEN", help="Only change the expiry (90d, a date, 'never').")
@reader_options
@pass_ctx
def edit(
    obj: Context,
    name: str,
    meta: tuple[str, ...],
    expires: str | None,
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_file: str | None,
) -> None:
    """Edit the value of NAME in $EDITOR (a new secret starts empty); with --meta or
    --expires, change only those, without a new version."""
    vault = obj.vault()
    if meta or expires is not None:
        when = False if expires is None else lifecycle.parse_expiry(expires)
        lifecycle.change_info(vault, name, lifecycle.parse_meta(meta), when)
        note(f"changed the metadata of {name!r}")
        return
    old, password = b"", None
    try:
        ids = obj.identities(passphrase_file, ask_passphrase)
        v = vault.readable(name)
        if v.password is not None:
            password = password_source(password_file)(name)
        old = vault.get(name, ids, None, lambda _n: password)
        obj.log_read([vault.opened_with] if vault.opened_with else [])
    except NotFoundError:
        if name in vault.store.read_index().versions:
            raise  # deleted, or a version gone: not a new secret
    with scratch_file(old, name) as path:
        argv = editor_argv()
        code = proc.run_interactive([*argv, str(path)])
        if code != 0:
            raise OperationError(
                f"the editor {argv[0]!r} exited with status {code}: nothing was stored"
            )
        new = sources.read_value_file(str(path))
    if new == old:
        note(f"{name!r} is unchanged: no new version")
        return
    if not new:
        raise UsageError("the value is empty: nothing was stored")
    number = vault.put(name, new, None, password)
    note(f"stored {name!r} version {number}")
