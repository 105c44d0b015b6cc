"""Cryptographic steps: each one an ``openssl`` command, or HKDF/HMAC in the
standard library where the openssl 3.0 CLI would need the key on argv.

docs/format.md spells every step here as the openssl command that redoes it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ossl_vault.errors import OperationError
from ossl_vault.openssl import cache
from ossl_vault.openssl.proc import SecretFds, openssl, pipe, prestart, start

CIPHER = "aes-256-cbc"
KDF = "pbkdf2"
DIGEST = "sha256"
ENC_ITER = 1_000  # the enc password is a 256-bit key: iterations add no strength
PASSWORD_ITER = 600_000  # OWASP 2023 floor for PBKDF2-HMAC-SHA256
SALT_LEN = 8  # the most `openssl enc -S` takes
IV_LEN = 16
KEY_LEN = 32
MAX_PASSWORD = 1000  # openssl reads a -pass line into a 1 KiB buffer

OAEP_OPTS = (
    "-pkeyopt", "rsa_padding_mode:oaep",
    "-pkeyopt", "rsa_oaep_md:sha256",
    "-pkeyopt", "rsa_mgf1_md:sha256",
)  # fmt: skip


def rand(n: int) -> bytes:
    """``n`` bytes from ``openssl rand``."""
    out = openssl(["rand", str(n)], what="openssl rand")
    if len(out) != n:
        raise ValueError(f"openssl rand gave {len(out)} bytes, not {n}")
    return out


def hkdf(ikm: bytes, info: str, salt: bytes = b"", length: int = KEY_LEN) -> bytes:
    """HKDF-SHA256 (RFC 5869); an empty salt is the RFC's string of zeros."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info.encode() + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def mac(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256."""
    return hmac.new(key, message, hashlib.sha256).digest()


def mac_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two MACs."""
    return hmac.compare_digest(a, b)


def _enc_args(decrypt: bool, iterations: int, salt: bytes, iv: bytes, fd: int) -> list[str]:
    return [
        "enc", *(["-d"] if decrypt else []), f"-{CIPHER}", "-pbkdf2", "-md", DIGEST,
        "-iter", str(iterations), "-S", salt.hex(), "-iv", iv.hex(), "-pass", f"fd:{fd}",
    ]  # fmt: skip


def enc(data: bytes, password: str, salt: bytes, iv: bytes, iterations: int = ENC_ITER) -> bytes:
    """``openssl enc -aes-256-cbc -pbkdf2`` with the password on a pipe."""
    with SecretFds(password.encode() + b"\n") as (fd,):
        args = _enc_args(False, iterations, salt, iv, fd)
        return openssl(args, stdin=data, pass_fds=[fd], what="openssl enc")


def dec(data: bytes, password: str, salt: bytes, iv: bytes, iterations: int) -> bytes:
    """The inverse of :func:`enc`; raises ``OpensslFailed`` on a padding error."""
    with SecretFds(password.encode() + b"\n") as (fd,):
        args = _enc_args(True, iterations, salt, iv, fd)
        return openssl(args, stdin=data, pass_fds=[fd], what="openssl enc -d")


class Decryption:
    """``openssl enc -d`` started before its key is known: :func:`dec` in two steps.

    The child starts (and loads openssl) while the data key is unwrapped and
    the record MAC checked; only then does :meth:`finish` hand it the key
    (on its own pipe) and the ciphertext. It never holds a key before the MAC
    holds. :meth:`cancel` ends it unfed.
    """

    def __init__(self, salt: bytes, iv: bytes, iterations: int) -> None:
        r, self._key_w = pipe()
        try:
            args = _enc_args(True, iterations, salt, iv, r)
            self._child = start(args, pass_fds=[r], what="openssl enc -d")
        except BaseException:
            os.close(self._key_w)
            raise
        finally:
            os.close(r)

    def finish(self, password: str, data: bytes) -> bytes:
        """The plaintext; raises ``OpensslFailed`` on a padding error."""
        try:
            os.write(self._key_w, password.encode() + b"\n")  # a pipe holds it whole
        except OSError as e:  # it ended before reading its key (killed, out of memory)
            self.cancel()
            raise OperationError(
                f"openssl enc -d ended before it took its key: {e.strerror}"
            ) from None
        finally:
            self._close_key()
        return self._child.finish(data)

    def cancel(self) -> None:
        self._close_key()
        self._child.cancel()

    def _close_key(self) -> None:
        if self._key_w >= 0:
            os.close(self._key_w)
            self._key_w = -1


def pbkdf2(password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """PBKDF2-HMAC-SHA256, 48 bytes, through ``openssl enc -P``: (key, check)."""
    with SecretFds(password + b"\n") as (fd,):
        args = [
            "enc", f"-{CIPHER}", "-pbkdf2", "-md", DIGEST, "-iter", str(iterations),
            "-S", salt.hex(), "-pass", f"fd:{fd}", "-P",
        ]  # fmt: skip
        out = openssl(args, pass_fds=[fd], what="openssl enc -P").decode("ascii")
    fields = dict(
        (k.strip(), v.strip()) for k, v in (line.split("=", 1) for line in out.splitlines())
    )
    return bytes.fromhex(fields["key"]), bytes.fromhex(fields["iv"])


@contextmanager
def key_arg(key: str | bytes) -> Iterator[tuple[str, list[int]]]:
    """A private key as openssl names it: a path, or PEM bytes on a pipe."""
    if isinstance(key, str):
        yield key, []
        return
    with SecretFds(key) as (fd,):
        yield f"/dev/fd/{fd}", [fd]


def rsa_oaep_encrypt(spki_der: bytes, data: bytes) -> bytes:
    """RSAES-OAEP (SHA-256, MGF1-SHA-256) to a public key."""
    with SecretFds(spki_der) as (fd,):
        args = ["pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", f"/dev/fd/{fd}"]
        return openssl([*args, *OAEP_OPTS], stdin=data, pass_fds=[fd], what="openssl pkeyutl")


def rsa_oaep_decrypt(key: str | bytes, data: bytes) -> bytes:
    """Undo :func:`rsa_oaep_encrypt` with a private key (path or PEM)."""
    with key_arg(key) as (name, fds):
        args = ["pkeyutl", "-decrypt", "-inkey", name, *OAEP_OPTS]
        return openssl(args, stdin=data, pass_fds=fds, what=RSA_DECRYPT)


RSA_DECRYPT = "openssl pkeyutl -decrypt"
_RSA_OID = bytes.fromhex("06092a864886f70d010101")  # rsaEncryption, as an SPKI's DER has it


def prestart_unwrap(path: str) -> None:
    """Start :func:`rsa_oaep_decrypt`'s openssl for the key file ``path`` now, if the
    cache says it holds an RSA key; the unwrap then feeds it (proc.prestart)."""
    try:
        st = os.stat(path)
    except OSError:
        return
    known = cache.lookup("spki", os.path.abspath(path), st)
    if known is not None and _RSA_OID in cache.decode_bytes(known)[:24]:
        prestart(["pkeyutl", "-decrypt", "-inkey", path, *OAEP_OPTS], RSA_DECRYPT)


def genpkey(curve: str) -> bytes:
    """A fresh private key (PEM) on ``X25519``, ``P-256`` or ``P-384``."""
    if curve == "X25519":
        args = ["genpkey", "-algorithm", "X25519"]
    else:
        args = ["genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}"]
    return openssl(args, what="openssl genpkey")


def public_der(key: str | bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a private key (path or PEM).

    For a key file, remembered between runs while the file stays the same
    (:mod:`ossl_vault.openssl.cache`: the public key only).
    """

    def pubout() -> bytes:
        with key_arg(key) as (name, fds):
            args = ["pkey", "-in", name, "-pubout", "-outform", "DER"]
            return openssl(args, pass_fds=fds, what="openssl pkey -pubout")

    if not isinstance(key, str):
        return pubout()
    text = cache.file_value("spki", key, lambda: cache.encode_bytes(pubout()))
    try:
        return cache.decode_bytes(text)
    except ValueError:  # a damaged entry: ask openssl
        return pubout()


def derive(key: str | bytes, peer_spki_der: bytes) -> bytes:
    """ECDH/X25519 shared secret of a private key and a peer's public key."""
    with key_arg(key) as (name, fds), SecretFds(peer_spki_der) as (peer,):
        args = ["pkeyutl", "-derive", "-inkey", name, "-peerkey", f"/dev/fd/{peer}"]
        args += ["-peerform", "DER"]
        return openssl(args, pass_fds=[*fds, peer], what="openssl pkeyutl -derive")


def pkcs8_encrypt(key_pem: bytes, passphrase: bytes, iterations: int = PASSWORD_ITER) -> bytes:
    """Encrypt a private key as PKCS#8 PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), DER."""
    with SecretFds(key_pem) as (kfd,), SecretFds(passphrase + b"\n") as (pfd,):
        args = [
            "pkcs8", "-topk8", "-in", f"/dev/fd/{kfd}", "-v2", CIPHER, "-v2prf",
            "hmacWithSHA256", "-iter", str(iterations), "-passout", f"fd:{pfd}",
            "-outform", "DER",
        ]  # fmt: skip
        return openssl(args, pass_fds=[kfd, pfd], what="openssl pkcs8 -topk8")


def pkcs8_decrypt(der: bytes, passphrase: bytes) -> bytes:
    """Decrypt a PKCS#8 private key to PEM; raises ``OpensslFailed`` when wrong."""
    with SecretFds(der) as (kfd,), SecretFds(passphrase + b"\n") as (pfd,):
        args = ["pkey", "-inform", "DER", "-in", f"/dev/fd/{kfd}", "-passin", f"fd:{pfd}"]
        return openssl(args, pass_fds=[kfd, pfd], what="openssl pkey -passin")


def sign(key: str | bytes, data: bytes) -> bytes:
    """A SHA-256 signature by an RSA or EC private key (``openssl dgst -sign``)."""
    with key_arg(key) as (name, fds):
        args = ["dgst", "-sha256", "-sign", name, "-binary"]
        return openssl(args, stdin=data, pass_fds=fds, what="openssl dgst -sign")


def verify(spki_der: bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a SHA-256 signature of ``data`` by the key."""
    from ossl_vault.openssl.proc import OpensslFailed

    with SecretFds(spki_der) as (kfd,), SecretFds(signature) as (sfd,):
        args = ["dgst", "-sha256", "-verify", f"/dev/fd/{kfd}", "-keyform", "DER",
                "-signature", f"/dev/fd/{sfd}"]  # fmt: skip
        try:
            openssl(args, stdin=data, pass_fds=[kfd, sfd], what="openssl dgst -verify")
        except OpensslFailed:
            return False
    return True


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 (what ``sha256sum`` prints)."""
    return hashlib.sha256(data).hexdigest()
