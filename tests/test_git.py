"""A vault in git: `git-setup`, and a real merge of two clones (docs/teams.md).

Two clones that change different secrets merge with plain `git pull`: the
secrets' files do not overlap and the audit-log merge driver joins the two
chains with a merge record, which both verifiers check. Two clones that change
the same secret conflict on that secret's file alone.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, VaultDir, need

AUDIT_VERIFY = ROOT / "scripts" / "ossl-vault-audit-verify"


def git(
    cwd: Path, *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=check)  # fmt: skip


@pytest.fixture
def clones(tmp_path: Path, keydir: Path, env: dict[str, str]) -> tuple[VaultDir, VaultDir, dict]:
    need(shutil.which("git") is not None, "git is not installed")
    genv = {**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}  # fmt: skip
    a = tmp_path / "a"
    git(tmp_path, "init", "-q", "-b", "main", str(a), env=genv)
    va = VaultDir(a / "vault", keydir, genv)
    va.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    va.ok("put", "shared", input=b"v1")
    r = va.ok("git-setup")
    assert "configured the merge driver" in r.err
    assert (a / "vault" / ".gitattributes").read_text() == "audit.log merge=ossl-vault-audit\n"
    git(a, "add", "-A", env=genv)
    git(a, "commit", "-q", "-m", "vault", env=genv)
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(a), str(b), env=genv)
    vb = VaultDir(b / "vault", keydir, genv)
    vb.ok("git-setup")  # the driver lives in each clone's config
    return va, vb, genv


def verdicts(v: VaultDir) -> list[tuple[int, str]]:
    r = v.run("audit", "verify", identity=None)
    sh = subprocess.run(["bash", str(AUDIT_VERIFY), str(v.path)], capture_output=True, text=True)
    return [(r.rc, r.err), (sh.returncode, sh.stderr)]


def commit(v: VaultDir, env: dict, message: str) -> None:
    git(v.path.parent, "add", "-A", env=env)
    git(v.path.parent, "commit", "-q", "-m", message, env=env)


def test_different_secrets_merge_without_conflict(clones) -> None:
    va, vb, genv = clones
    va.ok("put", "from-a", input=b"A")
    va.ok("get", "shared")
    commit(va, genv, "a: from-a")
    vb.ok("put", "from-b", input=b"B")
    vb.ok("put", "shared2", input=b"B2")
    commit(vb, genv, "b: from-b")
    r = git(vb.path.parent, "pull", "--no-rebase", "--no-edit", "-q", env=genv, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert vb.ok("get", "from-a").out == b"A" and vb.ok("get", "from-b").out == b"B"
    merges = [rec for rec in vb.audit() if rec[6] == "merge"]
    assert len(merges) == 1
    for rc, err in verdicts(vb):
        assert rc == 0, err
    # a record of either side edited after the merge is caught by both verifiers
    log = vb.path / "audit.log"
    good = log.read_text()
    lines = good.splitlines(keepends=True)
    at = next(i for i, x in enumerate(lines) if "\tmerge\t" in x)
    theirs = lines[at + 1].replace("\tfrom-a\t", "\tfrom-x\t")
    log.write_text("".join([*lines[: at + 1], theirs, *lines[at + 2 :]]))
    for rc, err in verdicts(vb):
        assert rc == 5 and "does not chain" in err, err
    # ... and so is one dropped, even with the chain rebuilt around it
    log.write_text(good)
    vb.ok("put", "after-merge", input=b"C")  # the log goes on after a merge
    for rc, err in verdicts(vb):
        assert rc == 0, err


def test_a_forged_merge_copy_is_caught(clones) -> None:
    """Rechaining a changed copy hides nothing: the merge record names their head."""
    import hashlib

    va, vb, genv = clones
    va.ok("put", "from-a", input=b"A")
    commit(va, genv, "a")
    vb.ok("put", "from-b", input=b"B")
    commit(vb, genv, "b")
    git(vb.path.parent, "pull", "--no-rebase", "--no-edit", "-q", env=genv)
    log = vb.path / "audit.log"
    lines = log.read_text().splitlines()
    at = next(i for i, x in enumerate(lines) if "\tmerge\t" in x)
    f = lines[at + 1].split("\t")
    f[7] = "from-x"  # edit their record, then rebuild the whole chain after it
    lines[at + 1] = "\t".join(f)
    for i in range(at + 1, len(lines)):
        g = lines[i].split("\t")
        g[12] = hashlib.sha256((lines[i - 1] + "\n").encode()).hexdigest()
        lines[i] = "\t".join(g)
    log.write_text("\n".join(lines) + "\n")
    for rc, err in verdicts(vb):
        assert rc == 5 and "not the other side's" in err, err


def test_the_same_secret_conflicts_on_its_file_alone(clones) -> None:
    va, vb, genv = clones
    va.ok("put", "shared", input=b"from a")
    commit(va, genv, "a: shared")
    vb.ok("put", "shared", input=b"from b")
    vb.ok("put", "other", input=b"o")
    commit(vb, genv, "b: shared")
    r = git(vb.path.parent, "pull", "--no-rebase", "--no-edit", "-q", env=genv, check=False)
    assert r.returncode != 0
    unmerged = git(vb.path.parent, "diff", "--name-only", "--diff-filter=U", env=genv).stdout
    assert unmerged.split() == ["vault/secrets/shared.tsv"]
    # docs/teams.md: keep one side's file, re-apply the other change with the tool
    git(vb.path.parent, "checkout", "--ours", "vault/secrets/shared.tsv", env=genv)
    vb.ok("put", "shared", input=b"from a, then b")
    commit(vb, genv, "merge")
    assert vb.ok("get", "shared").out == b"from a, then b"
    for rc, err in verdicts(vb):
        assert rc == 0, err
