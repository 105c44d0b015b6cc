"""The vault directory on disk: lock, atomic writes, blobs (format.md section 1).

Every write: take the lock, write new blobs, then vault.tsv, each through a
temporary file in the same directory, fsync, rename, fsync of the directory.
A kill at any instant leaves the old index or the new one, and every blob the
index names.
"""

from __future__ import annotations

import copy
import errno
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ossl_vault.errors import (
    PERMISSION_HINT,
    AccessDenied,
    BusyError,
    IntegrityError,
    NotFoundError,
    OperationError,
    UsageError,
    VaultError,
)
from ossl_vault.format.records import Index, parse
from ossl_vault.openssl.crypto import sha256_hex
from ossl_vault.storage.audit import AuditLog, Event
from ossl_vault.storage.files import (
    TMP_PREFIX,
    LockTimeout,
    atomic_write,
    atomic_write_many,
    flocked,
    install,
    write_temp,
)

INDEX = "vault.tsv"
BLOBS = "blobs"
LOCK = ".lock"
AUDIT_LOCK = ".audit.lock"
DEFAULT_LOCK_TIMEOUT = 60.0
GITIGNORE = ".gitignore"
IGNORED = f"{LOCK}\n{AUDIT_LOCK}\n{TMP_PREFIX}*\n"  # what a git repository of a vault leaves out


class Pending:
    """A read's or failure's audit record, waiting for its batch to be written."""

    __slots__ = ("done", "error", "event", "skipped")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.done = False
        self.error: BaseException | None = None
        self.skipped = False  # a best-effort log could not take it


class GroupCommit:
    """The audit records of one process's concurrent reads, one write and fsync a batch.

    The first thread to find no batch being written writes every record
    queued for that vault and wakes the others; records arriving meanwhile
    form the next batch. Each caller returns only once its own record is
    durable (or has failed), so a value is still released after its record.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queues: dict[Path, list[Pending]] = {}
        self.writing: set[Path] = set()

    def submit(self, store: Store, event: Event) -> Pending:
        pending = Pending(event)
        with self.cond:
            self.queues.setdefault(store.root, []).append(pending)
            while not pending.done:
                if store.root in self.writing:
                    self.cond.wait()
                    continue
                batch = self.queues.pop(store.root)
                self.writing.add(store.root)
                self.cond.release()
                try:
                    store.write_batch(batch)
                except BaseException as e:  # a bug: every waiter hears of it, none hangs
                    for p in batch:
                        p.error = p.error or e
                    raise
                finally:
                    self.cond.acquire()
                    for p in batch:
                        p.done = True
                    self.writing.discard(store.root)
                    self.cond.notify_all()
        return pending


class Deferred:
    """Audit records of reads whose values are released all at once (exec, env): one write.

    :meth:`Store.log` of a store whose ``deferred`` is set queues the record
    here; :meth:`flush` writes every queued record (one write and one fsync
    per vault) and raises what the first failed write raised. The caller
    releases no value before ``flush`` returns, so each value still goes out
    after its durable record.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queued: list[tuple[Store, Pending]] = []

    def add(self, store: Store, event: Event) -> None:
        with self.lock:
            self.queued.append((store, Pending(event)))

    def flush(self) -> None:
        with self.lock:
            queued, self.queued = self.queued, []
        by_root: dict[Path, list[tuple[Store, Pending]]] = {}
        for store, pending in queued:
            by_root.setdefault(store.root, []).append((store, pending))
        error: BaseException | None = None
        for entries in by_root.values():
            entries[0][0].write_batch([p for _s, p in entries])
            for store, p in entries:
                error = error or p.error
                if p.skipped:
                    store.audit_skipped += 1
        if error is not None:
            raise error


class Store:
    """A vault directory: reads its index and blobs, writes them under the lock."""

    def __init__(
        self, root: str | os.PathLike[str], lock_timeout: float | None = None, op: str = "api"
    ) -> None:
        self.root = Path(root)
        self.lock_timeout = DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout
        self.op = op  # the operation audit records name
        self.logged = 0  # records this process appended
        self.changes = 0  # commits this process made
        self.audit_skipped = 0  # records a best-effort log could not take
        self.deferred: Deferred | None = None  # reads recorded at once, before any value goes out

    @property
    def index_path(self) -> Path:
        return self.root / INDEX

    def exists(self) -> bool:
        """Whether the directory holds a vault; AccessDenied where we may not look."""
        try:
            return stat.S_ISREG(os.stat(self.index_path).st_mode)
        except PermissionError:
            raise AccessDenied(f"cannot read vault '{self.root}': permission denied",
                               hint=PERMISSION_HINT) from None  # fmt: skip
        except OSError:
            return False

    def create(self) -> None:
        """Make the directory (0700) and blobs/; refuse an existing vault."""
        if self.exists():
            raise UsageError(f"a vault already exists at '{self.root}'")
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)
            (self.root / BLOBS).mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.root / BLOBS, 0o700)
        except OSError as e:
            raise OperationError(f"cannot create vault '{self.root}': {e.strerror}") from e

    def write_gitignore(self) -> None:
        """The lock files and unfinished writes are not for git (docs/teams.md)."""
        path = self.root / GITIGNORE
        if not path.exists():
            atomic_write(path, IGNORED.encode())

    def read_index(self) -> Index:
        """Parse vault.tsv; NotFoundError when there is no vault."""
        return parse(self.index_bytes())

    def read_records(self, name: str) -> Index:
        """What a read of secret ``name`` needs: the recipients and that secret's records.

        In format 1 they are lines of the one vault.tsv, and the whole file is
        parsed and checked: a flipped byte in any line fails the read, as
        format.md section 6 step 1 asks (a recipient line names who other
        secrets' wraps are for). A layout that keeps each secret apart reads
        only its own file here.
        """
        return self.read_index()

    def index_bytes(self) -> bytes:
        """vault.tsv as bytes; NotFoundError when there is no vault."""
        try:
            return self.index_path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(
                f"no vault at '{self.root}'",
                hint="create one with 'ossl-vault init' or pass --vault DIR",
            ) from None
        except PermissionError:
            raise AccessDenied(f"cannot read vault '{self.root}': permission denied",
                               hint=PERMISSION_HINT) from None  # fmt: skip
        except IsADirectoryError:
            raise IntegrityError(f"'{self.index_path}' is a directory, not a vault index") from None
        except OSError as e:
            raise OperationError(f"cannot read '{self.index_path}': {e.strerror}") from e

    def check_audit_log(self) -> None:
        """Refuse a vault whose audit log is gone, before anything else is done with it."""
        log = self.root / "audit.log"
        if self.exists() and not log.exists():
            raise IntegrityError(
                f"the audit log '{log}' is missing", hint="restore it from a backup"
            )

    def read_blob(self, digest: str) -> bytes:
        """A blob's bytes, checked against its SHA-256 name."""
        try:
            data = (self.root / BLOBS / digest).read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"ciphertext blob {digest[:16]}... is missing") from None
        except OSError as e:
            raise OperationError(f"cannot read blob {digest[:16]}...: {e.strerror}") from e
        if sha256_hex(data) != digest:
            raise IntegrityError(f"ciphertext blob {digest[:16]}... does not match its hash")
        return data

    @contextmanager
    def locked(self, creating: bool = False) -> Iterator[None]:
        """Hold the vault's write lock (flock on .lock); BusyError on timeout.

        Refuses (NotFoundError) where there is no vault, unless ``creating``:
        taking the lock must never make a directory appear.
        """
        import filelock  # off the read path: only writers pay for it

        if not (self.root.is_dir() and (creating or self.exists())):
            raise NotFoundError(
                f"no vault at '{self.root}'",
                hint="create one with 'ossl-vault init' or pass --vault DIR",
            )

        lock = filelock.FileLock(str(self.root / LOCK), timeout=self.lock_timeout, mode=0o600)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise BusyError(
                f"vault '{self.root}' is busy (lock not free after {self.lock_timeout:g} s)",
                hint="another ossl-vault is writing; retry, or raise --lock-timeout",
            ) from None
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                raise NotFoundError(f"no vault at '{self.root}'") from None
            raise OperationError(f"cannot lock vault '{self.root}': {e.strerror}") from e
        try:
            yield
        finally:
            lock.release()

    def commit(
        self, index: Index, blobs: dict[str, bytes], event: Event | list[Event] | None = None
    ) -> None:
        """Under the lock: write new blobs, the audit record(s), then the index; drop garbage.

        The records go first, so a crash never leaves a change without one;
        a record whose change did not land is marked by the next writer. A
        change that touches several secrets (``mv``, a bulk command) gives one
        event each: all carry the same index hash.
        """
        data = index.serialize()
        events = event if isinstance(event, list) else [event or Event(self.op)]
        try:
            (self.root / BLOBS).mkdir(mode=0o700, exist_ok=True)
            atomic_write_many(self.root / BLOBS, blobs)
            # The new index is durable beside the old before its records are
            # appended: a record whose rename never happened is recognisable
            # by that temporary file (docs/format.md section 7).
            tmp = write_temp(self.index_path, data)
            try:
                self._audit(events, sha256_hex(data))
                install(tmp, self.index_path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            self.changes += 1
        except OSError as e:
            raise OperationError(f"cannot write vault '{self.root}': {e.strerror}") from e
        self.collect_garbage(index)

    def _audit(self, events: list[Event], index_hash: str) -> None:
        """Append a change's record; in 'required' mode a failure to log fails the change.

        A record whose change never reached vault.tsv (a crash between the
        two) is marked first by an "incomplete" record.
        """
        log = AuditLog(self.root)
        mode = log.mode()  # a missing or broken log is an integrity failure: fail closed
        with self._audit_lock():
            try:
                if self.exists():
                    current = sha256_hex(self.index_path.read_bytes())
                    if log.last_change() not in (None, current):
                        log.append(Event("incomplete", result="last-change-did-not-land"), current)
                log.append_many([(e, index_hash) for e in events])
                self.logged += len(events)
            except OperationError:
                if mode == "required":
                    raise
                self.audit_skipped += len(events)

    def log(self, event: Event) -> None:
        """Record an operation that changed nothing (a read, a failure); return once durable.

        Only the audit log's own lock is taken, so reads do not wait for
        writers; records of concurrent reads in this process share one write
        and one fsync (:class:`GroupCommit`).
        """
        if not self.exists():
            raise NotFoundError(f"no vault at '{self.root}'")
        if self.deferred is not None:
            self.deferred.add(self, event)
            self.logged += 1  # written by Deferred.flush, or the whole command fails
            return
        pending = GROUP_COMMIT.submit(self, event)
        if pending.error is not None:
            try:  # each thread its own copy: one object raised in many threads mixes tracebacks
                error = copy.copy(pending.error)
            except Exception:
                error = pending.error
            raise error
        if pending.skipped:
            self.audit_skipped += 1
        else:
            self.logged += 1

    def write_batch(self, batch: list[Pending]) -> None:
        """Append the records of ``batch`` under the log's lock; each learns its outcome."""
        error: VaultError | None = None
        skipped = False
        log = AuditLog(self.root)
        try:
            mode = log.mode()  # a missing or broken log is an integrity failure: fail closed
            with self._audit_lock():
                try:
                    log.append_many([(p.event, "-") for p in batch])
                except OperationError:
                    if mode == "required":
                        raise
                    skipped = True
        except VaultError as e:
            error = e
        for p in batch:
            p.error, p.skipped = error, skipped

    @contextmanager
    def _audit_lock(self) -> Iterator[None]:
        """Serialize appends to audit.log (taken inside the vault lock by writers)."""
        try:
            with flocked(self.root / AUDIT_LOCK, self.lock_timeout):
                yield
        except LockTimeout:
            raise BusyError(f"the audit log of '{self.root}' is busy") from None

    def garbage(self, index: Index) -> list[Path]:
        """Blobs no record names, and temporary files of dead writers."""
        wanted = {v.blob for versions in index.versions.values() for v in versions}
        found = []
        for directory in (self.root, self.root / BLOBS):
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                stray = entry.name.startswith(TMP_PREFIX)
                orphan = directory != self.root and entry.name not in wanted
                if stray or orphan:
                    found.append(Path(entry.path))
        return found

    def collect_garbage(self, index: Index) -> None:
        """Remove what :meth:`garbage` lists; only a lock holder may call it."""
        for path in self.garbage(index):
            path.unlink(missing_ok=True)


GROUP_COMMIT = GroupCommit()
