"""The key server's database: one SQLite file (WAL), every user's state in it.

Per user: the OPAQUE registration record, the sealed account key, the vault's
index (format.md records with keyed ids for names), its blobs, the sealed
names, and a hash-chained audit log (docs/api.md). The server can read none
of the secrets: it holds ciphertext, wraps, MACs and ids.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
from pathlib import Path

from ossl_vault.errors import AccessDenied, IntegrityError, NotFoundError, UsageError
from ossl_vault.format.records import parse
from ossl_vault.format.seal import now

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, record BLOB NOT NULL, account BLOB NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vaults (
    user TEXT PRIMARY KEY, idx BLOB NOT NULL, hash TEXT NOT NULL, names BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (
    user TEXT NOT NULL, digest TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (user, digest));
CREATE TABLE IF NOT EXISTS invites (user TEXT PRIMARY KEY, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    user TEXT NOT NULL, seq INTEGER NOT NULL, line TEXT NOT NULL, PRIMARY KEY (user, seq));
"""
AUDIT_HEADER = "ossl-vault-server-audit\t1\t{user}"


def line_hash(line: str) -> str:
    return hashlib.sha256((line + "\n").encode()).hexdigest()


def clean(text: str) -> str:
    """An audit field: no TAB, LF or space, never empty."""
    out = "".join(c if c.isalnum() or c in "._@+:/=,-[]" else "?" for c in text[:128])
    return out or "-"


class Database:
    """The server's SQLite file; one connection, used under one lock."""

    def __init__(self, path: Path) -> None:
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # an acknowledged write is on disk
        self.conn.executescript(SCHEMA)
        self.lock = threading.Lock()
        if created:
            os.chmod(path, 0o600)

    def close(self) -> None:
        self.conn.close()

    # -- users -------------------------------------------------------------------

    def user(self, name: str) -> tuple[bytes, bytes] | None:
        """(registration record, sealed account key), or None."""
        with self.lock:
            row = self.conn.execute(
                "SELECT record, account FROM users WHERE name = ?", (name,)
            ).fetchone()
        return (bytes(row[0]), bytes(row[1])) if row else None

    def invite(self, name: str, token: str) -> None:
        """Let ``name`` register once with ``token`` (kept as its SHA-256 only)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self.lock, self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            if self.conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UsageError(f"user {name!r} is already registered")
            self.conn.execute("INSERT OR REPLACE INTO invites VALUES (?, ?)", (name, digest))

    def add_user(
        self, name: str, record: bytes, account: bytes, addr: str, invite: str | None = None
    ) -> None:
        """Register ``name``; with ``invite``, only if it is the name's one-time token."""
        with self.lock, self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            if invite is not None:
                row = self.conn.execute(
                    "SELECT digest FROM invites WHERE user = ?", (name,)
                ).fetchone()
                given = hashlib.sha256(invite.encode()).hexdigest()
                if row is None or not hmac.compare_digest(row[0], given):
                    raise AccessDenied("registration needs a valid invitation for this name")
                self.conn.execute("DELETE FROM invites WHERE user = ?", (name,))
            try:
                self.conn.execute(
                    "INSERT INTO users VALUES (?, ?, ?, ?)", (name, record, account, now())
                )
            except sqlite3.IntegrityError:
                raise UsageError(f"user {name!r} is already registered") from None
            self._append(name, [(addr, "register", "-", "-", "ok")], header=True)

    def set_credentials(self, name: str, record: bytes, account: bytes, addr: str) -> None:
        with self.lock, self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "UPDATE users SET record = ?, account = ? WHERE name = ?", (record, account, name)
            )
            self._append(name, [(addr, "passwd", "-", "-", "ok")])

    # -- the vault ---------------------------------------------------------------

    def index(self, user: str) -> tuple[bytes, str, bytes] | None:
        """(index bytes, its SHA-256, sealed names), or None before the first commit."""
        with self.lock:
            row = self.conn.execute(
                "SELECT idx, hash, names FROM vaults WHERE user = ?", (user,)
            ).fetchone()
        return (bytes(row[0]), row[1], bytes(row[2])) if row else None

    def blob(self, user: str, digest: str) -> bytes:
        with self.lock:
            row = self.conn.execute(
                "SELECT data FROM blobs WHERE user = ? AND digest = ?", (user, digest)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no blob {digest[:16]}...")
        return bytes(row[0])

    def commit(
        self,
        user: str,
        base: str | None,
        index: bytes,
        names: bytes,
        blobs: dict[str, bytes],
        events: list[tuple[str, str, str, str, str]],
    ) -> str:
        """Replace the user's index if it is still ``base``; add blobs, drop unreferenced ones.

        The index must parse as format.md records (so every blob it names
        exists) and every new blob must match its SHA-256 name.
        """
        parsed = parse(index)
        wanted = {v.blob for vs in parsed.versions.values() for v in vs}
        for digest, data in blobs.items():
            if hashlib.sha256(data).hexdigest() != digest:
                raise IntegrityError(f"blob {digest[:16]}... does not match its hash")
        digest_of_index = hashlib.sha256(index).hexdigest()
        with self.lock, self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            row = self.conn.execute("SELECT hash FROM vaults WHERE user = ?", (user,)).fetchone()
            if (row[0] if row else None) != base:
                raise ConflictError("the vault changed since it was read")
            for digest, data in blobs.items():
                self.conn.execute(
                    "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?)", (user, digest, data)
                )
            have = {r[0] for r in self.conn.execute(
                "SELECT digest FROM blobs WHERE user = ?", (user,))}  # fmt: skip
            missing = wanted - have
            if missing:
                raise IntegrityError(f"the index names a missing blob {min(missing)[:16]}...")
            for stale in have - wanted:
                self.conn.execute("DELETE FROM blobs WHERE user = ? AND digest = ?", (user, stale))
            self.conn.execute(
                "INSERT OR REPLACE INTO vaults VALUES (?, ?, ?, ?)",
                (user, index, digest_of_index, names),
            )
            self._append(user, events)
        return digest_of_index

    # -- the audit log -------------------------------------------------------------

    def log(self, user: str, events: list[tuple[str, str, str, str, str]]) -> None:
        """Append records (addr, op, id, version, result) for ``user``, durably."""
        with self.lock, self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self._append(user, events)

    def _append(
        self, user: str, events: list[tuple[str, str, str, str, str]], header: bool = False
    ) -> None:
        """Chain records onto the user's log; inside the caller's transaction."""
        row = self.conn.execute(
            "SELECT seq, line FROM audit WHERE user = ? ORDER BY seq DESC LIMIT 1", (user,)
        ).fetchone()
        if row is None:
            if not header:
                return  # no such user: nothing to chain onto (an unknown name is never logged)
            seq, prev = 0, AUDIT_HEADER.format(user=user)
            self.conn.execute("INSERT INTO audit VALUES (?, 0, ?)", (user, prev))
        else:
            seq, prev = row
        for addr, op, ident, version, result in events:
            seq += 1
            fields = [str(seq), now(), clean(addr), clean(op), clean(ident), clean(version),
                      clean(result), line_hash(prev)]  # fmt: skip
            prev = "\t".join(fields)
            self.conn.execute("INSERT INTO audit VALUES (?, ?, ?)", (user, seq, prev))

    def audit(self, user: str) -> list[str]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT line FROM audit WHERE user = ? ORDER BY seq", (user,)
            ).fetchall()
        return [r[0] for r in rows]


class ConflictError(UsageError):
    """A commit whose base is no longer the vault's index (HTTP 409)."""
