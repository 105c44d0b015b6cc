"""Issue 10: a damaged audit log, a crash between record and rename, what the chain claims.

Each test reproduces one finding of the adversarial pass through the real CLI
(and, where it judges the log, the bash verifier too).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import CLI, VaultDir, assert_error, need
from test_audit import assert_same_verdict, log_lines, read_log, run_bash_verifier, verdicts

VALUE = b"hardening-value-0f3a"
NEW = b"hardening-new-value-77b1"


def _rewrite(d: Path, mutate) -> None:
    data = (d / "audit.log").read_bytes()
    (d / "audit.log").write_bytes(mutate(data))


def test_non_ascii_header_field_is_a_clean_integrity_failure(
    vault: VaultDir, tmp_path: Path, no_python_path: str
) -> None:
    v = vault
    v.ok("put", "a", input=VALUE)
    _rewrite(v.path, lambda b: b.replace(b"\t-\n", "\t\u00e9\n".encode(), 1))
    py, sh = verdicts(v, tmp_path, no_python_path)
    assert_same_verdict(py, sh, 5, r"^the audit log has a bad header$")
    assert_error(v.run("put", "b", input=VALUE), 5, "bad header")  # writers check it too


def test_non_ascii_in_a_record_a_checkpoint_covers(
    vault: VaultDir, tmp_path: Path, no_python_path: str
) -> None:
    v = vault
    v.ok("put", "a", input=VALUE)
    v.ok("audit", "checkpoint")
    lines = (v.path / "audit.log").read_bytes().split(b"\n")
    f = lines[2].split(b"\t")
    f[4] = "h\u00f4st".encode()
    lines[2] = b"\t".join(f)
    (v.path / "audit.log").write_bytes(b"\n".join(lines))
    py, sh = verdicts(v, tmp_path, no_python_path)
    assert_same_verdict(py, sh, 5, r"^record 2 is malformed$")


def test_a_giant_sequence_number_in_the_last_record(
    vault: VaultDir, tmp_path: Path, no_python_path: str
) -> None:
    v = vault
    v.ok("put", "a", input=VALUE)
    lines = log_lines(v.path)
    f = lines[-1].split("\t")
    f[0] = "9" * 5000
    lines[-1] = "\t".join(f)
    (v.path / "audit.log").write_text("\n".join(lines) + "\n")
    for args in (("list",), ("get", "a"), ("audit",)):
        r = v.run(*args)
        assert "Traceback" not in r.err and r.rc in (0, 5), (args, r.rc, r.err)
    py, sh = verdicts(v, tmp_path, no_python_path)
    assert py.rc == sh.rc == 5, (py.err, sh.err)
    assert v.run("put", "b", input=VALUE).rc == 0  # a writer still appends after it


def test_checkpoint_with_a_giant_count(
    vault: VaultDir, tmp_path: Path, no_python_path: str
) -> None:
    v = vault
    v.ok("put", "a", input=VALUE)
    v.ok("audit", "checkpoint")
    f = (v.path / "audit.checkpoint").read_text().split("\t")
    f[0] = "1" * 5000
    (v.path / "audit.checkpoint").write_text("\t".join(f))
    py, sh = verdicts(v, tmp_path, no_python_path)
    assert_same_verdict(py, sh, 5, r"^audit.checkpoint is malformed$")


# -- 3. a writer killed after its record, before vault.tsv's rename -------------------------


def strace_put(v: VaultDir, name: str, value: bytes, when: int) -> int:
    """``put`` killed by SIGKILL at its WHEN-th rename: the one that would have put the
    change in place (format 1: vault.tsv's, after the blob's; format 2: the journal's)."""
    need(shutil.which("strace") is not None, "needs strace")
    inject = f"inject=rename,renameat,renameat2:signal=SIGKILL:when={when}"
    argv = ["strace", "-o", "/dev/null", "-e", inject, *CLI, "--vault", str(v.path), "put", name]
    p = subprocess.run(argv, input=value, capture_output=True, env=v.env, timeout=120)
    return p.returncode


@pytest.mark.parametrize("fmt", ["1", "2"])
def test_crash_after_the_record_is_not_a_tamper_alarm(
    vault: VaultDir, tmp_path: Path, no_python_path: str, fmt: str
) -> None:
    v = VaultDir(tmp_path / f"v{fmt}", vault.keydir, vault.env)
    v.ok("init", "--format", fmt, "--recipient", f"host={vault.keydir / 'rsa.pem'}",
         identity=None)  # fmt: skip
    v.ok("put", "a", input=VALUE)
    before = v.secret_file("a").read_bytes()
    rc = strace_put(v, "a", NEW, 2 if fmt == "1" else 1)
    assert rc != 0
    assert v.secret_file("a").read_bytes() == before  # the change did not land
    last = read_log(v.path / "audit.log")[-1]
    assert last[6:9] == ["put", "a", "2"] and last[10] == "ok"  # ... but its record did
    assert v.ok("get", "a").out == VALUE

    py, sh = verdicts(v, tmp_path / "1", no_python_path)
    assert_same_verdict(py, sh, 0, r"^audit log holds: ")
    n = last[0]
    for r in (py, sh):
        assert f"note: record {n} (put) did not land" in r.err, r.err
    r = v.ok("fsck")
    assert f"audit record {n} (put) did not land" in r.err, r.err
    rows = [ln.split() for ln in v.ok("audit", "a").out.decode().splitlines()[2:]]
    assert [row[-1] for row in rows if row[0] == n] == ["did-not-land"], rows
    shown = v.ok("audit", "--result", "ok").out.decode().splitlines()[2:]
    assert n not in [ln.split()[0] for ln in shown]

    # (a vault.tsv merely rolled back, with no such evidence, is still exit 5:
    # test_audit.py::test_crash_between_record_and_rename_is_marked_incomplete)
    v.ok("put", "b", input=VALUE)  # the next writer marks it; it still shows as not landed
    rows = [ln.split() for ln in v.ok("audit", "a").out.decode().splitlines()[2:]]
    assert [row[-1] for row in rows if row[0] == n] == ["did-not-land"], rows
    py, sh = verdicts(v, tmp_path / "2", no_python_path)
    assert_same_verdict(py, sh, 0, r"^audit log holds: ")


@pytest.mark.parametrize("fmt", ["1", "2"])
def test_a_planted_temporary_file_does_not_hide_an_edit(
    vault: VaultDir, tmp_path: Path, no_python_path: str, fmt: str
) -> None:
    """A change that did not land leaves its new bytes in a .tmp.* file *and* the file as
    the record before left it. Whoever copies a record file to .tmp.* and then edits it
    has the first half only: still an integrity failure, in both verifiers."""
    v = VaultDir(tmp_path / f"v{fmt}", vault.keydir, vault.env)
    v.ok("init", "--format", fmt, "--recipient", f"host={vault.keydir / 'rsa.pem'}",
         identity=None)  # fmt: skip
    v.ok("put", "a", input=VALUE)
    f = v.secret_file("a")
    (v.path / ".tmp.1.00000001").write_bytes(f.read_bytes())  # the bytes the log expects
    edited = f.read_bytes().replace(b"secret\ta\t1\t", b"secret\ta\t2\t")
    assert edited != f.read_bytes()
    f.write_bytes(edited)
    py, sh = verdicts(v, tmp_path / "edited", no_python_path)
    assert_same_verdict(py, sh, 5, r"does not match")
    assert "did not land" not in py.err + sh.err


@pytest.mark.parametrize("fmt", ["1", "2"])
def test_the_next_writer_does_not_mark_an_edit_as_a_change_that_did_not_land(
    vault: VaultDir, tmp_path: Path, no_python_path: str, fmt: str
) -> None:
    """The next writer marks a last change that did not land with an ``incomplete``
    record of the file's real hash. A file that is not as the change before left it
    was edited, not cut by a crash: marking it would write the edit into the chain, so
    the write is refused (exit 5), nothing is written, and verify still reports it."""
    v = VaultDir(tmp_path / f"v{fmt}", vault.keydir, vault.env)
    v.ok("init", "--format", fmt, "--recipient", f"host={vault.keydir / 'rsa.pem'}",
         identity=None)  # fmt: skip
    v.ok("put", "a", input=VALUE)
    v.ok("put", "a", input=NEW)  # the last change, of a's file
    f = v.secret_file("a")
    edited = f.read_bytes().replace(b"secret\ta\t2\t", b"secret\ta\t3\t")
    assert edited != f.read_bytes()
    f.write_bytes(edited)
    before = len(read_log(v.path / "audit.log"))
    assert_error(v.run("put", "b", input=VALUE), 5, "changed outside ossl-vault")
    new = read_log(v.path / "audit.log")[before:]  # the failure's record alone: no incomplete
    assert [(r[6], r[7], r[10]) for r in new] == [("put", "b", "exit=5:IntegrityError")]
    assert (
        b"secret\tb\t" not in v.secret_file("b").read_bytes()
        if fmt == "1"
        else (not v.secret_file("b").exists())
    )  # b was not written
    py, sh = verdicts(v, tmp_path / "edited", no_python_path)
    assert_same_verdict(py, sh, 5, r"does not match")


def test_an_empty_temporary_file_is_no_evidence_for_a_removal(
    vault: VaultDir, tmp_path: Path, no_python_path: str
) -> None:
    """A purge's record binds the file's absence (the SHA-256 of nothing); a file put back
    beside an empty .tmp.* file is a file changed outside ossl-vault, not a crash."""
    vault.ok("put", "a", input=VALUE)
    kept = vault.secret_file("a").read_bytes()
    vault.ok("rm", "a")
    vault.ok("purge", "a")
    vault.secret_file("a").write_bytes(kept)
    (vault.path / ".tmp.1.00000002").write_bytes(b"")
    py, sh = verdicts(vault, tmp_path / "restored", no_python_path)
    assert_same_verdict(py, sh, 5, r"does not match")


# -- 5. what an unkeyed chain does not protect ------------------------------------------------


def test_verify_warns_about_records_no_checkpoint_signs(
    vault: VaultDir, tmp_path: Path, no_python_path: str
) -> None:
    v = vault
    v.ok("put", "a", input=VALUE)
    py, sh = verdicts(v, tmp_path / "1", no_python_path)
    for r in (py, sh):
        assert r.rc == 0
        assert "warning: records 1 to 2 and no checkpoint signs them" in r.err, r.err
    v.ok("audit", "checkpoint")
    v.ok("list")
    py, sh = verdicts(v, tmp_path / "2", no_python_path)
    for r in (py, sh):
        assert r.rc == 0
        assert "warning: records 3 to 4 after the last signed checkpoint" in r.err, r.err


def test_init_turns_checkpoints_on_when_the_user_can_sign(
    tmp_path: Path, keydir: Path, env: dict[str, str], no_python_path: str
) -> None:
    v = VaultDir(tmp_path / "vault", keydir, env)
    r = v.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}")  # identity: rsa.key
    assert "audit checkpoints on" in r.err, r.err
    assert log_lines(v.path)[0].endswith("\tcheckpoint")
    assert (v.path / "audit.checkpoint").exists()
    v.ok("put", "a", input=VALUE)
    assert (v.path / "audit.checkpoint").read_text().split("\t")[0] == "2"
    py, sh = run_bash_verifier(v.path, no_python_path), v.run("audit", "verify")
    assert py.rc == sh.rc == 0, (py.err, sh.err)

    w = VaultDir(tmp_path / "other", keydir, env)  # nobody here can sign: off, and said
    r = w.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    assert "audit checkpoints off" in r.err, r.err
    assert log_lines(w.path)[0].endswith("\t-")


# -- 10. audit on a missing or broken vault ----------------------------------------------------


@pytest.mark.parametrize("how", ["no-vault", "no-tsv", "tsv-directory"])
def test_audit_on_a_missing_vault(vault: VaultDir, tmp_path: Path, how: str) -> None:
    v = vault
    if how == "no-vault":
        v = VaultDir(tmp_path / "nowhere", vault.keydir, vault.env)
    elif how == "no-tsv":  # recipients.tsv (format 2) or vault.tsv (format 1)
        v.record_files()[0].unlink()
    else:
        index = v.record_files()[0]
        index.unlink()
        index.mkdir()
    for args in (("audit", "verify"), ("audit",), ("audit", "a")):
        assert_error(v.run(*args), 3, "no vault")
