"""The shared driver suite: every storage driver behind storage/backend.py passes it.

Drivers: a format-2 directory (the default), a format-1 directory, SQLite. Each
test runs on all three: round trips through the real CLI and through the
interface, compare-and-swap under 8 concurrent writer processes (no lost
update), kill -9 in the middle of commits of several secrets (all or nothing),
bad input, and listing 10,000 names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CLI, ROOT, VaultDir, assert_error, need

from ossl_vault.errors import IntegrityError, VaultError
from ossl_vault.storage.audit import AuditLog, Event
from ossl_vault.storage.backend import Change, ConflictError
from ossl_vault.storage.store import open_backend

DRIVERS = {"dir2": [], "dir1": ["--format", "1"], "sqlite": ["--storage", "sqlite"]}
FMT = {"dir2": "2", "dir1": "1", "sqlite": "sqlite"}
AUDIT_VERIFY = ROOT / "scripts" / "ossl-vault-audit-verify"


@pytest.fixture(params=list(DRIVERS))
def driver(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def cli_vault(tmp_path: Path, keydir: Path, env: dict[str, str], driver: str) -> VaultDir:
    v = VaultDir(tmp_path / "vault", keydir, env)
    v.ok("init", *DRIVERS[driver], "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    return v


def raw_vault(path: Path, driver: str):
    """A vault made through the interface alone, holding synthetic parts."""
    backend = open_backend(path, 30, FMT[driver])
    backend.create()
    AuditLog(path).create("required", False)
    backend.commit(Change(Event("init"), recipients=b""))
    return backend


def counter_line(name: str, n: int) -> bytes:
    # shaped like a record line (TYPE TAB NAME ...), which is all a driver looks at
    return f"ledger\t{name}\t1\tnew\t{n}\n".encode()


def counter(backend, name: str) -> tuple[int, str | None]:
    part = backend.secret(name)
    if part is None:
        return 0, None
    return int(part.data.split(b"\t")[-1]), part.revision


# -- round trips ----------------------------------------------------------------------


def test_cli_round_trip(cli_vault: VaultDir, driver: str, keydir: Path) -> None:
    v = cli_vault
    v.ok("put", "db/prod", input=b"one")
    v.ok("put", "db/prod", input=b"two")
    v.ok("put", "app/token", input=b"\x00binary\xff")
    assert v.ok("get", "db/prod").out == b"two"
    assert v.ok("get", "db/prod", "--version", "1").out == b"one"
    assert v.ok("get", "app/token").out == b"\x00binary\xff"
    assert "db/prod" in v.ok("list").out.decode()
    v.ok("recipient", "add", "alice", str(keydir / "p256.pem"))
    v.ok("rotate")
    v.ok("rekey")
    assert v.ok("get", "db/prod", identity="p256").out == b"two"
    v.ok("unshare", "app/token", "alice")
    assert_error(v.run("get", "app/token", identity="p256"), 4)
    v.ok("rm", "app/token")
    assert_error(v.run("get", "app/token"), 3, "'app/token'")
    r = v.ok("fsck")
    assert "unreferenced" not in r.err, r.err
    v.ok("audit", "verify")
    if driver != "sqlite":  # the bash verifier reads files; SQLite needs sqlite3
        subprocess.run(["bash", str(AUDIT_VERIFY), str(v.path)], check=True, capture_output=True)


def test_interface_round_trip(tmp_path: Path, driver: str) -> None:
    b = raw_vault(tmp_path / "v", driver)
    assert b.names() == [] and b.recipients().data == b""
    b.commit(Change(Event("put"), secrets={"a/b": counter_line("a/b", 1)},
                    expect_secrets={"a/b": None}, blobs={"00" * 32: b"x"}))  # fmt: skip
    assert counter(b, "a/b")[0] == 1 and b.names() == ["a/b"]
    # a blob is checked against its name
    with pytest.raises(IntegrityError):
        b.blob("00" * 32)
    b.commit(
        Change(Event("rm"), secrets={"a/b": None}, expect_secrets={"a/b": counter(b, "a/b")[1]})
    )
    assert b.secret("a/b") is None and b.names() == []


# -- compare-and-swap --------------------------------------------------------------------


def test_a_stale_revision_is_refused_and_writes_nothing(tmp_path: Path, driver: str) -> None:
    b = raw_vault(tmp_path / "v", driver)
    b.commit(Change(Event("put"), secrets={"c": counter_line("c", 1)}, expect_secrets={"c": None}))
    _, rev = counter(b, "c")
    b.commit(Change(Event("put"), secrets={"c": counter_line("c", 2)}, expect_secrets={"c": rev}))
    before = (tmp_path / "v" / "audit.log").read_bytes()
    with pytest.raises(ConflictError) as e:
        b.commit(Change(Event("put"), secrets={"c": counter_line("c", 99)},
                        expect_secrets={"c": rev}))  # fmt: skip
    assert e.value.exit_code == 6
    assert counter(b, "c")[0] == 2
    assert (tmp_path / "v" / "audit.log").read_bytes() == before
    # creating what already exists is a conflict too
    with pytest.raises(ConflictError):
        b.commit(Change(Event("put"), secrets={"c": counter_line("c", 5)},
                        expect_secrets={"c": None}))  # fmt: skip


WRITER = """
import sys
from ossl_vault.storage.store import open_backend
from ossl_vault.storage.backend import Change, ConflictError
from ossl_vault.storage.audit import Event
path, fmt, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = open_backend(path, 60, fmt)
conflicts = 0
for _ in range(rounds):
    while True:
        part = b.secret("counter")
        n = int(part.data.split(b"\\t")[-1]) if part else 0
        line = f"ledger\\tcounter\\t1\\tnew\\t{n + 1}\\n".encode()
        try:
            b.commit(Change(Event("put", "counter"), secrets={"counter": line},
                            expect_secrets={"counter": part.revision if part else None}))
            break
        except ConflictError:
            conflicts += 1
print(conflicts)
"""


def test_eight_concurrent_writers_lose_no_update(tmp_path: Path, driver: str) -> None:
    """Lock-free read-modify-commit with CAS: every increment of 8 processes lands."""
    raw_vault(tmp_path / "v", driver)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "v"), FMT[driver], "15"],
                         stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
        for _ in range(8)
    ]  # fmt: skip
    conflicts = 0
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        conflicts += int(out)
    b = open_backend(tmp_path / "v", 30, FMT[driver])
    assert counter(b, "counter")[0] == 8 * 15
    print(f"{driver}: {conflicts} conflicts retried")
    records = [x.split("\t") for x in (tmp_path / "v" / "audit.log").read_text().splitlines()[1:]]
    assert sum(r[6] == "put" for r in records) == 8 * 15  # one record per landed change


# -- crash safety -------------------------------------------------------------------------

BULK = """
import sys
from ossl_vault.storage.store import open_backend
from ossl_vault.storage.backend import Change
from ossl_vault.storage.audit import Event
path, fmt = sys.argv[1], sys.argv[2]
b = open_backend(path, 60, fmt)
names = [f"s{i}" for i in range(5)]
for n in range(1, 100000):
    secrets = {name: f"ledger\\t{name}\\t1\\tnew\\t{n}\\n".encode() for name in names}
    rec = f"recipient\\tr\\t{n}\\n".encode()
    with b.locked():
        b.commit(Change(Event("rotate"), recipients=rec, secrets=secrets))
    print(n, flush=True)
"""


def test_kill9_during_commits_of_several_secrets_leaves_all_or_nothing(
    tmp_path: Path, driver: str
) -> None:
    path = tmp_path / "v"
    raw_vault(path, driver)
    for trial in range(6):
        p = subprocess.Popen([sys.executable, "-c", BULK, str(path), FMT[driver]],
                             stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             start_new_session=True)  # fmt: skip
        assert p.stdout is not None
        p.stdout.readline()  # it is committing
        time.sleep(0.05 + 0.07 * trial)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        b = open_backend(path, 30, FMT[driver])
        seen = {counter(b, f"s{i}")[0] for i in range(5)}
        seen.add(int(b.recipients().data.split(b"\t")[2]))
        assert len(seen) == 1, f"trial {trial}: a torn commit: {seen}"
        with b.locked():  # the next writer finishes or drops what the kill left
            pass
        b.commit(Change(Event("put"), secrets={"after": counter_line("after", trial)}))
        leftovers = [f.name for f in path.iterdir() if f.name.startswith((".tmp.", ".commit"))]
        assert leftovers == []


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "a//b", "/abs", "a/../../b", ".", ""])
def test_a_bad_name_reaches_no_file(tmp_path: Path, driver: str, name: str) -> None:
    b = raw_vault(tmp_path / "v", driver)
    with pytest.raises(VaultError):
        b.commit(Change(Event("put"), secrets={name: counter_line(name, 1)}))
    with pytest.raises(VaultError):
        b.secret(name)
    assert not (tmp_path / "escape").exists() and b.names() == []


def test_damaged_records_fail_closed(cli_vault: VaultDir, driver: str) -> None:
    v = cli_vault
    v.ok("put", "a", input=b"value")
    if driver == "sqlite":
        import sqlite3

        db = sqlite3.connect(v.path / "vault.sqlite")
        db.execute("UPDATE parts SET data = CAST(replace(CAST(data AS TEXT), 'ledger', 'ledgex')"
                   " AS BLOB) WHERE name = 'a'")  # fmt: skip
        db.commit()
        db.close()
    else:
        f = v.secret_file("a")
        f.write_bytes(f.read_bytes().replace(b"ledger\ta", b"ledgex\ta"))
    before = v.snapshot()
    assert_error(v.run("get", "a"), 5)
    assert_error(v.run("put", "a", input=b"new"), 5)
    assert v.snapshot() == before


def test_listing_ten_thousand_names(tmp_path: Path, driver: str) -> None:
    b = raw_vault(tmp_path / "v", driver)
    names = [f"team{i % 10}/svc{i:05d}" for i in range(10_000)]
    if driver == "dir2":  # the files as a commit writes them, without 10,000 fsyncs
        for n in names:
            path = tmp_path / "v" / "secrets" / f"{n}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(counter_line(n, 1))
    else:
        b.commit(Change(Event("import"), secrets={n: counter_line(n, 1) for n in names}))
    assert b.names() == sorted(names)
    assert counter(b, "team3/svc00003")[0] == 1


def test_bundle_round_trip_to_a_directory_vault(
    cli_vault: VaultDir, driver: str, tmp_path: Path, keydir: Path, otherkeys: Path
) -> None:
    """Same records, same MACs: a bundle from any driver imports into a format-2 vault
    and back into a vault of the driver, with every version."""
    history = [b"one", b"two", b"three"]
    for value in history:
        cli_vault.ok("put", "app/token", input=value)
    bundle = tmp_path / "app.bundle"
    cli_vault.ok("export", "app/token", "--bundle", "--to", str(otherkeys / "p256.pem"),
                 "--out", str(bundle))  # fmt: skip
    other = VaultDir(tmp_path / "other", otherkeys, cli_vault.env)
    other.ok("init", "--recipient", f"me={otherkeys / 'p256.pem'}", identity=None)
    other.ok("import", "--bundle", str(bundle), identity="p256")
    for number, value in enumerate(history, start=1):
        assert other.ok("get", "app/token", "--version", str(number), identity="p256").out == value
    back = tmp_path / "back.bundle"
    other.ok("export", "app/token", "--bundle", "--to", str(keydir / "rsa.pem"),
             "--out", str(back), identity="p256")  # fmt: skip
    again = VaultDir(tmp_path / "again", keydir, cli_vault.env)
    again.ok("init", *DRIVERS[driver], "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    again.ok("import", "--bundle", str(back))
    assert again.ok("get", "app/token", "--version", "2").out == b"two"
    again.ok("audit", "verify")


# -- format 2's audit binding (format.md section 7): one record per file -----------------


def verdicts(v: VaultDir, driver: str) -> list[tuple[int, str]]:
    """(exit, message) of `audit verify`, and of the bash verifier for a directory."""
    r = v.run("audit", "verify", identity=None)
    out = [(r.rc, r.err.splitlines()[0].split("error: ", 1)[-1])]
    if driver == "dir2":
        sh = subprocess.run(
            ["bash", str(AUDIT_VERIFY), str(v.path)], capture_output=True, text=True
        )
        out.append((sh.returncode, sh.stderr.splitlines()[0].split("error: ", 1)[-1]))
    return out


@pytest.fixture
def bound(tmp_path: Path, keydir: Path, env: dict[str, str], request: pytest.FixtureRequest):
    driver = request.param
    v = VaultDir(tmp_path / "vault", keydir, env)
    v.ok("init", *DRIVERS[driver], "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    v.ok("put", "a", input=b"1")
    v.ok("put", "b/c", input=b"2")
    v.ok("put", "a", input=b"3")
    v.ok("get", "a")
    return v, driver


V2_DRIVERS = pytest.mark.parametrize("bound", ["dir2", "sqlite"], indirect=True)


@V2_DRIVERS
def test_each_change_binds_the_file_it_wrote(bound) -> None:
    v, driver = bound
    records = v.audit()
    changes = [(r[6], r[7], r[11][:3]) for r in records if r[11] != "-"]
    assert changes == [("init", "-", "v2:"), ("put", "a", "v2:"), ("put", "b/c", "v2:"),
                       ("put", "a", "v2:")]  # fmt: skip
    if driver == "dir2":
        want = "v2:" + hashlib.sha256((v.path / "secrets" / "a.tsv").read_bytes()).hexdigest()
        assert records[-2][11] == want
    v.ok("rm", "b/c")  # a soft delete: a state line in the secret's file
    assert v.audit()[-1][6:8] == ["rm", "b/c"]
    if driver == "dir2":
        kept = (v.path / "secrets" / "b" / "c.tsv").read_bytes()
        assert v.audit()[-1][11] == "v2:" + hashlib.sha256(kept).hexdigest()
    v.ok("purge", "b/c")  # the file goes: bound to the hash of nothing
    assert v.audit()[-1][6:8] == ["purge", "b/c"]
    assert v.audit()[-1][11] == "v2:" + hashlib.sha256(b"").hexdigest()
    assert all(rc == 0 for rc, _ in verdicts(v, driver))


@V2_DRIVERS
def test_cutting_the_last_change_is_caught(bound) -> None:
    v, driver = bound
    log = v.path / "audit.log"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-2]))  # the last put of 'a' and the get after it
    for rc, message in verdicts(v, driver):
        assert rc == 5 and "the last change of the file of 'a'" in message, message


def test_a_file_changed_or_added_outside_is_caught(tmp_path: Path, keydir: Path, env) -> None:
    v = VaultDir(tmp_path / "vault", keydir, env)
    v.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    v.ok("put", "a", input=b"1")
    v.ok("put", "b", input=b"2")
    saved = (v.path / "secrets" / "a.tsv").read_bytes()
    v.ok("put", "a", input=b"3")
    (v.path / "secrets" / "a.tsv").write_bytes(saved)  # rolled back by hand
    for rc, message in verdicts(v, "dir2"):
        assert rc == 5 and "does not match it" in message, message
    v.ok("put", "a", input=b"4")
    shutil.copy(v.path / "secrets" / "b.tsv", v.path / "secrets" / "z.tsv")
    for rc, message in verdicts(v, "dir2"):
        assert rc == 5 and "no record binds the file of 'z'" in message, message


def test_a_crash_between_record_and_rename_is_marked_incomplete(
    tmp_path: Path, keydir: Path, env: dict[str, str]
) -> None:
    """The state a kill leaves after the record, before the file is renamed."""
    v = VaultDir(tmp_path / "vault", keydir, env)
    v.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    v.ok("put", "a", input=b"1")
    old = (v.path / "secrets" / "a.tsv").read_bytes()
    v.ok("put", "a", input=b"2")
    (v.path / "secrets" / "a.tsv").write_bytes(old)  # the rename never happened
    assert v.ok("get", "a").out == b"1"
    v.ok("put", "other", input=b"x")  # the next writer marks the lost change
    marks = [r for r in v.audit() if r[6] == "incomplete"]
    assert [(r[7], r[11]) for r in marks] == [("a", "v2:" + hashlib.sha256(old).hexdigest())]
    assert all(rc == 0 for rc, _ in verdicts(v, "dir2"))


# -- migrate ------------------------------------------------------------------------------


def test_migrate_dry_run_then_migrate(tmp_path: Path, keydir: Path, env: dict[str, str]) -> None:
    v = VaultDir(tmp_path / "vault", keydir, env)
    v.ok("init", "--format", "1", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    v.ok("put", "db/prod", input=b"one")
    v.ok("put", "db/prod", input=b"two")
    v.ok("put", "app", input=b"three")
    before = v.snapshot()
    r = v.ok("migrate", "--dry-run")
    assert r.out.decode().split() == ["recipients.tsv", "secrets/app.tsv", "secrets/db/prod.tsv"]
    assert v.snapshot() == before
    v.ok("migrate")
    assert (
        not (v.path / "vault.tsv").exists() and (v.path / "secrets" / "db" / "prod.tsv").is_file()
    )
    assert v.ok("get", "db/prod", "--version", "1").out == b"one"
    assert [r[6] for r in v.audit()][-4:] == ["migrate"] * 3 + ["get"]
    for rc, err in verdicts(v, "dir2"):
        assert rc == 0, err
    assert_error(v.run("migrate"), 2, "already format 2")
    # the recovery script reads the migrated vault
    p = subprocess.run(["bash", str(ROOT / "scripts" / "ossl-vault-recover"), str(v.path), "app",
                        str(keydir / "rsa.key")], capture_output=True)  # fmt: skip
    assert p.returncode == 0 and p.stdout == b"three", p.stderr


def test_kill9_during_migrate_leaves_format_1_or_2(
    tmp_path: Path, keydir: Path, env: dict[str, str]
) -> None:
    template = VaultDir(tmp_path / "template", keydir, env)
    template.ok("init", "--format", "1", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    template.ok("put", "real", input=b"the value")
    b = open_backend(template.path, 30, "1")
    part = b.secret("real")
    assert part is not None
    clones = {f"c/{i:04d}": part.data.replace(b"\treal\t", f"\tc/{i:04d}\t".encode())
              for i in range(200)}  # fmt: skip
    b.commit(Change(Event("bench"), secrets=clones))
    seen = set()
    for trial in range(4):
        v = VaultDir(tmp_path / f"v{trial}", keydir, env)
        shutil.copytree(template.path, v.path)
        p = subprocess.Popen([*CLI, "--vault", str(v.path), "migrate"], env=env,
                             start_new_session=True, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(0.3 + 0.4 * trial)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        fmt = "2" if (v.path / "recipients.tsv").exists() else "1"
        seen.add(fmt)
        assert v.ok("get", "real").out == b"the value", f"trial {trial}: format {fmt}"
        assert len(v.ok("list", "--json").out.splitlines()) == 201
        if fmt == "1":
            v.ok("migrate")
        v.ok("put", "after", input=b"x")  # a writer finishes what the kill left
        assert not (v.path / "vault.tsv").exists()
        for rc, err in verdicts(v, "dir2"):
            assert rc == 0, f"trial {trial}: {err}"
    print(f"formats found after the kills: {sorted(seen)}")


@pytest.mark.parametrize(
    "journal",
    [
        b"delete\t../outside/victim\n",
        b"rename\tsecrets/a.tsv\t../outside/planted\n",
        b"rename\t../outside/shadow\tsecrets/a.tsv\n",
        b"rename\t.tmp.1.abcdef01\t/etc/passwd\n",
        b"delete\tsecrets\n",
        b"delete\tsecrets/../../outside/victim.tsv\n",
        b"\xff\n",
        b"rename\t.tmp.1.abcdef01\n",
        b"rename\t\t.tmp.1.abcdef01\tsecrets/a.tsv\n",  # bash's read folds a doubled TAB
        b"rename\t.tmp.1.abcdef01\tsecrets/a.tsv\rdelete\trecipients.tsv\n",  # CR: no line end
        None,  # a directory where the journal would be
        "tmp-link",  # a well-formed step whose TMP is a symbolic link out of the vault
    ],
)
def test_a_hostile_or_damaged_journal_is_refused(
    tmp_path: Path, keydir: Path, env: dict[str, str], journal: bytes | str | None
) -> None:
    """A .commit that names anything but the vault's records (a teammate can commit one
    with git add -f) is an integrity failure for readers and writers: nothing outside
    the vault is read, moved or removed, and no error line quotes another file."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep me")
    (outside / "victim.tsv").write_text("keep me too")
    (outside / "shadow").write_text("root:$6$SECRETHASH:0:0\n")
    v = VaultDir(tmp_path / "vault", keydir, env)
    v.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    v.ok("put", "a", input=b"value")
    if journal is None:
        (v.path / ".commit").mkdir()
    elif journal == "tmp-link":
        (v.path / ".tmp.1.abcdef01").symlink_to(outside / "shadow")
        (v.path / ".commit").write_bytes(b"rename\t.tmp.1.abcdef01\tsecrets/a.tsv\n")
    else:
        (v.path / ".commit").write_bytes(journal)
    for args in (("put", "b"), ("get", "a"), ("list",)):
        r = v.run(*args, input=b"x")
        if journal == "tmp-link":  # refused as a damaged journal, or as a link on a path
            assert_error(r, 5)
            assert "is damaged" in r.err or "symbolic link" in r.err, r.err
        else:
            assert_error(r, 5, "commit journal '.commit' is damaged")
        assert "SECRETHASH" not in r.err
    recover = [str(ROOT / "scripts" / "ossl-vault-recover"), str(v.path), "a"]
    p = subprocess.run(["bash", *recover, str(keydir / "rsa.key")], capture_output=True)
    assert (p.returncode, p.stdout) == (5, b""), p.stderr  # the recovery script too
    assert b"SECRETHASH" not in p.stderr
    assert (outside / "victim").read_text() == "keep me"
    assert (outside / "victim.tsv").read_text() == "keep me too"
    assert sorted(p.name for p in outside.iterdir()) == ["shadow", "victim", "victim.tsv"]


def test_a_commit_cut_halfway_reads_alike_in_python_and_bash(
    tmp_path: Path, keydir: Path, env: dict[str, str]
) -> None:
    """A put killed after its new blob's rename but before its secret file's leaves
    .commit: get reads the new version through the journal (format.md section 1), and
    the recovery script, following the same page with bash and openssl, must too."""
    need(shutil.which("strace") is not None, "needs strace")
    v = VaultDir(tmp_path / "vault", keydir, env)
    v.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    v.ok("put", "a", input=b"old value")
    inject = "inject=rename,renameat,renameat2:signal=SIGKILL:when=3"  # .commit, blob, FILE
    argv = ["strace", "-o", "/dev/null", "-e", inject, *CLI, "--vault", str(v.path), "put", "a"]
    p = subprocess.run(argv, input=b"new value", capture_output=True, env=env, timeout=120)
    assert p.returncode != 0
    assert (v.path / ".commit").is_file()  # cut halfway: the journal is still there
    assert v.ok("get", "a").out == b"new value"
    recover = [str(ROOT / "scripts" / "ossl-vault-recover"), str(v.path), "a"]
    p = subprocess.run(["bash", *recover, str(keydir / "rsa.key")], capture_output=True)
    assert (p.returncode, p.stdout) == (0, b"new value"), p.stderr
    py, sh = verdicts(v, "dir2")  # both verifiers read the journal too: the log holds
    assert py[0] == sh[0] == 0, (py, sh)
    v.ok("put", "b", input=b"x")  # the next writer finishes the journal
    assert not (v.path / ".commit").exists() and v.ok("get", "a").out == b"new value"


def test_the_journal_accepts_the_spellings_its_patterns_did() -> None:
    """journal.py reads its TMP and TARGET fields without re (issue 15): exactly what
    the patterns it had accepted, only ASCII digits and lowercase hex among them."""
    import random
    import re

    from ossl_vault.storage import journal

    tmp = re.compile(r"\.tmp\.[0-9]{1,10}\.[0-9a-f]{8,16}\Z")
    blob = re.compile(r"blobs/[0-9a-f]{64}\Z")
    names = ".tmp.1.abcdef01 .tmp.1234567890.0123456789abcdef .tmp.12345678901.abcdef01"
    names += " .tmp..abcdef01 .tmp.1.abcdef0 .tmp.1.0123456789abcdef0 .tmp.1.ABCDEF01"
    names += " .tmp.\u0663.abcdef01 .tmp.1.abcdef01. x.tmp.1.abcdef01 .tmp.1.abc.def01"
    names += " .tmp.1.abcdef01/x .tmp.1abcdef01 tmp.1.abcdef01"
    cases = [*names.split(), "", ".tmp.1.abcdef01\n"]
    rnd = random.Random(15)
    for _ in range(20000):
        pid = "".join(rnd.choice("0123456789" * 9 + "\u0663a.") for _ in range(rnd.randint(0, 12)))
        tag = "".join(
            rnd.choice("0123456789abcdef" * 4 + "A.\n") for _ in range(rnd.randint(6, 18))
        )
        cases.append(f".tmp.{pid}.{tag}")
    assert [n for n in cases if journal._is_tmp(n) != bool(tmp.match(n))] == []
    assert sum(map(journal._is_tmp, cases)) > 100
    for digits in ["a" * 64, "a" * 63, "A" * 64, "a" * 65, "a" * 64 + "\n", "\u0663" * 64]:
        for rel in (f"blobs/{digits}", f"xblobs/{digits}"):
            try:
                accepted = journal._target(rel) == rel
            except IntegrityError:
                accepted = False
            assert accepted == bool(blob.match(rel)), rel


def test_both_verifiers_see_a_planted_journal(
    tmp_path: Path, keydir: Path, env: dict[str, str]
) -> None:
    """A .commit and temporary files planted with no audit record for them: get would
    read the planted bytes, so both verifiers judge the vault as get reads it (exit 5
    with the same words); the bash one once hashed the plain files and passed."""
    v = VaultDir(tmp_path / "vault", keydir, env)
    v.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    v.ok("put", "a", input=b"value")
    newer = VaultDir(tmp_path / "newer", keydir, env)
    shutil.copytree(v.path, newer.path)
    newer.ok("put", "a", input=b"planted")
    new_file = newer.path / "secrets" / "a.tsv"
    blob = next(line.split("\t")[13] for line in new_file.read_text().splitlines()
                if line.startswith("secret\ta\t2\t"))  # fmt: skip
    shutil.copy(newer.path / "blobs" / blob, v.path / ".tmp.1.bbbbbbbb")
    shutil.copy(new_file, v.path / ".tmp.1.aaaaaaaa")
    (v.path / ".commit").write_text(
        f"rename\t.tmp.1.bbbbbbbb\tblobs/{blob}\nrename\t.tmp.1.aaaaaaaa\tsecrets/a.tsv\n"
    )
    assert v.ok("get", "a").out == b"planted"  # what a reader now gets
    py, sh = verdicts(v, "dir2")
    assert py == sh and py[0] == 5 and "does not match" in py[1], (py, sh)


@pytest.mark.parametrize("how", ["dash-name", "symlink"])
def test_both_verifiers_refuse_a_secret_file_no_writer_makes(
    tmp_path: Path, keydir: Path, env: dict[str, str], how: str
) -> None:
    """secrets/-.tsv once shadowed recipients.tsv in the bash verifier (both keyed '-'),
    so a recipient line could be added unseen; a symlinked record file is not the
    vault's either. Both verifiers exit 5."""
    v = VaultDir(tmp_path / "vault", keydir, env)
    v.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    v.ok("put", "a", input=b"value")
    if how == "dash-name":
        shutil.copy(v.path / "recipients.tsv", v.path / "secrets" / "-.tsv")
        with open(v.path / "recipients.tsv", "a") as f:
            f.write("recipient\tzz-added\tx\n")
    else:
        (tmp_path / "elsewhere.tsv").write_bytes((v.path / "secrets" / "a.tsv").read_bytes())
        (v.path / "secrets" / "b.tsv").symlink_to(tmp_path / "elsewhere.tsv")
    for rc, _message in verdicts(v, "dir2"):
        assert rc == 5


@pytest.mark.parametrize("link", ["folder", "file"])
def test_a_symlink_under_secrets_is_refused_for_reads_and_writes(
    tmp_path: Path, keydir: Path, env: dict[str, str], link: str
) -> None:
    """git keeps symlinks: a committed `secrets/db -> /elsewhere` must not carry a write
    or a read outside the vault. Every command that meets it exits 5, and nothing is
    written or read there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    v = VaultDir(tmp_path / "vault", keydir, env)
    v.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    v.ok("put", "db/real", input=b"value")
    if link == "folder":
        shutil.move(str(v.path / "secrets" / "db" / "real.tsv"), elsewhere / "real.tsv")
        (v.path / "secrets" / "db").rmdir()
        (v.path / "secrets" / "db").symlink_to(elsewhere)
    else:
        shutil.move(str(v.path / "secrets" / "db" / "real.tsv"), elsewhere / "real.tsv")
        (v.path / "secrets" / "db" / "real.tsv").symlink_to(elsewhere / "real.tsv")
    before = sorted(p.name for p in elsewhere.iterdir())
    assert_error(v.run("put", "db/x", input=b"new"), 5, "symbolic link")
    assert_error(v.run("get", "db/real"), 5, "symbolic link")
    if link == "file":  # the readers' words and hint, whole-vault read or not
        assert_error(v.run("list"), 5, "'secrets/db/real.tsv' in vault", "passes through")
    recover = [str(ROOT / "scripts" / "ossl-vault-recover"), str(v.path), "db/real"]
    p = subprocess.run(["bash", *recover, str(keydir / "rsa.key")], capture_output=True)
    assert p.returncode == 5 and b"symbolic link" in p.stderr, p.stderr  # the script too
    assert sorted(p.name for p in elsewhere.iterdir()) == before


def test_a_temporary_name_already_taken_is_drawn_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write_temp never opens a file that exists (O_EXCL), and draws another name
    instead of failing: a bulk commit stages 20,000 temporary files in one folder."""
    from ossl_vault.storage import files

    draws = iter([b"\x11" * 8, b"\x11" * 8, b"\x22" * 8])
    monkeypatch.setattr(files.os, "urandom", lambda n: next(draws)[:n])
    taken = tmp_path / f".tmp.{os.getpid()}.{'11' * 8}"
    taken.write_bytes(b"someone's")
    first = files.write_temp(str(tmp_path / "a.tsv"), b"mine")
    assert first == str(tmp_path / f".tmp.{os.getpid()}.{'22' * 8}")
    assert Path(first).read_bytes() == b"mine"
    assert taken.read_bytes() == b"someone's"
