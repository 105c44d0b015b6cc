"""The account key and what it keeps from the server: sealed key, keyed ids, sealed names.

The account key is an X25519 key the client makes at registration; it is the
one recipient of the user's vault on the server. Its private half travels
only sealed under keys derived from OPAQUE's export_key, so a new device
opens it with the password alone. Secret names become keyed ids
(HMAC under a key derived from the account key); the names themselves are
kept in one sealed document beside the vault. Every seal is ``openssl enc``
then HMAC-SHA256, as docs/format.md's values are (docs/api.md spells it).
"""

from __future__ import annotations

from ossl_vault.errors import IntegrityError
from ossl_vault.format.records import b64, unb64
from ossl_vault.openssl import crypto
from ossl_vault.openssl.proc import OpensslFailed

ACCOUNT = "ossl-vault-account"
NAMES = "ossl-vault-names"
RECIPIENT = "account"  # the account key's recipient name in the remote vault


def _pem_to_der(pem: bytes) -> bytes:
    from ossl_vault.openssl.proc import openssl

    return openssl(["pkey", "-outform", "DER"], stdin=pem, what="openssl pkey")


def new_key() -> bytes:
    """A fresh X25519 account key (PEM)."""
    return crypto.genpkey("X25519")


def _keys(label: str, key: bytes) -> tuple[str, bytes]:
    """(openssl enc password, MAC key) of a sealed document: HKDF of ``key``."""
    short = label.removeprefix("ossl-vault-")
    enc = crypto.hkdf(key, f"ossl-vault/v1/{short}-enc").hex()
    return enc, crypto.hkdf(key, f"ossl-vault/v1/{short}-mac")


def _seal(label: str, key: bytes, aad: str, data: bytes) -> bytes:
    fresh = crypto.rand(crypto.SALT_LEN + crypto.IV_LEN)
    salt, iv = fresh[: crypto.SALT_LEN], fresh[crypto.SALT_LEN :]
    password, mac_key = _keys(label, key)
    ct = crypto.enc(data, password, salt, iv)
    head = [label, "1", b64(salt), b64(iv), b64(ct)]
    tag = crypto.mac(mac_key, _mac_input(head, aad))
    return ("\t".join([*head, b64(tag)]) + "\n").encode()


def _mac_input(head: list[str], aad: str) -> bytes:
    return ("\t".join([*head[:2], aad, *head[2:]])).encode()


def _open(label: str, key: bytes, aad: str, sealed: bytes) -> bytes:
    """The sealed bytes, after their MAC: IntegrityError for anything amiss."""
    try:
        fields = sealed.decode("ascii").removesuffix("\n").split("\t")
    except UnicodeDecodeError:
        fields = []
    if len(fields) != 6 or fields[:2] != [label, "1"]:
        raise IntegrityError(f"the server's {label} document is malformed")
    salt = unb64(fields[2], "salt", 8)
    iv = unb64(fields[3], "iv", 16)
    ct = unb64(fields[4], "ciphertext")
    tag = unb64(fields[5], "mac", 32)
    password, mac_key = _keys(label, key)
    want = crypto.mac(mac_key, _mac_input(fields[:5], aad))
    if not crypto.mac_equal(want, tag):
        raise IntegrityError(f"the server's {label} document failed its integrity check")
    try:
        return crypto.dec(ct, password, salt, iv, crypto.ENC_ITER)
    except OpensslFailed:
        raise IntegrityError(f"the server's {label} document does not decrypt") from None


def seal_account(key_pem: bytes, export_key: bytes, user: str, server_key: bytes) -> bytes:
    """The account key sealed under export_key, bound to the user and server OPAQUE key."""
    return _seal(ACCOUNT, export_key, f"{user}\t{b64(server_key)}", _pem_to_der(key_pem))


def open_account(sealed: bytes, export_key: bytes, user: str, server_key: bytes) -> bytes:
    """The account key (PEM) from its sealed form; IntegrityError if it was not made for us."""
    der = _open(ACCOUNT, export_key, f"{user}\t{b64(server_key)}", sealed)
    from ossl_vault.openssl.proc import openssl

    return openssl(["pkey", "-inform", "DER"], stdin=der, what="openssl pkey")


class Names:
    """Keyed ids for secret names, and the sealed id-to-name document."""

    def __init__(self, key_pem: bytes) -> None:
        self._der = _pem_to_der(key_pem)
        self._id_key = crypto.hkdf(self._der, "ossl-vault/v1/remote-id")

    def id_of(self, name: str) -> str:
        """hex(HMAC-SHA256(K_id, name)): what the server sees in place of ``name``."""
        return crypto.mac(self._id_key, name.encode()).hex()

    def seal(self, names: dict[str, str]) -> bytes:
        text = "".join(f"{ident}\t{name}\n" for ident, name in sorted(names.items()))
        return _seal(NAMES, self._der, "-", text.encode())

    def open(self, sealed: bytes | None) -> dict[str, str]:
        """id -> name; each name checked against its id, so the server cannot swap them."""
        if not sealed:
            return {}
        found = {}
        for line in _open(NAMES, self._der, "-", sealed).decode().splitlines():
            ident, _, name = line.partition("\t")
            if self.id_of(name) != ident:
                raise IntegrityError("the server's names document names a wrong id")
            found[ident] = name
        return found
