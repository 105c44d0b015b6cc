"""The remote vault behind the calls ``Vault`` makes of its store (docs/api.md).

The server keeps docs/format.md's records with keyed ids in place of names;
this store turns ids into names as it reads and names into ids as it writes,
so ``Vault`` works on the remote vault unchanged. Record MACs cover the real
names (they are made and checked on the client), so the server cannot move a
record from one name to another either.

It answers the same calls as :class:`ossl_vault.storage.store.Store`
(read_index, read_blob, locked, commit, log, exists, create, garbage), the
set a storage interface will name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ossl_vault.errors import IntegrityError, NotFoundError
from ossl_vault.format.records import Index, Recipient, parse
from ossl_vault.remote import account
from ossl_vault.remote.client import Remote
from ossl_vault.remote.protocol import b64, unb64
from ossl_vault.storage.audit import Event


def rename(index: Index, new: Callable[[str], str]) -> Index:
    """The same records with every secret name passed through ``new``."""
    out = Index(recipients=dict(index.recipients))
    for name, versions in index.versions.items():
        out.versions[new(name)] = [v._replace(name=new(name)) for v in versions]
    for (name, number), wraps in index.wraps.items():
        out.wraps[(new(name), number)] = [w._replace(name=new(name)) for w in wraps]
    out.access = {new(name): who for name, who in index.access.items()}
    out.ledger = {new(n): [e._replace(name=new(n)) for e in es] for n, es in index.ledger.items()}
    out.meta = {new(name): dict(pairs) for name, pairs in index.meta.items()}
    out.state = {new(name): s._replace(name=new(name)) for name, s in index.state.items()}
    return out


class RemoteStore:
    """A user's vault on a key server, seen through this device's session."""

    def __init__(self, remote: Remote, op: str = "api", lock_timeout: float | None = None) -> None:
        self.remote = remote
        self.root = f"{remote.user}@{remote.url}"  # for messages only (Path made https:/ of it)
        self.op = op
        self.lock_timeout = 60.0 if lock_timeout is None else lock_timeout
        self.logged = self.changes = self.audit_skipped = 0
        self.namer = account.Names(remote.account_key())
        self._base: str | None = None
        self._lease: str | None = None
        self.known: dict[str, str] = {}  # id -> name, kept after a secret goes: the audit names it
        self._sealed_names: bytes | None = None

    def exists(self) -> bool:
        return self.remote.call("GET", "/vault").get("index") is not None

    def create(self) -> None:
        """Nothing to make: the first commit creates the remote vault."""

    format = "remote"  # what Store.format says of a local vault

    def read_index(self, names: list[str] | None = None) -> Index:
        """The whole vault: the server answers with the whole keyed index (``names``
        is what a local driver would read alone; a commit sends the whole index)."""
        doc = self.remote.call("GET", "/vault")
        if doc.get("index") is None:
            raise NotFoundError(f"no vault on {self.remote.url} yet")
        data = unb64(doc["index"], "index")
        if hashlib.sha256(data).hexdigest() != doc.get("hash"):
            raise IntegrityError("the server's index does not match its hash")
        sealed = unb64(doc["names"], "names") if doc.get("names") else None
        if sealed != self._sealed_names:  # opening it runs openssl: once per version of it
            self.known, self._sealed_names = self.namer.open(sealed), sealed
        names = self.known
        self._base = doc["hash"]

        def name_of(ident: str) -> str:
            if ident not in names:
                raise IntegrityError(
                    f"the server's index holds an id with no name ({ident[:16]}...)"
                )
            return names[ident]

        return rename(parse(data), name_of)

    def read_records(self, name: str) -> Index:
        """What a read of ``name`` needs: the server answers with the whole keyed index."""
        return self.read_index()

    def read_secret(self, name: str) -> Index:
        return self.read_index()

    def names(self) -> list[str]:
        """Every secret name (the server's index, opened here)."""
        return sorted(self.read_index().versions)

    def check_audit_log(self) -> None:
        """Nothing to check on this device: the server keeps the vault's audit log."""

    def read_blob(self, digest: str) -> bytes:
        data = unb64(self.remote.call("GET", f"/vault/blobs/{digest}").get("data"), "blob")
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"ciphertext blob {digest[:16]}... does not match its hash")
        return data

    @contextmanager
    def locked(self, creating: bool = False) -> Iterator[None]:
        """A write lease on the remote vault, for as long as the block runs."""
        lease = self.remote.call("POST", "/vault/lock", {"timeout": self.lock_timeout})["lease"]
        self._lease = lease
        if creating:
            self._base = None
        try:
            yield
        finally:
            self._lease = None
            self.remote.call("POST", "/vault/unlock", {"lease": lease})

    def _event(self, event: Event) -> dict[str, str]:
        ident = self.namer.id_of(event.secret) if event.secret not in ("", "-") else "-"
        return {"op": event.op, "id": ident, "version": event.version, "result": event.result}

    def commit(
        self, index: Index, blobs: dict[str, bytes], event: Event | list[Event] | None = None
    ) -> None:
        """Send the new index (ids for names), its new blobs and the sealed names.

        A change that touches several secrets (``mv``) gives one event each.
        """
        events = event if isinstance(event, list) else [event or Event(self.op)]
        names = {**self.known, **{self.namer.id_of(n): n for n in index.versions}}
        stored = rename(index, self.namer.id_of)
        self.remote.call("POST", "/vault/commit", {
            "lease": self._lease, "base": self._base, "index": b64(stored.serialize()),
            "names": b64(self.namer.seal(names)),
            "blobs": {digest: b64(data) for digest, data in blobs.items()},
            "events": [self._event(e) for e in events],
        })  # fmt: skip
        self.changes += 1
        self.logged += 1

    def log(self, event: Event) -> None:
        self.remote.call("POST", "/vault/log", {"events": [self._event(event)]})
        self.logged += 1

    def strays(self, index: Index) -> list[str]:
        return []  # the server drops unreferenced blobs in each commit


def initial_index(key: Recipient) -> Index:
    """A remote vault's first index: the account key, its one default recipient."""
    return Index(recipients={key.name: key})


def clone(store: RemoteStore, target: Path) -> int:
    """Copy the remote vault, names restored, to a new local vault directory at ``target``.

    The copy is a docs/format.md vault whose one recipient is the account key,
    so ``scripts/ossl-vault-recover`` opens it with the exported key alone.
    Returns the number of secrets copied.
    """
    from ossl_vault.storage.audit import AuditLog
    from ossl_vault.storage.store import Store

    index = store.read_index()
    blobs = {v.blob: store.read_blob(v.blob) for vs in index.versions.values() for v in vs}
    local = Store(target, op="remote-clone")
    local.create()
    with local.locked(creating=True):
        AuditLog(local.root).create("required", False)
        local.commit(index, blobs, Event("remote-clone"))
    return len(index.versions)
