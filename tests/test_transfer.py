"""export and import through the real CLI: CMS opened by plain openssl, bundles,
a pass store made by real pass and gpg, .env and JSON files (docs/transfer.md)."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, VaultDir, need
from test_no_secret_argv import distinctive, logging_openssl, spellings

RECOVER = ROOT / "scripts" / "ossl-vault-recover"


def cms_print(path: Path, form: str = "DER") -> str:
    p = subprocess.run(["openssl", "cms", "-cmsout", "-print", "-inform", form, "-in", str(path)],
                       capture_output=True, check=True)  # fmt: skip
    return p.stdout.decode()


def openssl_decrypt(path: Path, key: Path, form: str = "DER") -> bytes:
    p = subprocess.run(["openssl", "cms", "-decrypt", "-binary", "-inform", form, "-in", str(path),
                        "-inkey", str(key)], capture_output=True, check=True)  # fmt: skip
    return p.stdout


@pytest.fixture
def other(tmp_path: Path, otherkeys: Path, env: dict[str, str]) -> VaultDir:
    """A second vault (another host), its one recipient the other RSA cert."""
    v = VaultDir(tmp_path / "other", otherkeys, env)
    v.ok("init", "--recipient", f"host={otherkeys / 'rsa.pem'}", identity=None)
    return v


# -- CMS ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "p256", "p384"])
def test_cms_export_opens_with_openssl(
    all_kinds_vault: VaultDir, keydir: Path, tmp_path: Path, kind: str
) -> None:
    v = all_kinds_vault
    value = secrets.token_bytes(40) + b"\n\r\x00end\n"
    v.ok("put", "db/password", input=value)
    out = tmp_path / "db.cms"
    v.ok("export", "db/password", "--to", str(keydir / f"{kind}.pem"), "--out", str(out))
    assert out.stat().st_mode & 0o777 == 0o600
    text = cms_print(out)
    assert "id-smime-ct-authEnvelopedData" in text and "aes-256-gcm" in text
    if kind == "rsa":
        assert "rsaesOaep" in text and text.count("sha256") >= 2  # OAEP digest and MGF1
    else:
        assert "dhSinglePass-stdDH-sha256kdf-scheme" in text
    assert openssl_decrypt(out, keydir / f"{kind}.key") == value


def test_cms_several_secrets_pem_roundtrip(
    vault: VaultDir, other: VaultDir, otherkeys: Path, tmp_path: Path
) -> None:
    values = {"app/a": b"alpha\n", "app/b": secrets.token_bytes(33)}
    for name, value in values.items():
        vault.ok("put", name, input=value)
    r = vault.ok("export", "app/a", "app/b", "--to", str(otherkeys / "rsa.pem"), "--pem")
    assert r.out.startswith(b"-----BEGIN CMS-----")
    pem = tmp_path / "both.pem"
    pem.write_bytes(r.out)
    container = json.loads(openssl_decrypt(pem, otherkeys / "rsa.key", "PEM"))
    assert container["ossl-vault-export"] == 1 and set(container["secrets"]) == set(values)
    r = other.ok("import", "--cms", "-", "--prefix", "moved/", input=r.out)
    assert b"moved/app/a" in r.out and b"new" in r.out
    for name, value in values.items():
        assert other.ok("get", f"moved/{name}").out == value


def test_cms_single_value_import_needs_a_name(
    vault: VaultDir, other: VaultDir, otherkeys: Path, tmp_path: Path
) -> None:
    vault.ok("put", "token", input=b"t0ken")
    f = tmp_path / "token.cms"
    vault.ok("export", "token", "--to", str(otherkeys / "rsa.pem"), "--out", str(f))
    r = other.run("import", "--cms", str(f))
    assert r.rc == 2 and "holds a single value" in r.err and "hint: " in r.err
    other.ok("import", "--cms", str(f), "--name", "token")
    assert other.ok("get", "token").out == b"t0ken"


@pytest.mark.parametrize("where", ["content", "tag"])
def test_tampered_cms_is_refused_and_leaves_no_file(
    vault: VaultDir, other: VaultDir, otherkeys: Path, tmp_path: Path, where: str
) -> None:
    vault.ok("put", "token", input=b"x" * 40)
    f = tmp_path / "token.cms"
    vault.ok("export", "token", "--to", str(otherkeys / "rsa.pem"), "--out", str(f))
    data = bytearray(f.read_bytes())
    data[-25 if where == "content" else -1] ^= 0x01  # the ciphertext, or the GCM tag
    f.write_bytes(bytes(data))
    # plain openssl 3.0 writes the plaintext out before it notices the bad tag:
    assert subprocess.run(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in",
                           str(f), "-inkey", str(otherkeys / "rsa.key")],
                          capture_output=True).returncode != 0  # fmt: skip
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    before = other.snapshot()
    r = other.run("import", "--cms", str(f), "--name", "token", env={"TMPDIR": str(tmp)})
    assert r.rc == 5, r.err
    assert r.err.startswith("ossl-vault: error: ") and "integrity" in r.err
    assert list(tmp.iterdir()) == []  # no plaintext file left, not even a temporary one
    assert other.snapshot() == before
    assert b"x" * 8 not in r.out


def test_cms_for_someone_else_or_without_integrity(
    vault: VaultDir, other: VaultDir, keydir: Path, otherkeys: Path, tmp_path: Path
) -> None:
    vault.ok("put", "token", input=b"secret")
    f = tmp_path / "token.cms"
    vault.ok("export", "token", "--to", str(keydir / "rsa.pem"), "--out", str(f))
    r = other.run("import", "--cms", str(f), "--name", "token")  # other's key is no recipient
    assert r.rc == 4 and "not encrypted for any identity" in r.err
    cbc = tmp_path / "cbc.cms"
    subprocess.run(["openssl", "cms", "-encrypt", "-binary", "-aes-256-cbc", "-recip",
                    str(otherkeys / "rsa.pem"), "-outform", "DER", "-out", str(cbc)],
                   input=b"secret", check=True)  # fmt: skip
    r = other.run("import", "--cms", str(cbc), "--name", "token")
    assert r.rc == 2 and "no integrity protection" in r.err
    r = vault.run("export", "token", "--to", str(keydir / "x25519.pem"))
    assert r.rc == 2 and "not a certificate" in r.err
    r = vault.run("export", "token")
    assert r.rc == 2 and "--to CERT" in r.err and "hint: " in r.err


# -- bundles -------------------------------------------------------------------------


def test_bundle_moves_history_passwords_and_audit(
    vault: VaultDir, other: VaultDir, otherkeys: Path, tmp_path: Path
) -> None:
    history = [b"one\n", b"two\n", secrets.token_bytes(20)]
    for value in history:
        vault.ok("put", "app/token", input=value)
    pw = tmp_path / "pw.txt"
    pw.write_bytes(b"per-secret password\n")
    vault.ok("put", "app/db", "--password-file", str(pw), input=b"db-value")
    bundle = tmp_path / "app.bundle"
    vault.ok("export", "app/token", "app/db", "--bundle", "--to", str(otherkeys / "p256.pem"),
             "--out", str(bundle))  # fmt: skip
    text = bundle.read_text()
    assert text.startswith("ossl-vault-bundle\t1\n") and "\naudit\t" in text
    trail = tmp_path / "trail.log"
    r = other.run("import", "--bundle", str(bundle), identity="p256")
    assert r.rc == 4 and "needs its password" in r.err and "nothing was imported" in r.err
    r = other.ok("import", "--bundle", str(bundle), "--password-file", str(pw),
                 "--audit-out", str(trail), identity="p256")  # fmt: skip
    assert r.out.count(b"app/token") == 3
    for number, value in enumerate(history, start=1):
        assert other.ok("get", "app/token", "--version", str(number)).out == value
    assert other.run("get", "app/db").rc == 4  # the password came along
    assert other.ok("get", "app/db", "--password-file", str(pw)).out == b"db-value"
    lines = [line.split("\t") for line in trail.read_text().splitlines()]
    assert lines and {f[7] for f in lines} <= {"app/token", "app/db"}
    assert [f[6] for f in lines if f[7] == "app/token"][:3] == ["put", "put", "put"]


def test_bundle_unpacks_for_the_openssl_only_recovery_script(
    vault: VaultDir, otherkeys: Path, tmp_path: Path
) -> None:
    vault.ok("put", "k", input=b"first")
    vault.ok("put", "k", input=b"second\n")
    bundle = tmp_path / "k.bundle"
    vault.ok("export", "k", "--bundle", "--to", str(otherkeys / "x25519.pem"), "--out", str(bundle))
    unpacked = tmp_path / "unpacked"
    script = (
        "mkdir -p \"$2/blobs\"; while IFS=$'\\t' read -r kind path data; do "
        '[ "$kind" = file ] && base64 -d <<<"$data" > "$2/$path"; done < "$1"; true'
    )
    subprocess.run(["bash", "-c", script, "unpack", str(bundle), str(unpacked)], check=True)
    for version, value in (("1", b"first"), ("2", b"second\n")):
        p = subprocess.run(["bash", str(RECOVER), "--version", version, str(unpacked), "k",
                            str(otherkeys / "x25519.key")], capture_output=True)  # fmt: skip
        assert p.returncode == 0, p.stderr
        assert p.stdout == value


def test_tampered_bundle_imports_nothing(
    vault: VaultDir, other: VaultDir, otherkeys: Path, tmp_path: Path
) -> None:
    vault.ok("put", "a", input=b"value a")
    vault.ok("put", "b", input=b"value b")
    bundle = tmp_path / "ab.bundle"
    vault.ok(
        "export", "--all", "--bundle", "--to", str(otherkeys / "rsa.pem"), "--out", str(bundle)
    )
    lines = bundle.read_text().split("\n")
    i = next(n for n, line in enumerate(lines) if line.startswith("file\tblobs/"))
    head, data = lines[i].rsplit("\t", 1)
    lines[i] = head + "\t" + ("A" if data[0] != "A" else "B") + data[1:]
    damaged = tmp_path / "damaged.bundle"
    damaged.write_text("\n".join(lines))
    before = other.snapshot()
    r = other.run("import", "--bundle", str(damaged))
    assert r.rc == 5 and "checksum" in r.err
    # with the checksum redone, the blob hash and record MAC still catch it
    body = "".join(line + "\n" for line in lines[:-2])
    lines[-2] = "end\t" + hashlib.sha256(body.encode()).hexdigest()
    damaged.write_text("\n".join(lines))
    r = other.run("import", "--bundle", str(damaged))
    assert r.rc == 5 and "1 bad entry" in r.err and "nothing was imported" in r.err
    assert other.snapshot() == before
    r = other.run("import", "--bundle", str(damaged), "--no-atomic")
    assert r.rc == 5
    assert sorted(other.run("get", n).rc for n in ("a", "b")) == [0, 3]  # the good one came


# -- pass --------------------------------------------------------------------------


@pytest.fixture
def pass_store(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A real pass store under a throwaway GnuPG home with a key without passphrase."""
    need(bool(shutil.which("pass") and shutil.which("gpg")), "pass and gpg are needed")
    home = tempfile.mkdtemp(prefix="g", dir="/tmp")  # short: gpg-agent's socket path
    genv = {**env, "GNUPGHOME": home, "PASSWORD_STORE_DIR": str(tmp_path / "store")}
    try:
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                        "Pass Test <pass@example.org>", "future-default", "default", "never"],
                       env=genv, check=True, capture_output=True)  # fmt: skip
        subprocess.run(["pass", "init", "pass@example.org"], env=genv, check=True,
                       capture_output=True)  # fmt: skip
        yield tmp_path / "store", genv
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def pass_insert(genv: dict[str, str], name: str, value: bytes) -> None:
    subprocess.run(["pass", "insert", "-m", name], input=value, env=genv, check=True,
                   capture_output=True)  # fmt: skip


def test_pass_store_imports_exactly(
    vault: VaultDir, pass_store: tuple[Path, dict[str, str]]
) -> None:
    store, genv = pass_store
    values = {
        "email/work": b"hunter2\n",
        "web/example.com": b"pw with spaces\nuser: me\nurl: https://example.com/\n",
        "no-newline": b"exact",
        "unicode": "pässwörd ✓\n".encode(),
    }
    for name, value in values.items():
        pass_insert(genv, name, value)
    pass_insert(genv, "bad name", b"x\n")  # a space: not a valid secret name
    before = vault.snapshot()
    r = vault.run("import", "--pass", str(store), env=genv)
    assert r.rc == 2 and "invalid secret name 'bad name'" in r.err and "bad name.gpg" in r.err
    assert "nothing was imported" in r.err and "--no-atomic" in r.err
    assert vault.snapshot() == before
    r = vault.run("import", "--pass", str(store), "--no-atomic", env=genv)
    assert r.rc == 2 and "imported 4 value(s)" in r.err
    for name, value in values.items():
        assert vault.ok("get", name).out == value, name
    vault.ok("import", "--pass", str(store / "email"), "--prefix", "chomped/", "--chomp", env=genv)
    assert vault.ok("get", "chomped/work").out == b"hunter2"
    empty = tempfile.mkdtemp(prefix="g", dir="/tmp")
    try:  # a keyring without the key
        r = vault.run("import", "--pass", str(store), env={**genv, "GNUPGHOME": empty})
        assert r.rc == 4 and "no GnuPG secret key" in r.err
    finally:
        subprocess.run(["gpgconf", "--homedir", empty, "--kill", "all"], capture_output=True)
        shutil.rmtree(empty, ignore_errors=True)


# -- .env and JSON -------------------------------------------------------------------

ENV_FILE = r"""# database
export DB_PASSWORD=s3cr3t   # trailing comment
API_TOKEN = "line one\nline \"two\" \$HOME"
SINGLE='single $quoted # not a comment'
MULTI="first
second"
URL=https://example.com/#anchor
EMPTY=
"""

ENV_VALUES = {
    "DB_PASSWORD": b"s3cr3t",
    "API_TOKEN": b'line one\nline "two" $HOME',
    "SINGLE": b"single $quoted # not a comment",
    "MULTI": b"first\nsecond",
    "URL": b"https://example.com/#anchor",
    "EMPTY": b"",
}


def test_env_import_dry_run_then_real(vault: VaultDir, tmp_path: Path) -> None:
    f = tmp_path / "app.env"
    f.write_text(ENV_FILE)
    vault.ok("put", "URL", input=b"old")
    before = vault.snapshot()
    r = vault.ok("import", "--env", str(f), "--dry-run")
    table = r.out.decode()
    assert table.split("\n")[0].split() == ["NAME", "SOURCE", "ACTION", "BYTES"]
    assert "dry run" in r.err and vault.snapshot() == before
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
    assert rows["URL"][-2:] == ["update", "27"] and rows["DB_PASSWORD"][-2:] == ["new", "6"]
    vault.ok("import", "--env", str(f))
    for name, value in ENV_VALUES.items():
        assert vault.ok("get", name).out == value, name


def test_env_bad_lines_atomic_and_not(vault: VaultDir, tmp_path: Path) -> None:
    f = tmp_path / "bad.env"
    f.write_text('GOOD=1\nthis is not an assignment\n9BAD=x\nGOOD=2\nOPEN="never closed\n')
    before = vault.snapshot()
    r = vault.run("import", "--env", str(f))
    assert r.rc == 2 and vault.snapshot() == before
    errors = [line for line in r.err.splitlines() if line.startswith("ossl-vault: error: ")]
    assert any("line 2: not a KEY=VALUE line" in e for e in errors)
    assert any("line 3" in e for e in errors)
    assert any("line 4" in e and "already set on line 1" in e for e in errors)
    assert any("line 5" in e and "unterminated" in e for e in errors)
    assert "4 bad entries" in r.err and "nothing was imported" in r.err
    r = vault.run("import", "--env", str(f), "--no-atomic")
    assert r.rc == 2
    assert vault.ok("get", "GOOD").out == b"1"


def test_json_import(vault: VaultDir, tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"app/key": "v1 ✓", "n": 5, "ok": "yes"}))
    r = vault.run("import", "--json-file", str(f))
    assert r.rc == 2 and "[n]: value is a JSON int, not a string" in r.err
    r = vault.run("import", "--json-file", str(f), "--no-atomic", "--prefix", "j/")
    assert r.rc == 2 and "imported 2 value(s)" in r.err
    assert vault.ok("get", "j/app/key").out == "v1 ✓".encode()
    f.write_text("[1, 2]")
    r = vault.run("import", "--json-file", str(f))
    assert r.rc == 2 and "not a JSON object" in r.err
    r = vault.run("import", "--json-file", str(f), "--env", str(f))
    assert r.rc == 2 and "exactly one of" in r.err


def test_plaintext_export_needs_the_flag_and_warns(
    vault: VaultDir, other: VaultDir, tmp_path: Path
) -> None:
    for name, value in ENV_VALUES.items():
        vault.ok("put", name, *([] if value else ["--allow-empty"]), input=value)
    r = vault.ok("export", "--all", "--plaintext", "--format", "env")
    assert "warning" in r.err and "unencrypted" in r.err
    f = tmp_path / "out.env"
    f.write_bytes(r.out)
    other.ok("import", "--env", str(f))
    for name, value in ENV_VALUES.items():
        assert other.ok("get", name).out == value, name
    r = vault.ok("export", "DB_PASSWORD", "MULTI", "--plaintext")
    assert json.loads(r.out) == {"DB_PASSWORD": "s3cr3t", "MULTI": "first\nsecond"}
    vault.ok("put", "a/b", input=b"x")
    r = vault.run("export", "a/b", "--plaintext", "--format", "env")
    assert r.rc == 2 and "not a shell variable name" in r.err


def test_no_value_reaches_openssl_argv_or_env(
    tmp_path: Path, keydir: Path, otherkeys: Path, env: dict[str, str]
) -> None:
    shim_env, log = logging_openssl(tmp_path, env)
    v = VaultDir(tmp_path / "v", keydir, shim_env)
    o = VaultDir(tmp_path / "o", otherkeys, shim_env)
    v.ok("init", "-r", f"host={keydir / 'rsa.pem'}", identity=None)
    o.ok("init", "-r", f"host={otherkeys / 'p256.pem'}", identity=None)
    values = [distinctive("cms-value"), distinctive("bundle-value")]
    v.ok("put", "a", input=values[0])
    v.ok("put", "b", input=values[1])
    cms, bundle = tmp_path / "a.cms", tmp_path / "b.bundle"
    v.ok("export", "a", "b", "--to", str(otherkeys / "p256.pem"), "--out", str(cms))
    v.ok("export", "a", "b", "--bundle", "--to", str(otherkeys / "rsa.pem"), "--out", str(bundle))
    o.ok("import", "--cms", str(cms), "--prefix", "c/", identity="p256")
    o.ok("import", "--bundle", str(bundle), "--prefix", "b/", identity="rsa")
    assert o.ok("get", "b/b", identity="p256").out == values[1]
    # parallel openssl runs interleave their records: search the raw log as a whole
    raw = log.read_bytes()
    assert b"\0cms\0-encrypt\0" in raw and b"\0cms\0-decrypt\0" in raw
    for value in values:
        for spelling in spellings(value):
            assert spelling not in raw, value
