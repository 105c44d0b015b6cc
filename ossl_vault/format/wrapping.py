"""Wrapping a data key for recipients, and unwrapping it with identities.

Two schemes (docs/format.md section 4): ``rsa-oaep`` for RSA keys, ``ecdh``
(ephemeral key, ``openssl pkeyutl -derive``, HKDF, then the same enc-then-MAC
seal as values) for P-256, P-384, X25519 and passphrase recipients.
"""

from __future__ import annotations

import os

from ossl_vault.errors import AccessDenied, IntegrityError, UsageError
from ossl_vault.format.records import Recipient, Wrap
from ossl_vault.keys.pubkeys import CURVE_OF_KIND
from ossl_vault.openssl import crypto
from ossl_vault.openssl.proc import OpensslFailed

WRAP_ENC = "ossl-vault/v1/wrap-enc"
WRAP_MAC = "ossl-vault/v1/wrap-mac"


def wrap(recipient: Recipient, dk: bytes, name: str = "", version: int = 0) -> Wrap:
    """Wrap ``dk`` for ``recipient``; name and version are filled in by the caller."""
    fpr = recipient.fingerprint
    if recipient.kind == "rsa":
        ct = crypto.rsa_oaep_encrypt(recipient.spki, dk)
        return Wrap(name, version, recipient.name, fpr, "rsa-oaep", ct)
    if recipient.kind == "gpg":
        from ossl_vault.keys import gpg

        return Wrap(name, version, recipient.name, fpr, "gpg", gpg.encrypt(fpr, recipient.spki, dk))
    eph_pem = crypto.genpkey(CURVE_OF_KIND[recipient.kind])
    eph = crypto.public_der(eph_pem)
    z = crypto.derive(eph_pem, recipient.spki)
    salt_iv = crypto.rand(crypto.SALT_LEN + crypto.IV_LEN)
    salt, iv = salt_iv[: crypto.SALT_LEN], salt_iv[crypto.SALT_LEN :]
    hkdf_salt = eph + recipient.spki
    password = crypto.hkdf(z, WRAP_ENC, hkdf_salt).hex()
    ct = crypto.enc(dk, password, salt, iv)
    w = Wrap(name, version, recipient.name, fpr, "ecdh", ct, eph, crypto.ENC_ITER, salt, iv)
    tag = crypto.mac(crypto.hkdf(z, WRAP_MAC, hkdf_salt), "\t".join(w.ecdh_fields()).encode())
    return w._replace(tag=tag)


class Identity:
    """A private key that may open wraps: a key file, or an unlocked passphrase key."""

    __slots__ = ("_spki", "fpr", "key", "source")

    def __init__(
        self, source: str, key: str | bytes | None, fpr: str | None = None,
        spki: bytes | None = None,
    ) -> None:  # fmt: skip
        self.source = source  # shown in messages: a path, "passphrase for NAME", "gpg key FPR"
        self.key = key  # a path, PEM bytes held in memory only, or None for gpg
        self.fpr = fpr  # set where it is not SHA-256 of the SPKI (passphrase, gpg)
        self._spki = spki  # found on first use

    def with_key(self, key: str | bytes | None) -> Identity:
        """The same identity holding ``key`` (a copy the caller can wipe)."""
        return Identity(self.source, key, self.fpr, self._spki)

    def __repr__(self) -> str:  # never the key itself: it may be PEM bytes
        return f"Identity(source={self.source!r}, fpr={self.fpr!r})"

    @property
    def spki(self) -> bytes:
        if self.key is None:
            raise AccessDenied(f"{self.source} has no SPKI")
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
        return self.fpr or crypto.sha256_hex(self.spki)


def key_file_identity(path: str, explicit: bool) -> Identity | None:
    """An identity from a key file (PEM, or OpenSSH converted in memory).

    None for a default path that is missing or unreadable.
    """
    if not os.path.exists(path):
        if explicit:
            raise UsageError(f"identity file {path!r} does not exist")
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        if explicit:
            raise AccessDenied(
                f"cannot read identity file {path!r}", hint="check its permissions"
            ) from None
        return None
    if head.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
        from ossl_vault.keys import ssh

        with open(path, "rb") as f:
            return Identity(path, ssh.private_pem(f.read(), path))
    return Identity(path, path)


def unlock_passphrase(recipient: Recipient, passphrase: bytes) -> Identity | None:
    """The private key of a passphrase recipient, or None for a wrong passphrase."""
    assert recipient.private is not None
    try:
        pem = crypto.pkcs8_decrypt(recipient.private, passphrase)
    except OpensslFailed:
        return None
    identity = Identity(f"passphrase for {recipient.name}", pem, recipient.fingerprint)
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
        if w.scheme == "gpg":
            from ossl_vault.keys import gpg

            dk = gpg.decrypt(w.ct, fingerprint=w.fingerprint)
        elif w.scheme == "rsa-oaep":
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
