"""What every driver that keeps its audit log in a directory shares: the lock and the log.

The write lock is a flock on ``.lock`` in the vault's directory; the audit log
is ``audit.log`` beside it (docs/format.md section 7), appended under its own
lock ``.audit.lock`` so reads never wait for writers.
"""

from __future__ import annotations

import copy
import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ossl_vault.errors import BusyError, IntegrityError, NotFoundError, OperationError, VaultError
from ossl_vault.storage.audit import AuditLog, Event, binding
from ossl_vault.storage.files import LockTimeout, flocked, is_dir, join, plain
from ossl_vault.storage.grouplog import GROUP_COMMIT, Pending

LOCK = ".lock"
AUDIT_LOCK = ".audit.lock"
DEFAULT_LOCK_TIMEOUT = 60.0


def no_vault(root: str | os.PathLike[str]) -> NotFoundError:
    return NotFoundError(
        f"no vault at '{root}'", hint="create one with 'ossl-vault init' or pass --vault DIR"
    )


class LockedLog:
    """A vault directory's write lock and audit log; drivers extend it."""

    def __init__(self, root: str | os.PathLike[str], lock_timeout: float | None) -> None:
        self.root = plain(root)  # as str(Path(root)) spelled it: error messages quote it
        self.location = self.root
        self.lock_timeout = DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout
        self.held = 0  # depth of locked() in this object
        self.logged = 0  # records this process appended
        self.changes = 0  # commits this process made
        self.audit_skipped = 0  # records a best-effort log could not take

    def exists(self) -> bool:
        raise NotImplementedError

    def settle(self) -> None:
        """Finish what a crashed writer left, once the lock is taken."""

    @contextmanager
    def locked(self, creating: bool = False) -> Iterator[None]:
        """Hold the vault's write lock (flock on .lock); BusyError on timeout.

        Refuses (NotFoundError) where there is no vault, unless ``creating``:
        taking the lock must never make a directory appear.
        """
        if self.held:
            self.held += 1
            try:
                yield
            finally:
                self.held -= 1
            return
        import filelock  # off the read path: only writers pay for it

        if not (is_dir(self.root) and (creating or self.exists())):
            raise no_vault(self.root)
        lock = filelock.FileLock(join(self.root, LOCK), timeout=self.lock_timeout, mode=0o600)
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
        self.held = 1
        try:
            self.settle()
            yield
        finally:
            self.held = 0
            lock.release()

    def _audit(
        self,
        records: list[tuple[Event, str]],
        incomplete: Callable[[list[list[str]]], list[tuple[Event, str]]],
    ) -> None:
        """Append a change's records; in 'required' mode a failure to log fails the change.

        A change whose record is in the log but whose files never landed (a
        crash between the two) is marked first by "incomplete" records.
        """
        log = AuditLog(self.root)
        mode = log.mode()  # a missing or broken log is an integrity failure: fail closed
        with self._audit_lock():
            try:
                log.append_many(incomplete(log.last_change()) + records)
                self.logged += len(records)
            except OperationError:
                if mode == "required":
                    raise
                self.audit_skipped += len(records)

    def _as_before(self, last: list[list[str]], differ: dict[str, tuple[list[str], str]]) -> None:
        """A change that did not land left each file as the change before it had (the
        writer was killed before its renames): refuse (exit 5, nothing written) a file
        that is neither, rather than mark whatever it now holds (format.md section 7)."""
        if not differ:
            return
        limits = {}  # below which record each file's change before is looked for
        for key, (f, _real) in differ.items():
            if key == "*":  # format 1: before the newest commit's records (one INDEX)
                limits[key] = min(int(g[0]) for g in last[: _run_of(last)])
            else:  # format 2: before the file's own newest record
                limits[key] = int(f[0])
        before = AuditLog(self.root).bindings_before(limits)
        for key, (f, real) in sorted(differ.items()):
            absent = binding(None) if key != "*" else None  # what no record bound
            if real != before.get(key, absent):
                what = {"*": "vault.tsv", "-": "recipients.tsv"}.get(key, f"the file of {key!r}")
                raise IntegrityError(
                    f"record {f[0]} (the last change of {what}) does not match it, nor does "
                    "the change before: it was changed outside ossl-vault; nothing was written",
                    hint="run 'ossl-vault audit verify', and restore it from a backup",
                )

    def log(self, event: Event) -> None:
        if not self.exists():
            raise NotFoundError(f"no vault at '{self.root}'")
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
            with flocked(join(self.root, AUDIT_LOCK), self.lock_timeout):
                yield
        except LockTimeout:
            raise BusyError(f"the audit log of '{self.root}' is busy") from None


def _run_of(last: list[list[str]]) -> int:
    """How many of ``last`` (newest first) carry the newest one's INDEX: its commit's."""
    n = 0
    while n < len(last) and last[n][11] == last[0][11]:
        n += 1
    return n
