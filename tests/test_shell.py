"""Shell integration through the real CLI: completion run by a real bash, the man page
rendered by man, NO_COLOR and binary values on a real terminal (a pty), and a wheel
installed into a fresh venv."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CLI, ROOT, VaultDir, read_until_closed

SHARE = ROOT / "share"
GENERATED = {
    "man": SHARE / "man" / "man1" / "ossl-vault.1",
    "bash": SHARE / "bash-completion" / "completions" / "ossl-vault",
    "zsh": SHARE / "zsh" / "site-functions" / "_ossl-vault",
    "fish": SHARE / "fish" / "vendor_completions.d" / "ossl-vault.fish",
}


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing: scripts/install-test-deps installs it")
        pytest.skip(f"{tool} is not installed")


@pytest.fixture
def on_path(tmp_path: Path) -> str:
    """A PATH whose ``ossl-vault`` runs this checkout (the completion script calls it back)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ossl-vault"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m ossl_vault "$@"\n')
    wrapper.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def complete(env: dict[str, str], path: str, *words: str) -> list[str]:
    """What bash offers for the last of ``words``, through the generated script."""
    script = (
        'source <(ossl-vault completion bash)\n'
        'COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n'
        '_ossl_vault_completion ossl-vault\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )  # fmt: skip
    argv = ["bash", "-c", script, "bash", "ossl-vault", *words]
    p = subprocess.run(argv, capture_output=True, text=True, env={**env, "PATH": path}, timeout=60)
    assert p.returncode == 0, p.stderr
    return [line for line in p.stdout.splitlines() if line]


def test_bash_completion_of_commands_options_and_names(
    vault: VaultDir, keydir: Path, on_path: str
) -> None:
    vault.ok("put", "db/password", input=b"v")
    vault.ok("put", "db/replica", input=b"v")
    vault.ok("put", "web/token", input=b"v")
    vault.ok("recipient", "add", "alice", str(keydir / "p256.pem"))
    env, v = vault.env, str(vault.path)
    assert complete(env, on_path, "un") == ["undelete", "unshare"]
    assert "--field" in complete(env, on_path, "get", "--f")
    assert complete(env, on_path, "--vault", v, "get", "db/") == ["db/password", "db/replica"]
    assert complete(env, on_path, "--vault", v, "mv", "w") == ["web/token"]
    assert complete(env, on_path, "--vault", v, "put", "x", "--to", "al") == ["alice"]
    assert complete(env, on_path, "--vault", v, "put", "x", "--to", "alice,h") == ["alice,host"]
    assert complete(env, on_path, "recipient", "r") == ["renew", "rm"]
    envvar = {**env, "OSSL_VAULT_DIR": v}
    assert complete(envvar, on_path, "show", "web") == ["web/token"]
    vault.ok("rm", "web/token")  # deleted secrets are not offered
    assert complete(envvar, on_path, "show", "web") == []
    assert complete(envvar, on_path, "undelete", "") == ["web/token"]
    assert complete(env, on_path, "--vault", str(vault.path / "nowhere"), "get", "") == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_completion_scripts_and_man_page_match_the_commands(
    shell: str, env: dict[str, str]
) -> None:
    """`make man` output is committed (the wheel installs it): it must be current."""
    for what in (shell, "man"):
        p = subprocess.run([sys.executable, "-m", "ossl_vault.cli.shell", what],
                           capture_output=True, env=env, check=True)  # fmt: skip
        assert p.stdout == GENERATED[what].read_bytes(), f"run 'make man' ({what})"
    p = subprocess.run([*CLI, "completion", shell], capture_output=True, env=env, check=True)
    assert p.stdout == GENERATED[shell].read_bytes()


def test_completion_of_an_unknown_shell_is_a_usage_error(vault: VaultDir) -> None:
    r = vault.run("completion", "tcsh")
    assert r.rc == 2 and "'tcsh'" in r.err


def test_the_man_page_renders(env: dict[str, str]) -> None:
    need("man")
    p = subprocess.run(["man", "--warnings", "-l", str(GENERATED["man"])], capture_output=True,
                       text=True, env={**env, "MANPAGER": "cat", "MANWIDTH": "100"})  # fmt: skip
    assert p.returncode == 0 and p.stderr == "", p.stderr
    for heading in ("NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT"):
        assert f"\n{heading}\n" in p.stdout
    for command in ("mv", "cp", "show", "edit", "undelete", "purge", "find", "recipient add"):
        assert f"\n   {command}\n" in p.stdout, command
    assert "ossl-vault get [OPTIONS] NAME" in p.stdout


def on_terminal(
    vault: VaultDir, *args: str, env: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Run the CLI with stdout on a real terminal (a pty); its exit code and what it showed."""
    primary, secondary = pty.openpty()
    cmd = [*CLI, "--vault", str(vault.path), "-i", str(vault.keydir / "rsa.key"), *args]
    p = subprocess.Popen(cmd, stdout=secondary, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, env={**vault.env, **(env or {})})  # fmt: skip
    os.close(secondary)
    out = read_until_closed(primary)
    os.close(primary)
    return p.wait(timeout=60), out


def test_no_color_is_respected(vault: VaultDir) -> None:
    vault.ok("put", "db/password", input=b"v")
    assert vault.ok("list", "--tree").out.count(b"\x1b[") == 0  # not a terminal: no colour
    rc, shown = on_terminal(vault, "list", "--tree")
    assert rc == 0 and b"\x1b[" in shown  # folders in colour, as pass shows them
    env = {"NO_COLOR": "1"}
    rc, shown = on_terminal(vault, "list", "--tree", env=env)
    assert rc == 0 and b"\x1b[" not in shown and b"password" in shown


def test_get_refuses_a_binary_value_on_a_terminal(vault: VaultDir) -> None:
    vault.ok("put", "bin", input=b"\x1b]0;owned\x07\xff")
    vault.ok("put", "text", input=b"h\xc3\xa9llo\n")
    rc, shown = on_terminal(vault, "get", "bin")
    assert rc == 2 and b"owned" not in shown
    rc, shown = on_terminal(vault, "get", "bin", "--force")
    assert rc == 0 and b"owned" in shown
    rc, shown = on_terminal(vault, "get", "text")
    assert rc == 0 and "héllo".encode() in shown
    assert vault.ok("get", "bin").out == b"\x1b]0;owned\x07\xff"  # a pipe gets the bytes


def test_a_built_wheel_installs_a_working_ossl_vault(
    tmp_path: Path, vault: VaultDir, env: dict[str, str]
) -> None:
    """`pip wheel` then a fresh venv: the command, its man page and completions."""
    src = tmp_path / "src"
    skip = (".venv", ".git", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*skip))
    wheels = tmp_path / "wheels"
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w",
                    str(wheels)], check=True, env=pip_env, timeout=600)  # fmt: skip
    (wheel,) = wheels.glob("ossl_vault-*.whl")
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True,
                   env=pip_env, timeout=600)  # fmt: skip
    for path in GENERATED.values():
        installed = venv / path.relative_to(ROOT)
        assert installed.read_bytes() == path.read_bytes(), installed
    clean = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # nothing from this checkout
    vault.ok("put", "db", input=b"from the wheel")
    p = subprocess.run([str(venv / "bin" / "ossl-vault"), "--vault", str(vault.path), "-i",
                        str(vault.keydir / "rsa.key"), "get", "db"], capture_output=True,
                       env=clean, cwd=tmp_path, timeout=120)  # fmt: skip
    assert p.returncode == 0 and p.stdout == b"from the wheel", p.stderr
    where = "import ossl_vault; print(ossl_vault.__file__)"
    p = subprocess.run([str(venv / "bin" / "python"), "-c", where],
                       capture_output=True, text=True, env=clean, cwd=tmp_path)  # fmt: skip
    assert p.stdout.startswith(str(venv))
