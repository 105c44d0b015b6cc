"""Audit records of reads, written in groups: one write and one fsync a batch.

Records of operations that changed nothing (reads, failures) take only the
audit log's own lock, so reads never wait for writers.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

from ossl_vault.storage.audit import Event


class Writer(Protocol):
    root: Path

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
        self.queues: dict[Path, list[Pending]] = {}
        self.writing: set[Path] = set()

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


GROUP_COMMIT = GroupCommit()
