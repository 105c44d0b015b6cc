"""The recovery quorum (``recovery split|combine|rotate``), through the real CLI.

SLIP-39 shares of a 256-bit recovery key: every K-of-N subset rebuilds it,
K-1 shares and shares of another split are refused, the vault is recovered
after the host key is lost (read, a new host added, rekey), the printed key
drives the openssl-only recovery script, and ``rotate`` leaves old shares
useless for everything written afterwards. The key-check value is verified
independently of the library (HKDF here, ``openssl pkey`` for the key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import shutil
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, Result, VaultDir, records_text

RECOVER = ROOT / "scripts" / "ossl-vault-recover"
SHIM = ROOT / "tests" / "openssl-shim"
MISMATCH = "these shares do not rebuild this vault's recovery key"
PREFIX = bytes.fromhex("302e020100300506032b656e04220420")
DOC_ONE_LINER = """import sys, shamir_mnemonic as s
print(s.combine_mnemonics([l.strip() for l in sys.stdin
      if l.strip() and not l.startswith("#")]).hex())"""


def openssl(*args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=input, check=True, capture_output=True).stdout


def ec_cert(d: Path, name: str) -> None:
    """``d/NAME.key`` and ``d/NAME.pem``: a P-256 key and self-signed cert (fast to make)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem"),
            "-subj", f"/CN={name}", "-days", "30")  # fmt: skip


def mnemonics(text: bytes | str) -> list[str]:
    """The shares in split's output or a share file: the lines that are not comments."""
    if isinstance(text, bytes):
        text = text.decode()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def hkdf(ikm: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 with no salt, 32 bytes (RFC 5869), written out here on purpose."""
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def key_check(rk_hex: str) -> str:
    """format.md 4.5, redone by hand: SHA-256 of the SPKI of the key the recovery key names."""
    der = PREFIX + hkdf(bytes.fromhex(rk_hex), b"ossl-vault/v1/recovery-x25519")
    pem = openssl("pkey", "-inform", "DER", input=der)
    return hashlib.sha256(openssl("pkey", "-pubout", "-outform", "DER", input=pem)).hexdigest()


def recovery_line(v: VaultDir) -> list[str]:
    lines = records_text(v.path).splitlines()
    found = [line.split("\t") for line in lines if line.startswith("recipient\trecovery\t")]
    assert len(found) == 1
    return found[0]


def readers(v: VaultDir, name: str) -> set[str]:
    """The recipients of the newest version of a secret, from vault.tsv."""
    rows = [line.split("\t") for line in records_text(v.path).splitlines()]
    versions = [r for r in rows if r[0] == "secret" and r[1] == name]
    newest = max(versions, key=lambda r: int(r[2]))
    return set(newest[14].split(","))


def combine(v: VaultDir, shares: list[str], *args: str, identity: str | None = None) -> Result:
    """``recovery combine --share-file -`` with the shares on stdin."""
    text = "".join(s + "\n" for s in shares).encode()
    return v.run("recovery", "combine", "--share-file", "-", *args, input=text, identity=identity)


def one_line_error(r: Result, code: int, text: str) -> None:
    lines = r.err.splitlines()
    assert r.rc == code, r.err
    assert r.out == b""
    assert lines[0].startswith("ossl-vault: error: ") and text in lines[0], r.err
    assert all(line.startswith("hint: ") for line in lines[1:]), r.err


@pytest.fixture
def split_vault(vault: VaultDir) -> tuple[VaultDir, list[str]]:
    """The 'host' vault with two secrets and a 3-of-5 split printed on stdout."""
    vault.ok("put", "db/password", input=b"hunter2\n")
    vault.ok("put", "api/token", input=b"\x00tok\xff")
    r = vault.ok("recovery", "split", "--shares", "5", "--threshold", "3")
    shares = mnemonics(r.out)
    assert len(shares) == 5 and len(set(shares)) == 5
    assert r.out.decode().count("# ossl-vault recovery share ") == 5
    assert "shown once" in r.err
    return vault, shares


# --- the quorum -----------------------------------------------------------------------


def test_every_3_of_5_subset_rebuilds_the_same_key(split_vault: tuple[VaultDir, list[str]]) -> None:
    v, shares = split_vault
    subsets = list(itertools.combinations(shares, 3))
    assert len(subsets) == 10
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda s: combine(v, list(s), "--print-key"), subsets))
    keys = set()
    for subset, r in zip(subsets, results, strict=True):
        assert r.rc == 0, r.err
        keys.add(r.out.decode().strip())
    assert len(keys) == 1, "subsets rebuilt different keys"
    rk = keys.pop()
    assert len(rk) == 64 and int(rk, 16) >= 0
    line = recovery_line(v)
    assert line[2] == "recovery" and line[5] == "default"
    assert line[3] == key_check(rk)  # the key-check value, recomputed independently
    assert line[3] in v.ok("recovery", "status").out.decode()
    # and in another order, the value itself
    r = combine(v, [shares[4], shares[0], shares[2]], "--get", "api/token")
    assert r.rc == 0 and r.out == b"\x00tok\xff", r.err
    assert combine(v, shares, "--check").rc == 0  # more than K: the first K are used
    # docs/recovery.md: the Python one-liner of shamir-mnemonic gives the same key
    text = "".join(f"# a comment\n{s}\n" for s in shares[1:4])
    p = subprocess.run([sys.executable, "-c", DOC_ONE_LINER], input=text.encode(),
                       capture_output=True, check=True)  # fmt: skip
    assert p.stdout.decode().strip() == rk


def test_fewer_than_k_shares_fail_clearly_and_changes_nothing(
    split_vault: tuple[VaultDir, list[str]],
) -> None:
    v, shares = split_vault
    before = v.snapshot()
    for subset in itertools.combinations(shares, 2):
        r = combine(v, list(subset), "--get", "db/password")
        one_line_error(r, 4, "2 distinct share(s) given; this split needs 3")
    r = combine(v, [shares[0], shares[0], shares[1]], "--print-key")  # a share given twice
    one_line_error(r, 4, "2 distinct share(s) given; this split needs 3")
    words = shares[1].split()
    words[5] = "academic" if words[5] != "academic" else "acid"
    r = combine(v, [shares[0], " ".join(words), shares[2]], "--print-key")
    one_line_error(r, 2, "share 2 is not a valid SLIP-39 share")
    r = v.run("recovery", "combine", "--print-key", input=b"")  # no terminal to prompt on
    one_line_error(r, 2, "cannot prompt")
    snap = {k: b for k, b in v.snapshot().items() if not k.startswith("audit")}
    assert snap == {k: b for k, b in before.items() if not k.startswith("audit")}


def test_a_share_from_another_split_is_caught(
    split_vault: tuple[VaultDir, list[str]], tmp_path: Path, keydir: Path, env: dict[str, str]
) -> None:
    v, shares = split_vault
    other = VaultDir(tmp_path / "other", keydir, env)
    other.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    other.ok("put", "x", input=b"y")
    theirs = mnemonics(other.ok("recovery", "split", "-n", "5", "-k", "3").out)
    r = combine(v, [shares[0], shares[1], theirs[2]], "--get", "db/password")
    one_line_error(r, 4, MISMATCH)
    assert "share 3 comes from another split" in r.err
    r = combine(v, theirs[:3], "--get", "db/password")  # a whole quorum, of another vault
    one_line_error(r, 4, MISMATCH)
    assert combine(other, theirs[1:4], "--get", "x").out == b"y"
    # a vault without a recovery key
    bare = VaultDir(tmp_path / "bare", keydir, env)
    bare.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    one_line_error(combine(bare, shares[:3], "--check"), 3, "this vault has no recovery key")


# --- the host burned down ----------------------------------------------------------------


def test_recovery_after_the_host_key_is_deleted(
    tmp_path: Path, env: dict[str, str], no_python_path: str
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    ec_cert(keys, "host")
    ec_cert(keys, "newhost")
    v = VaultDir(tmp_path / "vault", keys, env)
    v.ok("init", "--recipient", f"host={keys / 'host.pem'}", identity=None)
    values = {"db/password": b"hunter2", "tls/key": b"-----BEGIN...\n", "only-host": b"mine"}
    for name, value in values.items():
        extra = ("--to", "host") if name == "only-host" else ()
        v.ok("put", name, *extra, input=value, identity=None)
    (tmp_path / "pw").write_bytes(b"second factor\n")
    v.ok("put", "guarded", "--password-file", str(tmp_path / "pw"), input=b"g", identity=None)
    out = tmp_path / "shares"
    r = v.ok("recovery", "split", "-n", "3", "-k", "2", "--out-dir", str(out), identity="host")
    assert r.out == b""
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"recovery-share-{i}-of-3.txt" for i in (1, 2, 3)]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert len(mnemonics(f.read_text())) == 1
    assert all("recovery" in readers(v, n) for n in [*values, "guarded"])
    later = b"written after the split"
    v.ok("put", "later", input=later, identity=None)  # later secrets get it too
    assert readers(v, "later") == {"host", "recovery"}

    (keys / "host.key").unlink()  # the host burned down
    assert v.run("get", "db/password", identity=None).rc == 4
    two = ["--share-file", str(files[0]), "--share-file", str(files[2])]
    for name, value in {**values, "later": later}.items():
        r = v.run("recovery", "combine", *two, "--get", name, identity=None)
        assert r.rc == 0 and r.out == value, (name, r.err)
    r = v.run("recovery", "combine", *two, "--get", "guarded", identity=None)
    one_line_error(r, 4, "needs its password")
    r = v.run("recovery", "combine", *two, "--get", "guarded", "--password-file",
              str(tmp_path / "pw"), identity=None)  # fmt: skip
    assert r.out == b"g", r.err

    # the openssl-only path: the printed key and the recovery script, no python on PATH
    rk = v.ok("recovery", "combine", *two, "--print-key", identity=None).out
    (tmp_path / "rk.hex").write_bytes(rk)
    p = subprocess.run(
        ["bash", str(RECOVER), "--recovery-key-file", str(tmp_path / "rk.hex"), str(v.path),
         "tls/key"],
        capture_output=True, env={"PATH": no_python_path, "HOME": str(tmp_path)}, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0 and p.stdout == values["tls/key"], p.stderr.decode()
    (tmp_path / "wrong.hex").write_text("ab" * 32 + "\n")
    p = subprocess.run(["bash", str(RECOVER), "--recovery-key-file", str(tmp_path / "wrong.hex"),
                        str(v.path), "tls/key"], capture_output=True, timeout=120)  # fmt: skip
    assert p.returncode == 4 and p.stdout == b"", p.stderr.decode()

    # a new host: added, and every secret wrapped for it, with the recovery key alone
    r = v.ok("recovery", "combine", *two, "--add-recipient", "newhost", str(keys / "newhost.pem"),
             identity=None)  # fmt: skip
    assert "wrapped 5 secret(s)" in r.err
    for name, value in {**values, "later": later}.items():
        assert v.ok("get", name, identity="newhost").out == value, name
    assert "newhost" in readers(v, "only-host")  # its own list grew: rekey keeps it
    v.ok("put", "after", input=b"a", identity=None)
    assert readers(v, "after") == {"host", "newhost", "recovery"}
    # drop the burned host: re-encrypt without it, then rekey with the recovery key
    v.ok("recipient", "rm", "host", "--password-file", str(tmp_path / "pw"), identity="newhost")
    r = v.ok("recovery", "combine", *two, "--rekey", identity=None)
    assert "rekey done" in r.err
    assert readers(v, "db/password") == {"newhost", "recovery"}
    assert v.ok("fsck", identity="newhost").rc == 0


# --- rotate ---------------------------------------------------------------------------------


def test_rotate_makes_old_shares_useless_for_what_is_written_after(
    split_vault: tuple[VaultDir, list[str]], tmp_path: Path
) -> None:
    v, old = split_vault
    old_rk = combine(v, old[:3], "--print-key").out
    (tmp_path / "old.hex").write_bytes(old_rk)
    v.ok("put", "db/password", input=b"second")  # version 2: the newest at the rotation
    r = v.ok("recovery", "rotate", "-n", "3", "-k", "2")  # with the host key
    new = mnemonics(r.out)
    assert len(new) == 3 and "rotated the recovery key" in r.err
    v.ok("put", "db/password", input=b"changed")  # version 3: written after the rotation
    one_line_error(combine(v, old[:3], "--get", "db/password"), 4, MISMATCH)
    assert combine(v, new[1:], "--get", "db/password").out == b"changed"
    assert combine(v, new[:2], "--get", "api/token").out == b"\x00tok\xff"  # re-wrapped

    def script(*args: str) -> subprocess.CompletedProcess[bytes]:
        argv = ["bash", str(RECOVER), "--recovery-key-file", str(tmp_path / "old.hex"), *args]
        return subprocess.run([*argv, str(v.path), "db/password"], capture_output=True)

    for version in ("3", "2"):  # written after, or re-wrapped by, the rotation
        p = script("--version", version)
        assert p.returncode == 4 and p.stdout == b"", p.stderr.decode()
    p = script("--version", "1")  # history: older versions keep their wraps
    assert p.returncode == 0 and p.stdout == b"hunter2\n", p.stderr.decode()

    # rotate again with the shares alone (no identity), to a new split
    shares_in = tmp_path / "new.txt"
    shares_in.write_text("\n".join(new[:2]) + "\n")
    r = v.run("recovery", "rotate", "--old-share-file", str(shares_in), "-n", "2", "-k", "2",
              identity=None)  # fmt: skip
    assert r.rc == 0, r.err
    newer = mnemonics(r.out)
    one_line_error(combine(v, new[:2], "--check"), 4, MISMATCH)
    assert combine(v, newer, "--get", "db/password").out == b"changed"
    r = v.run("recovery", "rotate", "-n", "2", "-k", "2", identity=None)  # no key, no shares
    one_line_error(r, 4, "no usable identity")


# --- where shares go, and what split refuses ----------------------------------------------


def test_shares_encrypted_to_certs_open_with_openssl_cms(
    vault: VaultDir, keydir: Path, tmp_path: Path
) -> None:
    vault.ok("put", "db/password", input=b"hunter2")
    out = tmp_path / "out"
    certs = {"alice": "rsa", "bob": "p256", "carol": "p384"}
    args = [a for n, k in certs.items() for a in ("--to-cert", f"{n}={keydir / (k + '.pem')}")]
    r = vault.ok("recovery", "split", "--threshold", "2", "--out-dir", str(out), *args)
    assert r.out == b""
    opened = {}
    for name, kind in certs.items():
        f = out / f"{name}.share.pem"
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert f.read_bytes().startswith(b"-----BEGIN CMS-----")
        opened[name] = openssl("cms", "-decrypt", "-inform", "PEM", "-in", str(f),
                               "-recip", str(keydir / f"{kind}.pem"),
                               "-inkey", str(keydir / f"{kind}.key"))  # fmt: skip
        assert opened[name].startswith(b"# ossl-vault recovery share ")
    shares = [mnemonics(opened[n])[0] for n in ("carol", "alice")]
    assert combine(vault, shares, "--get", "db/password").out == b"hunter2"
    # bad destinations are refused before anything changes
    before = vault.snapshot()
    r = vault.run("recovery", "split", "-k", "2", "--out-dir", str(out), *args)
    one_line_error(r, 2, "already has a recovery key")
    assert "recovery rotate" in r.err
    r = vault.run("recovery", "rotate", "-k", "2", "--out-dir", str(out), *args)
    one_line_error(r, 2, "already exists")
    r = vault.run("recovery", "rotate", "-k", "2", *args)
    one_line_error(r, 2, "--to-cert needs --out-dir")
    r = vault.run("recovery", "rotate", "-k", "1", "-n", "3")
    one_line_error(r, 2, "threshold of 1")
    assert vault.snapshot().keys() == before.keys()
    assert vault.snapshot() == before


def test_split_refuses_unreadable_secrets_unless_told(
    vault: VaultDir, keydir: Path, tmp_path: Path
) -> None:
    vault.ok("recipient", "add", "x", str(keydir / "x25519.pem"), "--no-default")
    vault.ok("put", "mine", input=b"1")
    vault.ok("put", "theirs", "--to", "x", input=b"2")
    out = tmp_path / "out"
    r = vault.run("recovery", "split", "-n", "2", "-k", "2", "--out-dir", str(out))
    one_line_error(r, 4, "cannot open 1 secret(s)")
    assert "'theirs'" in r.err and list(out.iterdir()) == []  # no share of a key never used
    assert "recovery" not in records_text(vault.path)
    r = vault.ok("recovery", "split", "-n", "2", "-k", "2", "--skip-unreadable")
    assert "left out" in r.err and "theirs" in r.err
    assert readers(vault, "theirs") == {"x"} and readers(vault, "mine") == {"host", "recovery"}
    status = vault.ok("recovery", "status").out.decode()
    assert "1 of 2 readable" in status and "not covered: theirs" in status
    r = vault.run("recovery", "combine", "--print-key", "--check", input=b"")
    one_line_error(r, 2, "give exactly one of")


def test_no_recovery_secret_reaches_openssl_argv_or_env(
    vault: VaultDir, tmp_path: Path, env: dict[str, str]
) -> None:
    real = shutil.which("openssl")
    assert real
    shim = tmp_path / "openssl"
    shutil.copyfile(SHIM, shim)
    shim.chmod(0o755)
    log = tmp_path / "shim.log"
    logged = {"OSSL_VAULT_OPENSSL": str(shim), "OSSL_SHIM_REAL": real, "OSSL_SHIM_LOG": str(log)}
    vault.ok("put", "db/password", input=b"hunter2")
    out = tmp_path / "out"
    vault.ok("recovery", "split", "-n", "2", "-k", "2", "--out-dir", str(out), env=logged)
    shares = [mnemonics(f.read_text())[0] for f in sorted(out.iterdir())]
    rk = combine(vault, shares, "--print-key").out.decode().strip()
    vault.ok("put", "later", input=b"x", env=logged)
    r = vault.run("recovery", "combine", "--share-file", str(out / "recovery-share-1-of-2.txt"),
                  "--share-file", str(out / "recovery-share-2-of-2.txt"), "--get", "later",
                  env=logged)  # fmt: skip
    assert r.out == b"x", r.err
    data = log.read_bytes()
    assert data.count(b"argc=") > 10
    scalar = hkdf(bytes.fromhex(rk), b"ossl-vault/v1/recovery-x25519")
    for secret in (bytes.fromhex(rk), scalar, PREFIX + scalar):
        for spelling in (secret, secret.hex().encode(), secret.hex().upper().encode(),
                         base64.b64encode(secret)[:-4]):  # fmt: skip
            assert spelling not in data
    for share in shares:
        assert " ".join(share.split()[4:8]).encode() not in data
