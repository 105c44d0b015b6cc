"""Options where people type them (issue 9): the global options before or after the command."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import CLI, VaultDir, assert_error


def bare(v: VaultDir, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The CLI with no global option added by the harness."""
    return subprocess.run([*CLI, *args], capture_output=True, env=v.env, timeout=120,
                          start_new_session=True)  # fmt: skip


def test_global_options_after_the_command(vault: VaultDir, keydir: Path) -> None:
    vault.ok("put", "db", input=b"s3cret")
    key, where = str(keydir / "rsa.key"), str(vault.path)
    for args in (
        ["get", "db", "--identity", key, "--vault", where],
        ["get", "db", "-i", key, f"--vault={where}", "--lock-timeout", "5"],
        ["--vault", where, "get", "-i", key, "db"],
        ["--vault", where, "-i", key, "get", "db", "--version", "1"],
    ):
        p = bare(vault, *args)
        assert (p.returncode, p.stdout) == (0, b"s3cret"), (args, p.stderr)
    # a nested command, as the README's renew example
    p = bare(vault, "recipient", "list", "--vault", where)
    assert p.returncode == 0 and b"host" in p.stdout, p.stderr
    p = bare(vault, "rotate", "db", "--vault", where, "-i", key, "-v")
    assert p.returncode == 0 and b"'db': re-encrypted to version 2" in p.stderr, p.stderr
    # both places: --identity adds up (the first key opens nothing here)
    p = bare(vault, "--vault", where, "-i", str(keydir / "p256.key"), "get", "db", "-i", key)
    assert (p.returncode, p.stdout) == (0, b"s3cret"), p.stderr


def test_global_option_after_the_command_still_checks_its_value(vault: VaultDir) -> None:
    r = vault.run("put", "x", "--lock-timeout", "soon", input=b"1")
    assert_error(r, 2, "'soon'")


@pytest.mark.parametrize("command", [["get"], ["recipient", "renew"], ["rotate"], ["list"]])
def test_each_command_help_lists_the_global_options(vault: VaultDir, command: list[str]) -> None:
    p = bare(vault, *command, "--help")
    text = p.stdout.decode()
    for option in ("--vault DIR", "-i, --identity FILE", "--lock-timeout SECONDS", "-v, --verbose"):
        assert option in text, (command, text)
