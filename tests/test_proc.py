"""The one module that starts children (ossl_vault/openssl/proc.py), through real programs.

Children start with ``os.posix_spawn`` and talk through pipes that a ``poll``
loop drains together (issue 15: ``subprocess`` cost a cold read 8 ms to
import). These tests hold what subprocess gave: no deadlock on big data either
way, the child's exit status and first error line, pass_fds only to the child
that asked, the default action for SIGPIPE, and no child left behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import CLI, VaultDir

from ossl_vault.errors import OperationError
from ossl_vault.openssl import crypto, proc


def test_big_data_both_ways_does_not_block() -> None:
    data = os.urandom(3 * 1024 * 1024)  # far beyond a pipe's 64 KiB, in and out at once
    assert proc.run_tool(["cat"], stdin=data) == data


def test_a_child_that_never_reads_its_stdin() -> None:
    assert proc.run_tool(["true"], stdin=b"x" * 1_000_000) == b""


def test_exit_status_and_the_first_error_line() -> None:
    script = "echo out; printf '\\n  first problem  \\nsecond\\n' >&2; exit 3"
    with pytest.raises(proc.OpensslFailed) as e:
        proc.run_tool(["sh", "-c", script], what="the script")
    assert e.value.message == "the script failed: first problem"
    assert "second" in e.value.stderr
    with pytest.raises(OperationError, match="not found on PATH"):
        proc.run_tool(["no-such-program-here"])


def test_pass_fds_reach_only_the_child_that_asked() -> None:
    with proc.SecretFds(b"the secret") as (fd,):
        script = f"cat /dev/fd/{fd}"
        assert proc.run_tool(["sh", "-c", script], pass_fds=[fd]) == b"the secret"
        with pytest.raises(proc.OpensslFailed):  # not inherited: bad file descriptor
            proc.run_tool(["sh", "-c", script])
        # nor by the children another thread starts meanwhile
        failures: list[bool] = []

        def others() -> None:
            for _ in range(10):
                try:
                    proc.run_tool(["sh", "-c", script])
                    failures.append(False)
                except proc.OpensslFailed:
                    failures.append(True)

        other = threading.Thread(target=others)
        other.start()
        while other.is_alive():
            proc.run_tool(["sh", "-c", f"{script} >/dev/null"], pass_fds=[fd])
        other.join()
        assert failures == [True] * 10


def test_children_get_the_default_sigpipe() -> None:
    """Python ignores SIGPIPE; a child must not inherit that (subprocess resets it too)."""
    status = proc.run_tool(["cat", "/proc/self/status"]).decode()
    ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:"))[7:], 16)
    assert not ignored & (1 << (13 - 1)), hex(ignored)  # SIGPIPE is 13


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_started_decryption_ends_when_cancelled() -> None:
    salt, iv = os.urandom(8), os.urandom(16)
    ct = crypto.enc(b"value", "k" * 64, salt, iv)
    started = crypto.Decryption(salt, iv, crypto.ENC_ITER)
    assert started.finish("k" * 64, ct) == b"value"
    started.cancel()  # after finish: nothing left to do
    waiting = crypto.Decryption(salt, iv, crypto.ENC_ITER)
    pid = waiting._child.pid
    assert alive(pid)
    waiting.cancel()
    assert not alive(pid)  # killed and reaped: no zombie either
    wrong = crypto.Decryption(salt, iv, crypto.ENC_ITER)
    with pytest.raises(proc.OpensslFailed, match="openssl enc -d failed"):
        wrong.finish("x" * 64, ct)


@pytest.mark.parametrize(
    "text,want",
    [
        ("OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19 27 Jan 2026)", (3, 0, 19)),
        ("OpenSSL 3.2.0-alpha1 1 Jan 2024", (3, 2, 0)),
        ("OpenSSL 1.1.1w  11 Sep 2023", (1, 1, 1)),
    ],
)
def test_openssl_versions(text: str, want: tuple[int, int, int]) -> None:
    assert proc.parse_version(text) == want


@pytest.mark.parametrize(
    "text",
    ["LibreSSL 3.8.2", "OpenSSL", "OpenSSL 3.x.1", "OpenSSL 3.0", "OpenSSL \uff13.0.1 x", ""],
)
def test_other_versions_are_refused(text: str) -> None:
    with pytest.raises(OperationError, match="cannot use"):
        proc.parse_version(text)


def test_a_read_with_stdin_closed(vault: VaultDir) -> None:
    """Started with fd 0 closed, a pipe's end landed on 0 and the child's dup2 onto its
    stdin replaced it: enc -d never got its key, and get exited 1 without a word."""
    vault.ok("put", "db", input=b"s3cret")
    for read_path in ("1", "0"):  # the light path and click's
        argv = [*CLI, "--vault", str(vault.path), "-i", str(vault.keydir / "rsa.key"), "get", "db"]
        env = {**vault.env, "OSSL_VAULT_FAST_PATH": read_path}
        p = subprocess.run(["bash", "-c", 'exec "$@" <&-', "-", *argv], capture_output=True,
                           env=env, timeout=60)  # fmt: skip
        assert (p.returncode, p.stdout, p.stderr) == (0, b"s3cret", b""), read_path


def test_children_do_not_inherit_the_callers_fds(vault: VaultDir, tmp_path: Path) -> None:
    """subprocess closed the fds a caller handed in (close_fds); posix_spawn children
    must not hold them either (a caller's lock or pipe would stay open in them)."""
    vault.ok("put", "db", input=b"s3cret")
    log = tmp_path / "fds.log"
    shim = tmp_path / "openssl"
    shim.write_text(f'#!/bin/sh\n[ -e /proc/$$/fd/7 ] && echo "$1 holds fd 7" >>{log}\n'
                    f'exec {shutil.which("openssl")} "$@"\n')  # fmt: skip
    shim.chmod(0o755)
    argv = [*CLI, "--vault", str(vault.path), "-i", str(vault.keydir / "rsa.key"), "get", "db"]
    env = {**vault.env, "OSSL_VAULT_OPENSSL": str(shim)}
    p = subprocess.run(["bash", "-c", f'exec "$@" 7<{log.parent}', "-", *argv],
                       capture_output=True, env=env, timeout=60)  # fmt: skip
    assert (p.returncode, p.stdout) == (0, b"s3cret"), p.stderr
    assert not log.exists(), log.read_text()
