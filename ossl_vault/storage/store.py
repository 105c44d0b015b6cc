"""What the operations see of storage: an :class:`Index`, read from and committed to a driver.

``Store`` turns a driver's parts (:mod:`ossl_vault.storage.backend`) into a
parsed :class:`Index` and back. An index remembers the revision of every part
it was read from; :meth:`Store.commit` sends only the parts that differ, with
those revisions, so the driver writes one secret's records for a change of one
secret and refuses (ConflictError, exit 6) a change computed from parts that
changed meanwhile. Under :meth:`Store.locked` no other writer can commit, so
the usual read-change-commit under the lock never conflicts.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager

from ossl_vault.errors import IntegrityError, UsageError, VaultError
from ossl_vault.format import layout
from ossl_vault.format.fields import check_name
from ossl_vault.format.records import Index
from ossl_vault.openssl.crypto import sha256_hex
from ossl_vault.storage.audit import Event
from ossl_vault.storage.backend import Backend, Change, Part
from ossl_vault.storage.files import TMP_PREFIX, atomic_write, exists, join, plain
from ossl_vault.storage.grouplog import Deferred

__all__ = ["Deferred", "Store", "open_backend"]

RETRIES = 20  # reads that met a commit of several files halfway, read again
GITIGNORE = ".gitignore"
# what a git repository of a vault leaves out: the locks, unfinished writes, a commit's journal
IGNORED = f".lock\n.audit.lock\n{TMP_PREFIX}*\n.commit\n"


def open_backend(location: str | os.PathLike[str], lock_timeout: float | None, fmt: str) -> Backend:
    """The driver for a vault location: ``sqlite:PATH``, else a directory."""
    text = os.fspath(location)
    if text.startswith("sqlite:") or fmt == "sqlite" or os.path.isfile(f"{text}/vault.sqlite"):
        from ossl_vault.storage.sqlite import Sqlite

        return Sqlite(text.removeprefix("sqlite:"), lock_timeout)
    from ossl_vault.storage.directory import Directory

    return Directory(text, lock_timeout, fmt)


class Store:
    """A vault's records as Index objects over one storage driver."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        lock_timeout: float | None = None,
        op: str = "api",
        fmt: str = "2",
    ) -> None:
        self.backend = open_backend(root, lock_timeout, fmt)
        # audit.log lives here; spelled as str(Path(root)) was: error messages quote it
        self.root = plain(os.fspath(root).removeprefix("sqlite:"))
        self.op = op  # the operation audit records name
        self.deferred: Deferred | None = None  # reads recorded at once, before any value goes out

    @property
    def logged(self) -> int:
        return self.backend.logged  # type: ignore[attr-defined, no-any-return]

    @property
    def changes(self) -> int:
        return self.backend.changes  # type: ignore[attr-defined, no-any-return]

    @property
    def audit_skipped(self) -> int:
        return self.backend.audit_skipped  # type: ignore[attr-defined, no-any-return]

    @property
    def index_path(self) -> str:
        """The v1 index file (absent from other formats)."""
        return join(self.root, "vault.tsv")

    @property
    def format(self) -> str:
        return self.backend.format

    def exists(self) -> bool:
        return self.backend.exists()

    def create(self) -> None:
        """Make an empty vault; refuse an existing one."""
        if self.exists():
            raise UsageError(f"a vault already exists at '{self.root}'")
        self.backend.create()

    def locked(self, creating: bool = False) -> AbstractContextManager[None]:
        return self.backend.locked(creating)

    def read_blob(self, digest: str) -> bytes:
        return self.backend.blob(digest)

    def log(self, event: Event) -> None:
        """Record an operation that changed nothing (a read, a failure); return once durable.

        With ``deferred`` set the record is queued instead, and written by
        :meth:`Deferred.flush` before any value goes out (or the command fails).
        """
        if self.deferred is not None:
            if not self.exists():
                raise self._no_vault()
            self.deferred.add(self.backend, event)  # type: ignore[arg-type]
            self.backend.logged += 1  # type: ignore[attr-defined]
            return
        self.backend.log(event)

    def _no_vault(self) -> VaultError:
        from ossl_vault.storage.dirlog import no_vault

        return no_vault(self.root)

    def write_gitignore(self) -> None:
        """The lock files and unfinished writes are not for git (docs/teams.md)."""
        path = join(self.root, GITIGNORE)
        if not exists(path):
            atomic_write(path, IGNORED.encode())

    def check_audit_log(self) -> None:
        """Refuse a vault whose audit log is gone, before anything else is done with it."""
        log = join(self.root, "audit.log")
        if self.exists() and not exists(log):
            raise IntegrityError(
                f"the audit log '{log}' is missing", hint="restore it from a backup"
            )

    def names(self) -> list[str]:
        return self.backend.names()

    def read_index(self, names: list[str] | None = None) -> Index:
        """The recipients and the secrets ``names`` (default: every secret) as one Index.

        A secret of ``names`` that does not exist is remembered as absent, so
        committing it later expects it still absent.
        """
        whole = names is None
        for name in names or ():
            check_name(name)  # a bad name is a usage error, before any file is named
        for attempt in range(RETRIES):
            recipients = self.backend.recipients()
            listed = self.backend.names() if names is None else sorted(set(names))
            parts: dict[str, Part | None] = self.backend.secrets(listed)
            try:
                index = layout.join(
                    recipients.data, {n: p.data for n, p in parts.items() if p is not None}
                )
            except IntegrityError:
                # a commit of several files seen halfway (format.md section 1): read again
                if attempt + 1 == RETRIES or self.backend.recipients() == recipients:
                    raise
                time.sleep(0.005 * (attempt + 1))
                continue
            index.origin[None] = (recipients.revision, recipients.data)
            for n, p in parts.items():
                index.origin[n] = None if p is None else (p.revision, p.data)
            if whole:
                index.names_read = [n for n, p in parts.items() if p is not None]
            return index
        raise AssertionError("unreachable")

    def read_secret(self, name: str) -> Index:
        """The recipients and one secret: all a read or a write of one secret needs."""
        return self.read_index([name])

    def read_records(self, name: str) -> Index:
        """What a read of secret ``name`` needs, checked as docs/format.md section 6 asks.

        In format 1 every record is a line of the one vault.tsv, and the whole
        file is parsed and checked: a flipped byte in any line fails the read
        (a recipient line names who other secrets' wraps are for). Format 2
        and SQLite keep each secret apart: only the recipients and its own
        records are read.
        """
        if self.format == "1":
            return self.read_index()
        return self.read_secret(name)

    def commit(
        self, index: Index, blobs: dict[str, bytes], event: Event | list[Event] | None = None
    ) -> None:
        """Write what changed in ``index`` since it was read, its blobs and audit record.

        The driver writes it atomically, or raises ConflictError if a part it
        was read from changed meanwhile. A change of several secrets (``mv``)
        may give one event each.
        """
        recipients, secrets = layout.split(index)
        events = event if isinstance(event, list) else [event or Event(self.op)]
        change = Change(events[0], blobs=blobs, more_events=events[1:])
        origin = index.origin
        if None in origin:
            rev, data = origin[None]  # type: ignore[misc]
            change.expect_recipients = rev
            if data != recipients:
                change.recipients = recipients
                if index.names_read is not None:
                    change.expect_names = sorted(index.names_read)
        else:  # a new vault
            change.recipients = recipients
        for name in sorted(set(secrets) | {n for n in origin if n is not None}):
            new = secrets.get(name)
            old = origin.get(name)
            if name not in origin and index.names_read is None and None in origin:
                raise RuntimeError(f"secret {name!r} was not read before it was changed")
            change.expect_secrets[name] = None if old is None else old[0]
            if (None if old is None else old[1]) != new:
                change.secrets[name] = new
                if old is not None:
                    change.drop_blobs |= layout.blobs_of(old[1])
        # a blob the change still names (mv keeps the versions under the new name) stays
        for new in change.secrets.values():
            change.drop_blobs -= layout.blobs_of(new or b"")
        self.backend.commit(change)
        self._refresh(index, recipients, secrets)

    def _refresh(self, index: Index, recipients: bytes, secrets: dict[str, bytes]) -> None:
        """After a commit the index is what the vault holds: commit it again safely."""
        origin: dict[str | None, tuple[str, bytes] | None] = {
            None: (sha256_hex(recipients), recipients)
        }
        for name in set(index.origin) - {None} | set(secrets):
            data = secrets.get(name)  # type: ignore[arg-type]
            origin[name] = None if data is None else (sha256_hex(data), data)
        index.origin = origin  # type: ignore[assignment]
        if index.names_read is not None:
            index.names_read = sorted(secrets)

    def audit_state(self) -> bytes | dict[str, str]:
        return self.backend.audit_state()

    def strays(self, index: Index) -> list[str]:
        """What fsck notes: blobs no version of ``index`` names, unfinished writes."""
        wanted = {v.blob for versions in index.versions.values() for v in versions}
        return self.backend.strays(wanted)
