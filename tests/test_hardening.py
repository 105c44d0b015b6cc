"""Issue 10: what kill -9, a fuzzer and a second account found, one test per finding.

Everything runs the real CLI in a subprocess against real openssl.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import CLI, ROOT, VaultDir, assert_error, need
from test_audit import _setpriv_works, read_log
from test_sharing import expired_cert

VALUE = b"hardening-value-\x00\xff-9c1e"


# -- 1. get --out onto a FIFO, a character device, a symlink to one ---------------------------


def test_get_out_writes_into_a_fifo_without_replacing_it(vault: VaultDir, tmp_path: Path) -> None:
    vault.ok("put", "a", input=VALUE)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = vault.run("get", "a", "--out", str(fifo))
    if reader.is_alive():  # unblock the reader should get have replaced the FIFO
        with open(fifo, "wb", opener=lambda p, f: os.open(p, f | os.O_NONBLOCK)):
            pass
    reader.join(timeout=30)
    assert r.rc == 0, r.err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
    assert got == [VALUE]


def test_get_out_onto_character_devices_and_symlinks_to_them(
    vault: VaultDir, tmp_path: Path
) -> None:
    vault.ok("put", "a", input=VALUE)
    link = tmp_path / "null-link"
    link.symlink_to("/dev/null")
    r = vault.run("get", "a", "--out", str(link))
    assert r.rc == 0 and r.out == b"", r.err
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    if os.geteuid() == 0:  # a private device node: what replaced /dev/full as root
        node = tmp_path / "full"
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        r = vault.run("get", "a", "--out", str(node))
        assert_error(r, 1, "No space left on device")
        assert stat.S_ISCHR(os.lstat(node).st_mode), "the device node was replaced"
    # /dev/stdout: a symlink to the caller's fd 1 (here a pipe)
    r = vault.run("get", "a", "--out", "/dev/stdout")
    assert r.rc == 0 and r.out == VALUE, r.err


def test_get_out_refuses_other_non_regular_targets(vault: VaultDir, tmp_path: Path) -> None:
    vault.ok("put", "a", input=VALUE)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        assert_error(vault.run("get", "a", "--out", str(sock_path)), 2, "not a regular file")
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    finally:
        sock.close()
    assert_error(vault.run("get", "a", "--out", str(tmp_path)), 2, "is a directory")
    # a symlink to a regular file: the target is replaced (0600), the link stays
    target = tmp_path / "real"
    target.write_bytes(b"old")
    (tmp_path / "link").symlink_to(target)
    vault.ok("get", "a", "--out", str(tmp_path / "link"))
    assert (tmp_path / "link").is_symlink() and target.read_bytes() == VALUE
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


# -- 4. recovery split delivers before it commits --------------------------------------------


def test_split_to_a_full_stdout_leaves_no_recovery_key(vault: VaultDir) -> None:
    v = vault
    v.ok("put", "a", input=VALUE)
    argv = [*CLI, "--vault", str(v.path), "--identity", str(v.keydir / "rsa.key"),
            "recovery", "split", "-n", "3", "-k", "2"]  # fmt: skip
    with open("/dev/full", "wb") as full:
        p = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, env=v.env, timeout=120)
    err = p.stderr.decode()
    assert p.returncode == 1 and "cannot print the shares" in err, err
    assert "recovery" not in v.tsv()
    r = v.ok("recovery", "split", "-n", "3", "-k", "2")  # not refused: no key was added
    assert r.out.count(b"# ossl-vault recovery share") == 3 or r.out.count(b"\n") > 3


def test_split_files_are_partial_until_the_commit(vault: VaultDir, tmp_path: Path) -> None:
    v = vault
    v.ok("put", "a", input=VALUE)
    out = tmp_path / "shares"
    # the commit fails (the lock is held): only .partial files were written, then removed
    import filelock

    lock = filelock.FileLock(str(v.path / ".lock"))
    with lock:
        r = v.run("--lock-timeout", "0", "recovery", "split", "-n", "2", "-k", "2",
                  "--out-dir", str(out))  # fmt: skip
    assert_error(r, 6, "busy")
    assert list(out.iterdir()) == []
    v.ok("recovery", "split", "-n", "2", "-k", "2", "--out-dir", str(out))
    assert sorted(p.name for p in out.iterdir()) == [
        "recovery-share-1-of-2.txt", "recovery-share-2-of-2.txt"]  # fmt: skip


# -- 6. a vault directory the user may not read -----------------------------------------------


def test_unreadable_vault_is_one_error_line_exit_4(vault: VaultDir, tmp_path: Path) -> None:
    need(_setpriv_works(), "needs root and setpriv to run the CLI as an unprivileged user")
    v = vault
    v.ok("put", "a", input=VALUE)
    os.chmod(tmp_path, 0o755)
    os.chmod(v.path, 0o700)  # root's, as /etc/ossl-vault
    setpriv = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    env = {**v.env, "HOME": "/nonexistent"}
    for args in (["get", "a"], ["list"], ["put", "b"], ["fsck"], ["audit"], ["audit", "verify"],
                 ["rotate"], ["recipient", "list"]):  # fmt: skip
        p = subprocess.run([*setpriv, *CLI, "--vault", str(v.path), *args], input=b"x",
                           capture_output=True, env=env, timeout=120, cwd="/")  # fmt: skip
        r_err = p.stderr.decode()
        lines = r_err.splitlines()
        assert p.returncode == 4, (args, r_err)
        assert lines[0].startswith("ossl-vault: error: ") and "permission denied" in lines[0]
        assert len(lines) == 2 and lines[1].startswith("hint: ") and "group" in lines[1], r_err


# -- 8. a new recovery key after 'recipient rm recovery' ---------------------------------------


def test_recovery_split_again_after_recipient_rm_recovery(vault: VaultDir) -> None:
    v = vault
    v.ok("put", "a", input=VALUE)
    v.ok("recovery", "split", "-n", "2", "-k", "2")
    v.ok("put", "a", input=b"second")
    v.ok("recipient", "rm", "recovery")
    r = v.ok("recovery", "split", "-n", "2", "-k", "2")
    shares = [ln for ln in r.out.decode().splitlines() if ln and not ln.startswith("#")]
    text = "".join(s + "\n" for s in shares).encode()
    got = v.run("recovery", "combine", "--share-file", "-", "--get", "a", input=text,
                identity=None)  # fmt: skip
    assert got.rc == 0 and got.out == b"second", got.err
    v.ok("recovery", "rotate", "-n", "2", "-k", "2")


# -- 9. --lock-timeout -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "1e400"])
def test_lock_timeout_out_of_range_is_a_usage_error(vault: VaultDir, value: str) -> None:
    assert_error(vault.run("--lock-timeout", value, "put", "a", input=VALUE), 2, "lock-timeout")
    r = vault.run("put", "a", input=VALUE, env={"OSSL_VAULT_LOCK_TIMEOUT": value})
    assert_error(r, 2, "lock-timeout")


# -- 11. import of deeply nested JSON ----------------------------------------------------------


def test_import_of_deeply_nested_json(vault: VaultDir, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert_error(vault.run("import", "--json-file", str(deep)), 2, "nested too deeply")
    deep.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    r = vault.run("import", "--json-file", str(deep))
    assert r.rc == 2 and "Traceback" not in r.err, r.err


def test_serve_answers_deeply_nested_json_with_an_error(vault: VaultDir) -> None:
    argv = [*CLI, "--vault", str(vault.path), "serve", "--stdio"]
    line = b"[" * 50_000 + b"]" * 50_000 + b"\n"
    p = subprocess.run(argv, input=line, capture_output=True, env=vault.env, timeout=120)
    assert p.returncode == 0 and b"not valid JSON" in p.stdout, (p.stdout[:200], p.stderr)


# -- 12. an expired certificate; a crash's audit record ---------------------------------------


def test_recipient_add_of_an_expired_certificate_warns(vault: VaultDir, tmp_path: Path) -> None:
    expired_cert(tmp_path, "old")
    r = vault.ok("recipient", "add", "old", str(tmp_path / "old.pem"))
    assert "warning: certificate of recipient 'old' expired on 2020-02-01" in r.err, r.err
    assert "'host'" not in r.err


def test_an_unexpected_exception_is_one_line_exit_1_and_audited(vault: VaultDir) -> None:
    """The top-level handler, driven by a real bug planted in-process (no test hook
    in the product): `list` whose library call raises."""
    code = (
        "import sys\n"
        "from ossl_vault.ops import vault as v\n"
        "def boom(*args, **kwargs):\n"
        "    raise RuntimeError('planted bug')\n"
        "v.Vault.list = boom\n"
        "from ossl_vault.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    p = subprocess.run([sys.executable, "-c", code, "--vault", str(vault.path), "list"],
                       capture_output=True, env=vault.env, timeout=120, cwd=ROOT)  # fmt: skip
    err = p.stderr.decode()
    assert p.returncode == 1 and "Traceback" not in err, err
    assert err.splitlines()[0] == "ossl-vault: error: internal error: RuntimeError: planted bug"
    last = read_log(vault.path / "audit.log")[-1]
    assert last[6] == "list" and last[10] == "exit=1:RuntimeError", last


def test_conftest_catches_a_traceback(vault: VaultDir) -> None:
    """The suite-wide guard: a traceback on an ossl-vault stderr is recorded."""
    import conftest

    p = subprocess.Popen([sys.executable, "-c", "raise SystemExit('ok')", "ossl_vault"],
                         stderr=subprocess.PIPE)  # fmt: skip
    p.communicate(timeout=30)
    assert conftest._TRACEBACKS == []
    code = "import sys; sys.argv.append('ossl_vault'); raise ValueError('x')"
    p = subprocess.Popen([sys.executable, "-c", code, "ossl_vault"], stderr=subprocess.PIPE)
    p.communicate(timeout=30)
    assert len(conftest._TRACEBACKS) == 1
    conftest._TRACEBACKS.clear()


def test_audit_shows_json_of_a_shared_copy(vault: VaultDir, tmp_path: Path) -> None:
    """`audit --json` rows stay JSON objects after the landing check (a regression guard)."""
    vault.ok("put", "a", input=VALUE)
    rows = [json.loads(x) for x in vault.ok("audit", "--json").out.splitlines()]
    assert [r["op"] for r in rows] == ["init", "put"]
    copy = tmp_path / "copy"
    shutil.copytree(vault.path, copy)
    assert VaultDir(copy, vault.keydir, vault.env).ok("audit", "verify").rc == 0
