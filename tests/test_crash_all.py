"""Promise 4 for every writing command: kill -9 at each instant that commits anything.

Each writing command runs under ``strace``, which sends it SIGKILL on entry to
its K-th ``rename`` (each one publishes a blob, vault.tsv, a checkpoint or a
share file) or its K-th ``fsync`` (each one makes a write durable: blob,
index, audit record, directory), for K = 1, 2, ... until the command gets
through unharmed. After every kill, with no later write, ``fsck`` and both
audit verifiers (``audit verify`` and the bash ``scripts/ossl-vault-audit-verify``)
must pass and the lock must be free; the values are the old ones or the new.
tests/test_crash.py adds kills at random instants of ``put``, openssl
children included.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import CLI, VaultDir, clean_env, need
from test_audit import run_bash_verifier
from test_crash import lock_is_free

from ossl_vault.format.seal import Identities
from ossl_vault.format.wrapping import key_file_identity
from ossl_vault.ops.vault import Vault
from ossl_vault.storage import audit
from ossl_vault.storage.audit import AuditLog
from ossl_vault.storage.store import Store

SWEEPS = ("rename,renameat,renameat2", "fsync,fdatasync")
MAX_POINTS = 40  # a command with more commit points than this is cut short (none has)
VALUES = {"a": b"value of a", "b": b"value of b", "c": b"value of c"}
NEW_A = (b"a new value of a", b"new a")  # what put and import write


@pytest.fixture(scope="module", autouse=True)
def identities(keydir: Path) -> None:
    global IDS
    IDS = Identities([key_file_identity(str(keydir / "rsa.key"), True)])  # type: ignore[list-item]


IDS: Identities


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory, keydir: Path) -> dict[str, Path]:
    """Two vaults to copy for each kill: 'plain' and 'recovery' (with a quorum and its shares).

    host (RSA, default) reads everything; p256 reads c; x25519 was added as a
    default recipient after the secrets were written, so rekey has work to do.
    """
    d = tmp_path_factory.mktemp("crash-templates")
    env = clean_env(d)
    v = VaultDir(d / "plain", keydir, env)
    v.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}")
    v.ok("recipient", "add", "p256", str(keydir / "p256.pem"), "--no-default")
    for name, value in VALUES.items():
        v.ok("put", name, input=value)
    v.ok("share", "c", "p256")
    v.ok("recipient", "add", "x25519", str(keydir / "x25519.pem"))
    r = VaultDir(d / "recovery", keydir, env)
    shutil.copytree(v.path, r.path)
    out = r.ok("recovery", "split", "-n", "2", "-k", "2").out.decode()
    (d / "shares.txt").write_text(out)
    (d / "import.json").write_text('{"imported/one": "1", "imported/two": "2", "a": "new a"}')
    return {"plain": v.path, "recovery": r.path, "dir": d}


def commands(
    t: dict[str, Path], keydir: Path, out: Path
) -> dict[str, tuple[str, list[str], bytes]]:
    """name -> (template, argv after the global options, stdin)."""
    return {
        "put": ("plain", ["put", "a"], b"a new value of a"),
        "rotate": ("plain", ["rotate", "a", "c"], b""),
        "share": ("plain", ["share", "a", "p256"], b""),
        "unshare": ("plain", ["unshare", "c", "p256"], b""),
        "rekey": ("plain", ["rekey"], b""),
        "recipient-rm": ("plain", ["recipient", "rm", "p256"], b""),
        "import": ("plain", ["import", "--json-file", str(t["dir"] / "import.json")], b""),
        "recovery-split": (
            "plain",
            ["recovery", "split", "-n", "3", "-k", "2", "--out-dir", str(out)],
            b"",
        ),
        "recovery-combine": (
            "recovery",
            [
                "recovery",
                "combine",
                "--share-file",
                str(t["dir"] / "shares.txt"),
                "--add-recipient",
                "carol",
                str(keydir / "p384.pem"),
            ],
            b"",
        ),
    }


def killed_at(v: VaultDir, argv: list[str], stdin: bytes, syscalls: str, k: int) -> bool:
    """Run the command with SIGKILL at the K-th call of ``syscalls``: was it killed?"""
    inject = f"inject={syscalls}:signal=SIGKILL:when={k}"
    full = ["strace", "-o", "/dev/null", "-e", inject, *CLI, "--vault", str(v.path),
            "--identity", str(v.keydir / "rsa.key"), *argv]  # fmt: skip
    p = subprocess.run(full, input=stdin, capture_output=True, env=v.env, timeout=300)
    if p.returncode in (-9, 137):
        return True
    assert p.returncode == 0, f"{argv} (no kill): exit {p.returncode}: {p.stderr.decode()}"
    return False


def check_after_kill(v: VaultDir, where: str) -> None:
    """What fsck and audit verify check, through the library in this process (the CLI
    is a thin layer over them, run after the last kill): no new process per check."""
    store = Store(v.path)
    problems = Vault(str(v.path)).fsck(IDS)
    assert not [p for p in problems if p[0] == "error"], f"{where}: fsck: {problems}"
    index = store.read_index()
    verdict = audit.verify(AuditLog(v.path), store.audit_state(), audit.signature_checker(index))
    assert not verdict.problems, f"{where}: audit verify: {verdict.problems}"
    assert lock_is_free(v.path), f"{where}: the lock is still held"
    lib = Vault(str(v.path))
    for name, value in VALUES.items():
        got = lib.get(name, IDS)
        assert got == value or (name == "a" and got in NEW_A), f"{where}: get {name}: {got!r}"


def check_cli_after_kill(v: VaultDir, where: str, no_python_path: str) -> None:
    r = v.run("fsck")
    assert r.rc == 0 and "error" not in r.err, f"{where}: fsck exit {r.rc}: {r.err}"
    r = v.run("audit", "verify", identity=None)
    assert r.rc == 0, f"{where}: audit verify exit {r.rc}: {r.err}"
    r = run_bash_verifier(v.path, no_python_path)
    assert r.rc == 0, f"{where}: ossl-vault-audit-verify exit {r.rc}: {r.err}"


@pytest.mark.parametrize(
    "command",
    [
        "put",
        "rotate",
        "share",
        "unshare",
        "rekey",
        "recipient-rm",
        "import",
        "recovery-split",
        "recovery-combine",
    ],
)
def test_kill9_at_every_commit_point(
    templates: dict[str, Path], keydir: Path, env: dict[str, str], tmp_path: Path,
    no_python_path: str, command: str,
) -> None:  # fmt: skip
    need(shutil.which("strace") is not None, "needs strace (scripts/install-test-deps)")
    kills = 0
    for syscalls in SWEEPS:
        for k in range(1, MAX_POINTS + 1):
            where = f"{command}, SIGKILL at {syscalls.split(',')[0]} #{k}"
            out = tmp_path / f"shares-{syscalls[:5]}-{k}"
            template, argv, stdin = commands(templates, keydir, out)[command]
            v = VaultDir(tmp_path / f"v-{syscalls[:5]}-{k}", keydir, env)
            shutil.copytree(templates[template], v.path)
            if not killed_at(v, argv, stdin, syscalls, k):
                break
            kills += 1
            check_after_kill(v, where)
            if syscalls == SWEEPS[0]:  # the CLI and the bash verifier, once a rename point
                check_cli_after_kill(v, where, no_python_path)
            shutil.rmtree(v.path)
        else:
            pytest.fail(f"{command}: more than {MAX_POINTS} {syscalls} calls")
    print(f"{command}: {kills} kills, fsck and both verifiers passed after each")
    assert kills >= 3
