"""Sealing one secret version: the data key, the value's encryption and its MAC.

docs/format.md sections 3 and 5. Everything here runs before the vault lock
is taken; only the version number and the record MAC wait for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ossl_vault.errors import AccessDenied, IntegrityError, PasswordRefused, UsageError
from ossl_vault.format.records import Ledger, Password, Recipient, Version, Wrap, line_of
from ossl_vault.format.wrapping import Identity, wrap
from ossl_vault.openssl import crypto
from ossl_vault.openssl.proc import OpensslFailed

MAX_VALUE = 1024 * 1024
KEEP_VERSIONS = 10
VALUE_ENC = "ossl-vault/v1/value-enc"
VALUE_MAC = "ossl-vault/v1/value-mac"

PasswordSource = Callable[[str], bytes]  # asked with the secret's name


def exposure(ledger: list[Ledger]) -> set[str]:
    """Everyone who could read the current value: back to the last version a user gave."""
    seen: set[str] = set()
    for entry in reversed(ledger):
        seen |= set(entry.readers)
        if entry.origin == "new":
            break
    return seen


def now() -> str:
    """UTC time as format.md writes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_password(password: bytes, what: str = "password") -> bytes:
    """A password or passphrase must fit on one line of an openssl -pass fd."""
    if not password:
        raise UsageError(f"{what} is empty")
    if b"\n" in password or b"\r" in password or b"\0" in password:
        raise UsageError(f"{what} must not contain a newline or NUL byte")
    if len(password) > crypto.MAX_PASSWORD:
        raise UsageError(f"{what} is longer than {crypto.MAX_PASSWORD} bytes")
    return password


class Identities:
    """Where a reader's keys come from: key files, and a passphrase asked on demand."""

    __slots__ = ("files", "gpg", "passphrase", "searched")

    def __init__(
        self,
        files: list[Identity],
        passphrase: Callable[[], bytes | None] | None = None,
        searched: str = "",
        gpg: bool = True,
    ) -> None:
        self.files = files
        self.passphrase = passphrase
        self.searched = searched  # for hints: which paths were looked at
        self.gpg = gpg  # try the reader's GnuPG keyring for gpg wraps


class Sealed:
    """A value encrypted for some recipients, before its version number is known."""

    __slots__ = ("ct", "mac_key", "version", "wraps")

    def __init__(self, version: Version, wraps: list[Wrap], ct: bytes, mac_key: bytes) -> None:
        self.version, self.wraps, self.ct, self.mac_key = version, wraps, ct, mac_key


def record_mac(mac_key: bytes, v: Version, wraps: Iterable[Wrap], ct: bytes) -> bytes:
    """The record MAC of format.md section 5."""
    lines = sorted(line_of(w.fields()) for w in wraps)
    message = (line_of(v.signed_fields()) + "".join(lines)).encode("ascii") + ct
    return crypto.mac(mac_key, message)


RANDOM_LEN = crypto.KEY_LEN + 2 * crypto.SALT_LEN + crypto.IV_LEN  # the most seal draws


def seal(
    value: bytes, recipients: list[Recipient], password: bytes | None, random: bytes | None = None
) -> Sealed:
    """Encrypt ``value`` under a fresh data key and wrap that key for each recipient.

    ``random``: RANDOM_LEN bytes of ``openssl rand`` drawn by the caller (a
    bulk operation draws them for many secrets in one run); else drawn here.
    """
    extra = crypto.SALT_LEN if password is not None else 0
    n = crypto.KEY_LEN + crypto.SALT_LEN + crypto.IV_LEN + extra
    r = random[:n] if random is not None else crypto.rand(n)
    if len(r) != n:
        raise ValueError("seal needs RANDOM_LEN random bytes")
    dk, salt, iv, pw_salt = r[:32], r[32:40], r[40:56], r[56:]
    ikm, pw = dk, None
    if password is not None:
        pk, check = crypto.pbkdf2(password, pw_salt, crypto.PASSWORD_ITER)
        ikm, pw = dk + pk, Password(crypto.PASSWORD_ITER, pw_salt, check)
    ct = crypto.enc(value, crypto.hkdf(ikm, VALUE_ENC).hex(), salt, iv)
    names = tuple(sorted(r.name for r in recipients))
    version = Version("-", 0, now(), crypto.ENC_ITER, salt, iv, pw, crypto.sha256_hex(ct), names)
    wraps = [wrap(r, dk) for r in sorted(recipients, key=lambda r: r.name)]
    return Sealed(version, wraps, ct, crypto.hkdf(dk, VALUE_MAC))


def decrypt(
    v: Version,
    dk: bytes,
    ct: bytes,
    password: PasswordSource | None,
    started: crypto.Decryption | None = None,
) -> bytes:
    """The value of version ``v``, whose MAC the caller has checked; ``started`` is
    its ``openssl enc -d``, started early (:class:`crypto.Decryption`), or None."""
    ikm = dk
    if v.password is not None:
        given = password(v.name) if password else None
        if given is None:
            raise AccessDenied(  # not final: a reader with a terminal may prompt
                f"secret {v.name!r} needs its password", hint="give --password-file FILE"
            )
        pk, check = crypto.pbkdf2(given, v.password.salt, v.password.iterations)
        if not crypto.mac_equal(check, v.password.check):
            raise PasswordRefused(f"wrong password for {v.name!r}")
        ikm = dk + pk
    key = crypto.hkdf(ikm, VALUE_ENC).hex()
    try:
        if started is not None:
            return started.finish(key, ct)
        return crypto.dec(ct, key, v.salt, v.iv, v.iterations)
    except OpensslFailed:
        raise IntegrityError(f"secret {v.name!r} does not decrypt (bad padding)") from None
