"""No false assurance (issue 9): fsck's count, exit codes that match the table,
init's .gitignore (a reused recipient name: test_cli.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conftest import VaultDir, assert_error, need


def test_fsck_without_a_usable_identity_is_not_consistent(vault: VaultDir) -> None:
    vault.ok("put", "a", input=b"1")
    vault.ok("put", "b", input=b"2")
    r = vault.run("fsck", identity="p256")  # not a recipient: no MAC can be checked
    assert r.rc == 4, r.err
    assert "no record's MAC could be checked (2 record(s))" in r.err
    assert "vault is consistent" not in r.err
    r = vault.ok("fsck")
    assert "vault is consistent: MACs of 2 of 2 record(s) checked" in r.err
    vault.ok("recipient", "add", "ec", str(vault.keydir / "p256.pem"))
    vault.ok("put", "c", "--to", "ec", input=b"3")
    r = vault.ok("fsck")  # some checked: consistent, and it says what was not
    assert "MACs of 2 of 3 record(s) checked, 1 not (no usable identity)" in r.err


def test_exit_codes_follow_the_table(vault: VaultDir, tmp_path: Path) -> None:
    vault.ok("put", "a", input=b"1")
    r = vault.run("get", "a", "--out", str(tmp_path / "no" / "such" / "dir" / "f"))
    assert_error(r, 1, "cannot write")  # an I/O error: 1, not a usage error
    assert_error(vault.run("audit", "nosuch"), 3, "'nosuch'")
    assert vault.ok("audit", "a").out  # a secret with records
    vault.ok("rm", "a")
    vault.ok("audit", "a")  # removed, but it has a history: not "not found"
    assert_error(vault.run("list", "--exposed-to", "nobody"), 3, "'nobody'")
    vault.ok("list", "--exposed-to", "host")  # a recipient who can read nothing now: 0


def test_init_writes_a_gitignore_for_the_lock_files(vault: VaultDir, tmp_path: Path) -> None:
    need(shutil.which("git") is not None, "git")
    assert (vault.path / ".gitignore").read_text() == ".lock\n.audit.lock\n.tmp.*\n.commit\n"
    vault.ok("put", "a", input=b"1")
    assert (vault.path / ".lock").exists()

    def git(*args: str) -> str:
        env = {**vault.env, "GIT_CONFIG_NOSYSTEM": "1"}
        p = subprocess.run(["git", "-C", str(vault.path), *args], capture_output=True,
                           text=True, check=True, env=env)  # fmt: skip
        return p.stdout

    git("init", "-q")
    git("add", "-A")
    staged = set(git("diff", "--cached", "--name-only").split())
    assert ".lock" not in staged and ".audit.lock" not in staged, staged
    assert {"recipients.tsv", "secrets/a.tsv", "audit.log", ".gitignore"} <= staged, staged
