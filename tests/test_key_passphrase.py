"""A passphrase-protected PEM identity on every reading command (issue 9): asked once
on a terminal, or --key-passphrase-file; openssl's own prompt never shows."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import CLI, VaultDir, assert_error, run_pty


@pytest.fixture
def locked_key(vault: VaultDir, tmp_path: Path) -> tuple[Path, Path]:
    """The host key encrypted under a passphrase (PKCS#8, AES-256); and that passphrase's file."""
    pf = tmp_path / "key-pass"
    pf.write_text("key pass 1\r\n")  # CRLF: stripped as for every passphrase file
    enc = tmp_path / "host-enc.key"
    subprocess.run(["openssl", "pkey", "-in", str(vault.keydir / "rsa.key"), "-aes256",
                    "-passout", "pass:key pass 1", "-out", str(enc)], check=True)  # fmt: skip
    return enc, pf


def test_key_passphrase_file_on_reading_commands(
    vault: VaultDir, locked_key: tuple[Path, Path]
) -> None:
    enc, pf = locked_key
    vault.ok("put", "db", input=b"v1")
    base = [*CLI, "--vault", str(vault.path)]
    for args in (
        ["get", "db", "-i", str(enc), "--key-passphrase-file", str(pf)],
        ["--key-passphrase-file", str(pf), "-i", str(enc), "get", "db"],
    ):
        p = subprocess.run([*base, *args], capture_output=True, env=vault.env, timeout=60,
                           start_new_session=True)  # fmt: skip
        assert (p.returncode, p.stdout) == (0, b"v1"), p.stderr
    kw = {"capture_output": True, "env": vault.env, "timeout": 60, "start_new_session": True}
    p = subprocess.run([*base, "-i", str(enc), "rotate", "--key-passphrase-file", str(pf)], **kw)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([*base, "-i", str(enc), "fsck", "--key-passphrase-file", str(pf)], **kw)
    assert p.returncode == 0 and b"MACs of 2 of 2" in p.stderr, p.stderr


def test_without_a_passphrase_one_clean_error(
    vault: VaultDir, locked_key: tuple[Path, Path], tmp_path: Path
) -> None:
    enc, _pf = locked_key
    vault.ok("put", "db", input=b"v1")
    r = vault.run("get", "db", "-i", str(enc), identity=None)
    err = assert_error(r, 4, "is encrypted", "--key-passphrase-file")
    assert "pass phrase" not in err.lower()  # openssl's prompt text stays out
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    r = vault.run("get", "db", "-i", str(enc), "--key-passphrase-file", str(wrong), identity=None)
    err = assert_error(r, 4, "wrong passphrase for identity")
    assert "pass phrase" not in err.lower()


def test_asked_once_on_a_terminal(vault: VaultDir, locked_key: tuple[Path, Path]) -> None:
    enc, _pf = locked_key
    vault.ok("put", "db", input=b"v1")
    argv = [*CLI, "--vault", str(vault.path), "-i", str(enc), "get", "db"]
    rc, seen = run_pty(argv, vault.env, ((b"passphrase of identity", b"key pass 1\n"),))
    assert rc == 0 and seen.endswith(b"v1"), seen
    assert seen.count(b"passphrase") == 1 and b"Enter pass phrase" not in seen, seen
