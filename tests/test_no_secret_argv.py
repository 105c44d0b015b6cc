"""Promise 2: nothing secret on a child's command line or in its environment.

A logging shim (tests/openssl-shim) stands first on PATH as ``openssl`` and
records the argv and the environment of every openssl the CLI starts. A whole
workflow runs through the real CLI; then no secret value, passphrase,
password, data key or derived key may appear in the log in any usual spelling
(raw, hex, base64).
"""

from __future__ import annotations

import base64
import secrets
import shutil
import string
from pathlib import Path

import pytest
from conftest import ROOT, VaultDir

from ossl_vault.format.records import Wrap
from ossl_vault.format.seal import VALUE_ENC, VALUE_MAC
from ossl_vault.format.wrapping import WRAP_ENC, WRAP_MAC, Identity, unlock_passphrase, unwrap
from ossl_vault.openssl import crypto
from ossl_vault.storage.store import Store

SHIM = ROOT / "tests" / "openssl-shim"
ALPHABET = string.ascii_letters + string.digits


def logging_openssl(tmp_path: Path, env: dict[str, str]) -> tuple[dict[str, str], Path]:
    """``env`` with the logging shim first on PATH as ``openssl``; and its (empty) log."""
    real = shutil.which("openssl", path=env.get("PATH"))
    assert real, "openssl not on PATH"
    bindir = tmp_path / "shim-bin"
    bindir.mkdir()
    shutil.copyfile(SHIM, bindir / "openssl")
    (bindir / "openssl").chmod(0o755)
    log = tmp_path / "shim.log"
    log.write_bytes(b"")
    path = f"{bindir}:{env.get('PATH', '')}"
    return {**env, "PATH": path, "OSSL_SHIM_REAL": real, "OSSL_SHIM_LOG": str(log)}, log


def distinctive(tag: str, n: int = 32) -> bytes:
    """A long random printable value: finding it in the log cannot be chance."""
    return (tag + "-" + "".join(secrets.choice(ALPHABET) for _ in range(n))).encode()


def spellings(secret: bytes) -> set[bytes]:
    """Every usual way a secret could be written in argv or env.

    Raw bytes, lower and upper hex, and standard and URL-safe base64 at each of
    the three byte alignments it could have inside a longer base64 string
    (only the characters that depend on the secret's bytes alone).
    """
    out = {secret, secret.hex().encode(), secret.hex().upper().encode()}
    n = len(secret)
    for k in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = enc(b"\0" * k + secret)
            start = -(-8 * k // 6)  # first character made of the secret's bits only
            end = 8 * (k + n) // 6  # one past the last such character
            out.add(text[start:end])
    return {s for s in out if len(s) >= 16}


def parse_log(data: bytes) -> list[tuple[list[bytes], list[bytes]]]:
    """The shim's records: (argv, environment entries) per openssl call."""
    items = data.split(b"\0")
    assert items[-1] == b"", "log does not end with a complete record"
    items.pop()
    records = []
    i = 0
    while i < len(items):
        head = items[i]
        assert head.startswith(b"argc="), f"bad record head {head!r}"
        argc = int(head[5:])
        argv = items[i + 1 : i + 2 + argc]
        i += 2 + argc
        assert items[i] == b"env", f"bad record at item {i}"
        i += 1
        end = items.index(b"end", i)
        records.append((argv, items[i:end]))
        i = end + 1
    return records


def pem_der(pem: bytes) -> bytes:
    """The DER inside the first PEM block."""
    body = pem.decode().split("-----", 2)[2].split("-----END", 1)[0]
    return base64.b64decode("".join(body.split()))


def derived_keys(
    vault_dir: Path, keydir: Path, passphrase: bytes, password: bytes
) -> dict[str, bytes]:
    """Every key of every stored version, re-derived in-process (no shim here)."""
    found: dict[str, bytes] = {}
    index = Store(vault_dir).read_index()
    rsa = Identity(str(keydir / "rsa.key"), str(keydir / "rsa.key"))
    ecdh_ids = {
        "p256": Identity(str(keydir / "p256.key"), str(keydir / "p256.key")),
        "x25519": Identity(str(keydir / "x25519.key"), str(keydir / "x25519.key")),
    }
    pp = unlock_passphrase(index.recipients["pp"], passphrase)
    assert pp is not None
    ecdh_ids["pp"] = pp
    assert isinstance(pp.key, bytes)
    found["passphrase recipient private key (PEM body)"] = pem_der(pp.key)
    for kind in ("rsa", "p256", "x25519"):
        found[f"{kind} identity private key"] = pem_der((keydir / f"{kind}.key").read_bytes())
    for name, versions in index.versions.items():
        for v in versions:
            label = f"{name} v{v.version}"
            wraps: dict[str, Wrap] = {w.recipient: w for w in index.wraps[(name, v.version)]}
            assert set(wraps) == {"rsa", "p256", "x25519", "pp"}, label
            dk = unwrap(rsa, wraps["rsa"])
            found[f"{label} data key"] = dk
            ikm = dk
            if v.password is not None:
                pk, _check = crypto.pbkdf2(password, v.password.salt, v.password.iterations)
                found[f"{label} password key"] = pk
                ikm = dk + pk
            found[f"{label} ENCPASS"] = crypto.hkdf(ikm, VALUE_ENC).hex().encode()
            found[f"{label} ENCPASS raw"] = crypto.hkdf(ikm, VALUE_ENC)
            found[f"{label} MACKEY"] = crypto.hkdf(dk, VALUE_MAC)
            for who, identity in ecdh_ids.items():
                w = wraps[who]
                assert unwrap(identity, w) == dk, f"{label} {who}"
                z = crypto.derive(identity.key, w.eph)
                salt = w.eph + identity.spki
                found[f"{label} {who} shared secret"] = z
                found[f"{label} {who} WENCPASS"] = crypto.hkdf(z, WRAP_ENC, salt).hex().encode()
                found[f"{label} {who} WMACKEY"] = crypto.hkdf(z, WRAP_MAC, salt)
    return found


@pytest.mark.both_paths
def test_no_secret_reaches_openssl_argv_or_env(
    tmp_path: Path, keydir: Path, env: dict[str, str]
) -> None:
    shim_env, log = logging_openssl(tmp_path, env)
    assert "OSSL_VAULT_OPENSSL" not in shim_env
    v = VaultDir(tmp_path / "vault", keydir, shim_env)

    passphrase = distinctive("passphrase")
    password = distinctive("password")
    values = {
        "app/token": [distinctive("token-one"), distinctive("token-two")],
        "app/db": [distinctive("db-password")],
        "app/blob": [secrets.token_bytes(64) + distinctive("binary")],
    }
    (tmp_path / "pp.txt").write_bytes(passphrase + b"\n")
    (tmp_path / "pw.txt").write_bytes(password + b"\n")
    pp_file, pw_file = str(tmp_path / "pp.txt"), str(tmp_path / "pw.txt")

    recipients = [a for k in ("rsa", "p256", "x25519") for a in ("-r", f"{k}={keydir}/{k}.pem")]
    v.ok("init", *recipients, identity=None)
    v.ok("recipient", "add", "pp", "--passphrase-file", pp_file, identity=None)
    v.ok("put", "app/token", input=values["app/token"][0])
    v.ok("put", "app/db", "--password-file", pw_file, input=values["app/db"][0])
    v.ok("put", "app/blob", input=values["app/blob"][0])
    v.ok("put", "app/token", input=values["app/token"][1])
    v.ok("generate", "gen/key")
    v.ok("generate", "gen/pw", "--format", "password", "--symbols")
    v.ok("generate", "gen/raw", "--format", "raw", "--bytes", "48")
    for name in ("gen/key", "gen/pw", "gen/raw"):
        values[name] = [v.ok("get", name).out]

    def expect(name: str) -> bytes:
        return values[name][-1]

    def get_args(name: str) -> list[str]:
        return ["get", name, "--password-file", pw_file] if name == "app/db" else ["get", name]

    for kind in ("rsa", "p256", "x25519"):
        for name in values if kind == "rsa" else ("app/db", "app/token"):
            assert v.ok(*get_args(name), identity=kind).out == expect(name), (kind, name)
    for name in ("app/db", "gen/raw"):
        got = v.ok(*get_args(name), "--passphrase-file", pp_file, identity=None).out
        assert got == expect(name), ("passphrase", name)
    out = tmp_path / "out.bin"
    v.ok("get", "app/token", "--out", str(out), identity="x25519")
    assert out.read_bytes() == expect("app/token")
    v.ok("rotate", "--password-file", pw_file)
    v.ok("rotate", "app/db", "--passphrase-file", pp_file, "--password-file", pw_file,
         identity=None)  # fmt: skip
    for name in values:
        assert v.ok(*get_args(name), identity="p256").out == expect(name), ("rotated", name)
    v.ok("fsck")
    v.ok("fsck", "--passphrase-file", pp_file, identity=None)
    v.ok("list", "--json")
    v.ok("recipient", "list")
    # the daily verbs: a copy under a fresh key (with its password), a move, an edit
    v.ok("cp", "app/db", "copy/db", "--password-file", pw_file)
    v.ok("mv", "copy/db", "moved/db")
    assert v.ok("get", "moved/db", "--password-file", pw_file).out == expect("app/db")
    edited = b"edited value, long enough to be searched for"
    editor = tmp_path / "editor"
    editor.write_text(f"#!/bin/sh\nprintf '%s' '{edited.decode()}' > \"$1\"\n")
    editor.chmod(0o700)
    v.ok("edit", "app/token", env={"EDITOR": str(editor)})
    values["app/token"].append(edited)
    assert v.ok("get", "app/token").out == edited

    # What must never be seen: values, passphrase, password, and every key.
    forbidden: dict[str, bytes] = {"passphrase": passphrase, "password": password}
    for name, vals in values.items():
        for i, value in enumerate(vals):
            forbidden[f"value of {name} #{i}"] = value
    forbidden.update(derived_keys(v.path, keydir, passphrase, password))
    assert sum(1 for k in forbidden if k.endswith("data key")) >= 10

    records = parse_log(log.read_bytes())
    # The shim really ran: openssl was called for everything that matters.
    assert len(records) > 50, f"only {len(records)} openssl calls logged"
    commands = [argv[1].decode() if len(argv) > 1 else "" for argv, _env in records]
    for needed in ("enc", "pkeyutl", "rand", "genpkey", "pkcs8", "pkey", "version"):
        assert needed in commands, f"no 'openssl {needed}' call was logged"
    flat_argv = [a for argv, _env in records for a in argv]
    for flag in (b"-derive", b"-decrypt", b"-encrypt", b"-passin", b"-passout", b"-P"):
        assert flag in flat_argv, f"no openssl call with {flag.decode()} was logged"
    assert all(any(e.startswith(b"OSSL_SHIM_LOG=") for e in en) for _a, en in records)

    # Positive control: the matcher finds a (public) salt that IS on argv as hex.
    index = Store(v.path).read_index()
    salts = [ver.salt for vs in index.versions.values() for ver in vs]
    haystacks = [b"\n".join(argv) + b"\n" + b"\n".join(en) for argv, en in records]
    whole = b"\n".join(haystacks)
    assert any(salt.hex().encode() in whole for salt in salts)

    leaks = []
    for label, secret in forbidden.items():
        assert len(secret) >= 24, label
        for form in spellings(secret):
            for n, hay in enumerate(haystacks):
                if form in hay:
                    argv = b" ".join(records[n][0]).decode("utf-8", "replace")
                    leaks.append(f"{label} as {form[:40]!r} in call #{n}: {argv[:300]}")
    assert not leaks, "secrets reached openssl's argv or environment:\n" + "\n".join(leaks)
