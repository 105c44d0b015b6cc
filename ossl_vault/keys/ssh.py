"""OpenSSH keys as recipients and identities.

A public key line (``ssh-rsa AAAA... comment``, as in ``id_rsa.pub`` or
``https://github.com/USER.keys``) becomes a recipient: ``ssh-keygen -e -m
PKCS8`` converts it to a PEM public key and :func:`pubkeys.from_pem` has openssl
re-encode it, so the stored SPKI is openssl's own bytes.

An OpenSSH private key file (``-----BEGIN OPENSSH PRIVATE KEY-----``, the
``openssh-key-v1`` format of OpenSSH's PROTOCOL.key) becomes a PEM private key
openssl reads: PKCS#1 ``RSA PRIVATE KEY`` or SEC1 ``EC PRIVATE KEY``. The
conversion happens in memory, in this module: the key is never written to disk
and never put on a command line. ``openssl pkey -check`` then proves that the
private and public halves belong together.

Only RSA and ECDSA P-256/P-384 keys can be recipients. Ed25519 and security-key
(``sk-*``) keys can only sign, and P-521 is not a curve the format supports.
"""

from __future__ import annotations

import base64
import binascii
import re

from ossl_vault.errors import AccessDenied, OperationError, UsageError
from ossl_vault.keys import pubkeys
from ossl_vault.openssl.proc import OpensslFailed, SecretFds, openssl, run_tool

ED25519_HINT = (
    "Ed25519 keys cannot encrypt; add an RSA or ECDSA key (ssh-keygen -t ecdsa) or a certificate"
)
ENCRYPTED_HINT = "decrypt a copy first: ssh-keygen -p -N '' -f COPY, or use a PEM key"
_SK_HINT = (
    "security-key (sk-*) keys cannot decrypt; add an RSA or ECDSA key (ssh-keygen -t ecdsa) "
    "or a certificate"
)
_REFUSED_HINTS = {
    "ssh-ed25519": ED25519_HINT,
    "sk-ssh-ed25519@openssh.com": _SK_HINT,
    "sk-ecdsa-sha2-nistp256@openssh.com": _SK_HINT,
    "ecdsa-sha2-nistp521": (
        "P-521 keys are not supported; add an RSA key or an ECDSA P-256/P-384 key "
        "(ssh-keygen -t ecdsa -b 384) or a certificate"
    ),
    "ssh-dss": "DSA keys cannot encrypt; add an RSA or ECDSA key (ssh-keygen -t ecdsa)",
}
_CERT_HINT = "give the plain public key (the .pub file), not an SSH certificate"
# ssh key type -> (curve name inside the blob, curve OID, field size in bytes)
_EC_CURVES = {
    "ecdsa-sha2-nistp256": ("nistp256", bytes.fromhex("2a8648ce3d030107"), 32),
    "ecdsa-sha2-nistp384": ("nistp384", bytes.fromhex("2b81040022"), 48),
}
_OID_RSA = bytes.fromhex("2a864886f70d010101")
_OID_EC = bytes.fromhex("2a8648ce3d0201")
_MAGIC = b"openssh-key-v1\x00"
_PRIVATE_BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_PRIVATE_PEM = re.compile(
    rb"\A\s*-----BEGIN OPENSSH PRIVATE KEY-----\r?\n(.*?)-----END OPENSSH PRIVATE KEY-----\s*\Z",
    re.S,
)
_PUBLIC_LINE = re.compile(rb"\A\s*[a-z][a-z0-9@.-]*[ \t]+[A-Za-z0-9+/]+={0,2}([ \t][^\r\n]*)?\s*\Z")


class UnsupportedKeyType(UsageError):
    """An SSH key of a type that cannot be a recipient; ``key_type`` names it."""

    def __init__(self, key_type: str, source: str) -> None:
        if key_type.endswith("-cert-v01@openssh.com"):
            hint = _CERT_HINT
        else:
            hint = _REFUSED_HINTS.get(key_type, "use an RSA or ECDSA P-256/P-384 key")
        super().__init__(f"{source!r} is an {key_type!r} key, which cannot encrypt", hint=hint)
        self.key_type = key_type


# --- SSH wire format (RFC 4251 section 5) ---------------------------------------------


class _Reader:
    """Reads uint32, string and mpint fields; any overrun is a ``ValueError``."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def string(self) -> bytes:
        return self.take(self.u32())

    def text(self) -> str:
        return self.string().decode("ascii")

    def mpint(self) -> int:
        raw = self.string()
        if raw[:1] and raw[0] & 0x80:
            raise ValueError("negative mpint")
        return int.from_bytes(raw, "big")

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)


# --- a minimal DER encoder --------------------------------------------------------------


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _int(n: int) -> bytes:
    return _der(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def _seq(*items: bytes) -> bytes:
    return _der(0x30, b"".join(items))


def _oid(body: bytes) -> bytes:
    return _der(0x06, body)


def _bits(body: bytes) -> bytes:
    return _der(0x03, b"\x00" + body)


def _pem(label: str, der: bytes) -> bytes:
    text = base64.b64encode(der)
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    head, tail = f"-----BEGIN {label}-----", f"-----END {label}-----"
    return b"\n".join([head.encode(), *lines, tail.encode()]) + b"\n"


# --- public keys -------------------------------------------------------------------------


def _check_type(key_type: str, source: str) -> None:
    if key_type != "ssh-rsa" and key_type not in _EC_CURVES:
        raise UnsupportedKeyType(key_type, source)


def _read_rsa(r: _Reader) -> tuple[int, int]:
    """The public exponent and modulus of an ``ssh-rsa`` key: (e, n)."""
    e, n = r.mpint(), r.mpint()
    if e < 3 or n.bit_length() < pubkeys.RSA_MIN_BITS:
        raise ValueError("bad RSA key")
    return e, n


def _read_point(r: _Reader, key_type: str) -> bytes:
    """The curve name and uncompressed point Q of an ECDSA key: Q."""
    curve, _, size = _EC_CURVES[key_type]
    if r.text() != curve:
        raise ValueError("curve does not match the key type")
    point = r.string()
    if len(point) != 1 + 2 * size or point[0] != 4:
        raise ValueError("bad EC point")
    return point


def _read_public(r: _Reader, key_type: str) -> tuple[int, int] | bytes:
    """The key fields after the type: (e, n) for RSA, the EC point Q for ECDSA."""
    return _read_rsa(r) if key_type == "ssh-rsa" else _read_point(r, key_type)


def _spki(key_type: str, public: tuple[int, int] | bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of parsed public fields, as openssl writes it."""
    if isinstance(public, tuple):
        e, n = public
        return _seq(_seq(_oid(_OID_RSA), b"\x05\x00"), _bits(_seq(_int(n), _int(e))))
    return _seq(_seq(_oid(_OID_EC), _oid(_EC_CURVES[key_type][1])), _bits(public))


def _parse_blob(blob: bytes, source: str) -> tuple[str, tuple[int, int] | bytes]:
    """(key type, public fields) of a public key blob; refuses unsupported types."""
    r = _Reader(blob)
    try:
        key_type = r.text()
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{source!r} holds a malformed SSH public key") from e
    _check_type(key_type, source)
    try:
        public = _read_public(r, key_type)
        if r.rest():
            raise ValueError("trailing bytes")
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{source!r} holds a malformed SSH public key ({e})") from e
    return key_type, public


def is_openssh_public(data: bytes) -> bool:
    """Whether ``data`` looks like one OpenSSH public key line (``TYPE BASE64 [COMMENT]``)."""
    return bool(_PUBLIC_LINE.match(data))


def public_key(line: bytes, source: str) -> pubkeys.PublicKey:
    """A recipient key from an OpenSSH public key line, converted by ``ssh-keygen``.

    Raises :class:`UnsupportedKeyType` (a ``UsageError``) for Ed25519, sk-*, P-521
    and other types that cannot encrypt, and ``UsageError`` for a malformed line.
    """
    if not is_openssh_public(line):
        raise UsageError(
            f"{source!r} is not an OpenSSH public key line",
            hint="give one line like 'ssh-rsa AAAA... comment' (a .pub file)",
        )
    fields = line.split()
    key_type = fields[0].decode("ascii")
    _check_type(key_type, source)
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except binascii.Error as e:
        raise UsageError(f"{source!r} holds a malformed SSH public key (bad base64)") from e
    inner, public = _parse_blob(blob, source)
    if inner != key_type:
        raise UsageError(f"{source!r} says {key_type!r} but holds an {inner!r} key")
    plain = fields[0] + b" " + base64.b64encode(blob) + b"\n"
    try:
        with SecretFds(plain) as (fd,):
            argv = ["ssh-keygen", "-e", "-m", "PKCS8", "-f", f"/dev/fd/{fd}"]
            pem = run_tool(argv, pass_fds=[fd], what="ssh-keygen -e")
    except OpensslFailed as e:
        raise UsageError(f"cannot convert the SSH key in {source!r}: {e.message}") from e
    except OperationError as e:
        raise OperationError(e.message, hint="install openssh-client (ssh-keygen)") from e
    key = pubkeys.from_pem(pem, source)
    if key.spki != _spki(key_type, public):
        raise OperationError(f"ssh-keygen converted the key in {source!r} to a different key")
    return key


# --- private keys ------------------------------------------------------------------------


def is_openssh_private(data: bytes) -> bool:
    """Whether ``data`` is an OpenSSH-format private key file."""
    return data.lstrip().startswith(_PRIVATE_BEGIN)


def _rsa_der(r: _Reader) -> tuple[bytes, tuple[int, int]]:
    """PKCS#1 RSAPrivateKey from OpenSSH's n, e, d, iqmp, p, q; and (e, n)."""
    n, e, d, iqmp, p, q = (r.mpint() for _ in range(6))
    if p < 3 or q < 3 or p * q != n or (iqmp * q) % p != 1:
        raise ValueError("inconsistent RSA key")
    dp, dq = d % (p - 1), d % (q - 1)
    return _seq(*(_int(x) for x in (0, n, e, d, p, q, dp, dq, iqmp))), (e, n)


def _ec_der(r: _Reader, key_type: str) -> tuple[bytes, bytes]:
    """SEC1 ECPrivateKey from OpenSSH's curve name, point Q and scalar d; and Q."""
    _, oid, size = _EC_CURVES[key_type]
    point = _read_point(r, key_type)
    scalar = r.mpint()
    if not 0 < scalar < 1 << (8 * size):
        raise ValueError("bad EC private scalar")
    der = _seq(
        _int(1),
        _der(0x04, scalar.to_bytes(size, "big")),
        _der(0xA0, _oid(oid)),
        _der(0xA1, _bits(point)),
    )
    return der, point


def _unwrap_file(data: bytes, source: str) -> bytes:
    m = _PRIVATE_PEM.match(data)
    if not m:
        raise UsageError(f"{source!r} is not a complete OpenSSH private key file")
    try:
        raw = base64.b64decode(b"".join(m.group(1).split()), validate=True)
    except binascii.Error as e:
        raise UsageError(f"{source!r} is a malformed OpenSSH private key (bad base64)") from e
    if not raw.startswith(_MAGIC):
        raise UsageError(f"{source!r} is not in the openssh-key-v1 format")
    return raw[len(_MAGIC) :]


def _private_der(raw: bytes, source: str) -> tuple[str, bytes]:
    """(PEM label, DER) of the key in the body of an openssh-key-v1 file."""
    r = _Reader(raw)
    cipher, kdf, _ = r.text(), r.text(), r.string()
    if r.u32() != 1:
        raise ValueError("not exactly one key")
    key_type, public = _parse_blob(r.string(), source)
    if cipher != "none" or kdf != "none":
        raise AccessDenied(
            f"{source!r} is an encrypted OpenSSH private key ({cipher})", hint=ENCRYPTED_HINT
        )
    body = _Reader(r.string())
    if r.rest():
        raise ValueError("trailing bytes")
    if body.u32() != body.u32():
        raise ValueError("check integers differ")
    if body.text() != key_type:
        raise ValueError("private key type differs from the public key")
    label = "RSA PRIVATE KEY" if key_type == "ssh-rsa" else "EC PRIVATE KEY"
    der, mine = _rsa_der(body) if key_type == "ssh-rsa" else _ec_der(body, key_type)
    if mine != public:
        raise ValueError("the private key does not match its public key")
    body.string()  # the comment
    padding = body.rest()
    if padding != bytes(range(1, len(padding) + 1)) or len(padding) >= 8:
        raise ValueError("bad padding")
    return label, der


def private_pem(data: bytes, source: str) -> bytes:
    """An unencrypted OpenSSH private key file as a PEM private key openssl reads.

    RSA becomes PKCS#1 ``RSA PRIVATE KEY``, ECDSA P-256/P-384 SEC1 ``EC PRIVATE
    KEY``; ``openssl pkey -check`` (the key on a pipe) confirms the pair. Raises
    ``AccessDenied`` for an encrypted key, :class:`UnsupportedKeyType` for Ed25519
    and other types that cannot decrypt, ``UsageError`` for a malformed file.
    """
    raw = _unwrap_file(data, source)
    try:
        label, der = _private_der(raw, source)
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{source!r} is a malformed OpenSSH private key ({e})") from e
    pem = _pem(label, der)
    try:
        with SecretFds(pem) as (fd,):
            args = ["pkey", "-in", f"/dev/fd/{fd}", "-check", "-noout"]
            openssl(args, pass_fds=[fd], what="openssl pkey -check")
    except OpensslFailed as e:
        raise UsageError(
            f"{source!r} is a corrupt OpenSSH private key (its halves do not match)"
        ) from e
    return pem
