"""The command line, end to end: the real CLI in a subprocess, the real openssl."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import string
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import CLI, KINDS, Result, VaultDir, assert_error, records_text, run_pty
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ossl_vault.format import fields as records_fields
from ossl_vault.format import records
from ossl_vault.format.records import Index

MIB = 1024 * 1024
EXIT_CODES = {
    0: "ok",
    1: "operation failed",
    2: "usage error",
    3: "not found",
    4: "no usable identity",
    5: "integrity failure",
    6: "vault busy",
}

# -- helpers ------------------------------------------------------------------------


def index_of(v: VaultDir) -> Index:
    return records.parse(records_text(v.path).encode())


def blobs(v: VaultDir) -> list[Path]:
    return sorted((v.path / "blobs").iterdir())


def cli(*args: str, env: dict[str, str], input: bytes = b"", new_session: bool = True) -> Result:
    """The CLI with exactly ``args`` (no --vault or --identity added), no terminal."""
    p = subprocess.run(
        [*CLI, *args],
        input=input,
        capture_output=True,
        env=env,
        timeout=300,
        start_new_session=new_session,  # no controlling terminal: nothing can prompt
    )
    return Result(p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"))


def run_no_tty(v: VaultDir, *args: str, identity: str | None = "rsa", **kw: object) -> Result:
    """Like ``VaultDir.run`` but in a new session, so even under a terminal no
    prompt can appear (``/dev/tty`` does not open)."""
    full = ["--vault", str(v.path)]
    if identity:
        full += ["--identity", str(v.keydir / f"{identity}.key")]
    env = {**v.env, **kw.pop("env", {})}  # type: ignore[dict-item]
    return cli(*full, *args, env=env, **kw)  # type: ignore[arg-type]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Set the umask of this process (children inherit it)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def rsa_unwrap(key: Path, ct: bytes) -> bytes:
    """Open an rsa-oaep wrap with openssl alone (format.md section 4.1)."""
    oaep = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256"]
    oaep += ["-pkeyopt", "rsa_mgf1_md:sha256"]
    p = subprocess.run(
        ["openssl", "pkeyutl", "-decrypt", "-inkey", str(key), *oaep],
        input=ct,
        capture_output=True,
        check=True,
    )
    return p.stdout


def fingerprint(key: Path) -> str:
    """format.md 2.1: ``openssl pkey -in KEYFILE -pubout -outform DER | sha256sum``."""
    der = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    return hashlib.sha256(der).hexdigest()


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


# -- values: exact bytes in, exact bytes out ---------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=st.binary(max_size=3000) | st.text(max_size=200).map(str.encode))
@example(value=b"")
@example(value=b"\x00")
@example(value=b"\n")
@example(value=b"a\x00b\r\n\t\xff\xfe\xc3(\n\n")
@example(value=bytes(range(256)) * 3)
@pytest.mark.both_paths
def test_round_trip_any_bytes(vault: VaultDir, value: bytes) -> None:
    vault.ok("put", "rt/value", *([] if value else ["--allow-empty"]), input=value)
    assert vault.ok("get", "rt/value").out == value


@pytest.mark.both_paths
def test_one_mib_exactly_and_one_byte_more(vault: VaultDir, tmp_path: Path) -> None:
    value = os.urandom(MIB)
    vault.ok("put", "big", input=value)
    assert vault.ok("get", "big").out == value
    before = vault.snapshot()
    assert_error(vault.run("put", "big", input=value + b"x"), 2, "1 MiB")
    too_big = tmp_path / "too-big"
    too_big.write_bytes(value + b"x")
    assert_error(vault.run("put", "big", "--from-file", str(too_big)), 2, "1 MiB")
    assert vault.snapshot() == before


@pytest.mark.both_paths
def test_put_from_file_exact_bytes(vault: VaultDir, tmp_path: Path) -> None:
    src = tmp_path / "value.bin"
    value = b"line one\nline two\n\n\x00\xff trailing newlines kept\n"
    src.write_bytes(value)
    vault.ok("put", "file/value", "--from-file", str(src), input=b"ignored stdin")
    assert vault.ok("get", "file/value").out == value
    src.write_bytes(b"")
    before = vault.snapshot()
    assert_error(vault.run("put", "file/empty", "--from-file", str(src)), 2, "is empty",
                 "--allow-empty")  # fmt: skip
    assert vault.snapshot() == before
    vault.ok("put", "file/empty", "--from-file", str(src), "--allow-empty")
    assert vault.ok("get", "file/empty").out == b""


def test_an_empty_value_is_refused_unless_allowed(vault: VaultDir) -> None:
    """`put NAME </dev/null` from cron, or Enter twice at the prompt, stores nothing."""
    before = vault.snapshot()
    assert_error(vault.run("put", "cron/pw", input=b""), 2, "the value is empty", "--allow-empty")
    assert vault.snapshot() == before
    rc, seen = run_pty([*CLI, "--vault", str(vault.path), "put", "tty/pw"], vault.env,
                       ((b"value for 'tty/pw':", b"\n"), (b"(again):", b"\n")))  # fmt: skip
    assert rc == 2 and b"the value is empty" in seen, seen
    assert vault.snapshot() == before


@pytest.mark.both_paths
def test_get_out_is_0600_even_with_umask_000(vault: VaultDir, tmp_path: Path) -> None:
    value = b"to a file\x00\n"
    vault.ok("put", "out", input=value)
    new = tmp_path / "new.bin"
    existing = tmp_path / "existing.bin"
    existing.write_bytes(b"old content, longer than the value")
    existing.chmod(0o644)
    with umask(0):
        for target in (new, existing):
            r = vault.ok("get", "out", "--out", str(target))
            assert r.out == b""
            assert target.read_bytes() == value
            assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp.")]


# -- versions -------------------------------------------------------------------------


@pytest.mark.both_paths
def test_overwrite_makes_version_two(vault: VaultDir) -> None:
    vault.ok("put", "v", input=b"first")
    r = vault.ok("put", "v", input=b"second")
    assert "version 2" in r.err
    assert vault.ok("get", "v").out == b"second"
    assert vault.ok("get", "v", "--version", "2").out == b"second"
    assert vault.ok("get", "v", "--version", "1").out == b"first"
    assert_error(vault.run("get", "v", "--version", "3"), 3, "version 3")
    row = json.loads(vault.ok("list", "--json").out)
    assert (row["version"], row["versions"]) == (2, [1, 2])


@pytest.mark.both_paths
def test_only_ten_versions_kept(vault: VaultDir) -> None:
    for i in range(1, 13):
        vault.ok("put", "many", input=f"value {i}".encode())
    assert [v.version for v in index_of(vault).versions["many"]] == list(range(3, 13))
    assert len(blobs(vault)) == 10  # the dropped versions' blobs went too
    assert len(index_of(vault).wraps) == 10
    for gone in ("1", "2"):
        assert_error(vault.run("get", "many", "--version", gone), 3, "kept: 3, 4")
    assert vault.ok("get", "many", "--version", "3").out == b"value 3"
    assert vault.ok("get", "many").out == b"value 12"
    row = json.loads(vault.ok("list", "--json").out)
    assert row["versions"] == list(range(3, 13))


def test_each_version_has_a_fresh_data_key(all_kinds_vault: VaultDir, keydir: Path) -> None:
    v = all_kinds_vault
    v.ok("put", "same", input=b"same value")
    v.ok("put", "same", input=b"same value")
    index = index_of(v)
    one, two = index.versions["same"]
    assert one.salt != two.salt
    assert one.iv != two.iv
    assert one.blob != two.blob
    assert one.tag != two.tag
    wraps1 = {w.recipient: w for w in index.wraps[("same", 1)]}
    wraps2 = {w.recipient: w for w in index.wraps[("same", 2)]}
    assert set(wraps1) == set(wraps2) == set(KINDS)
    for kind in KINDS:
        a, b = wraps1[kind], wraps2[kind]
        assert a.ct != b.ct
        if a.scheme == "ecdh":
            assert (a.eph, a.salt, a.iv, a.tag) != (b.eph, b.salt, b.iv, b.tag)
            assert a.eph != b.eph  # a fresh ephemeral key per wrap
    # the data keys themselves, opened with openssl alone
    dk1 = rsa_unwrap(keydir / "rsa.key", wraps1["rsa"].ct)
    dk2 = rsa_unwrap(keydir / "rsa.key", wraps2["rsa"].ct)
    assert len(dk1) == len(dk2) == 32
    assert dk1 != dk2


# -- list -------------------------------------------------------------------------------


def test_list_table_and_json(vault: VaultDir, tmp_path: Path) -> None:
    assert vault.ok("list", "--json").out == b""
    vault.ok("put", "b/two", input=b"x")
    vault.ok("put", "b/two", input=b"y")
    vault.ok("put", "a-one", input=b"z")
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    vault.ok("put", "c", "--password-file", str(pw), input=b"p")
    rows = [json.loads(line) for line in vault.ok("list", "--json").out.splitlines()]
    assert [r["name"] for r in rows] == ["a-one", "b/two", "c"]
    fields = {"name", "version", "versions", "recipients", "password", "created", "updated",
              "exposed", "needs_rotation", "ever", "meta", "expires", "deleted",
              "purge_after"}  # fmt: skip
    for r in rows:
        assert set(r) == fields
        assert r["recipients"] == ["host"]
        assert r["created"] <= r["updated"]
        for when in (r["created"], r["updated"]):
            assert records_fields.is_time(when)
    assert [r["version"] for r in rows] == [1, 2, 1]
    assert rows[1]["versions"] == [1, 2]
    assert [r["password"] for r in rows] == [False, False, True]
    table = vault.ok("list").out.decode()
    head, _, *body = table.splitlines()
    for col in ("NAME", "VERSION", "RECIPIENTS", "PASSWORD", "UPDATED"):
        assert col in head
    assert [line.split()[0] for line in body] == ["a-one", "b/two", "c"]
    assert body[1].split()[1:3] == ["2", "host"]


def test_list_decrypts_nothing(vault: VaultDir, tmp_path: Path) -> None:
    """No identity at all (an identity path that does not exist), and an openssl
    shim that logs every call: list runs no decryption whatever."""
    vault.ok("put", "a", input=b"1")
    log = tmp_path / "openssl.log"
    real = subprocess.run(["which", "openssl"], capture_output=True, text=True).stdout.strip()
    shim = write_script(tmp_path / "openssl", f'echo "$*" >> "{log}"\nexec "{real}" "$@"\n')
    env = {"OSSL_VAULT_OPENSSL": str(shim), "OSSL_VAULT_IDENTITY": str(tmp_path / "none.key")}
    r = vault.ok("list", env=env, identity=None)
    assert b"a" in r.out
    r = vault.ok("list", "--json", env=env, identity=None)
    assert json.loads(r.out)["name"] == "a"
    calls = log.read_text().splitlines() if log.exists() else []
    assert all(c == "version" for c in calls), calls


# -- rm, rotate -----------------------------------------------------------------------


@pytest.mark.both_paths
def test_rm(vault: VaultDir) -> None:
    vault.ok("put", "gone", input=b"1")
    vault.ok("put", "gone", input=b"2")
    vault.ok("put", "kept", input=b"3")
    vault.ok("rm", "gone")  # soft: kept for undelete (tests/test_daily.py)
    assert_error(vault.run("get", "gone"), 3, "'gone'", "deleted")
    assert_error(vault.run("get", "gone", "--version", "1"), 3)
    assert_error(vault.run("rm", "gone"), 3, "'gone'")
    assert [r["name"] for r in map(json.loads, vault.ok("list", "--json").out.splitlines())] == [
        "kept"
    ]
    r = vault.ok("purge", "gone")
    assert "2 version" in r.err
    assert len(blobs(vault)) == 1
    assert_error(vault.run("rm", "gone"), 3, "'gone'")
    assert vault.ok("get", "kept").out == b"3"


@pytest.mark.both_paths
def test_rotate_one(vault: VaultDir) -> None:
    vault.ok("put", "r", input=b"rotate me\x00")
    vault.ok("put", "other", input=b"untouched")
    r = vault.ok("rotate", "r", "-v")  # -v: the per-secret lines
    assert "'r': re-encrypted to version 2" in r.err
    index = index_of(vault)
    one, two = index.versions["r"]
    assert two.version == 2
    assert one.blob != two.blob and one.salt != two.salt and one.iv != two.iv
    assert vault.ok("get", "r").out == b"rotate me\x00"
    assert [v.version for v in index.versions["other"]] == [1]


@pytest.mark.both_paths
def test_rotate_all(vault: VaultDir) -> None:
    vault.ok("put", "x", input=b"ex")
    vault.ok("put", "y/z", input=b"why")
    vault.ok("rotate")
    index = index_of(vault)
    assert {n: [v.version for v in vs] for n, vs in index.versions.items()} == {
        "x": [1, 2],
        "y/z": [1, 2],
    }
    assert vault.ok("get", "x").out == b"ex"
    assert vault.ok("get", "y/z").out == b"why"


# -- per-secret password and passphrase recipients -------------------------------------


@pytest.mark.both_paths
def test_per_secret_password(vault: VaultDir, tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("hunter2\n")
    bad.write_text("hunter3\n")
    vault.ok("put", "pw", "--password-file", str(good), input=b"guarded")
    err = assert_error(run_no_tty(vault, "get", "pw"), 4, "'pw'")
    assert "hint: " in err and "--password-file" in err
    assert_error(vault.run("get", "pw", "--password-file", str(bad)), 4, "wrong password")
    out = tmp_path / "out"
    r = vault.run("get", "pw", "--password-file", str(bad), "--out", str(out))
    assert_error(r, 4, "wrong password")
    assert not out.exists()  # no plaintext written anywhere
    assert vault.ok("get", "pw", "--password-file", str(good)).out == b"guarded"
    # the key alone is not enough, and the password alone neither
    assert_error(
        vault.run("get", "pw", "--password-file", str(good), identity=None), 4, "no usable identity"
    )


@pytest.mark.both_paths
def test_passphrase_recipient(vault: VaultDir, tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("correct horse battery staple\n")
    bad.write_text("incorrect horse\n")
    vault.ok("recipient", "add", "backup", "--passphrase-file", str(good), identity=None)
    vault.ok("put", "pp", input=b"for the backup", identity=None)
    r = vault.ok("get", "pp", "--passphrase-file", str(good), identity=None)
    assert r.out == b"for the backup"
    assert_error(
        vault.run("get", "pp", "--passphrase-file", str(bad), identity=None),
        4,
        "wrong passphrase",
    )
    err = assert_error(run_no_tty(vault, "get", "pp", identity=None), 4, "no usable identity")
    assert "--passphrase-file" in err
    # the host key still reads it as well
    assert vault.ok("get", "pp").out == b"for the backup"


# -- recipients -----------------------------------------------------------------------


@pytest.mark.both_paths
def test_put_to_limits_wraps(all_kinds_vault: VaultDir, otherkeys: Path) -> None:
    v = all_kinds_vault
    v.ok("put", "only/p256", "--to", "p256", input=b"limited")
    v.ok("put", "two", "--to", "x25519,rsa", input=b"two of them")
    index = index_of(v)
    assert [w.recipient for w in index.wraps[("only/p256", 1)]] == ["p256"]
    assert index.versions["two"][0].recipients == ("rsa", "x25519")
    assert v.ok("get", "only/p256", identity="p256").out == b"limited"
    for kind in ("rsa", "p384", "x25519"):
        assert_error(v.run("get", "only/p256", identity=kind), 4, "no usable identity", "p256")
    stranger = VaultDir(v.path, otherkeys, v.env)
    for kind in KINDS:
        assert_error(stranger.run("get", "only/p256", identity=kind), 4, "no usable identity")
    assert v.ok("get", "two", identity="x25519").out == b"two of them"
    assert_error(v.run("get", "two", identity="p384"), 4)
    before = v.snapshot()
    assert_error(v.run("put", "x", "--to", "nobody", input=b"1"), 3, "'nobody'")
    assert v.snapshot() == before


def test_recipient_list(all_kinds_vault: VaultDir, keydir: Path) -> None:
    v = all_kinds_vault
    rows = [json.loads(line) for line in v.ok("recipient", "list", "--json").out.splitlines()]
    assert [r["name"] for r in rows] == sorted(KINDS)
    for r in rows:
        assert set(r) == {"name", "kind", "fingerprint", "added", "default", "cert", "expires"}
        assert r["kind"] == r["name"]
        assert r["fingerprint"] == fingerprint(keydir / f"{r['name']}.key")
        assert r["default"] is True
        assert r["cert"] is (r["kind"] != "x25519")  # x25519.pem is a bare public key
    table = v.ok("recipient", "list").out.decode().splitlines()
    assert table[0].split() == [
        "NAME",
        "KIND",
        "FINGERPRINT",
        "ADDED",
        "DEFAULT",
        "CERT",
        "EXPIRES",
    ]
    assert [line.split()[0] for line in table[2:]] == sorted(KINDS)
    fpr = fingerprint(keydir / "rsa.key")
    assert any(fpr[:16] in line for line in table)


@pytest.mark.both_paths
def test_recipient_add_no_default(vault: VaultDir, keydir: Path) -> None:
    vault.ok("recipient", "add", "extra", str(keydir / "p256.pem"), "--no-default")
    vault.ok("put", "s", input=b"1")
    assert index_of(vault).versions["s"][0].recipients == ("host",)
    vault.ok("put", "s2", "--to", "extra", input=b"2")
    assert vault.ok("get", "s2", identity="p256").out == b"2"


@pytest.mark.both_paths
def test_recipient_rm_reencrypts(vault: VaultDir, keydir: Path) -> None:
    vault.ok("recipient", "add", "laptop", str(keydir / "p256.pem"))
    vault.ok("put", "shared", input=b"both read it")
    vault.ok("put", "hostonly", "--to", "host", input=b"host only")
    assert vault.ok("get", "shared", identity="p256").out == b"both read it"
    r = vault.ok("recipient", "rm", "laptop")
    assert "re-encrypted 1 secret" in r.err
    index = index_of(vault)
    assert "laptop" not in index.recipients
    new = index.versions["shared"][-1]
    assert (new.version, new.recipients) == (2, ("host",))
    assert [w.recipient for w in index.wraps[("shared", 2)]] == ["host"]
    assert [v.version for v in index.versions["hostonly"]] == [1]
    assert_error(vault.run("get", "shared", identity="p256"), 4, "no usable identity")
    assert vault.ok("get", "shared").out == b"both read it"
    names = [
        json.loads(x)["name"] for x in vault.ok("recipient", "list", "--json").out.splitlines()
    ]
    assert names == ["host"]
    assert_error(vault.run("recipient", "rm", "laptop"), 3, "'laptop'")


@pytest.mark.both_paths
def test_recipient_rm_last_reader_refused(vault: VaultDir, keydir: Path) -> None:
    vault.ok("recipient", "add", "laptop", str(keydir / "p256.pem"))
    vault.ok("put", "mine", "--to", "laptop", input=b"1")
    vault.ok("put", "mine/too", "--to", "laptop", input=b"2")
    vault.ok("put", "ours", input=b"3")
    before = vault.snapshot()
    err = assert_error(vault.run("recipient", "rm", "laptop"), 2, "'mine'", "'mine/too'")
    assert "--force" in err
    assert vault.snapshot() == before
    r = vault.ok("recipient", "rm", "laptop", "--force")
    assert r.rc == 0
    assert_error(vault.run("get", "mine"), 3)
    names = [json.loads(x)["name"] for x in vault.ok("list", "--json").out.splitlines()]
    assert names == ["ours"]
    assert vault.ok("get", "ours").out == b"3"


@pytest.mark.both_paths
def test_recipient_name_reused_for_another_key(vault: VaultDir, keydir: Path) -> None:
    """The old versions' wraps labelled 'laptop' carry the old key's fingerprint: the
    name can go to a new key (issue 9), which opens only what is written for it."""
    vault.ok("recipient", "add", "laptop", str(keydir / "p256.pem"))
    vault.ok("put", "s", input=b"v")
    vault.ok("recipient", "rm", "laptop")
    vault.ok("recipient", "add", "laptop", str(keydir / "p384.pem"))
    assert_error(vault.run("get", "s", "--version", "1", identity="p384"), 4)
    assert_error(vault.run("get", "s", identity="p256"), 4)  # the old key: nothing new
    vault.ok("put", "s", input=b"two")
    assert vault.ok("get", "s", identity="p384").out == b"two"
    assert_error(vault.run("get", "s", identity="p256"), 4)
    r = vault.run("fsck", identity="p384")
    assert r.rc == 0 and "MACs of 1 of 3 record(s) checked" in r.err, r.err


# -- fsck, files on disk ------------------------------------------------------------


def test_fsck_good_vault(all_kinds_vault: VaultDir) -> None:
    v = all_kinds_vault
    v.ok("put", "a", input=b"1")
    v.ok("put", "a", input=b"2")
    v.ok("put", "b", "--to", "p384", input=b"3")
    r = v.ok("fsck")
    assert "consistent" in r.err
    assert "error" not in r.err
    assert r.out == b""
    assert v.ok("fsck", identity="p384").rc == 0
    assert v.ok("fsck", identity=None).rc == 0


def test_files_private_even_with_umask_000(
    tmp_path: Path, keydir: Path, env: dict[str, str]
) -> None:
    v = VaultDir(tmp_path / "deep" / "vault", keydir, env)
    with umask(0):
        v.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
        v.ok("put", "a", input=b"1")
        v.ok("put", "b", input=b"2")
        v.ok("rm", "b")
        v.ok("recipient", "add", "x", str(keydir / "x25519.pem"))
    assert stat.S_IMODE(v.path.stat().st_mode) == 0o700
    assert stat.S_IMODE((v.path / "blobs").stat().st_mode) == 0o700
    files = [p for p in v.path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"recipients.tsv", "a.tsv", *(b.name for b in blobs(v))}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    for d in (p for p in v.path.rglob("*") if p.is_dir()):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


@pytest.mark.both_paths
def test_unchanged_vault_rewrites_identical_bytes(vault: VaultDir, keydir: Path) -> None:
    vault.ok("put", "a", input=b"1")
    vault.ok("put", "b/c", input=b"2")
    before = vault.snapshot()
    data = records_text(vault.path).encode()
    assert records.parse(data).serialize() == data
    # add a recipient and take it out again: the same bytes
    vault.ok("recipient", "add", "tmp", str(keydir / "p384.pem"), "--no-default")
    assert vault.snapshot() != before
    vault.ok("recipient", "rm", "tmp")
    assert vault.snapshot() == before
    # operations that fail or only read change nothing
    vault.run("put", "a", "--to", "nobody", input=b"x")
    vault.run("get", "nope")
    vault.ok("get", "a")
    vault.ok("list")
    vault.ok("fsck")
    assert vault.snapshot() == before


# -- generate ---------------------------------------------------------------------


@pytest.mark.both_paths
def test_generate_default_is_256_bits_base64(vault: VaultDir) -> None:
    r = vault.ok("generate", "gen")
    assert r.out == b""
    value = vault.ok("get", "gen").out
    assert len(value) == 44
    assert len(base64.b64decode(value, validate=True)) == 32


@pytest.mark.both_paths
def test_generate_formats_and_print(vault: VaultDir) -> None:
    r = vault.ok("generate", "hex", "--format", "hex", "--print")
    assert r.out.endswith(b"\n") and len(r.out) == 65
    assert vault.ok("get", "hex").out == r.out[:-1]
    assert set(r.out[:-1].decode()) <= set("0123456789abcdef")
    r = vault.ok("generate", "hex16", "--format", "hex", "--bytes", "16", "--print")
    assert len(r.out) == 33
    r = vault.ok("generate", "pw", "--format", "password", "--length", "20", "--print")
    assert len(r.out) == 21
    assert set(r.out[:-1].decode()) <= set(string.ascii_letters + string.digits)
    assert vault.ok("get", "pw").out == r.out[:-1]
    r = vault.ok("generate", "pw/default", "--format", "password", "--print")
    assert len(r.out) - 1 >= 43  # 62 characters: 43 carry 256 bits
    r = vault.ok("generate", "raw", "--format", "raw", "--bytes", "7", "--print")
    assert len(r.out) == 7
    assert vault.ok("get", "raw").out == r.out


@pytest.mark.parametrize(
    "args",
    [
        ["--format", "password", "--length", "0"],
        ["--format", "password", "--length", "5000"],
        ["--format", "password", "--bytes", "16"],
        ["--format", "hex", "--length", "16"],
        ["--bytes", "0"],
        ["--bytes", "-5"],
        ["--bytes", "many"],
        ["--format", "octal"],
    ],
)
def test_generate_bad_arguments(vault: VaultDir, args: list[str]) -> None:
    before = vault.snapshot()
    assert_error(vault.run("generate", "g", *args), 2)
    assert vault.snapshot() == before


# -- help, identities, vault location, openssl ---------------------------------------


@pytest.mark.both_paths
def test_help_lists_exit_codes(vault: VaultDir) -> None:
    for args in (["--help"], ["get", "--help"], ["put", "--help"]):
        r = vault.ok(*args, identity=None)
        text = " ".join(r.out.decode().split())  # undo click's line wrapping
        assert "Exit codes:" in text
        for code, words in EXIT_CODES.items():
            assert f"{code} {words}" in text, (args, code)


@pytest.mark.both_paths
def test_identity_lookup_order(all_kinds_vault: VaultDir, keydir: Path, tmp_path: Path) -> None:
    v = all_kinds_vault
    v.ok("put", "s", "--to", "p256", input=b"for p256")
    rsa, p256 = str(keydir / "rsa.key"), str(keydir / "p256.key")
    # --identity beats $OSSL_VAULT_IDENTITY, both ways round
    r = v.ok("get", "s", identity="p256", env={"OSSL_VAULT_IDENTITY": rsa})
    assert r.out == b"for p256"
    r = v.run("get", "s", identity="rsa", env={"OSSL_VAULT_IDENTITY": p256})
    assert_error(r, 4, "no usable identity")
    # --identity is repeatable
    assert v.ok("--identity", p256, "get", "s", identity="rsa").out == b"for p256"
    # $OSSL_VAULT_IDENTITY is colon-separated
    r = v.ok("get", "s", identity=None, env={"OSSL_VAULT_IDENTITY": f"{rsa}:{p256}"})
    assert r.out == b"for p256"
    # nothing given: the default identity file, which $OSSL_VAULT_IDENTITY overrides
    assert_error(v.run("get", "s", identity=None), 4, "no usable identity")
    default = Path(v.env["XDG_CONFIG_HOME"]) / "ossl-vault" / "identity.pem"
    default.parent.mkdir(parents=True)
    default.write_bytes((keydir / "p256.key").read_bytes())
    assert v.ok("get", "s", identity=None).out == b"for p256"
    r = v.run("get", "s", identity=None, env={"OSSL_VAULT_IDENTITY": rsa})
    assert_error(r, 4, "no usable identity")


@pytest.mark.both_paths
def test_vault_dir_from_environment(tmp_path: Path, keydir: Path, env: dict[str, str]) -> None:
    there = tmp_path / "there"
    e = {**env, "OSSL_VAULT_DIR": str(there)}
    rsa = ["--identity", str(keydir / "rsa.key")]
    assert cli("init", "-r", f"host={keydir / 'rsa.pem'}", env=e).rc == 0
    assert (there / "recipients.tsv").is_file()
    assert cli("put", "k", env=e, input=b"from env").rc == 0
    assert cli(*rsa, "get", "k", env=e).out == b"from env"
    # --vault beats $OSSL_VAULT_DIR
    elsewhere = {**env, "OSSL_VAULT_DIR": str(tmp_path / "missing")}
    assert cli("--vault", str(there), *rsa, "get", "k", env=elsewhere).out == b"from env"
    assert_error(cli(*rsa, "get", "k", env=elsewhere), 3, "no vault")
    assert not (tmp_path / "missing").exists()
    # neither: $XDG_DATA_HOME/ossl-vault
    assert cli("init", "-r", f"host={keydir / 'rsa.pem'}", env=env).rc == 0
    assert (Path(env["XDG_DATA_HOME"]) / "ossl-vault" / "recipients.tsv").is_file()


@pytest.mark.parametrize(
    ("banner", "quoted"),
    [("OpenSSL 1.1.1w  11 Sep 2023", "'1.1.1w'"), ("LibreSSL 3.8.2", "LibreSSL 3.8.2")],
)
@pytest.mark.both_paths
def test_old_or_foreign_openssl_refused(
    vault: VaultDir, tmp_path: Path, banner: str, quoted: str
) -> None:
    vault.ok("put", "a", input=b"1")
    fake = write_script(
        tmp_path / "openssl",
        f'if [ "$1" = version ]; then echo "{banner}"; exit 0; fi\necho "fake: $1" >&2\nexit 1\n',
    )
    before = vault.snapshot()
    env = {"OSSL_VAULT_OPENSSL": str(fake)}
    for args in (["put", "b"], ["get", "a"], ["generate", "c"]):
        assert_error(vault.run(*args, input=b"2", env=env), 1, quoted)
    assert vault.snapshot() == before


@pytest.mark.both_paths
def test_no_key_found_names_where_it_looked(vault: VaultDir, env: dict[str, str]) -> None:
    """With no identity anywhere, the hint says which paths were searched."""
    vault.ok("put", "s", input=b"v")
    err = assert_error(vault.run("get", "s", identity=None), 4, "no usable identity")
    hint = err.splitlines()[1]
    assert "readable by: host" in hint
    assert f"no key file found at {env['XDG_CONFIG_HOME']}/ossl-vault/identity.pem" in hint
