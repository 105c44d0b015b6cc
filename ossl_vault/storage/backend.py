"""The storage interface every driver offers (docs/architecture.md, "Storage drivers").

A driver stores *parts* as opaque bytes, each with a revision: the recipient
lines, and one part per secret name (docs/format.md section 2.8). It also
stores content-addressed blobs and appends audit records. The one way to
change anything is :meth:`Backend.commit`: a :class:`Change` of the recipients
and any number of secrets, applied atomically (all or nothing, even across a
crash) and only if every part it names still has the revision the caller read
(compare-and-swap). A concurrent change makes it raise :class:`ConflictError`
and write nothing; the caller reads again and retries, or reports exit 6.

Modelled on HashiCorp Vault's ``physical.Backend`` with its transactional
variant, smaller: no prefixes, no generic keys, and the records' bytes and MACs
are the format's, so every driver holds the same bytes (and ``export --bundle``
moves them between drivers unchanged).
"""

from __future__ import annotations

from collections import namedtuple

from ossl_vault.errors import BusyError, IntegrityError
from ossl_vault.format.fields import parse_name
from ossl_vault.openssl.crypto import sha256_hex
from ossl_vault.storage.audit import Event

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Protocol
else:
    Protocol = object  # an interface costs a read nothing: typing stays unloaded


class ConflictError(BusyError):
    """A part changed since it was read: the commit wrote nothing (exit 6 if not retried)."""


class Part(namedtuple("Part", "data revision")):
    """The records of the recipients or of one secret: sorted lines, and their revision."""

    __slots__ = ()
    data: bytes
    revision: str  # hex(SHA-256(data)): drivers may store it, callers compare it


class Change:
    """What one commit writes; ``expect`` holds the revisions the change was computed from.

    ``secrets`` maps a name to its new lines, or to None to delete it.
    ``expect_secrets`` maps a name to the revision read, None where it was
    absent. ``recipients`` None leaves the recipients as they are;
    ``expect_recipients`` None skips their check. ``drop_blobs`` are blobs
    only the replaced versions named. ``expect_names``, when set, is every
    secret name the change was computed from (a recipient change re-wraps
    every secret: one added meanwhile would be missed).
    """

    __slots__ = (
        "blobs",
        "drop_blobs",
        "event",
        "expect_names",
        "expect_recipients",
        "expect_secrets",
        "more_events",
        "recipients",
        "secrets",
    )  # fmt: skip

    def __init__(
        self,
        event: Event,
        recipients: bytes | None = None,
        expect_recipients: str | None = None,
        secrets: dict[str, bytes | None] | None = None,
        expect_secrets: dict[str, str | None] | None = None,
        blobs: dict[str, bytes] | None = None,
        drop_blobs: set[str] | None = None,
        expect_names: list[str] | None = None,
        more_events: list[Event] | None = None,
    ) -> None:
        self.event = event
        self.recipients = recipients
        self.expect_recipients = expect_recipients
        self.secrets = {} if secrets is None else secrets
        self.expect_secrets = {} if expect_secrets is None else expect_secrets
        self.blobs = {} if blobs is None else blobs
        self.drop_blobs = set() if drop_blobs is None else drop_blobs
        self.expect_names = expect_names  # the whole set of names read, when it matters
        self.more_events = [] if more_events is None else more_events  # several secrets (mv)

    def records(self, bound: dict[str, str]) -> list[tuple[Event, str]]:
        """The audit records of a change that left each file ``bound`` names ("-" for the
        recipients, else a secret) with that INDEX (format.md section 7): the events in
        their order, each with its own file's INDEX or "-", then the other files'."""
        out = []
        for e in [self.event, *self.more_events]:
            out.append((e, bound.pop(e.secret, "-")))
        for name, index in sorted(bound.items()):
            out.append((self.event.copy(secret=name, version="-"), index))
        return out


class Backend(Protocol):
    """A vault's storage. Reads never take the write lock; every method may raise VaultError."""

    location: str  # what error messages and audit tools call this vault
    format: str  # "1" or "2" (directory), "sqlite"

    def exists(self) -> bool:
        """Whether a vault is here (NotFoundError from the readers otherwise)."""

    def create(self) -> None:
        """Make an empty vault; the first commit writes its recipients."""

    def recipients(self) -> Part:
        """The recipient lines (empty before the first commit)."""

    def secret(self, name: str) -> Part | None:
        """One secret's lines, or None when there is no such secret."""

    def secrets(self, names: list[str]) -> dict[str, Part | None]:
        """``secret`` of each name, at once (a whole-vault read: list, fsck)."""

    def names(self) -> list[str]:
        """Every secret name, sorted, without reading any record."""

    def blob(self, digest: str) -> bytes:
        """A blob's bytes, checked against their SHA-256 (IntegrityError otherwise)."""

    def commit(self, change: Change) -> None:
        """Apply ``change`` atomically with its audit records, or raise ConflictError."""

    def log(self, event: Event) -> None:
        """Append the record of an operation that changed nothing; return once durable."""

    def locked(self, creating: bool = False) -> AbstractContextManager[None]:
        """Hold the write lock across a read and its commit, so the commit cannot conflict."""

    def audit_state(self) -> bytes | dict[str, str]:
        """What the last changes' records must match (audit.verify's ``state``)."""

    def strays(self, wanted: set[str]) -> list[str]:
        """What fsck notes: blobs not in ``wanted``, unfinished writes (names only)."""


def checked_blob(digest: str, data: bytes | None) -> bytes:
    """A blob's bytes as a driver found them (None: not found), checked against its name."""
    if data is None:
        raise IntegrityError(f"ciphertext blob {digest[:16]}... is missing")
    if sha256_hex(data) != digest:
        raise IntegrityError(f"ciphertext blob {digest[:16]}... does not match its hash")
    return data


def check_names(change: Change) -> None:
    """Every secret name a change names is a valid one (format.md section 2): drivers call
    it first, so no name can reach a path or a key it should not."""
    for name in {*change.secrets, *change.expect_secrets}:
        parse_name(name, "secret")
