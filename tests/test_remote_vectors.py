"""tests/vectors/remote-account.txt: docs/api.md section 6, by the code and by openssl alone."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from ossl_vault.errors import IntegrityError
from ossl_vault.remote import account

VECTORS = Path(__file__).parent / "vectors"


def vector() -> dict[str, str]:
    found = {}
    for line in (VECTORS / "remote-account.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(": ")
            found[key] = value
    return found


def openssl(*args: str, stdin: bytes = b"") -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=True).stdout


def hkdf_hex(key: bytes, info: str) -> str:
    """HKDF-SHA256 with the openssl CLI, as docs/api.md spells it (key on argv: a test)."""
    out = openssl("kdf", "-keylen", "32", "-kdfopt", "digest:SHA256", "-kdfopt",
                  f"hexkey:{key.hex()}", "-kdfopt", f"info:{info}", "HKDF")  # fmt: skip
    return out.decode().strip().replace(":", "").lower()


def test_the_code_opens_the_vector() -> None:
    v = vector()
    key_pem = (VECTORS / v["account-key"]).read_bytes()
    export_key = bytes.fromhex(v["export-key-hex"])
    server_key = base64.b64decode(v["opaque-public-key-b64"])
    sealed = (v["sealed-account"] + "\n").encode()
    opened = account.open_account(sealed, export_key, v["user"], server_key)
    der = openssl("pkey", "-outform", "DER", stdin=key_pem)
    assert openssl("pkey", "-outform", "DER", stdin=opened) == der
    with pytest.raises(IntegrityError):  # bound to the user name
        account.open_account(sealed, export_key, "mallory", server_key)
    with pytest.raises(IntegrityError):  # and to the server's OPAQUE key
        account.open_account(sealed, export_key, v["user"], bytes(32))
    names = account.Names(key_pem)
    assert names.id_of("db/password") == v["id db/password"]
    assert names.open((v["sealed-names"] + "\n").encode()) == {
        v["id db/password"]: "db/password", v["id app/key"]: "app/key",
    }  # fmt: skip


def test_openssl_alone_opens_the_vector() -> None:
    v = vector()
    der = openssl("pkey", "-outform", "DER", "-in", str(VECTORS / v["account-key"]))
    export_key = bytes.fromhex(v["export-key-hex"])
    _, _, salt, iv, ct, _ = v["sealed-account"].split("\t")
    enc = hkdf_hex(export_key, "ossl-vault/v1/account-enc")
    plain = openssl("enc", "-d", "-aes-256-cbc", "-pbkdf2", "-md", "sha256", "-iter", "1000",
                    "-S", base64.b64decode(salt).hex(), "-iv", base64.b64decode(iv).hex(),
                    "-pass", f"pass:{enc}", stdin=base64.b64decode(ct))  # fmt: skip
    assert plain == der
    k_id = hkdf_hex(der, "ossl-vault/v1/remote-id")
    mac = openssl("dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{k_id}", "-r",
                  stdin=b"db/password")  # fmt: skip
    assert mac.split()[0].decode() == v["id db/password"]
