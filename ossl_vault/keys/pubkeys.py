"""Public keys: what kind a SubjectPublicKeyInfo is, and reading key sources.

A recipient source is a certificate (PEM or DER) or a public key (PEM or DER).
openssl re-encodes every key we keep, so the stored bytes are openssl's own.
"""

from __future__ import annotations

from collections import namedtuple

from ossl_vault.errors import UsageError
from ossl_vault.openssl.crypto import sha256_hex
from ossl_vault.openssl.proc import OpensslFailed, SecretFds, openssl

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the read path)
if TYPE_CHECKING:
    import datetime

RSA_MIN_BITS = 2048
RSA_MAX_BITS = 16384

_OID_RSA = bytes.fromhex("2a864886f70d010101")
_OID_EC = bytes.fromhex("2a8648ce3d0201")
_CURVES = {bytes.fromhex("2a8648ce3d030107"): "p256", bytes.fromhex("2b81040022"): "p384"}
_OID_X25519 = bytes.fromhex("2b656e")
_OID_PBES2 = bytes.fromhex("2a864886f70d01050d")
_OID_PBKDF2 = bytes.fromhex("2a864886f70d01050c")
_REFUSED = {
    bytes.fromhex("2b6570"): "Ed25519",
    bytes.fromhex("2b6571"): "Ed448",
    bytes.fromhex("2b656f"): "X448",
    bytes.fromhex("2b81040023"): "EC P-521",
}
CURVE_OF_KIND = {
    "p256": "P-256", "p384": "P-384", "x25519": "X25519", "passphrase": "X25519",
    "recovery": "X25519",
}  # fmt: skip
_PEM = rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----"


class PublicKey(namedtuple("PublicKey", "kind spki cert fpr", defaults=(None, None))):
    """A recipient's public key: kind, SPKI DER, and the cert it came from."""

    __slots__ = ()
    kind: str
    spki: bytes  # for a gpg key: its binary OpenPGP export
    cert: bytes | None  # default None
    fpr: str | None  # default None; a gpg key's OpenPGP fingerprint

    @property
    def fingerprint(self) -> str:
        """``hex(SHA-256(SPKI DER))`` (format.md section 2.1), or the OpenPGP one."""
        return self.fpr or sha256_hex(self.spki)


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """One DER element at ``pos``: (tag, start of contents, end of contents)."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def cert_spki(cert: bytes) -> bytes:
    """The SubjectPublicKeyInfo inside a DER certificate (RFC 5280 section 4.1)."""
    try:
        _, body, _ = _tlv(cert, 0)
        _, pos, end = _tlv(cert, body)  # tbsCertificate
        if cert[pos] == 0xA0:  # [0] version
            pos = _tlv(cert, pos)[2]
        for _ in range(5):  # serial, signature, issuer, validity, subject
            pos = _tlv(cert, pos)[2]
        _, _, stop = _tlv(cert, pos)
    except (IndexError, ValueError) as e:
        raise ValueError("not a DER certificate") from e
    if stop > end:
        raise ValueError("not a DER certificate")
    return cert[pos:stop]


def cert_not_after(cert: bytes) -> datetime.datetime:
    """The end of a DER certificate's validity period (UTC)."""
    import datetime  # only list and the expiry warnings ask: not on a read's path

    try:
        _, body, _ = _tlv(cert, 0)
        _, pos, _ = _tlv(cert, body)  # tbsCertificate
        if cert[pos] == 0xA0:
            pos = _tlv(cert, pos)[2]
        for _ in range(3):  # serial, signature, issuer
            pos = _tlv(cert, pos)[2]
        _, validity, _ = _tlv(cert, pos)
        not_before_end = _tlv(cert, validity)[2]
        tag, start, end = _tlv(cert, not_before_end)
        text = cert[start:end].decode("ascii")
        fmt = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"
        moment = datetime.datetime.strptime(text, fmt)
    except (IndexError, ValueError, UnicodeDecodeError) as e:
        raise ValueError("not a DER certificate") from e
    return moment.replace(tzinfo=datetime.UTC)


def pkcs8_iterations(der: bytes) -> int:
    """The PBKDF2 iteration count of an encrypted PKCS#8 (PBES2) private key."""
    try:
        _, body, _ = _tlv(der, 0)
        _, alg, _ = _tlv(der, body)  # EncryptionAlgorithmIdentifier
        _, oid, oid_end = _tlv(der, alg)  # PBES2
        _, params, _ = _tlv(der, oid_end)
        _, kdf, _ = _tlv(der, params)  # keyDerivationFunc
        _, kdf_oid, kdf_oid_end = _tlv(der, kdf)
        _, kparams, _ = _tlv(der, kdf_oid_end)
        _, _, salt_end = _tlv(der, kparams)
        tag, count, count_end = _tlv(der, salt_end)
    except (IndexError, ValueError) as e:
        raise ValueError("not an encrypted PKCS#8 key") from e
    if der[oid:oid_end] != _OID_PBES2 or der[kdf_oid:kdf_oid_end] != _OID_PBKDF2 or tag != 2:
        raise ValueError("not a PBES2/PBKDF2 PKCS#8 key")
    return int.from_bytes(der[count:count_end], "big")


def key_kind(spki: bytes) -> str:
    """``rsa``, ``p256``, ``p384`` or ``x25519``; refuses other key types."""
    try:
        _, body, _ = _tlv(spki, 0)
        _, alg, alg_end = _tlv(spki, body)
        _, oid, oid_end = _tlv(spki, alg)
        algorithm = spki[oid:oid_end]
        params = spki[oid_end:alg_end]
        _, bits, _ = _tlv(spki, alg_end)
    except (IndexError, ValueError) as e:
        raise UsageError("not a public key (bad DER)") from e
    if algorithm == _OID_RSA:
        _, seq, _ = _tlv(spki, bits + 1)
        _, n, n_end = _tlv(spki, seq)
        size = int.from_bytes(spki[n:n_end], "big").bit_length()
        if not RSA_MIN_BITS <= size <= RSA_MAX_BITS:
            raise UsageError(f"RSA key of {size} bits is not accepted (need 2048 to 16384)")
        return "rsa"
    if algorithm == _OID_EC:
        curve = params[2:] if params[:1] == b"\x06" else b""
        if curve in _CURVES:
            return _CURVES[curve]
        name = _REFUSED.get(curve, "this curve")
        raise UsageError(f"{name} keys are not supported", hint="use RSA, P-256, P-384 or X25519")
    if algorithm == _OID_X25519:
        return "x25519"
    name = _REFUSED.get(algorithm, "this type of")
    raise UsageError(f"{name} keys cannot encrypt", hint="use an RSA, P-256, P-384 or X25519 key")


def _reencode_spki(der: bytes) -> bytes:
    with SecretFds(der) as (fd,):
        args = ["pkey", "-pubin", "-inform", "DER", "-in", f"/dev/fd/{fd}", "-outform", "DER"]
        return openssl(args, pass_fds=[fd], what="openssl pkey -pubin")


def _from_cert(cert: bytes) -> PublicKey:
    """The key of a DER certificate; openssl must agree on its SPKI bytes."""
    with SecretFds(cert) as (fd,):
        args = ["x509", "-inform", "DER", "-in", f"/dev/fd/{fd}", "-pubkey", "-noout"]
        pem = openssl(args, pass_fds=[fd], what="openssl x509")
    spki = _reencode_spki(pem_blocks(pem)[0][1])
    try:
        inner = cert_spki(cert)
    except ValueError:
        inner = b""
    if inner != spki:
        raise UsageError("the certificate's key is not in canonical DER")
    return PublicKey(key_kind(spki), spki, cert)


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """Every PEM block in ``data`` as (label, DER)."""
    import base64  # and re: a read never looks at a PEM file here
    import re

    out = []
    for m in re.finditer(_PEM, data, re.S):
        body = b"".join(m.group(2).split())
        out.append((m.group(1).decode(), base64.b64decode(body)))
    return out


def from_pem(data: bytes, source: str) -> PublicKey:
    """A public key from certificate or public-key bytes, PEM or DER (OpenSSH: :mod:`loader`)."""
    blocks = pem_blocks(data)
    labels = {label for label, _ in blocks}
    try:
        if "CERTIFICATE" in labels:
            return _from_cert(next(der for label, der in blocks if label == "CERTIFICATE"))
        if "PUBLIC KEY" in labels:
            spki = _reencode_spki(next(der for label, der in blocks if label == "PUBLIC KEY"))
            return PublicKey(key_kind(spki), spki)
        if any("PRIVATE KEY" in label for label in labels):
            raise UsageError(
                f"{source!r} is a private key",
                hint="give the certificate or public key (openssl pkey -in KEY -pubout)",
            )
        if not blocks and data[:1] == b"\x30":
            try:
                return _from_cert(data)
            except OpensslFailed:
                spki = _reencode_spki(data)
                return PublicKey(key_kind(spki), spki)
    except OpensslFailed as e:
        raise UsageError(f"cannot read a key from {source!r}: {e.message}") from e
    raise UsageError(
        f"{source!r} is not a certificate or public key",
        hint="give a PEM or DER certificate or public key (RSA, EC P-256/P-384, X25519)",
    )
