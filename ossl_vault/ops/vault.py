"""Vault operations: the library API the CLI and tests call.

Nothing here prints or exits; every failure is a typed ``VaultError``.
Crypto that spawns openssl runs before the lock is taken; under the lock the
index is re-read, the version number fixed, the MAC computed and the result
committed, so concurrent writers serialize without losing updates.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ossl_vault.errors import (
    AccessDenied,
    Expired,
    IntegrityError,
    NotFoundError,
    UsageError,
    VaultError,
)
from ossl_vault.format.fields import check_name
from ossl_vault.format.matching import match, who
from ossl_vault.format.records import Index, Recipient, Version, gc_paused
from ossl_vault.format.seal import (
    MAX_VALUE,
    VALUE_MAC,
    Identities,
    PasswordSource,
    Sealed,
    check_password,
    decrypt,
    exposure,
    record_mac,
    seal,
)
from ossl_vault.format.secretinfo import State
from ossl_vault.format.wrapping import unwrap
from ossl_vault.keys import pubkeys
from ossl_vault.openssl import crypto
from ossl_vault.ops import edits
from ossl_vault.storage import audit
from ossl_vault.storage.audit import AuditLog, Event
from ossl_vault.storage.store import Store


class Vault:
    """One vault directory."""

    def __init__(
        self,
        path: str,
        lock_timeout: float | None = None,
        op: str = "api",
        fmt: str = "2",
        store: Store | None = None,
    ) -> None:
        # ``store``: another driver with Store's calls (the key server's remote vault)
        self.store = store if store is not None else Store(path, lock_timeout, op, fmt)
        self.opened_with: str | None = None  # the key fingerprint of the last wrap opened
        self.opened_version: int | None = None
        self.expired: str | None = None  # the expiry of the last secret read, if passed

    # -- set-up and recipients -------------------------------------------------

    def init(
        self,
        recipients: list[tuple[str, pubkeys.PublicKey]],
        audit_mode: str = "required",
        auto_checkpoint: bool | None = False,
        signers: list | None = None,  # type: ignore[type-arg]
    ) -> bool:
        """Create the vault with its first (default) recipients and its audit log.

        ``auto_checkpoint`` None: on when one of ``signers`` (identities) is an
        RSA or EC recipient, so the chain is signed from the start. Returns
        whether checkpoints are on.
        """
        index = Index()
        for name, key in recipients:
            edits.add_key(index, name, key, default=True)
        if auto_checkpoint is None:
            auto_checkpoint = audit.signing_identity(index, signers or []) is not None
        self.store.create()
        with self.store.locked(creating=True):
            if self.store.exists():
                raise UsageError(f"a vault already exists at '{self.store.root}'")
            AuditLog(self.store.root).create(audit_mode, auto_checkpoint)
            self.store.write_gitignore()
            fprs = tuple(r.fingerprint for r in index.recipients.values())
            self.store.commit(index, {}, Event("init", keys=fprs))
        return auto_checkpoint

    def recipients(self) -> list[Recipient]:
        """Every recipient, sorted by name."""
        return sorted(self.store.read_index([]).recipients.values(), key=lambda r: r.name)

    # -- secrets -------------------------------------------------------------------

    def put(
        self,
        name: str,
        value: bytes,
        to: list[str] | None = None,
        password: bytes | None = None,
        meta: dict[str, str | None] | None = None,
        expires: str | bool | None = False,
    ) -> int:
        """Store ``value`` as a new version of ``name``; returns the version number.

        ``meta`` and ``expires`` change the secret's metadata and expiry as in
        :func:`ossl_vault.ops.edits.set_info`, in the same commit.
        """
        check_name(name)
        if len(value) > MAX_VALUE:
            raise UsageError(f"value of {len(value)} bytes is larger than 1 MiB")
        if password is not None:
            check_password(password)
        index = self.store.read_secret(name)
        refuse_deleted(index, name)
        wanted = edits.recipients_for(index, to, name)
        sealed = seal(value, wanted, password)
        with self.store.locked():
            index = self.store.read_secret(name)
            refuse_deleted(index, name)
            current = edits.recipients_for(index, to, name)
            if current != wanted:  # recipients changed while we encrypted
                sealed = seal(value, current, password)
            if to:
                index.access[name] = tuple(r.name for r in current)
            expiry = edits.set_info(index, name, meta or {}, expires)
            extra = (Event("expire", name, "-"),) if expiry else ()
            return self._commit_version(index, name, sealed, extra=extra)

    def put_many(self, values: dict[str, bytes], to: list[str] | None = None) -> dict[str, int]:
        """Store many values in one atomic commit; openssl runs on parallel threads."""
        from concurrent.futures import ThreadPoolExecutor

        for name, value in values.items():
            check_name(name)
            if len(value) > MAX_VALUE:
                raise UsageError(f"value of {name!r} is larger than 1 MiB")
        wanted = edits.recipients_for(self.store.read_index([]), to)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            sealed = dict(
                zip(values, pool.map(lambda v: seal(v, wanted, None), values.values()), strict=True)
            )
        with self.store.locked():
            index = self.store.read_index(list(values))
            if edits.recipients_for(index, to) != wanted:
                raise VaultError("recipients changed during the import", hint="run it again")
            numbers = {name: edits.add_version(index, name, s) for name, s in sealed.items()}
            if to:
                index.access.update({name: tuple(r.name for r in wanted) for name in sealed})
            events = [
                self.event(name, numbers[name], [w.fingerprint for w in s.wraps])
                for name, s in sealed.items()
            ]
            self.store.commit(index, {s.version.blob: s.ct for s in sealed.values()}, events)
        return numbers

    def _commit_version(
        self,
        index: Index,
        name: str,
        sealed: Sealed,
        origin: str = "new",
        extra: tuple[Event, ...] = (),
    ) -> int:
        number = edits.add_version(index, name, sealed, origin)
        event = self.event(name, number, [w.fingerprint for w in sealed.wraps])
        self.store.commit(index, {sealed.version.blob: sealed.ct}, [event, *extra])
        return number

    def event(self, name: str = "-", number: int | None = None, keys: Iterable[str] = ()) -> Event:
        """An audit event for this vault's current operation."""
        version = "-" if number is None else str(number)
        return Event(self.store.op, name, version, tuple(keys))

    def version(self, name: str, number: int | None = None, index: Index | None = None) -> Version:
        """The record of a secret version (the newest by default)."""
        check_name(name)
        index = index or self.store.read_secret(name)
        versions = index.versions.get(name)
        if not versions:
            raise NotFoundError(f"no secret {name!r}", hint="'ossl-vault list' shows the names")
        if number is None:
            return versions[-1]
        for v in versions:
            if v.version == number:
                return v
        kept = ", ".join(str(v.version) for v in versions)
        raise NotFoundError(f"secret {name!r} has no version {number}", hint=f"kept: {kept}")

    def readable(self, name: str, number: int | None = None, index: Index | None = None) -> Version:
        """:meth:`version`, refusing a secret marked deleted (it reads again once undeleted)."""
        index = index or self.store.read_secret(name)
        v = self.version(name, number, index)
        refuse_deleted(index, name, NotFoundError)
        return v

    def get(
        self,
        name: str,
        ids: Identities,
        number: int | None = None,
        password: PasswordSource | None = None,
        strict: bool = False,
    ) -> bytes:
        """Decrypt a version after checking its integrity; the exact stored bytes.

        An expired secret reads, and ``expired`` says since when; with
        ``strict`` it is refused (:class:`Expired`, exit 3) before anything opens.
        """
        check_name(name)
        index = self.store.read_records(name)
        v = self.readable(name, number, index)
        self.expired = expiry(index, name, strict)
        self.opened_version = v.version
        # enc -d starts now, and loads while the key is unwrapped and the MAC checked;
        # it gets its key only after that (decrypt), and is killed on any failure.
        started = crypto.Decryption(v.salt, v.iv, v.iterations)
        try:
            dk, ct = self.open(index, v, ids)
            return decrypt(v, dk, ct, password, started)
        finally:
            started.cancel()

    def open(self, index: Index, v: Version, ids: Identities) -> tuple[bytes, bytes]:
        """Unwrap the data key and check blob and MAC: (dk, ciphertext)."""
        wraps = index.wraps[(v.name, v.version)]
        identity, w = match(index, v, wraps, ids)
        self.opened_with = w.fingerprint
        if identity.fingerprint == w.fingerprint:
            dk = unwrap(identity, w)
        else:  # see _probe: a damaged FPR, or a wrap for an earlier key of this name
            try:
                dk = unwrap(identity, w)
            except IntegrityError:
                raise AccessDenied(
                    f"no usable identity for {v.name!r}", hint=who(index, v, ids)
                ) from None
        return dk, self.open_with_key(index, v, dk)

    def open_with_key(self, index: Index, v: Version, dk: bytes) -> bytes:
        """Check blob hash and record MAC with a data key already unwrapped: the ciphertext.

        The agent's path for a data key it holds; ``open`` ends here too.
        """
        wraps = index.wraps[(v.name, v.version)]
        try:
            ct = self.store.read_blob(v.blob)
        except IntegrityError:
            if self._gone(v):  # a writer removed this version while we read
                raise NotFoundError(
                    f"secret {v.name!r} version {v.version} was just removed"
                ) from None
            raise
        tag = record_mac(crypto.hkdf(dk, VALUE_MAC), v, wraps, ct)
        if not crypto.mac_equal(tag, v.tag):
            raise IntegrityError(
                f"secret {v.name!r} version {v.version} failed its integrity check"
            )
        return ct

    def _gone(self, v: Version) -> bool:
        versions = self.store.read_secret(v.name).versions.get(v.name, [])
        return all(other.blob != v.blob for other in versions)

    def list(self, index: Index | None = None, deleted: bool = False) -> list[dict[str, object]]:
        """Every secret: name, versions, recipients, dates, exposure (no decryption).

        Secrets marked deleted are left out, or are the only ones with ``deleted``.
        """
        index = index or self.store.read_index()
        with gc_paused():
            return self._rows(index, deleted)

    def _rows(self, index: Index, deleted: bool) -> list[dict[str, object]]:
        rows = []
        state_of, ledger_of, meta_of = index.state.get, index.ledger.get, index.meta.get
        for name, vs in sorted(index.versions.items()):
            state = state_of(name) or State(name)
            if (state.deleted is not None) != deleted:
                continue
            newest, ledger = vs[-1], ledger_of(name, [])
            seen = exposure(ledger)
            rows.append(
                {
                    "name": name,
                    "version": newest.version,
                    "versions": [v.version for v in vs],
                    "recipients": list(newest.recipients),
                    "password": newest.password is not None,
                    "created": vs[0].created,
                    "updated": newest.created,
                    "exposed": sorted(seen),
                    "needs_rotation": sorted(seen.difference(newest.recipients)),
                    "ever": sorted({r for e in ledger for r in e.readers}),
                    "meta": meta_of(name, {}),
                    "expires": state.expires,
                    "deleted": state.deleted,
                    "purge_after": state.purge_after,
                }
            )
        return rows

    def migrate(self, dry_run: bool = False) -> list[str]:
        """Convert a format-1 vault to format 2 atomically; the files it writes."""
        migrate = getattr(self.store.backend, "migrate", None)
        if migrate is None:
            raise UsageError(f"vault '{self.store.root}' is not a format-1 directory")
        return migrate(self.event(), dry_run)  # type: ignore[no-any-return]

    def fsck(self, ids: Identities | None) -> list[tuple[str, str]]:
        """Check every version without decrypting: [(level, message)], level error|note."""
        index = self.store.read_index()
        problems: list[tuple[str, str]] = []
        for name, versions in sorted(index.versions.items()):
            for v in versions:
                label = f"{name!r} version {v.version}"
                try:
                    self.store.read_blob(v.blob)
                    if ids and ids.files:
                        self.open(index, v, Identities(ids.files))
                except AccessDenied:
                    problems.append(("note", f"{label}: MAC not checked (no usable identity)"))
                except IntegrityError as e:
                    problems.append(("error", f"{label}: {e.message}"))
        landing = audit.landing_note(AuditLog(self.store.root), self.store.audit_state())
        if landing is not None:
            problems.append(("note", landing))
        for stray in self.store.strays(index):
            problems.append(("note", f"unreferenced file '{stray}' (removed by the next write)"))
        return problems


def deleted_names(index: Index) -> set[str]:
    """The secrets marked deleted (soft): kept, protected like the rest, not listed."""
    return {name for name, s in index.state.items() if s.deleted is not None}


def refuse_deleted(index: Index, name: str, error: type[VaultError] = UsageError) -> None:
    """Raise ``error`` when ``name`` is marked deleted."""
    s = index.state.get(name)
    if s is not None and s.deleted is not None:
        raise error(
            f"secret {name!r} is deleted (since {s.deleted})",
            hint=f"'ossl-vault undelete {name}' brings it back; 'ossl-vault purge {name}' "
            "destroys it",
        )


def expiry(index: Index, name: str, strict: bool = False) -> str | None:
    """When ``name`` expired, if it has; ``strict`` refuses it (exit 3, as if gone)."""
    state = index.state.get(name)
    if state is None or not state.expired():
        return None
    if strict:
        raise Expired(
            f"secret {name!r} expired on {state.expires}",
            hint="store a new value with 'ossl-vault put' and a new --expires",
        )
    return state.expires
