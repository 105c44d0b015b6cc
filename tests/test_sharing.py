"""Sharing among users, through the real CLI with real openssl, ssh-keygen and gpg.

The scenarios of the R package ``secret`` (a secret for some users, share,
unshare, update), recipient removal, SSH/GitHub/GnuPG recipients, certificate
expiry and renewal (with the certbot deploy hook), an interrupted ``rekey``,
and the openssl-only recovery script on a shared secret.

Data keys are checked independently of the library: RSA-OAEP wraps are opened
with ``openssl pkeyutl`` and the record MAC and value encryption of
docs/format.md sections 3 and 5 are recomputed here (HKDF/HMAC from the
standard library, ``openssl enc -d``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, ROOT, Result, VaultDir, clean_env, key_pages, records_text

VENV_BIN = ROOT / ".venv" / "bin"
RECOVER = ROOT / "scripts" / "ossl-vault-recover"
HOOK = ROOT / "scripts" / "certbot-deploy-hook"
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


# --- keys made at test time -----------------------------------------------------------------------


def openssl(*args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=input, check=True, capture_output=True).stdout


def rsa_cert(d: Path, name: str, days: int = 365) -> None:
    """``d/NAME.key`` (RSA 2048) and ``d/NAME.pem``, a self-signed cert valid ``days``."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / f"{name}.key"),
            "-out", str(d / f"{name}.pem"), "-subj", f"/CN={name}", "-days", str(days))  # fmt: skip


def ec_cert(d: Path, name: str, curve: str = "P-256") -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{curve}", "-nodes",
            "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem"),
            "-subj", f"/CN={name}", "-days", "365")  # fmt: skip


def x25519_key(d: Path, name: str) -> None:
    openssl("genpkey", "-algorithm", "X25519", "-out", str(d / f"{name}.key"))
    openssl("pkey", "-in", str(d / f"{name}.key"), "-pubout", "-out", str(d / f"{name}.pem"))


def expired_cert(d: Path, name: str) -> None:
    """An RSA cert valid in January 2020 only: ``openssl ca`` sets both dates (openssl 3.0's
    ``req``/``x509`` refuse a non-positive ``-days``)."""
    ca = d / f"ca-{name}"
    ca.mkdir()
    (ca / "index.txt").write_text("")
    (ca / "serial").write_text("01\n")
    (ca / "ca.cnf").write_text(
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n"
        "serial = serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n"
    )
    key, csr = d / f"{name}.key", ca / "req.csr"
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", f"/CN={name}")  # fmt: skip
    subprocess.run(
        ["openssl", "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", str(key),
         "-in", "req.csr", "-out", str(d / f"{name}.pem"), "-notext",
         "-startdate", "20200101000000Z", "-enddate", "20200201000000Z"],
        cwd=ca, check=True, capture_output=True,
    )  # fmt: skip


def ssh_keygen(d: Path, name: str, *args: str) -> Path:
    """An unencrypted OpenSSH key pair ``d/NAME`` (private) and ``d/NAME.pub``."""
    path = d / name
    subprocess.run(["ssh-keygen", "-q", *args, "-N", "", "-C", f"{name}@test", "-f", str(path)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice, carol (RSA certs), bob (P-256 cert), dave (X25519 public key): NAME.key/.pem."""
    d = tmp_path_factory.mktemp("people")
    rsa_cert(d, "alice")
    ec_cert(d, "bob")
    rsa_cert(d, "carol")
    x25519_key(d, "dave")
    return d


@pytest.fixture
def team(tmp_path: Path, people: Path, env: dict[str, str]) -> VaultDir:
    """A vault whose default recipient is alice; bob, carol and dave are recipients too."""
    v = VaultDir(tmp_path / "vault", people, env)
    v.ok("init", "--recipient", f"alice={people / 'alice.pem'}", identity=None)
    for who in ("bob", "carol", "dave"):
        v.ok("recipient", "add", who, str(people / f"{who}.pem"), "--no-default", identity=None)
    return v


# --- vault.tsv, read here independently of the library --------------------------------------------


def records(vault: Path) -> list[list[str]]:
    lines = records_text(vault).splitlines()
    assert lines[0] == "ossl-vault\t1"
    return [line.split("\t") for line in lines[1:]]


def secret(vault: Path, name: str, version: int | None = None) -> list[str]:
    """The 16 fields of a secret line (the newest version by default)."""
    found = [r for r in records(vault) if r[0] == "secret" and r[1] == name]
    assert found, f"no secret {name!r}"
    if version is None:
        return max(found, key=lambda r: int(r[2]))
    (line,) = [r for r in found if r[2] == str(version)]
    return line


def versions(vault: Path, name: str) -> list[int]:
    return sorted(int(r[2]) for r in records(vault) if r[0] == "secret" and r[1] == name)


def wraps(vault: Path, name: str, version: int) -> dict[str, list[str]]:
    """recipient -> fields of the wrap lines of one version."""
    return {r[3]: r for r in records(vault) if r[0] == "wrap" and r[1:3] == [name, str(version)]}


def readers(vault: Path, name: str, version: int | None = None) -> set[str]:
    return set(secret(vault, name, version)[14].split(","))


def recipient_fpr(vault: Path, name: str) -> str:
    (line,) = [r for r in records(vault) if r[0] == "recipient" and r[1] == name]
    return line[3]


def key_fpr(keyfile: Path) -> str:
    der = openssl("pkey", "-in", str(keyfile), "-pubout", "-outform", "DER")
    return hashlib.sha256(der).hexdigest()


def rsa_data_key(vault: Path, name: str, version: int, recipient: str, keyfile: Path) -> bytes:
    """Open an rsa-oaep wrap with ``openssl pkeyutl`` (format.md section 4.1)."""
    w = wraps(vault, name, version)[recipient]
    assert w[5] == "rsa-oaep" and len(w) == 7
    dk = openssl("pkeyutl", "-decrypt", "-inkey", str(keyfile),
                 "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                 "-pkeyopt", "rsa_mgf1_md:sha256", input=base64.b64decode(w[6]))  # fmt: skip
    assert len(dk) == 32
    return dk


def hkdf(ikm: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 with the default salt, 32 bytes (RFC 5869)."""
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def mac_matches(vault: Path, name: str, version: int, dk: bytes) -> bool:
    """Whether ``dk`` gives the record MAC of a version (format.md section 5)."""
    s = secret(vault, name, version)
    lines = records_text(vault).splitlines()
    message = "\t".join(s[:15]) + "\n"
    message += "".join(
        line + "\n" for line in lines if line.split("\t")[:3] == ["wrap", name, str(version)]
    )
    blob = (vault / "blobs" / s[13]).read_bytes()
    tag = hmac.new(hkdf(dk, b"ossl-vault/v1/value-mac"), message.encode() + blob, hashlib.sha256)
    return hmac.compare_digest(tag.digest(), base64.b64decode(s[15]))


def decrypt_value(vault: Path, name: str, version: int, dk: bytes) -> bytes:
    """``openssl enc -d`` of a version's blob with the password derived from ``dk``."""
    s = secret(vault, name, version)
    assert s[10:13] == ["-", "-", "-"]
    encpass = hkdf(dk, b"ossl-vault/v1/value-enc").hex()
    return openssl("enc", "-d", "-aes-256-cbc", "-pbkdf2", "-md", "sha256", "-iter", s[7],
                   "-S", base64.b64decode(s[8]).hex(), "-iv", base64.b64decode(s[9]).hex(),
                   "-pass", "stdin", "-in", str(vault / "blobs" / s[13]),
                   input=encpass.encode() + b"\n")  # fmt: skip


def listing(v: VaultDir, *args: str) -> dict[str, dict[str, object]]:
    r = v.ok("list", "--json", *args, identity=None)
    return {row["name"]: row for row in map(json.loads, r.out.decode().splitlines())}


def snap(v: VaultDir) -> dict[str, bytes]:
    """The vault's files less its audit log (which records refused operations too)."""
    return {k: b for k, b in v.snapshot().items() if not k.startswith("audit")}


def denied(r: Result, name: str) -> None:
    """Exit 4, the one error line naming the secret, and a hint."""
    assert r.rc == 4, r.err
    assert r.out == b""
    assert f"ossl-vault: error: no usable identity for '{name}'" in r.err
    assert "hint: readable by: " in r.err


# --- 1. the scenarios of the R package `secret` ---------------------------------------------------


def test_put_to_share_unshare_update(team: VaultDir, people: Path, tmp_path: Path) -> None:
    v, name, value = team, "db/password", b"s3cret-v1\n"
    v.ok("put", "db/password", "--to", "alice,bob", input=value, identity=None)
    assert readers(v.path, name) == {"alice", "bob"}
    assert v.ok("get", name, identity="bob").out == value
    assert v.ok("get", name, identity="alice").out == value

    r = v.run("get", name, identity="carol")
    denied(r, name)
    assert "hint: readable by: alice, bob" in r.err

    # only a reader can share: carol cannot give herself (or dave) access
    before = snap(v)
    r = v.run("share", name, "carol", identity="carol")
    assert r.rc == 4, r.err
    assert "no usable identity for 'db/password'" in r.err
    assert snap(v) == before

    r = v.ok("share", name, "carol", identity="alice")
    assert "shared 'db/password' with carol" in r.err
    assert versions(v.path, name) == [1]  # same data key, one more wrap
    assert readers(v.path, name) == {"alice", "bob", "carol"}
    assert v.ok("get", name, identity="carol").out == value
    dk1 = rsa_data_key(v.path, name, 1, "carol", people / "carol.key")
    assert dk1 == rsa_data_key(v.path, name, 1, "alice", people / "alice.key")

    # carol keeps a copy of the vault, her wrap line and data key included
    old = tmp_path / "old-copy"
    shutil.copytree(v.path, old)
    old_wrap = wraps(old, name, 1)["carol"]

    r = v.ok("unshare", name, "carol", identity="alice")
    assert "ossl-vault: warning: 'carol' could read the current value of 'db/password'" in r.err
    assert versions(v.path, name) == [1, 2]
    assert readers(v.path, name) == {"alice", "bob"}
    assert "carol" not in wraps(v.path, name, 2)
    denied(v.run("get", name, identity="carol"), name)
    assert v.ok("get", name, identity="bob").out == value

    # the old copy still opens for carol; the current vault's newest version does not
    assert v.ok("--vault", str(old), "get", name, identity="carol").out == value
    assert wraps(old, name, 1)["carol"] == old_wrap
    dk2 = rsa_data_key(v.path, name, 2, "alice", people / "alice.key")
    assert dk2 != dk1
    assert mac_matches(v.path, name, 2, dk2)
    assert decrypt_value(v.path, name, 2, dk2) == value
    assert not mac_matches(v.path, name, 2, dk1)  # her old key is no key to version 2
    assert mac_matches(old, name, 1, dk1)
    # her old wrap pasted into version 2 is refused, not opened
    own = v.path / "secrets" / f"{name}.tsv"
    lines = own.read_text().splitlines()
    forged = "\t".join([*old_wrap[:2], "2", *old_wrap[3:]])
    own.write_text("\n".join(sorted([*lines, forged])) + "\n")
    r = v.run("get", name, identity="carol")
    assert r.rc == 5 and r.out == b"", r.err  # wraps != RECIPIENTS: integrity (format 2.3)
    own.write_text("\n".join(lines) + "\n")

    # the exposure ledger remembers carol
    rows = listing(v)
    assert rows[name]["needs_rotation"] == ["carol"]
    assert rows[name]["exposed"] == ["alice", "bob", "carol"]
    assert rows[name]["ever"] == ["alice", "bob", "carol"]
    assert list(listing(v, "--needs-rotation")) == [name]
    assert list(listing(v, "--exposed-to", "carol")) == [name]
    assert list(listing(v, "--exposed-to", "dave")) == []
    table = v.ok("list", "--needs-rotation", identity=None).out.decode()
    assert name in table and "carol" in table

    # re-encrypting the same value (rotate) does not end the exposure
    v.ok("rotate", name, identity="bob")
    assert versions(v.path, name) == [1, 2, 3]
    assert listing(v)[name]["needs_rotation"] == ["carol"]

    # a new value: a new version under a new data key, for the secret's own readers
    v.ok("put", name, input=b"s3cret-v2\n", identity=None)
    assert versions(v.path, name) == [1, 2, 3, 4]
    assert readers(v.path, name) == {"alice", "bob"}
    dk4 = rsa_data_key(v.path, name, 4, "alice", people / "alice.key")
    assert dk4 not in (dk1, dk2)
    assert decrypt_value(v.path, name, 4, dk4) == b"s3cret-v2\n"
    assert v.ok("get", name, identity="bob").out == b"s3cret-v2\n"
    denied(v.run("get", name, identity="carol"), name)
    rows = listing(v)
    assert rows[name]["needs_rotation"] == []
    assert rows[name]["exposed"] == ["alice", "bob"]
    assert list(listing(v, "--needs-rotation")) == []
    assert list(listing(v, "--exposed-to", "carol")) == [name]  # she did see an older value
    # and a put of the same value again is still a fresh data key
    v.ok("put", name, input=b"s3cret-v2\n", identity=None)
    assert rsa_data_key(v.path, name, 5, "alice", people / "alice.key") != dk4


def test_share_by_a_second_reader_and_unshare_edge_cases(team: VaultDir) -> None:
    v, name = team, "api/token"
    v.ok("put", name, "--to", "alice,bob", input=b"tok", identity=None)
    v.ok("share", name, "dave", identity="bob")  # any reader may share
    assert readers(v.path, name) == {"alice", "bob", "dave"}
    assert v.ok("get", name, identity="dave").out == b"tok"
    # a secret's own list: the next put keeps dave, and carol is never added
    v.ok("put", name, input=b"tok2", identity=None)
    assert readers(v.path, name) == {"alice", "bob", "dave"}

    before = snap(v)
    r = v.run("share", name, "nobody", identity="alice")
    assert r.rc == 3 and "no recipient 'nobody'" in r.err
    r = v.run("unshare", name, "alice", "bob", "dave", identity="alice")
    assert r.rc == 2 and "with no reader" in r.err
    r = v.ok("unshare", name, "carol", identity="alice")  # not a reader: nothing to do
    assert "warning" not in r.err
    assert snap(v) == before
    r = v.run("unshare", "no/such", "bob", identity="alice")
    assert r.rc == 3
    assert snap(v) == before


def test_sharing_a_secret_with_its_own_password(team: VaultDir, tmp_path: Path) -> None:
    """Adding a reader needs no password (same data key); removing one re-encrypts, so it
    needs the password, and the new version keeps it."""
    v, name = team, "pw/secret"
    pw = tmp_path / "pw"
    pw.write_text("per-secret password\n")
    v.ok("put", name, "--to", "alice,bob", "--password-file", str(pw), input=b"v", identity=None)
    v.ok("share", name, "carol", identity="bob")
    r = v.run("get", name, identity="carol")
    assert r.rc == 4 and "needs its password" in r.err, r.err
    assert v.ok("get", name, "--password-file", str(pw), identity="carol").out == b"v"

    before = snap(v)
    r = v.run("unshare", name, "carol", identity="alice")
    assert r.rc == 4 and "needs its password" in r.err, r.err
    assert snap(v) == before
    v.ok("unshare", name, "carol", "--password-file", str(pw), identity="alice")
    assert versions(v.path, name) == [1, 2] and readers(v.path, name) == {"alice", "bob"}
    assert secret(v.path, name)[10] != "-"
    assert v.run("get", name, identity="bob").rc == 4
    assert v.ok("get", name, "--password-file", str(pw), identity="bob").out == b"v"

    before = snap(v)
    assert v.run("recipient", "rm", "bob", identity="alice").rc == 4
    assert snap(v) == before
    v.ok("recipient", "rm", "bob", "--password-file", str(pw), identity="alice")
    assert versions(v.path, name) == [1, 2, 3] and readers(v.path, name) == {"alice"}
    assert secret(v.path, name)[10] != "-"
    assert v.ok("get", name, "--password-file", str(pw), identity="alice").out == b"v"
    assert listing(v)[name]["needs_rotation"] == ["bob", "carol"]


# --- 2. recipient rm ------------------------------------------------------------------------------


def test_recipient_rm_refuses_to_orphan_then_force_deletes(team: VaultDir, people: Path) -> None:
    v = team
    v.ok("put", "solo", "--to", "bob", input=b"only bob", identity=None)
    solo_blob = v.path / "blobs" / secret(v.path, "solo")[13]
    v.ok("put", "both", "--to", "alice,bob", input=b"alice and bob", identity=None)
    v.ok("put", "mine", input=b"alice only", identity=None)
    dk_both = rsa_data_key(v.path, "both", 1, "alice", people / "alice.key")

    before = snap(v)
    r = v.run("recipient", "rm", "bob", identity="bob")
    assert r.rc == 2, r.err
    assert r.err.startswith("ossl-vault: error: ")
    assert "'solo'" in r.err and "'both'" not in r.err and "--force" in r.err
    assert snap(v) == before

    r = v.ok("recipient", "rm", "bob", "--force", identity="bob")
    assert "could read the current value of 1 secret(s)" in r.err
    assert not any(r[0] == "recipient" and r[1] == "bob" for r in records(v.path))
    assert "solo" not in listing(v)
    assert v.run("get", "solo", identity="bob").rc == 3
    assert not solo_blob.exists()
    assert not any(r[1] == "solo" for r in records(v.path) if r[0] != "recipient")
    # 'both' was re-encrypted for alice under a fresh key; its own list lost bob
    assert versions(v.path, "both") == [1, 2]
    assert readers(v.path, "both") == {"alice"}
    assert rsa_data_key(v.path, "both", 2, "alice", people / "alice.key") != dk_both
    assert [r[2] for r in records(v.path) if r[0] == "access" and r[1] == "both"] == ["alice"]
    assert v.ok("get", "both", identity="alice").out == b"alice and bob"
    assert versions(v.path, "mine") == [1]  # bob never read it: untouched
    assert listing(v)["both"]["needs_rotation"] == ["bob"]
    assert v.ok("fsck", identity="alice").rc == 0


def test_recipient_rm_keep_keys_only_drops_wraps(team: VaultDir, people: Path) -> None:
    v = team
    v.ok("put", "k", "--to", "alice,carol", input=b"kept", identity=None)
    v.ok("put", "c-only", "--to", "carol", input=b"carol's", identity=None)
    before = snap(v)
    r = v.run("recipient", "rm", "carol", "--keep-keys", identity="alice")
    assert r.rc == 2 and "'c-only'" in r.err and "'k'" not in r.err, r.err
    assert snap(v) == before
    s1 = secret(v.path, "k")
    blob = (v.path / "blobs" / s1[13]).read_bytes()
    dk = rsa_data_key(v.path, "k", 1, "alice", people / "alice.key")
    alice_wrap = wraps(v.path, "k", 1)["alice"]

    r = v.ok("recipient", "rm", "carol", "--keep-keys", "--force", identity="alice")
    assert "dropped its wraps from 1 secret(s)" in r.err
    assert "c-only" not in listing(v)
    s2 = secret(v.path, "k")
    assert versions(v.path, "k") == [1]
    assert s2[13] == s1[13] and (v.path / "blobs" / s2[13]).read_bytes() == blob
    assert s2[14] == "alice" and s2[15] != s1[15]  # re-MACed, same data key
    assert wraps(v.path, "k", 1) == {"alice": alice_wrap}
    assert rsa_data_key(v.path, "k", 1, "alice", people / "alice.key") == dk
    assert mac_matches(v.path, "k", 1, dk)
    assert v.ok("get", "k", identity="alice").out == b"kept"
    assert listing(v)["k"]["needs_rotation"] == ["carol"]  # she held this very key
    assert v.ok("fsck", identity="alice").rc == 0
    assert v.run("recipient", "rm", "carol", identity="alice").rc == 3


# --- 3. SSH keys ----------------------------------------------------------------------------------


def test_ssh_recipients_and_openssh_private_keys(vault: VaultDir, tmp_path: Path) -> None:
    d = tmp_path / "ssh"
    d.mkdir()
    keys = {
        "rsa-src": ssh_keygen(d, "rsa1", "-t", "rsa", "-b", "2048"),
        "rsa-opt": ssh_keygen(d, "rsa2", "-t", "rsa", "-b", "2048"),
        "ec-src": ssh_keygen(d, "ec1", "-t", "ecdsa", "-b", "256"),
        "ec-opt": ssh_keygen(d, "ec2", "-t", "ecdsa", "-b", "384"),
    }
    for name, key in keys.items():
        how = [f"{key}.pub"] if name.endswith("src") else ["--ssh-pubkey", f"{key}.pub"]
        vault.ok("recipient", "add", name, *how, identity=None)
    kinds = {
        row["name"]: row["kind"]
        for row in map(json.loads, vault.ok("recipient", "list", "--json").out.splitlines())
    }
    assert kinds == {"host": "rsa", "rsa-src": "rsa", "rsa-opt": "rsa", "ec-src": "p256",
                     "ec-opt": "p384"}  # fmt: skip

    vault.ok("put", "ssh/shared", input=b"for ssh users", identity=None)
    assert readers(vault.path, "ssh/shared") == {"host", *keys}
    for name, key in keys.items():
        assert key.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"), name
        r = vault.ok("--identity", str(key), "get", "ssh/shared", identity=None)
        assert r.out == b"for ssh users", name
        held = {w[4] for w in wraps(vault.path, "ssh/shared", 1).values()}
        assert recipient_fpr(vault.path, name) in held
    vault.ok("put", "ssh/ec-only", "--to", "ec-src", input=b"ec", identity=None)
    r = vault.run("--identity", str(keys["rsa-src"]), "get", "ssh/ec-only", identity=None)
    denied(r, "ssh/ec-only")
    assert "readable by: ec-src" in r.err
    r = vault.ok("--identity", str(keys["ec-src"]), "get", "ssh/ec-only", identity=None)
    assert r.out == b"ec"

    ed = ssh_keygen(d, "ed", "-t", "ed25519")
    before = snap(vault)
    for how in ([f"{ed}.pub"], ["--ssh-pubkey", f"{ed}.pub"]):
        r = vault.run("recipient", "add", "ed", *how, identity=None)
        assert r.rc == 2, r.err
        assert "ossl-vault: error: " in r.err and "ssh-ed25519" in r.err
        assert "hint: Ed25519 keys cannot encrypt" in r.err
    assert snap(vault) == before


# --- 4. GitHub ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving /alice.keys: RSA, ECDSA and Ed25519 lines."""
    d = tmp_path_factory.mktemp("gh")
    lines = []
    for name, args in (("rsa", ("-t", "rsa", "-b", "2048")), ("ec", ("-t", "ecdsa")),
                       ("ed", ("-t", "ed25519"))):  # fmt: skip
        key = ssh_keygen(d, name, *args)
        lines.append(b" ".join(Path(f"{key}.pub").read_bytes().split()[:2]))
    with key_pages({"/alice.keys": (200, b"\n".join(lines) + b"\n")}) as url:
        yield url, d


def test_github_user_keys(vault: VaultDir, github: tuple[str, Path]) -> None:
    url, d = github
    for var in PROXY_VARS:
        vault.env.pop(var, None)
    vault.env["no_proxy"] = "*"
    vault.env["OSSL_VAULT_GITHUB_URL"] = url

    r = vault.ok("recipient", "add", "alice", "--github", "alice", identity=None)
    assert "added recipient 'alice' (rsa" in r.err and "added recipient 'alice-2' (p256" in r.err
    rows = {
        row["name"]: row
        for row in map(json.loads, vault.ok("recipient", "list", "--json").out.splitlines())
    }
    assert set(rows) == {"host", "alice", "alice-2"}
    assert rows["alice"]["fingerprint"] == key_fpr_ssh(d / "rsa")
    assert rows["alice-2"]["fingerprint"] == key_fpr_ssh(d / "ec")

    vault.ok("put", "gh/secret", input=b"from github", identity=None)
    for key in ("rsa", "ec"):
        r = vault.ok("--identity", str(d / key), "get", "gh/secret", identity=None)
        assert r.out == b"from github"

    before = snap(vault)
    r = vault.run("recipient", "add", "bob", "--github", "bob", identity=None)
    assert r.rc == 3, r.err
    assert "ossl-vault: error: no GitHub user 'bob'" in r.err
    assert snap(vault) == before


def key_fpr_ssh(private: Path) -> str:
    """The SPKI fingerprint of an OpenSSH key, through ssh-keygen's PKCS#8 export."""
    pem = subprocess.run(["ssh-keygen", "-e", "-m", "PKCS8", "-f", f"{private}.pub"],
                         check=True, capture_output=True).stdout  # fmt: skip
    der = openssl("pkey", "-pubin", "-outform", "DER", input=pem)
    return hashlib.sha256(der).hexdigest()


# --- 5. GnuPG -------------------------------------------------------------------------------------


@pytest.fixture
def gpg_homes() -> Iterator[dict[str, str]]:
    """alice's and a stranger's GNUPGHOME (short paths under /tmp), each with one key."""
    homes = {}
    try:
        for who in ("alice", "stranger"):
            home = tempfile.mkdtemp(prefix="g", dir="/tmp")
            homes[who] = home
            subprocess.run(
                ["gpg", "--homedir", home, "--batch", "--no-tty", "--passphrase", "",
                 "--quick-gen-key", f"{who.title()} <{who}@example.org>",
                 "future-default", "default", "never"],
                check=True, capture_output=True,
            )  # fmt: skip
        yield homes
    finally:
        for home in homes.values():
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)
            shutil.rmtree(home, ignore_errors=True)


def test_gpg_recipient(vault: VaultDir, gpg_homes: dict[str, str]) -> None:
    alice = {"GNUPGHOME": gpg_homes["alice"]}
    stranger = {"GNUPGHOME": gpg_homes["stranger"]}
    r = vault.ok("recipient", "add", "alice", "--gpg", "alice@example.org", env=alice,
                 identity=None)  # fmt: skip
    assert "added recipient 'alice' (gpg" in r.err
    vault.ok("put", "gpg/secret", input=b"for alice's gpg", identity=None, env=stranger)
    assert readers(vault.path, "gpg/secret") == {"host", "alice"}
    assert wraps(vault.path, "gpg/secret", 1)["alice"][5] == "gpg"

    assert vault.ok("get", "gpg/secret", env=alice, identity=None).out == b"for alice's gpg"
    r = vault.run("get", "gpg/secret", env=stranger, identity=None)
    denied(r, "gpg/secret")
    assert "readable by: alice, host" in r.err
    assert vault.ok("get", "gpg/secret", env=stranger).out == b"for alice's gpg"  # host key

    vault.ok("put", "gpg/only", "--to", "alice", input=b"gpg only", identity=None)
    assert vault.ok("get", "gpg/only", env=alice, identity=None).out == b"gpg only"
    denied(vault.run("get", "gpg/only", env=stranger), "gpg/only")


# --- 6. certificate expiry, renewal, the certbot hook ---------------------------------------------


def test_expiring_and_expired_certificates_warn(vault: VaultDir, tmp_path: Path) -> None:
    rsa_cert(tmp_path, "soon", days=5)
    vault.ok("recipient", "add", "soon", str(tmp_path / "soon.pem"), identity=None)
    vault.ok("put", "x", input=b"x", identity=None)
    for cmd in (["list"], ["recipient", "list"], ["list", "--json"]):
        r = vault.ok(*cmd, identity=None)
        warnings = [line for line in r.err.splitlines() if "warning" in line]
        assert len(warnings) == 1, r.err
        assert warnings[0].startswith(
            "ossl-vault: warning: certificate of recipient 'soon' expires in "
        )
        days = int(warnings[0].split("expires in ")[1].split(" ")[0])
        assert days in (4, 5), warnings[0]
        assert "day(s)" in warnings[0]
        assert "hint: ossl-vault recipient renew soon NEWCERT" in r.err
        assert b"warning" not in r.out

    expired_cert(tmp_path, "old")
    vault.ok("recipient", "add", "old", str(tmp_path / "old.pem"), "--no-default", identity=None)
    for cmd in (["list"], ["recipient", "list"]):
        r = vault.ok(*cmd, identity=None)
        assert (
            "ossl-vault: warning: certificate of recipient 'old' expired on 2020-02-01" in r.err
        ), r.err
        assert "certificate of recipient 'soon' expires in" in r.err
        assert "'host'" not in r.err  # the 365-day certificate is fine
    row = [json.loads(x) for x in vault.ok("recipient", "list", "--json").out.splitlines()]
    assert {x["name"]: x["expires"] for x in row}["old"] == "2020-02-01"

    # a renewed certificate for the same key: only the certificate changes
    openssl("req", "-x509", "-new", "-key", str(tmp_path / "soon.key"), "-subj", "/CN=soon",
            "-days", "365", "-out", str(tmp_path / "soon2.pem"))  # fmt: skip
    fpr = recipient_fpr(vault.path, "soon")
    secrets = [r for r in records(vault.path) if r[0] != "recipient"]
    r = vault.ok("recipient", "renew", "soon", str(tmp_path / "soon2.pem"), identity=None)
    assert "re-wrapped 0 secret(s)" in r.err
    assert recipient_fpr(vault.path, "soon") == fpr
    assert [r for r in records(vault.path) if r[0] != "recipient"] == secrets
    r = vault.ok("list", identity=None)
    assert "'soon'" not in r.err and "'old' expired on 2020-02-01" in r.err


def test_recipient_renew(tmp_path: Path, people: Path, env: dict[str, str]) -> None:
    d = tmp_path / "k"
    d.mkdir()
    rsa_cert(d, "old")
    ec_cert(d, "new", "P-384")  # a renewal may change the key type
    shutil.copy(people / "alice.key", d / "alice.key")
    v = VaultDir(tmp_path / "vault", d, env)
    v.ok("init", "--recipient", f"host={d / 'old.pem'}", "--recipient",
         f"alice={people / 'alice.pem'}", identity=None)  # fmt: skip
    for n in (1, 2):
        v.ok("put", "both", input=b"both %d" % n, identity=None)
        v.ok("put", "hostonly", "--to", "host", input=b"host %d" % n, identity=None)
    v.ok("put", "aliceonly", "--to", "alice", input=b"alice", identity=None)
    before_alice = [r for r in records(v.path) if r[1] == "aliceonly"]

    r = v.ok("recipient", "renew", "host", str(d / "new.pem"), identity="old")
    assert "re-wrapped 2 secret(s)" in r.err
    assert recipient_fpr(v.path, "host") == key_fpr(d / "new.key")
    assert [r for r in records(v.path) if r[1] == "aliceonly"] == before_alice
    for name in ("both", "hostonly"):
        assert versions(v.path, name) == [1, 2]  # re-wrapped in place
        assert wraps(v.path, name, 2)["host"][4] == key_fpr(d / "new.key")
        assert wraps(v.path, name, 1)["host"][4] == key_fpr(d / "old.key")
        assert v.ok("get", name, identity="new").out == name.encode()[:4] + b" 2"
        assert v.ok("get", name, "--version", "1", identity="old").out == name.encode()[:4] + b" 1"
        r = v.run("get", name, "--version", "1", identity="new")
        assert r.rc == 4 and "wrapped for an earlier key of 'host'" in r.err, r.err
        # the version that was newest at the renewal was re-wrapped in place (format.md 2)
        denied(v.run("get", name, identity="old"), name)
    assert v.ok("get", "both", identity="alice").out == b"both 2"
    denied(v.run("get", "aliceonly", identity="new"), "aliceonly")

    v.ok("put", "both", input=b"both 3", identity=None)
    assert v.ok("get", "both", identity="new").out == b"both 3"
    denied(v.run("get", "both", identity="old"), "both")
    denied(v.run("get", "hostonly", identity="old"), "hostonly")
    r = v.ok("--identity", str(d / "old.key"), "fsck", identity="new")
    assert "error" not in r.err
    r = v.ok("fsck", identity="alice")
    assert "error" not in r.err


def test_certbot_deploy_hook(tmp_path: Path, env: dict[str, str]) -> None:
    live, archive = tmp_path / "le/live/example.org", tmp_path / "le/archive/example.org"
    live.mkdir(parents=True)
    archive.mkdir(parents=True)
    for n in (1, 2):
        rsa_cert(archive, f"k{n}")
        (archive / f"k{n}.key").rename(archive / f"privkey{n}.pem")
        (archive / f"k{n}.pem").rename(archive / f"cert{n}.pem")
    (live / "cert.pem").symlink_to("../../archive/example.org/cert2.pem")
    (live / "privkey.pem").symlink_to("../../archive/example.org/privkey2.pem")

    keys = tmp_path / "ids"
    keys.mkdir()
    for n in (1, 2):
        shutil.copy(archive / f"privkey{n}.pem", keys / f"k{n}.key")
    v = VaultDir(tmp_path / "vault", keys, env)
    v.ok("init", "--recipient", f"www={archive / 'cert1.pem'}", identity=None)
    v.ok("put", "db", input=b"db pw", identity=None)
    v.ok("put", "api", input=b"api key", identity=None)
    denied(v.run("get", "db", identity="k2"), "db")

    hook_env = {
        **env,
        "PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        "RENEWED_LINEAGE": str(live),
        "OSSL_VAULT_DIR": str(v.path),
        "OSSL_VAULT_RECIPIENT": "www",
    }
    p = subprocess.run(["bash", str(HOOK)], env=hook_env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert b"renewed recipient 'www'; re-wrapped 2 secret(s)" in p.stderr
    assert recipient_fpr(v.path, "www") == key_fpr(keys / "k2.key")
    for name, value in (("db", b"db pw"), ("api", b"api key")):
        assert v.ok("get", name, identity="k2").out == value
    assert v.ok("fsck", identity="k2").rc == 0
    # another lineage, with OSSL_VAULT_LINEAGE naming this one: nothing to do
    before = snap(v)
    other = {**hook_env, "OSSL_VAULT_LINEAGE": "other.example"}
    p = subprocess.run(["bash", str(HOOK)], env=other, capture_output=True, timeout=120)
    assert p.returncode == 0 and snap(v) == before, p.stderr.decode()
    bare = {k: x for k, x in hook_env.items() if k != "RENEWED_LINEAGE"}
    p = subprocess.run(["bash", str(HOOK)], env=bare, capture_output=True, timeout=120)
    assert p.returncode == 2 and b"RENEWED_LINEAGE" in p.stderr
    # run again (certbot may call every hook twice): the key is already current
    p = subprocess.run(["bash", str(HOOK)], env=hook_env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert v.ok("get", "db", identity="k2").out == b"db pw"


# --- 7. rekey, interrupted by kill -9 -------------------------------------------------------------


NAMES = [f"app{i:02d}/secret" for i in range(10)] + ["own/a", "own/b"]
WANT = {n: {"alice"} if n.startswith("own/") else {"alice", "bob", "dave"} for n in NAMES}


@pytest.fixture(scope="module")
def rekey_base(tmp_path_factory: pytest.TempPathFactory, people: Path) -> tuple[Path, dict]:
    """A vault of 12 secrets (10 for the defaults alice+bob, 2 for alice alone), then dave
    added as a new default recipient: rekey has 10 secrets to re-wrap."""
    tmp = tmp_path_factory.mktemp("rekey")
    v = VaultDir(tmp / "base", people, clean_env(tmp))
    v.ok("init", "--recipient", f"alice={people / 'alice.pem'}",
         "--recipient", f"bob={people / 'bob.pem'}", identity=None)  # fmt: skip
    values = {}
    for i, name in enumerate(NAMES):
        values[name] = b"value %d " % i + os.urandom(8).hex().encode()
        to = ["--to", "alice"] if name.startswith("own/") else []
        v.ok("put", name, *to, input=values[name], identity=None)
    v.ok("recipient", "add", "dave", str(people / "dave.pem"), identity=None)
    return v.path, values


def state(v: VaultDir) -> dict[str, tuple[object, ...]]:
    """Per secret: versions, blob (the ciphertext), wrap holders, and the ledger's view."""
    rows = listing(v)
    out = {}
    for name, row in rows.items():
        s = secret(v.path, name)
        holders = sorted(wraps(v.path, name, int(s[2])))
        out[name] = (row["versions"], s[13], holders, row["recipients"], row["exposed"],
                     row["needs_rotation"], row["ever"])  # fmt: skip
    return out


def rewrapped(vault: Path) -> int:
    try:
        return sum(readers(vault, n) == WANT[n] for n in NAMES[:10])
    except (AssertionError, OSError, IndexError):
        return 0


def check_rekeyed(v: VaultDir) -> None:
    """Every newest version has exactly its wanted wraps; dave's open and pass the MAC."""
    for name in NAMES:
        assert readers(v.path, name) == WANT[name], name
        assert set(wraps(v.path, name, versions(v.path, name)[-1])) == WANT[name], name
    r = v.ok("fsck", identity="dave")  # opens every version dave holds, checks each MAC
    assert "error" not in r.err
    unchecked = sorted(line.split("'")[1] for line in r.err.splitlines() if "MAC not" in line)
    assert unchecked == ["own/a", "own/b"], r.err


def test_rekey_interrupted_by_kill_matches_an_uninterrupted_run(
    rekey_base: tuple[Path, dict], people: Path, tmp_path: Path
) -> None:
    base, values = rekey_base
    env = clean_env(tmp_path)
    control = VaultDir(tmp_path / "control", people, env)
    shutil.copytree(base, control.path)
    untouched = [r for r in records(control.path) if r[1].startswith("own/")]
    r = control.ok("rekey", identity="alice")
    assert "rekey done: 10 rewrapped, 2 unchanged" in r.err
    assert [r for r in records(control.path) if r[1].startswith("own/")] == untouched
    check_rekeyed(control)
    for name in NAMES:
        who = "dave" if "dave" in WANT[name] else "alice"
        assert control.ok("get", name, identity=who).out == values[name], name
    expected = state(control)
    assert state(VaultDir(base, people, env))[NAMES[0]][:2] == expected[NAMES[0]][:2]
    before = snap(control)
    r = control.ok("rekey", identity="alice")  # nothing left to do: nothing written
    assert "rekey done: 12 unchanged" in r.err
    assert snap(control) == before

    rng = random.Random(7)
    partial = []
    for trial in range(5):
        v = VaultDir(tmp_path / f"trial{trial}", people, env)
        shutil.copytree(base, v.path)
        # kill -9 once `target` secrets are committed (0: at a random moment before the
        # commit), plus a random few milliseconds: inside openssl, or mid-commit
        target, extra = rng.randint(0, 8), rng.uniform(0, 0.03)
        argv = [*CLI, "--vault", str(v.path), "--identity", str(people / "alice.key"), "rekey"]
        p = subprocess.Popen(argv, env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + (rng.uniform(0.05, 0.3) if target == 0 else 30)
        while time.monotonic() < deadline and p.poll() is None:
            if target and rewrapped(v.path) >= target:
                break
            time.sleep(0.002)
        time.sleep(extra)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        partial.append(rewrapped(v.path))
        r = v.ok("rekey", identity="alice")
        assert "rekey done" in r.err
        check_rekeyed(v)
        assert state(v) == expected, trial
        name = rng.choice(NAMES[:10])
        assert v.ok("get", name, identity="dave").out == values[name]
    # one commit: a kill leaves every secret re-wrapped or none, never part of them
    assert all(n in (0, 10) for n in partial), partial


# --- 8. the recovery script on a shared secret ----------------------------------------------------


def test_recovery_script_opens_a_shared_secret_with_each_readers_key(
    all_kinds_vault: VaultDir, keydir: Path
) -> None:
    v, name, value = all_kinds_vault, "shared/one", b"recover me\x00\xff"
    v.ok("put", name, "--to", "rsa,p256", input=value, identity=None)
    v.ok("share", name, "x25519", "p384", identity="p256")
    assert readers(v.path, name) == {"rsa", "p256", "p384", "x25519"}

    def recover(key: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
        argv = ["bash", str(RECOVER), *extra, str(v.path), name, str(keydir / f"{key}.key")]
        return subprocess.run(argv, capture_output=True, timeout=120)

    for key in ("rsa", "p256", "p384", "x25519"):
        p = recover(key)
        assert p.returncode == 0 and p.stdout == value, (key, p.stderr.decode())

    v.ok("unshare", name, "p384", identity="x25519")
    p = recover("p384")
    assert p.returncode == 4 and p.stdout == b"", p.stderr.decode()
    p = recover("p384", "--version", "1")
    assert p.returncode == 0 and p.stdout == value, p.stderr.decode()
    p = recover("x25519")
    assert p.returncode == 0 and p.stdout == value, p.stderr.decode()
