"""Wrapping a data key for recipients, and unwrapping it with identities.

Two schemes (docs/format.md section 4): ``rsa-oaep`` for RSA keys, ``ecdh``
(ephemeral key, ``openssl pkeyutl -derive``, HKDF, then the same enc-then-MAC
seal as values) for P-256, P-384, X25519 and passphrase recipients.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import crypto
from .errors import AccessDenied, IntegrityError, UsageError
from .keys import CURVE_OF_KIND
from .proc import OpensslFailed
from .records import Recipient, Wrap

WRAP_ENC = "ossl-vault/v1/wrap-enc"
WRAP_MAC = "ossl-vault/v1/wrap-mac"


def wrap(recipient: Recipient, dk: bytes, name: str = "", version: int = 0) -> Wrap:
    """Wrap ``dk`` for ``recipient``; name and version are filled in by the caller."""
    if recipient.kind == "rsa":
        ct = crypto.rsa_oaep_encrypt(recipient.spki, dk)
        return Wrap(name, version, recipient.name, "rsa-oaep", ct)
    eph_pem = crypto.genpkey(CURVE_OF_KIND[recipient.kind])
    eph = crypto.public_der(eph_pem)
    z = crypto.derive(eph_pem, recipient.spki)
    salt_iv = crypto.rand(crypto.SALT_LEN + crypto.IV_LEN)
    salt, iv = salt_iv[: crypto.SALT_LEN], salt_iv[crypto.SALT_LEN :]
    hkdf_salt = eph + recipient.spki
    password = crypto.hkdf(z, WRAP_ENC, hkdf_salt).hex()
    ct = crypto.enc(dk, password, salt, iv)
    w = Wrap(name, version, recipient.name, "ecdh", ct, eph, crypto.ENC_ITER, salt, iv)
    tag = crypto.mac(crypto.hkdf(z, WRAP_MAC, hkdf_salt), "\t".join(w.ecdh_fields()).encode())
    return Wrap(name, version, recipient.name, "ecdh", ct, eph, crypto.ENC_ITER, salt, iv, tag)


@dataclass
class Identity:
    """A private key that may open wraps: a key file, or an unlocked passphrase key."""

    source: str  # shown in messages: a path, or "passphrase for NAME"
    key: str | bytes  # a path, or PEM bytes held in memory only
    _spki: bytes | None = field(default=None, repr=False)

    @property
    def spki(self) -> bytes:
        if self._spki is None:
            try:
                self._spki = crypto.public_der(self.key)
            except OpensslFailed as e:
                raise AccessDenied(
                    f"cannot use identity {self.source!r}: {e.message}",
                    hint="an identity is an unencrypted PEM private key (RSA, EC, X25519)",
                ) from None
        return self._spki

    @property
    def fingerprint(self) -> str:
        return crypto.sha256_hex(self.spki)


def key_file_identity(path: str, explicit: bool) -> Identity | None:
    """An identity from a key file; None for a missing default path."""
    if not os.path.exists(path):
        if explicit:
            raise UsageError(f"identity file {path!r} does not exist")
        return None
    if not os.access(path, os.R_OK):
        if explicit:
            raise AccessDenied(f"cannot read identity file {path!r}", hint="check its permissions")
        return None
    return Identity(path, path)


def unlock_passphrase(recipient: Recipient, passphrase: bytes) -> Identity | None:
    """The private key of a passphrase recipient, or None for a wrong passphrase."""
    assert recipient.private is not None
    try:
        pem = crypto.pkcs8_decrypt(recipient.private, passphrase)
    except OpensslFailed:
        return None
    identity = Identity(f"passphrase for {recipient.name}", pem)
    try:
        if identity.spki != recipient.spki:
            return None  # a 1-in-256 false pass of the CBC padding check
    except AccessDenied:
        return None
    return identity


def unwrap(identity: Identity, w: Wrap) -> bytes:
    """Open a wrap that the identity's fingerprint says is ours."""
    what = f"key wrap of {w.name!r} for {w.recipient!r}"
    try:
        if w.scheme == "rsa-oaep":
            dk = crypto.rsa_oaep_decrypt(identity.key, w.ct)
        else:
            z = crypto.derive(identity.key, w.eph)
            hkdf_salt = w.eph + identity.spki
            tag = crypto.mac(
                crypto.hkdf(z, WRAP_MAC, hkdf_salt), "\t".join(w.ecdh_fields()).encode()
            )
            if not crypto.mac_equal(tag, w.tag):
                raise IntegrityError(f"{what} failed its integrity check")
            password = crypto.hkdf(z, WRAP_ENC, hkdf_salt).hex()
            dk = crypto.dec(w.ct, password, w.salt, w.iv, w.iterations)
    except OpensslFailed:
        raise IntegrityError(f"{what} does not open with {identity.source!r}") from None
    if len(dk) != crypto.KEY_LEN:
        raise IntegrityError(f"{what} holds a key of the wrong length")
    return dk
