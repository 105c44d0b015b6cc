"""Typed errors: every failure the library reports, each with its exit code.

The library raises these and never prints; the CLI turns one into a single
``ossl-vault: error: ...`` line (plus an optional ``hint: ...``) and exits.
"""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
NOT_FOUND = 3
DENIED = 4
INTEGRITY = 5
BUSY = 6

EXIT_CODES = {
    OK: "ok",
    FAILED: "operation failed (openssl, I/O)",
    USAGE: "usage error",
    NOT_FOUND: "not found",
    DENIED: "no usable identity, access denied or wrong password",
    INTEGRITY: "integrity failure (tampered or corrupt data)",
    BUSY: "vault busy (lock timeout)",
}


# Exit 4 for a vault or file the user may not read: the same code as a missing key.
PERMISSION_HINT = (
    "ask its owner for read access (e.g. group read on the vault directory and its "
    "files), or run as a user who has it"
)


class VaultError(Exception):
    """Base of every error ossl-vault reports; carries its exit code."""

    exit_code = FAILED
    final = False  # an agent's answer no other reader could change (docs/protocol.md)

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class OperationError(VaultError):
    """openssl or the file system failed."""

    exit_code = FAILED


class UsageError(VaultError):
    """The caller asked for something malformed."""

    exit_code = USAGE


class NotFoundError(VaultError):
    """A secret, version, recipient or vault does not exist."""

    exit_code = NOT_FOUND


class Expired(NotFoundError):
    """An expired secret read with ``get --strict``: refused as if it were gone (exit 3)."""


class AccessDenied(VaultError):
    """No usable identity, or a wrong passphrase or password."""

    exit_code = DENIED


class PasswordRefused(AccessDenied):
    """A secret's own password was given and is wrong: the key was there, so it is final."""

    final = True


class IntegrityError(VaultError):
    """Stored data is tampered, corrupt or not in a format we accept."""

    exit_code = INTEGRITY


class FormatError(IntegrityError):
    """A file does not parse as format version 1 (a kind of integrity failure)."""


class BusyError(VaultError):
    """The vault lock could not be taken in time."""

    exit_code = BUSY


class NotMine(Exception):
    """An identity does not match a wrap (not an error by itself)."""
