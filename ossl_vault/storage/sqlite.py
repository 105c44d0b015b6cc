"""The SQLite driver: a vault's records and blobs in one database (stdlib ``sqlite3``).

A SQLite vault is a directory (0700) holding ``vault.sqlite`` and the same
``audit.log`` as a directory vault (docs/format.md section 7), so both audit
verifiers work on it unchanged. The database keeps the parts (the recipient
lines, and one row per secret: exactly the bytes a format-2 file would hold)
with their revisions as columns, and the blobs. It runs in WAL mode, so
readers never wait for the writer, and each commit is one transaction
(``BEGIN IMMEDIATE``), taken under the directory's write lock: the change's
audit records are appended inside it, before ``COMMIT``, so a crash leaves
either a record whose change did not land (the next writer marks it
``incomplete``) or both.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ossl_vault.errors import IntegrityError, OperationError
from ossl_vault.format import layout
from ossl_vault.format.fields import parse_name
from ossl_vault.openssl.crypto import sha256_hex
from ossl_vault.storage.audit import V2_PREFIX, Event, binding
from ossl_vault.storage.backend import Change, ConflictError, Part, check_names, checked_blob
from ossl_vault.storage.dirlog import LockedLog, no_vault

DATABASE = "vault.sqlite"
RECIPIENTS = ":recipients"  # no secret name starts with ':' (format.md section 2)
SCHEMA = """
CREATE TABLE IF NOT EXISTS parts (
    name TEXT PRIMARY KEY,      -- a secret's name, or ':recipients'
    data BLOB NOT NULL,         -- its record lines, sorted (format.md section 2.8)
    revision TEXT NOT NULL      -- hex(SHA-256(data))
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,    -- hex(SHA-256(data))
    data BLOB NOT NULL
) WITHOUT ROWID;
"""


def is_sqlite(root: str | os.PathLike[str]) -> bool:
    """Whether a directory is a SQLite vault."""
    return (Path(root) / DATABASE).is_file()


class Sqlite(LockedLog):
    """A SQLite vault; see :class:`~ossl_vault.storage.backend.Backend`."""

    format = "sqlite"

    def __init__(self, root: str | os.PathLike[str], lock_timeout: float | None = None) -> None:
        super().__init__(root, lock_timeout)
        self.path = Path(self.root) / DATABASE
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            if not self.path.is_file():
                raise no_vault(self.root)
            try:
                db = sqlite3.connect(self.path, timeout=self.lock_timeout, isolation_level=None,
                                     check_same_thread=False)  # fmt: skip
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # a commit is durable when it returns
            except sqlite3.Error as e:
                raise IntegrityError(f"'{self.path}' is not a usable SQLite vault: {e}") from None
            self._db = db
        return self._db

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise IntegrityError(f"'{self.path}' is damaged: {e}") from None

    def exists(self) -> bool:
        return self.path.is_file() and bool(
            self._query("SELECT 1 FROM parts WHERE name = ?", (RECIPIENTS,))
        )

    def create(self) -> None:
        try:
            Path(self.root).mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
            self._conn().executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise OperationError(f"cannot create vault '{self.root}': {e}") from e

    def _part(self, key: str) -> Part | None:
        rows = self._query("SELECT data, revision FROM parts WHERE name = ?", (key,))
        if not rows:
            return None
        data, revision = bytes(rows[0][0]), str(rows[0][1])  # type: ignore[arg-type]
        if sha256_hex(data) != revision:
            what = "the recipients" if key == RECIPIENTS else f"secret {key!r}"
            raise IntegrityError(f"the records of {what} do not match their revision")
        return Part(data, revision)

    def recipients(self) -> Part:
        part = self._part(RECIPIENTS)
        if part is None:
            raise no_vault(self.root)
        return part

    def secret(self, name: str) -> Part | None:
        return self._part(parse_name(name, "secret"))

    def secrets(self, names: list[str]) -> dict[str, Part | None]:
        return {n: self.secret(n) for n in names}

    def names(self) -> list[str]:
        rows = self._query("SELECT name FROM parts WHERE name != ? ORDER BY name", (RECIPIENTS,))
        return sorted(str(r[0]) for r in rows)  # byte order, whatever the collation

    def blob(self, digest: str) -> bytes:
        rows = self._query("SELECT data FROM blobs WHERE digest = ?", (digest,))
        return checked_blob(digest, bytes(rows[0][0]) if rows else None)  # type: ignore[arg-type]

    def commit(self, change: Change) -> None:
        check_names(change)
        with self.locked(creating=True):
            db = self._conn()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._apply(db, change)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as e:
                raise OperationError(f"cannot write vault '{self.root}': {e}") from e
            self.changes += 1

    def _apply(self, db: sqlite3.Connection, change: Change) -> None:
        current = self._part(RECIPIENTS)
        if change.expect_recipients is not None and (
            current is None or current.revision != change.expect_recipients
        ):
            raise ConflictError(f"the recipients of '{self.root}' changed meanwhile", hint="retry")
        for name, want in change.expect_secrets.items():
            part = self._part(name)
            if (None if part is None else part.revision) != want:
                raise ConflictError(f"secret {name!r} changed meanwhile", hint="retry")
        if change.expect_names is not None and self.names() != change.expect_names:
            raise ConflictError(f"secrets were added to '{self.root}' meanwhile", hint="retry")
        bound: dict[str, str] = {}
        writes: list[tuple[str, bytes | None]] = []
        if change.recipients is not None and (current is None or current.data != change.recipients):
            writes.append((RECIPIENTS, change.recipients))
            bound["-"] = binding(layout.V2_HEADER + change.recipients)
        for name, new in sorted(change.secrets.items()):
            old = self._part(name)
            if (old.data if old else None) == (new or None):
                continue
            writes.append((name, new or None))
            bound[name] = binding(new or None)
        # the records first, from what is committed: a crash before COMMIT leaves a record
        self._audit(change.records(bound), self._incomplete)
        for digest, blob in change.blobs.items():
            db.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?)", (digest, blob))
        for key, data in writes:
            if data is None:
                db.execute("DELETE FROM parts WHERE name = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO parts VALUES (?, ?, ?)",
                           (key, data, sha256_hex(data)))  # fmt: skip
        for digest in change.drop_blobs - set(change.blobs):
            db.execute("DELETE FROM blobs WHERE digest = ?", (digest,))

    def _file(self, key: str) -> bytes | None:
        """The bytes the format-2 file of a part would hold (what records bind)."""
        part = self._part(RECIPIENTS if key == "-" else key)
        if part is None:
            return None
        return layout.V2_HEADER + part.data if key == "-" else part.data

    def _incomplete(self, last: list[list[str]]) -> list[tuple[Event, str]]:
        out, seen, differ = [], set(), {}
        for f in last:
            if f[7] in seen or not f[11].startswith(V2_PREFIX):
                continue
            seen.add(f[7])
            real = binding(self._file(f[7]))
            if real != f[11]:
                differ[f[7]] = (f, real)
                out.append((Event("incomplete", f[7], result="last-change-did-not-land"), real))
        self._as_before(last, differ)
        return out

    def audit_state(self) -> dict[str, str]:
        state = {"-": binding(self._file("-"))}
        for name in self.names():
            state[name] = binding(self._file(name))
        return state

    def strays(self, wanted: set[str]) -> list[str]:
        rows = self._query("SELECT digest FROM blobs")
        return sorted(f"blob {r[0]}" for r in rows if r[0] not in wanted)
