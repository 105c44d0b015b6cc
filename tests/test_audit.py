"""Promise 5: every command is audited, nothing secret is logged (docs/format.md section 7).

Everything runs the real CLI in subprocesses. The log is checked field by
field; tampering is judged by both verifiers, ``ossl-vault audit verify`` and
``scripts/ossl-vault-audit-verify`` (bash, openssl and coreutils only), each
on its own copy of the same bytes (the first appends its own record); kill -9
during writes never leaves a change without its record.
"""

from __future__ import annotations

import base64
import datetime
import getpass
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import CLI, KINDS, ROOT, Result, VaultDir, clean_env, need

SCRIPT = ROOT / "scripts" / "ossl-vault-audit-verify"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
SAFE_RE = re.compile(r"^[A-Za-z0-9._@+:/=,-]+$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
JSON_KEYS = {"seq", "time", "uid", "user", "host", "pid", "op", "secret", "version", "keys",
             "result", "index", "prev"}  # fmt: skip

# Distinctive secrets: none of them (nor their hex or base64) may reach the log.
VALUE = b"Zq7-audit-VALUE-never-logged-93ff1c0d"
VALUE2 = b"Kx4-second-VALUE-never-logged-5be21a"
PASSWORD = b"Pw9-per-secret-PASSWORD-77c1e0aa"
WRONG_PASSWORD = b"Wr0ng-PASSWORD-guess-0b9d4e11"
PASSPHRASE = b"Pp3-recipient-PASSPHRASE-4d2a9b7e"


# -- helpers ---------------------------------------------------------------------------


# This file holds the format-1 audit contract (INDEX = SHA-256 of vault.tsv), which
# format-1 vaults keep; tests/test_storage.py holds format 2's (one record per file).
@pytest.fixture
def vault(tmp_path: Path, keydir: Path, env: dict[str, str]) -> VaultDir:
    """A fresh format-1 vault with the RSA cert as its one recipient, named 'host'."""
    v = VaultDir(tmp_path / "vault", keydir, env)
    v.ok("init", "--format", "1", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    return v


@pytest.fixture
def all_kinds_vault(tmp_path: Path, keydir: Path, env: dict[str, str]) -> VaultDir:
    """A format-1 vault with one recipient of every key kind, named after the kind."""
    v = VaultDir(tmp_path / "vault", keydir, env)
    args = [a for k in KINDS for a in ("--recipient", f"{k}={keydir / (k + '.pem')}")]
    v.ok("init", "--format", "1", *args, identity=None)
    return v


def sha_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def line_hash(line: str) -> str:
    return sha_hex((line + "\n").encode())


def tsv_hash(v: VaultDir) -> str:
    return sha_hex((v.path / "vault.tsv").read_bytes())


def fpr16(key: Path) -> str:
    """The first 16 hex digits of a key's fingerprint, the way format.md spells it."""
    out = subprocess.run(
        ["bash", "-c", 'openssl pkey -in "$1" -pubout -outform DER | sha256sum', "_", str(key)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return out.split()[0][:16]


def read_log(path: Path) -> list[list[str]]:
    """Parse audit.log and check it independently: header, 13 fields, SEQ, PREV, TIME."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), "torn last line"
    lines = data.decode("ascii").split("\n")[:-1]
    head = lines[0].split("\t")
    assert head[:2] == ["ossl-vault-audit", "1"] and head[2] in ("required", "best-effort")
    assert len(head) == 4 and head[3] in ("checkpoint", "-")
    records = []
    for n, line in enumerate(lines[1:], start=1):
        f = line.split("\t")
        assert len(f) == 13, f"record {n}: {len(f)} fields: {line!r}"
        assert f[0] == str(n), f"record {n} has SEQ {f[0]}"
        assert f[12] == line_hash(lines[n - 1]), f"record {n} does not chain"
        assert TIME_RE.match(f[1]), f[1]
        assert all(SAFE_RE.match(x) for x in f), line
        assert f[11] == "-" or HEX64.match(f[11].removeprefix("v2:")), f[11]
        records.append(f)
    times = [r[1] for r in records]
    assert times == sorted(times)
    return records


def check_actor(rec: list[str]) -> None:
    assert rec[2] == str(os.getuid())
    assert rec[3] == re.sub(r"[^A-Za-z0-9._@+:/=,-]", "?", getpass.getuser())
    assert rec[4] == re.sub(r"[^A-Za-z0-9._@+:/=,-]", "?", socket.gethostname())[:200]
    assert rec[5].isdigit() and rec[5] != str(os.getpid())


def secret_forms(value: bytes) -> list[bytes]:
    """The value, its hex, and every base64 alignment of it (the fully determined part)."""
    forms = [value, value.hex().encode(), value.hex().upper().encode()]
    for off in range(3):
        part = value[off:]
        whole = len(part) // 3 * 4
        forms.append(base64.b64encode(part)[:whole])
        forms.append(base64.urlsafe_b64encode(part)[:whole])
    return forms


def assert_nothing_secret(v: VaultDir, secrets: list[bytes]) -> None:
    blobs = [(v.path / n).read_bytes() for n in ("audit.log", "audit.checkpoint")
             if (v.path / n).exists()]  # fmt: skip
    for blob in blobs:
        for s in secrets:
            for form in secret_forms(s):
                assert form not in blob, f"{form!r} is in the audit files"


def pem_body_lines(key: Path) -> list[bytes]:
    return [ln.encode() for ln in key.read_text().splitlines() if ln and "-----" not in ln]


class Tracker:
    """Runs commands and checks each leaves exactly the records it should."""

    def __init__(self, v: VaultDir) -> None:
        self.v = v
        self.count = len(read_log(v.path / "audit.log"))

    def run(self, *args: str, rc: int = 0, n: int = 1, **kw: object) -> tuple[Result, list]:
        before = tsv_hash(self.v)
        r = self.v.run(*args, **kw)  # type: ignore[arg-type]
        assert r.rc == rc, f"{args}: rc={r.rc} (want {rc}) {r.err}"
        records = read_log(self.v.path / "audit.log")
        new = records[self.count :]
        assert len(new) == n, f"{args}: {len(new)} new records, want {n}: {new}"
        self.count = len(records)
        for rec in new:
            check_actor(rec)
        after = tsv_hash(self.v)
        if after == before:
            assert all(rec[11] == "-" for rec in new), f"{args}: INDEX on a non-change"
        else:  # the last change's record names the index it left (a failure may follow it)
            changes = [rec for rec in new if rec[11] != "-"]
            assert changes and changes[-1][11] == after, f"{args}: INDEX is not sha256(vault.tsv)"
        return r, new


def expect(rec: list[str], op: str, secret: str, version: str, keys: set[str] | str,
           result: str, change: bool) -> None:  # fmt: skip
    assert rec[6] == op, rec
    assert rec[7] == secret, rec
    assert rec[8] == version, rec
    if isinstance(keys, str):
        assert rec[9] == keys, rec
    else:
        assert set(rec[9].split(",")) == keys, rec
    assert rec[10] == result, rec
    assert (rec[11] != "-") == change, rec


# -- 1. one record per command, every field ---------------------------------------------


@pytest.mark.both_paths
def test_every_command_leaves_one_record_with_its_fields(vault: VaultDir, tmp_path: Path) -> None:
    v, k = vault, vault.keydir
    rsa, p256 = fpr16(k / "rsa.key"), fpr16(k / "p256.key")
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    (tmp_path / "pw").write_bytes(PASSWORD + b"\n")
    (tmp_path / "wrong").write_bytes(WRONG_PASSWORD + b"\n")
    (tmp_path / "pp").write_bytes(PASSPHRASE + b"\n")

    records = read_log(v.path / "audit.log")
    assert len(records) == 1
    expect(records[0], "init", "-", "-", {rsa}, "ok", change=True)
    assert records[0][11] == tsv_hash(v)
    assert records[0][12] == line_hash((v.path / "audit.log").read_text().split("\n")[0])
    check_actor(records[0])

    t = Tracker(v)
    _, (rec,) = t.run("put", "db", input=VALUE)
    expect(rec, "put", "db", "1", {rsa}, "ok", change=True)
    _, (rec,) = t.run("put", "pw", "--password-file", str(tmp_path / "pw"), input=VALUE2)
    expect(rec, "put", "pw", "1", {rsa}, "ok", change=True)
    r, (rec,) = t.run("get", "db")
    assert r.out == VALUE
    expect(rec, "get", "db", "1", {rsa}, "ok", change=False)
    r, (rec,) = t.run("get", "db", rc=4, identity=None)
    assert r.out == b""
    expect(rec, "get", "db", "-", "-", "exit=4:AccessDenied", change=False)
    r, (rec,) = t.run("get", "pw", "--password-file", str(tmp_path / "wrong"), rc=4)
    assert r.out == b""
    assert rec[6:8] == ["get", "pw"] and rec[10] == "exit=4:PasswordRefused" and rec[11] == "-"
    r, (rec,) = t.run("get", "pw", "--password-file", str(tmp_path / "pw"))
    assert r.out == VALUE2
    expect(rec, "get", "pw", "1", {rsa}, "ok", change=False)
    r, (rec,) = t.run("generate", "gen", "--print")
    generated = r.out.strip()
    assert len(generated) >= 40
    expect(rec, "generate", "gen", "1", {rsa}, "ok", change=True)
    _, (rec,) = t.run("list")
    expect(rec, "list", "-", "-", "-", "ok", change=False)
    _, (rec,) = t.run("rm", "gen")
    expect(rec, "rm", "gen", "-", "-", "ok", change=True)
    _, (rec,) = t.run("rotate", "db")
    expect(rec, "rotate", "db", "2", {rsa}, "ok", change=True)
    _, (rec,) = t.run("recipient", "add", "alice", str(k / "p256.pem"))
    expect(rec, "recipient-add", "-", "-", {p256}, "ok", change=True)
    r, (rec,) = t.run("recipient", "list")
    assert p256.encode() in r.out and rsa.encode() in r.out
    expect(rec, "recipient-list", "-", "-", "-", "ok", change=False)
    _, (rec,) = t.run("share", "db", "alice")
    expect(rec, "share", "db", "2", {p256}, "ok", change=True)
    _, (rec,) = t.run("unshare", "db", "alice")
    expect(rec, "unshare", "db", "3", {rsa}, "ok", change=True)
    _, (rec,) = t.run("recipient", "rm", "alice")
    expect(rec, "recipient-rm", "-", "-", {p256}, "ok", change=True)
    r, (rec,) = t.run("recipient", "add", "vault-pp", "--passphrase-file", str(tmp_path / "pp"),
                      "--no-default")  # fmt: skip
    pp = re.search(r"\b([0-9a-f]{16})\b", r.err)
    assert pp is not None, r.err
    expect(rec, "recipient-add", "-", "-", {pp.group(1)}, "ok", change=True)
    _, (rec,) = t.run("fsck")
    expect(rec, "fsck", "-", "-", "-", "ok", change=False)
    _, (rec,) = t.run("audit")
    expect(rec, "audit", "-", "-", "-", "ok", change=False)
    _, (rec,) = t.run("audit", "verify")
    expect(rec, "audit", "-", "-", "-", "ok", change=False)
    _, (rec,) = t.run("audit", "checkpoint", identity="x25519", rc=4)
    expect(rec, "audit", "-", "-", "-", "exit=4:AccessDenied", change=False)
    _, (rec,) = t.run("get", "nosuch", rc=3)
    expect(rec, "get", "nosuch", "-", "-", "exit=3:NotFoundError", change=False)

    # a tampered secret: the read fails (exit 5) and says so in the log
    _, (rec,) = t.run("put", "bad", input=VALUE)
    blob = v.path / "blobs" / _blob_of(v, "bad")
    data = bytearray(blob.read_bytes())
    data[0] ^= 1
    blob.write_bytes(bytes(data))
    r, (rec,) = t.run("get", "bad", rc=5)
    assert r.out == b""
    assert rec[6:8] == ["get", "bad"] and rec[10] == "exit=5:IntegrityError" and rec[11] == "-"

    records = read_log(v.path / "audit.log")
    first = datetime.datetime.strptime(records[0][1], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC
    )
    last = datetime.datetime.strptime(records[-1][1], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC
    )
    assert started - datetime.timedelta(seconds=120) <= first <= last
    assert last <= datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
    assert len({r[5] for r in records}) == len(records)  # one process, one record

    assert_nothing_secret(v, [VALUE, VALUE2, PASSWORD, WRONG_PASSWORD, PASSPHRASE, generated])
    log = (v.path / "audit.log").read_bytes()
    assert not any(chunk in log for chunk in pem_body_lines(k / "rsa.key"))
    assert b"PRIVATE" not in log


def test_failing_fsck_and_verify_are_recorded(vault: VaultDir) -> None:
    v = vault
    v.ok("put", "bad", input=VALUE)
    blob = v.path / "blobs" / _blob_of(v, "bad")
    blob.write_bytes(bytes([blob.read_bytes()[0] ^ 1]) + blob.read_bytes()[1:])
    t = Tracker(v)
    _, (rec,) = t.run("fsck", rc=5)
    assert rec[6] == "fsck" and rec[10] == "exit=5:IntegrityError" and rec[11] == "-"
    lines = log_lines(v.path)
    set_field(lines, 1, 7, "edited")
    write_lines(v.path, lines)
    r = v.run("audit", "verify")
    assert r.rc == 5, r.err
    assert log_lines(v.path)[-1].split("\t")[6] == "audit"
    assert log_lines(v.path)[-1].split("\t")[10] == "exit=5:IntegrityError"


def _blob_of(v: VaultDir, name: str) -> str:
    """The blob (SHA-256 hex) of a secret's newest version, from vault.tsv."""
    blobs = (v.path / "blobs").iterdir()
    text = (v.path / "vault.tsv").read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith(f"secret\t{name}\t")]
    return next(b.name for b in blobs if b.name in lines[-1])


@pytest.mark.both_paths
def test_fingerprints_of_every_key_kind(all_kinds_vault: VaultDir) -> None:
    v, k = all_kinds_vault, all_kinds_vault.keydir
    fprs = {kind: fpr16(k / f"{kind}.key") for kind in KINDS}
    (init,) = read_log(v.path / "audit.log")
    expect(init, "init", "-", "-", set(fprs.values()), "ok", change=True)
    t = Tracker(v)
    _, (rec,) = t.run("put", "s", input=VALUE)
    expect(rec, "put", "s", "1", set(fprs.values()), "ok", change=True)
    for kind in KINDS:
        r, (rec,) = t.run("get", "s", identity=kind)
        assert r.out == VALUE
        expect(rec, "get", "s", "1", {fprs[kind]}, "ok", change=False)


def test_commands_changing_several_secrets_leave_one_record_per_change(
    vault: VaultDir, tmp_path: Path
) -> None:
    v, k = vault, vault.keydir
    rsa, p256 = fpr16(k / "rsa.key"), fpr16(k / "p256.key")
    t = Tracker(v)
    t.run("recipient", "add", "alice", str(k / "p256.pem"))
    for name in ("a", "b", "c"):
        t.run("put", name, input=VALUE)
    _, recs = t.run("rotate", n=3)
    assert [r[7] for r in recs] == ["a", "b", "c"]
    for rec in recs:
        expect(rec, "rotate", rec[7], "2", {rsa, p256}, "ok", change=True)
    assert len({r[11] for r in recs}) == 1  # one commit: one vault.tsv (issue 9)
    _, recs = t.run("rotate", "a", "c", n=2)
    assert [(r[7], r[8]) for r in recs] == [("a", "3"), ("c", "3")]
    # removing a recipient re-encrypts each of its secrets, then drops it: 3 + 1
    _, recs = t.run("recipient", "rm", "alice", n=4)
    assert [r[6] for r in recs] == ["recipient-rm"] * 4
    assert [r[7] for r in recs] == ["a", "b", "c", "-"]
    assert all(r[11] != "-" for r in recs) and len({r[11] for r in recs}) == 1
    assert recs[-1][9] == p256 and all(r[9] == rsa for r in recs[:3])
    # a rekey with nothing to do changes nothing: one record, INDEX "-"
    _, (rec,) = t.run("rekey")
    expect(rec, "rekey", "-", "-", "-", "ok", change=False)


def test_a_refused_bulk_command_changes_nothing_and_is_recorded(
    vault: VaultDir, tmp_path: Path
) -> None:
    """A secret that cannot be opened stops the bulk command before any change (issue 9)."""
    v = vault
    (tmp_path / "pw").write_bytes(PASSWORD + b"\n")
    v.ok("put", "a", input=VALUE)
    v.ok("put", "b", "--password-file", str(tmp_path / "pw"), input=VALUE2)
    t = Tracker(v)
    _, recs = t.run("rotate", rc=4, n=1)
    assert recs[0][6] == "rotate" and recs[0][10] == "exit=4:AccessDenied"
    assert recs[0][11] == "-"  # nothing changed


def test_concurrent_writers_each_leave_their_record(vault: VaultDir, tmp_path: Path) -> None:
    v = vault
    procs = []
    for i in range(6):
        (tmp_path / f"in{i}").write_bytes(f"value {i}".encode())
        with (tmp_path / f"in{i}").open("rb") as fh:
            procs.append(subprocess.Popen(
                [*CLI, "--vault", str(v.path), "put", f"c{i}"], stdin=fh,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=v.env,
                start_new_session=True))  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    records = read_log(v.path / "audit.log")
    puts = [r for r in records if r[6] == "put"]
    assert sorted(r[7] for r in puts) == [f"c{i}" for i in range(6)]
    assert records[-1][11] == tsv_hash(v)
    assert not any(r[6] == "incomplete" for r in records)


@pytest.mark.both_paths
def test_concurrent_reads_in_one_process_share_fsyncs_and_keep_the_chain(
    vault: VaultDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 threads log reads at once: 64 records, fewer writes, and the chain holds."""
    import threading

    from ossl_vault.storage import audit
    from ossl_vault.storage.store import Store

    v = vault
    v.ok("put", "a", input=VALUE)
    writes: list[int] = []
    real = audit.AuditLog.append_many

    def counting(self: audit.AuditLog, entries: list) -> None:
        writes.append(len(entries))
        real(self, entries)

    monkeypatch.setattr(audit.AuditLog, "append_many", counting)
    barrier = threading.Barrier(64)
    errors: list[BaseException] = []

    def read(i: int) -> None:
        try:
            barrier.wait()
            Store(v.path, None, "get").log(audit.Event("get", f"s{i}", "1", ("ab" * 8,)))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sum(writes) == 64 and len(writes) < 64, writes
    records = read_log(v.path / "audit.log")
    assert sorted(r[7] for r in records if r[6] == "get") == sorted(f"s{i}" for i in range(64))
    v.ok("audit", "verify", identity=None)


@pytest.mark.both_paths
def test_appending_to_a_long_log_numbers_from_its_last_record(vault: VaultDir) -> None:
    """A log of 20,000 records (appends read only its tail): the next record still chains."""
    v = vault
    v.ok("put", "a", input=VALUE)
    log = v.path / "audit.log"
    lines = log.read_bytes().split(b"\n")[:-1]
    last = lines[-1]
    filler = []
    for _ in range(20000):
        f = last.split(b"\t")
        f[0] = b"%d" % (int(f[0]) + 1)
        f[6], f[11], f[12] = b"get", b"-", sha_hex(last + b"\n").encode()
        last = b"\t".join(f)
        filler.append(last + b"\n")
    with log.open("ab") as fh:
        fh.write(b"".join(filler))
    v.ok("get", "a")
    records = read_log(log)
    assert int(records[-1][0]) == len(lines) + 20000 and records[-1][6:8] == ["get", "a"]
    v.ok("audit", "verify", identity=None)


# -- 2. tampering: both verifiers, the same verdict --------------------------------------


def run_bash_verifier(d: Path, path: str) -> Result:
    p = subprocess.run([str(Path(path) / "bash"), str(SCRIPT), str(d)], capture_output=True,
                       env={"PATH": path, "LC_ALL": "C"}, timeout=120)  # fmt: skip
    return Result(p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"))


def verdicts(v: VaultDir, tmp_path: Path, path: str) -> tuple[Result, Result]:
    """(ossl-vault audit verify, bash verifier), each on its own copy of the vault."""
    a, b = tmp_path / "for-python", tmp_path / "for-bash"
    shutil.copytree(v.path, a)
    shutil.copytree(v.path, b)
    py = VaultDir(a, v.keydir, v.env).run("audit", "verify", identity=None)
    sh = run_bash_verifier(b, path)
    return py, sh


def message(r: Result) -> str:
    """The verdict text after 'PROG: error: ' or 'PROG: '."""
    errors = [ln for ln in r.err.splitlines() if ": error: " in ln]
    if errors:
        return errors[0].split(": error: ", 1)[1]
    return r.err.strip().splitlines()[-1].split(": ", 1)[1]


def assert_same_verdict(py: Result, sh: Result, rc: int, pattern: str) -> None:
    assert py.rc == rc, f"python verifier rc={py.rc}: {py.err}"
    assert sh.rc == rc, f"bash verifier rc={sh.rc}: {sh.err}"
    assert message(py) == message(sh), f"python: {py.err!r}\nbash: {sh.err!r}"
    assert re.search(pattern, message(py)), message(py)
    if rc:
        assert [ln for ln in py.err.splitlines() if not ln.startswith("hint: ")] == [
            f"ossl-vault: error: {message(py)}"
        ], py.err
        assert sh.err.splitlines() == [f"ossl-vault-audit-verify: error: {message(sh)}"], sh.err


def log_lines(d: Path) -> list[str]:
    return (d / "audit.log").read_text("ascii").split("\n")[:-1]


def write_lines(d: Path, lines: list[str]) -> None:
    (d / "audit.log").write_bytes(("\n".join(lines) + "\n").encode("ascii"))


def set_field(lines: list[str], n: int, i: int, value: str) -> None:
    f = lines[n].split("\t")
    f[i] = value
    lines[n] = "\t".join(f)


def renumber(lines: list[str], start: int) -> None:
    for n in range(start, len(lines)):
        set_field(lines, n, 0, str(n))


def rechain(lines: list[str], start: int) -> None:
    for n in range(start, len(lines)):
        set_field(lines, n, 0, str(n))
        set_field(lines, n, 12, line_hash(lines[n - 1]))


def sign_checkpoint(d: Path, key: Path, count: int, head: str) -> None:
    msg = f"ossl-vault-audit checkpoint\t{count}\t{head}\n".encode()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)], input=msg,
                         check=True, capture_output=True).stdout  # fmt: skip
    spki = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"],
                          check=True, capture_output=True).stdout  # fmt: skip
    b64 = base64.b64encode
    (d / "audit.checkpoint").write_text(f"{count}\t{head}\t{b64(spki).decode()}\t"
                                        f"{b64(sig).decode()}\n")  # fmt: skip


def checkpoint_fields(d: Path) -> list[str]:
    return (d / "audit.checkpoint").read_text().rstrip("\n").split("\t")


# The base vault's records, by number (the checkpoint covers record 9):
BASE_OPS = ["init", "put", "put", "get", "get", "put", "list", "get", "get", "audit", "get", "list"]
CHECKPOINT = 9
LAST_CHANGE = 6


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, keydir: Path) -> tuple[VaultDir, Path]:
    """A vault whose log mixes changes, reads, a failure and a signed checkpoint; and
    a copy of vault.tsv as it was after record 3 (for a rollback)."""
    tmp = tmp_path_factory.mktemp("audit-base")
    v = VaultDir(tmp / "vault", keydir, clean_env(tmp))
    v.ok("init", "--format", "1", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    v.ok("put", "alpha", input=VALUE)
    v.ok("put", "beta", input=VALUE2)
    old_tsv = tmp / "vault.tsv.after-beta"
    shutil.copy(v.path / "vault.tsv", old_tsv)
    v.ok("get", "alpha")
    assert v.run("get", "beta", identity=None).rc == 4
    v.ok("put", "gamma", input=b"gamma value")
    v.ok("list")
    v.ok("get", "gamma")
    v.ok("get", "alpha")
    r = v.ok("audit", "checkpoint")  # --identity rsa.key: a global option
    assert "checkpoint signed over 9 record(s)" in r.err
    v.ok("get", "beta")
    v.ok("list")
    records = read_log(v.path / "audit.log")
    assert [r[6] for r in records] == BASE_OPS
    assert [n for n, r in enumerate(records, 1) if r[11] != "-"][-1] == LAST_CHANGE
    assert checkpoint_fields(v.path)[:2] == [str(CHECKPOINT), line_hash(log_lines(v.path)[9])]
    return v, old_tsv


def _edit_secret(d: Path, ctx: dict) -> None:
    lines = log_lines(d)
    set_field(lines, 4, 7, "beta")  # record 4 read alpha; now it claims beta
    write_lines(d, lines)


def _hide_failure(d: Path, ctx: dict) -> None:
    lines = log_lines(d)
    set_field(lines, 5, 10, "ok")
    write_lines(d, lines)


def _edit_time(d: Path, ctx: dict) -> None:
    lines = log_lines(d)
    set_field(lines, 7, 1, "2001-01-01T00:00:00Z")
    write_lines(d, lines)


def _fabricated(lines: list[str], n: int) -> str:
    f = lines[n - 1].split("\t")
    f[0], f[3], f[6], f[7] = str(n), "mallory", "get", "alpha"
    f[12] = line_hash(lines[n - 1])  # a well-forged PREV
    return "\t".join(f)


def _insert(d: Path, ctx: dict) -> None:
    lines = log_lines(d)
    lines.insert(5, _fabricated(lines, 5))
    write_lines(d, lines)


def _insert_renumbered(d: Path, ctx: dict) -> None:
    lines = log_lines(d)
    lines.insert(5, _fabricated(lines, 5))
    renumber(lines, 6)
    write_lines(d, lines)


def _delete(d: Path, ctx: dict) -> None:
    lines = log_lines(d)
    del lines[4]
    write_lines(d, lines)


def _delete_renumbered(d: Path, ctx: dict) -> None:
    lines = log_lines(d)
    del lines[4]
    renumber(lines, 4)
    write_lines(d, lines)


def _swap(d: Path, ctx: dict) -> None:
    lines = log_lines(d)
    lines[4], lines[5] = lines[5], lines[4]
    write_lines(d, lines)


def _swap_renumbered(d: Path, ctx: dict) -> None:
    lines = log_lines(d)
    lines[4], lines[5] = lines[5], lines[4]
    renumber(lines, 4)
    write_lines(d, lines)


def _rechain_after_edit(d: Path, ctx: dict) -> None:
    """A whole forged chain: only the signed checkpoint can catch it."""
    lines = log_lines(d)
    set_field(lines, 4, 3, "mallory")
    rechain(lines, 5)
    write_lines(d, lines)


def _rechain_and_resign_with_stranger(d: Path, ctx: dict) -> None:
    _rechain_after_edit(d, ctx)
    sign_checkpoint(d, ctx["stranger"], CHECKPOINT, line_hash(log_lines(d)[CHECKPOINT]))


def _truncate_covered(d: Path, ctx: dict) -> None:
    write_lines(d, log_lines(d)[:8])  # records 8.. (reads the checkpoint covers) cut


def _truncate_uncovered_reads(d: Path, ctx: dict) -> None:
    write_lines(d, log_lines(d)[:11])  # the reads after the checkpoint: a documented limit


def _truncate_last_change(d: Path, ctx: dict) -> None:
    write_lines(d, log_lines(d)[:LAST_CHANGE])


def _truncate_last_change_no_checkpoint(d: Path, ctx: dict) -> None:
    (d / "audit.checkpoint").unlink()
    write_lines(d, log_lines(d)[:LAST_CHANGE])


def _tsv_rollback(d: Path, ctx: dict) -> None:
    shutil.copy(ctx["old_tsv"], d / "vault.tsv")


def _tsv_edit(d: Path, ctx: dict) -> None:
    """An unauthenticated field (a recipient's ADDED date) changed outside the tool."""
    text = (d / "vault.tsv").read_text()
    text2 = re.sub(r"^(recipient\thost\t[^\t]*\t[^\t]*\t)(\d)", lambda m: m.group(1) +
                   str((int(m.group(2)) + 1) % 10), text, count=1, flags=re.M)  # fmt: skip
    assert text2 != text
    (d / "vault.tsv").write_text(text2)


def _sig_flip(d: Path, ctx: dict) -> None:
    f = checkpoint_fields(d)
    sig = bytearray(base64.b64decode(f[3]))
    sig[len(sig) // 2] ^= 0x10
    f[3] = base64.b64encode(bytes(sig)).decode()
    (d / "audit.checkpoint").write_text("\t".join(f) + "\n")


def _stranger_signer(d: Path, ctx: dict) -> None:
    f = checkpoint_fields(d)
    sign_checkpoint(d, ctx["stranger"], int(f[0]), f[1])


def _checkpoint_advanced(d: Path, ctx: dict) -> None:
    f = checkpoint_fields(d)
    lines = log_lines(d)
    f[0], f[1] = str(len(lines) - 1), line_hash(lines[-1])
    (d / "audit.checkpoint").write_text("\t".join(f) + "\n")


def _checkpoint_beyond(d: Path, ctx: dict) -> None:
    f = checkpoint_fields(d)
    f[0] = "99"
    (d / "audit.checkpoint").write_text("\t".join(f) + "\n")


def _torn(d: Path, ctx: dict) -> None:
    with (d / "audit.log").open("ab") as fh:
        fh.write(b"13\t2030-01-01T00:00:00Z\t0\troot\thost\t1\tput\tx")


def _bad_header(d: Path, ctx: dict) -> None:
    lines = log_lines(d)
    lines[0] = lines[0].replace("required", "whatever")
    write_lines(d, lines)


def _downgrade_header(d: Path, ctx: dict) -> None:
    lines = log_lines(d)
    lines[0] = lines[0].replace("required", "best-effort")
    write_lines(d, lines)


def _no_change(d: Path, ctx: dict) -> None:
    pass


def _no_checkpoint(d: Path, ctx: dict) -> None:
    (d / "audit.checkpoint").unlink()


def _count_leading_zero(d: Path, ctx: dict) -> None:
    f = checkpoint_fields(d)
    f[0] = "0" + f[0]
    (d / "audit.checkpoint").write_text("\t".join(f) + "\n")


def _empty_field(d: Path, ctx: dict) -> None:
    lines = log_lines(d)
    set_field(lines, 4, 7, "")
    write_lines(d, lines)


def _non_ascii(d: Path, ctx: dict) -> None:
    data = (d / "audit.log").read_bytes()
    lines = data.split(b"\n")
    f = lines[4].split(b"\t")
    f[7] = "alphä".encode()
    lines[4] = b"\t".join(f)
    (d / "audit.log").write_bytes(b"\n".join(lines))


CHAIN = r"\(one was edited, inserted, deleted or moved\)"
MOVED = r"\(inserted, deleted or moved\)"
LAST = (rf"^record {LAST_CHANGE} \(the last change\) does not match vault\.tsv "
        r"\(records after it were removed, or vault\.tsv was changed\)$")  # fmt: skip
BADSIG = r"^the checkpoint signature does not verify$"
XFAIL_AGREE = "BUG: the two verifiers disagree"

TAMPER = [
    pytest.param(_no_change, 0, r"^audit log holds: 12 record\(s\), checkpoint covers 9$",
                 id="clean-with-checkpoint"),
    pytest.param(_no_checkpoint, 0, r"^audit log holds: 12 record\(s\)$", id="clean"),
    pytest.param(_edit_secret, 5, rf"^record 5 does not chain to record 4 {CHAIN}$",
                 id="edit-secret-name"),
    pytest.param(_hide_failure, 5, rf"^record 6 does not chain to record 5 {CHAIN}$",
                 id="edit-result"),
    pytest.param(_edit_time, 5, r"^record 8 does not chain to record 7 ", id="edit-time"),
    pytest.param(_insert, 5, rf"^record 6 has sequence number '5' {MOVED}$", id="insert"),
    pytest.param(_insert_renumbered, 5, r"^record 6 does not chain to record 5 ",
                 id="insert-renumbered"),
    pytest.param(_delete, 5, rf"^record 4 has sequence number '5' {MOVED}$", id="delete"),
    pytest.param(_delete_renumbered, 5, r"^record 4 does not chain to record 3 ",
                 id="delete-renumbered"),
    pytest.param(_swap, 5, rf"^record 4 has sequence number '5' {MOVED}$", id="swap"),
    pytest.param(_swap_renumbered, 5, r"^record 4 does not chain to record 3 ",
                 id="swap-renumbered"),
    pytest.param(_rechain_after_edit, 5, r"^record 9 is not the one checkpoint 9 signed$",
                 id="forged-chain-vs-checkpoint"),
    pytest.param(_rechain_and_resign_with_stranger, 5, BADSIG, id="forged-chain-and-checkpoint"),
    pytest.param(_truncate_covered, 5,
                 r"^the log has 7 records but checkpoint covers 9: it was truncated$",
                 id="truncate-below-checkpoint"),
    pytest.param(_truncate_uncovered_reads, 0, r"^audit log holds: 10 record\(s\), checkpoint",
                 id="truncate-uncovered-reads-documented-limit"),
    pytest.param(_truncate_last_change, 5, r"^record 3 \(the last change\) does not match",
                 id="truncate-after-last-change"),
    pytest.param(_truncate_last_change_no_checkpoint, 5,
                 r"^record 3 \(the last change\) does not match", id="truncate-no-checkpoint"),
    pytest.param(_tsv_rollback, 5, LAST, id="vault-tsv-rolled-back"),
    pytest.param(_tsv_edit, 5, LAST, id="vault-tsv-edited"),
    pytest.param(_sig_flip, 5, BADSIG, id="checkpoint-signature-flipped"),
    pytest.param(_stranger_signer, 5, BADSIG, id="checkpoint-unknown-signer"),
    pytest.param(_checkpoint_advanced, 5, BADSIG, id="checkpoint-count-moved"),
    pytest.param(_checkpoint_beyond, 5,
                 r"^the log has 12 records but checkpoint covers 99: it was truncated$",
                 id="checkpoint-beyond-log"),
    pytest.param(_torn, 5, r"^the audit log ends in a torn line$", id="torn-line"),
    pytest.param(_bad_header, 5, r"^the audit log has a bad header$", id="bad-header"),
    pytest.param(_downgrade_header, 5, r"^record 1 does not chain to record 0 ",
                 id="header-required-to-best-effort"),
    pytest.param(_count_leading_zero, 5, r"^audit.checkpoint is malformed$",
                 id="checkpoint-count-not-canonical"),
    pytest.param(_empty_field, 5, r"^record \d+ is malformed", id="empty-field"),
    pytest.param(_non_ascii, 5, r"^record \d+ is malformed", id="non-ascii"),
]  # fmt: skip


@pytest.mark.parametrize(("tamper", "rc", "pattern"), TAMPER)
def test_tampering_is_caught_by_both_verifiers(
    base: tuple[VaultDir, Path], otherkeys: Path, tmp_path: Path, no_python_path: str,
    tamper: Callable[[Path, dict], None], rc: int, pattern: str,
) -> None:  # fmt: skip
    v0, old_tsv = base
    v = VaultDir(tmp_path / "vault", v0.keydir, v0.env)
    shutil.copytree(v0.path, v.path)
    tamper(v.path, {"old_tsv": old_tsv, "stranger": otherkeys / "rsa.key"})
    py, sh = verdicts(v, tmp_path, no_python_path)
    assert_same_verdict(py, sh, rc, pattern)


def test_checkpoint_needs_a_signing_identity_and_is_verifiable_with_openssl(
    vault: VaultDir, tmp_path: Path, no_python_path: str
) -> None:
    v = vault
    v.ok("put", "a", input=VALUE)
    r = v.run("audit", "checkpoint", identity=None)
    assert r.rc == 4 and "no identity can sign a checkpoint" in r.err
    assert not (v.path / "audit.checkpoint").exists()
    v.ok("--identity", str(v.keydir / "rsa.key"), "audit", "checkpoint", identity=None)
    count, head, signer, sig = checkpoint_fields(v.path)
    lines = log_lines(v.path)
    assert int(count) == len(lines) - 2  # the checkpoint command's own record comes after
    assert head == line_hash(lines[int(count)])
    (tmp_path / "msg").write_text(f"ossl-vault-audit checkpoint\t{count}\t{head}\n")
    (tmp_path / "signer.der").write_bytes(base64.b64decode(signer))
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(sig))
    assert sha_hex(base64.b64decode(signer))[:16] == fpr16(v.keydir / "rsa.key")
    subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "signer.der"),
                    "-keyform", "DER", "-signature", str(tmp_path / "sig.bin"),
                    str(tmp_path / "msg")], check=True, capture_output=True)  # fmt: skip
    assert_same_verdict(*verdicts(v, tmp_path, no_python_path), 0,
                        rf"^audit log holds: {len(lines) - 1} record\(s\), checkpoint covers "
                        rf"{count}$")  # fmt: skip


# -- 3. automatic checkpoints ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "p256"])
@pytest.mark.both_paths
def test_auto_checkpoint_after_each_change(
    tmp_path: Path, keydir: Path, env: dict[str, str], no_python_path: str, kind: str
) -> None:
    v = VaultDir(tmp_path / "vault", keydir, env)
    host = f"host={keydir / (kind + '.pem')}"
    v.ok("init", "--format", "1", "--audit-checkpoints", "--recipient", host, identity=None)
    assert log_lines(v.path)[0] == "ossl-vault-audit\t1\trequired\tcheckpoint"
    assert not (v.path / "audit.checkpoint").exists()  # init had no identity to sign with
    v.ok("put", "a", input=VALUE, identity=kind)
    lines = log_lines(v.path)
    assert lines[-1].split("\t")[6:8] == ["put", "a"]
    count, head, *_ = checkpoint_fields(v.path)
    assert (int(count), head) == (len(lines) - 1, line_hash(lines[-1]))
    assert_same_verdict(*verdicts(v, tmp_path, no_python_path), 0,
                        rf"record\(s\), checkpoint covers {count}$")  # fmt: skip
    # a read does not move it; a change without a signing identity does not either
    v.ok("get", "a", identity=kind)
    v.ok("put", "b", input=VALUE2, identity=None)
    assert checkpoint_fields(v.path)[0] == count
    v.ok("put", "c", input=VALUE2, identity=kind)
    lines = log_lines(v.path)
    assert checkpoint_fields(v.path)[:2] == [str(len(lines) - 1), line_hash(lines[-1])]
    # now cutting the newest change is caught by the checkpoint as well as by INDEX
    write_lines(v.path, lines[:-1])
    py, sh = verdicts(v, tmp_path / "cut", no_python_path)
    assert_same_verdict(py, sh, 5, r"the last change\) does not match vault\.tsv")


# -- 4. fail closed -------------------------------------------------------------------------

NOBODY = 65534


def _setpriv_works() -> bool:
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        return False
    p = subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
                        "--clear-groups", *CLI, "--version"], capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    return p.returncode == 0


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory user nobody can reach (pytest's tmp_path is root's alone)."""
    need(_setpriv_works(), "needs root and setpriv to run the CLI as an unprivileged user")
    d = Path(tempfile.mkdtemp(prefix="ossl-vault-audit-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def as_nobody(v: VaultDir, *args: str, input: bytes = b"") -> Result:
    env = {**v.env, "HOME": str(v.path.parent / "home"), "PYTHONDONTWRITEBYTECODE": "1"}
    setpriv = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
    p = subprocess.run([*setpriv, *CLI, "--vault", str(v.path), *args], input=input,
                       capture_output=True, env=env, timeout=120)  # fmt: skip
    return Result(p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"))


def _nobody_vault(d: Path, keydir: Path, env: dict[str, str], mode: str) -> VaultDir:
    v = VaultDir(d / f"vault-{mode}", keydir, env)
    v.ok("init", "--format", "1", "--audit", mode, "--recipient", f"host={keydir / 'rsa.pem'}",
         identity=None)  # fmt: skip
    v.ok("put", "db", input=VALUE)
    (d / "home").mkdir(exist_ok=True)
    shutil.copy(keydir / "rsa.key", d / "rsa.key")
    for p in [d / "home", d / "rsa.key", v.path, *v.path.rglob("*")]:
        os.chown(p, NOBODY, NOBODY)
    (v.path / "audit.log").chmod(0o400)  # the writer cannot append; root would not care
    return v


@pytest.mark.both_paths
def test_unwritable_log_fails_closed(nobody_dir: Path, keydir: Path, env: dict[str, str]) -> None:
    v = _nobody_vault(nobody_dir, keydir, env, "required")
    tsv, log = (v.path / "vault.tsv").read_bytes(), (v.path / "audit.log").read_bytes()
    r = as_nobody(v, "put", "new", input=VALUE2)
    assert r.rc == 1, r.err
    assert r.err.splitlines()[0] == "ossl-vault: error: cannot write the audit log: " \
                                    "Permission denied"  # fmt: skip
    assert len([ln for ln in r.err.splitlines() if ": error: " in ln]) == 1
    r = as_nobody(v, "--identity", str(nobody_dir / "rsa.key"), "get", "db")
    assert r.rc == 1 and r.out == b"", r.err  # the value is not released unlogged
    r = as_nobody(v, "rm", "db")
    assert r.rc == 1, r.err
    assert (v.path / "vault.tsv").read_bytes() == tsv
    assert (v.path / "audit.log").read_bytes() == log
    # the same writer with a writable log: it works (the setup is not the failure)
    (v.path / "audit.log").chmod(0o600)
    r = as_nobody(v, "put", "new", input=VALUE2)
    assert r.rc == 0, r.err
    rec = read_log(v.path / "audit.log")[-1]
    assert rec[2:4] == [str(NOBODY), "nobody"] and rec[6:8] == ["put", "new"]


@pytest.mark.both_paths
def test_a_short_write_to_the_log_is_cut_back_and_fails_closed(vault: VaultDir) -> None:
    """The file-size limit lets part of a record through: it is cut back, no value goes out."""
    import resource

    v = vault
    v.ok("put", "a", input=VALUE)
    log = v.path / "audit.log"
    before = log.read_bytes()
    limit = len(before) + 40  # less than a record

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    argv = [*CLI, "--vault", str(v.path), "--identity", str(v.keydir / "rsa.key"), "get", "a"]
    p = subprocess.run(argv, capture_output=True, env=v.env, timeout=60,
                       preexec_fn=small_files)  # fmt: skip
    assert (p.returncode, p.stdout) == (1, b""), p.stderr
    assert p.stderr.decode().startswith("ossl-vault: error: cannot write the audit log: ")
    assert log.read_bytes() == before  # no torn line left behind
    v.ok("audit", "verify", identity=None)


@pytest.mark.both_paths
def test_best_effort_goes_ahead_without_the_record(
    nobody_dir: Path, keydir: Path, env: dict[str, str]
) -> None:
    v = _nobody_vault(nobody_dir, keydir, env, "best-effort")
    assert log_lines(v.path)[0] == "ossl-vault-audit\t1\tbest-effort\t-"
    tsv, log = (v.path / "vault.tsv").read_bytes(), (v.path / "audit.log").read_bytes()
    r = as_nobody(v, "put", "new", input=VALUE2)
    assert r.rc == 0, r.err
    assert "warning: 1 audit record(s) could not be written" in r.err  # never silently
    assert (v.path / "vault.tsv").read_bytes() != tsv
    assert (v.path / "audit.log").read_bytes() == log
    r = as_nobody(v, "--identity", str(nobody_dir / "rsa.key"), "get", "new")
    assert (r.rc, r.out) == (0, VALUE2), r.err


@pytest.mark.both_paths
def test_unreadable_log_is_one_error_line(vault: VaultDir) -> None:
    """audit.log replaced by a directory: every command fails with one line, no value."""
    v = vault
    v.ok("put", "db", input=VALUE)
    tsv = (v.path / "vault.tsv").read_bytes()
    (v.path / "audit.log").unlink()
    (v.path / "audit.log").mkdir()
    for args, inp in ((("get", "db"), b""), (("put", "x"), VALUE2)):
        r = v.run(*args, input=inp)
        assert r.rc in (1, 5) and r.out == b"", r.err
        assert (v.path / "vault.tsv").read_bytes() == tsv
        assert "Traceback" not in r.err, f"{args}: {r.err[-400:]}"
        assert len(r.err.splitlines()) <= 2 and r.err.startswith("ossl-vault: error: "), r.err


MISSING = [
    pytest.param(("get", "alpha"), id="get"),
    pytest.param(("put", "new"), id="put"),
    pytest.param(("generate", "gen"), id="generate"),
    pytest.param(("rm", "alpha"), id="rm"),
    pytest.param(("rotate", "alpha"), id="rotate"),
    pytest.param(("recipient", "add", "bob", "{keydir}/p256.pem"), id="recipient-add"),
    pytest.param(("audit",), id="audit"),
    pytest.param(("audit", "verify"), id="audit-verify"),
    pytest.param(("audit", "checkpoint"), id="audit-checkpoint"),
    pytest.param(("list",), id="list"),
    pytest.param(("recipient", "list"), id="recipient-list"),
    pytest.param(("fsck",), id="fsck"),
]


@pytest.mark.parametrize("args", MISSING)
def test_missing_log_refuses_the_vault(
    base: tuple[VaultDir, Path], tmp_path: Path, no_python_path: str, args: tuple[str, ...]
) -> None:
    v0, _ = base
    v = VaultDir(tmp_path / "vault", v0.keydir, v0.env)
    shutil.copytree(v0.path, v.path)
    (v.path / "audit.log").unlink()
    before = v.snapshot()
    r = v.run(*(a.format(keydir=v.keydir) for a in args), input=VALUE2)
    assert r.rc == 5, f"{args}: rc={r.rc} {r.err}"
    assert r.out == b""
    errors = [ln for ln in r.err.splitlines() if ln.startswith("ossl-vault: error: ")]
    assert errors == [f"ossl-vault: error: the audit log '{v.path}/audit.log' is missing"], r.err
    assert not (v.path / "audit.log").exists()
    assert {k: b for k, b in v.snapshot().items() if not k.startswith("blobs/")} == {
        k: b for k, b in before.items() if not k.startswith("blobs/")
    }
    sh = run_bash_verifier(v.path, no_python_path)
    assert sh.rc == 5 and "is missing" in sh.err


# -- 5. crashes --------------------------------------------------------------------------------


def _log_state(path: Path) -> tuple[list[list[str]], bool]:
    """The records (a torn tail left out) and whether there was one."""
    data = path.read_bytes()
    torn = not data.endswith(b"\n")
    whole = data[: data.rfind(b"\n") + 1]
    tmp = path.with_name("audit.log.check")
    tmp.write_bytes(whole)
    try:
        return read_log(tmp), torn
    finally:
        tmp.unlink()


@pytest.mark.parametrize("seed", [1, 2])
def test_kill9_during_put_never_leaves_a_change_without_its_record(
    vault: VaultDir, tmp_path: Path, no_python_path: str, seed: int
) -> None:
    rng = random.Random(f"audit-crash-{seed}")
    v = vault
    t0 = time.monotonic()
    v.ok("put", "warm", input=VALUE)
    duration = time.monotonic() - t0
    states = {"before": 0, "record-only": 0, "landed": 0}
    for trial in range(12):
        before = tsv_hash(v)
        records, _ = _log_state(v.path / "audit.log")
        count = len(records)
        stdin = tmp_path / "value.in"
        stdin.write_bytes(VALUE2 + rng.randbytes(rng.choice([10, 5000, 300_000])))
        with stdin.open("rb") as fh:
            p = subprocess.Popen([*CLI, "--vault", str(v.path), "put", f"s{trial}"], stdin=fh,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env=v.env, start_new_session=True)  # fmt: skip
        time.sleep(rng.uniform(0.25, 1.1) * duration)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=60)

        after = tsv_hash(v)
        records, _torn = _log_state(v.path / "audit.log")
        new = records[count:]
        assert len(new) <= 1 and all(r[6:8] == ["put", f"s{trial}"] for r in new), new
        newest_index = [r[11] for r in records if r[11] != "-"][-1]
        if after != before:  # the change landed: its record is there, and names it
            assert new and newest_index == after, (trial, new)
            states["landed"] += 1
        elif new:  # the record, not the change: the next writer marks it
            assert newest_index != after
            states["record-only"] += 1
        else:
            assert newest_index == after
            states["before"] += 1

        r = v.run("put", f"after{trial}", input=VALUE)
        assert r.rc == 0, r.err
        data = (v.path / "audit.log").read_bytes()
        assert data.endswith(b"\n")
        final = read_log(v.path / "audit.log")
        tail = final[len(records) :]
        assert tail[-1][6:8] == ["put", f"after{trial}"] and tail[-1][11] == tsv_hash(v)
        if newest_index != after:
            assert len(tail) == 2, tail
            assert tail[0][6] == "incomplete" and tail[0][10] == "last-change-did-not-land"
            assert tail[0][11] == after
        else:
            assert len(tail) == 1, tail
    print(f"seed {seed}: {states}")
    py, sh = verdicts(v, tmp_path, no_python_path)
    assert_same_verdict(py, sh, 0, r"^audit log holds: ")


@pytest.mark.both_paths
def test_crash_between_record_and_rename_is_marked_incomplete(
    vault: VaultDir, tmp_path: Path, no_python_path: str
) -> None:
    """The state a kill leaves after the record, before vault.tsv is renamed."""
    v = vault
    v.ok("put", "a", input=VALUE)
    old = (v.path / "vault.tsv").read_bytes()
    v.ok("put", "b", input=VALUE2)
    (v.path / "vault.tsv").write_bytes(old)  # the rename never happened
    n = len(read_log(v.path / "audit.log"))
    py, sh = verdicts(v, tmp_path / "1", no_python_path)
    assert_same_verdict(py, sh, 5, rf"^record {n} \(the last change\) does not match")
    assert v.run("get", "b").rc == 3  # readers see the old state; they add no marker
    v.ok("put", "c", input=VALUE)
    records = read_log(v.path / "audit.log")
    assert [r[6] for r in records[n:]] == ["get", "incomplete", "put"]
    expect(records[n + 1], "incomplete", "-", "-", "-", "last-change-did-not-land", change=True)
    assert records[n + 1][11] == sha_hex(old)
    assert records[n + 2][11] == tsv_hash(v)
    py, sh = verdicts(v, tmp_path / "2", no_python_path)
    assert_same_verdict(py, sh, 0, r"^audit log holds: ")


def test_torn_last_line_is_cut_by_the_next_write(
    vault: VaultDir, tmp_path: Path, no_python_path: str
) -> None:
    v = vault
    v.ok("put", "a", input=VALUE)
    n = len(read_log(v.path / "audit.log"))
    with (v.path / "audit.log").open("ab") as fh:
        fh.write(b"%d\t2030-01-01T00:00:00Z\t0\troot\th\t1\tput\tb\t1" % (n + 1))
    py, sh = verdicts(v, tmp_path / "1", no_python_path)
    assert_same_verdict(py, sh, 5, r"^the audit log ends in a torn line$")
    v.ok("put", "b", input=VALUE2)
    records = read_log(v.path / "audit.log")
    assert len(records) == n + 1 and records[-1][6:8] == ["put", "b"]
    assert b"2030-01-01" not in (v.path / "audit.log").read_bytes()
    py, sh = verdicts(v, tmp_path / "2", no_python_path)
    assert_same_verdict(py, sh, 0, r"^audit log holds: ")


# -- 6. showing the log ------------------------------------------------------------------------


def audit_json(v: VaultDir, *args: str) -> list[dict]:
    r = v.ok("audit", *args, "--json")
    rows = [json.loads(line) for line in r.out.decode().splitlines()]
    for row in rows:
        assert set(row) == JSON_KEYS
        assert isinstance(row["seq"], int)
    return rows


def table_rows(r: Result) -> list[list[str]]:
    lines = r.out.decode().splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "ACTOR", "OP", "SECRET", "VERSION", "KEYS",
                                "RESULT"]  # fmt: skip
    assert set(lines[1]) <= {"-", " "}
    return [ln.split() for ln in lines[2:]]


@pytest.mark.both_paths
def test_audit_filters_and_json(vault: VaultDir) -> None:
    v = vault
    user = getpass.getuser()
    v.ok("put", "a", input=VALUE)
    v.ok("put", "b", input=VALUE2)
    v.ok("get", "a")
    assert v.run("get", "b", identity=None).rc == 4
    v.ok("list")
    everything = audit_json(v)
    assert [r["op"] for r in everything] == ["init", "put", "put", "get", "get", "list"]
    raw = read_log(v.path / "audit.log")[: len(everything)]
    assert [list(map(str, r.values())) for r in everything] == raw
    assert audit_json(v)[-1]["op"] == "audit"  # the previous `audit --json` is logged

    assert [(r["op"], r["secret"]) for r in audit_json(v, "a")] == [("put", "a"), ("get", "a")]
    gets = audit_json(v, "--op", "get")
    assert [(r["secret"], r["result"]) for r in gets] == [("a", "ok"),
                                                          ("b", "exit=4:AccessDenied")]  # fmt: skip
    failed = audit_json(v, "--result", "failed")
    assert [(r["op"], r["secret"], r["result"]) for r in failed] == [
        ("get", "b", "exit=4:AccessDenied")
    ]
    ok = audit_json(v, "--result", "ok")
    assert ok and all(r["result"] == "ok" for r in ok)
    assert audit_json(v, "b", "--op", "get", "--result", "ok") == []
    assert len(audit_json(v, "--actor", user)) == len(audit_json(v)) - 1
    assert len(audit_json(v, "--actor", str(os.getuid()))) > 0
    assert audit_json(v, "--actor", "nobody-such-user") == []

    since = everything[3]["time"]
    rows = audit_json(v, "--since", since)
    assert rows and all(r["time"] >= since for r in rows) and rows[0]["seq"] <= 4
    assert audit_json(v, "--since", "2999-01-01T00:00:00Z") == []
    assert len(audit_json(v, "--since", "2000-01-01T00:00:00Z")) == len(audit_json(v)) - 1

    rows = table_rows(v.ok("audit", "--op", "get"))
    assert [(r[0], r[3], r[4], r[7]) for r in rows] == [
        ("4", "get", "a", "ok"), ("5", "get", "b", "exit=4:AccessDenied")]  # fmt: skip
    assert rows[0][2] == f"{user}@{socket.gethostname()}"
    assert v.run("audit", "a", "verify").rc == 2


def test_audit_since_rejects_a_bad_time(vault: VaultDir) -> None:
    r = vault.run("audit", "--since", "yesterday")
    assert r.rc == 2 and "yesterday" in r.err
