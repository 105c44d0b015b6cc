"""Audit records of reads, written in groups: one write and one fsync a batch.

Records of operations that changed nothing (reads, failures) take only the
audit log's own lock, so reads never wait for writers.
"""

from __future__ import annotations

import threading

from ossl_vault.storage.audit import Event

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # an interface costs a read nothing: typing stays unloaded


class Writer(Protocol):
    root: str
    audit_skipped: int

    def write_batch(self, batch: list[Pending]) -> None: ...


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
        self.queues: dict[str, list[Pending]] = {}
        self.writing: set[str] = set()

    def submit(self, store: Writer, event: Event) -> Pending:
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
    here, for its driver; :meth:`flush` writes every queued record (one write and one fsync
    per vault) and raises what the first failed write raised. The caller
    releases no value before ``flush`` returns, so each value still goes out
    after its durable record.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queued: list[tuple[Writer, Pending]] = []

    def add(self, store: Writer, event: Event) -> None:
        with self.lock:
            self.queued.append((store, Pending(event)))

    def flush(self) -> None:
        with self.lock:
            queued, self.queued = self.queued, []
        by_root: dict[str, list[tuple[Writer, Pending]]] = {}
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


GROUP_COMMIT = GroupCommit()
