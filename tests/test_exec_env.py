"""``exec`` and ``env``: secrets into a command's environment, byte for byte.

Values with spaces, quotes, ``$``, backticks, backslashes, newlines and bytes
that are not UTF-8 come back exactly; a NUL byte, which no environment
variable can hold, is refused before anything runs or prints.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CLI, VaultDir, assert_error

from ossl_vault.ops.vault import Vault

TRICKY = {
    "t/space": b"two words  and a tab\there ",
    "t/quotes": b"it's \"quoted\" 'twice'' and '\\'' too",
    "t/dollar": b"$HOME ${PATH} $(touch PWNED) `touch PWNED2` $((6*7)) !! \\$x",
    "t/newlines": b"\nline one\nline two\n\n",
    "t/backslash": b"back\\slash \\n \\t \\\\ \\",
    "t/bytes": bytes(range(1, 256)),  # every byte but NUL, most of it not UTF-8
    "t/unicode": "naïve ☃ ünïcödé".encode(),
    "t/empty": b"",
}
VARS = {f"V{i}": name for i, name in enumerate(TRICKY)}


@pytest.fixture
def tricky(vault: VaultDir) -> VaultDir:
    Vault(str(vault.path)).put_many({**TRICKY, "t/nul": b"before\0after"})
    return vault


@pytest.mark.both_paths
def test_exec_passes_values_and_the_exit_code(tricky: VaultDir, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    child = (
        "import os, sys, json\n"
        "for var in sys.argv[2:]:\n"
        "    open(os.path.join(sys.argv[1], var), 'wb').write(os.environb[var.encode()])\n"
        "open(os.path.join(sys.argv[1], 'argv'), 'w').write(json.dumps(sys.argv[1:]))\n"
        "sys.exit(7)\n"
    )
    env_args = [a for var, name in VARS.items() for a in ("--env", f"{var}={name}")]
    r = tricky.run("exec", *env_args, "--", sys.executable, "-c", child, str(out), *VARS)
    assert (r.rc, r.err) == (7, "")  # the child's exit code is ours
    for var, name in VARS.items():
        assert (out / var).read_bytes() == TRICKY[name], name
    # the command line is exactly what was given: no value on it
    assert json.loads((out / "argv").read_text()) == [str(out), *VARS]


@pytest.mark.both_paths
def test_exec_refusals_run_nothing(tricky: VaultDir, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    touch = ["--", "touch", str(marker)]
    r = tricky.run("exec", "--env", "A=t/space", "--env", "B=t/nul", *touch)
    assert r.rc == 2 and r.err.startswith(
        "ossl-vault: error: value of 't/nul' holds a NUL byte, which B cannot carry\n"
    )
    assert tricky.run("exec", "--env", "A=no/such", *touch).rc == 3
    r = tricky.run("exec", "--env", "1BAD=t/space", *touch)
    assert r.rc == 2 and "invalid variable name '1BAD'" in r.err
    r = tricky.run("exec", "--env", "A=t/space", "--env", "A=t/quotes", *touch)
    assert r.rc == 2 and "variable 'A' is given twice" in r.err
    assert not marker.exists()
    r = tricky.run("exec", "--env", "A=t/space", "--", "no-such-command-here")
    assert r.rc == 127 and "command 'no-such-command-here' not found" in r.err
    # options after the command belong to it
    r = tricky.run("exec", "--env", "A=t/space", "sh", "-c", 'printf %s "$A"', "--env")
    assert (r.rc, r.out) == (0, TRICKY["t/space"])


@pytest.mark.both_paths
def test_env_output_survives_eval(tricky: VaultDir, tmp_path: Path) -> None:
    specs = [f"{var}={name}" for var, name in VARS.items()]
    cmd = shlex.join([*CLI, "--vault", str(tricky.path), "--identity",
                      str(tricky.keydir / "rsa.key"), "env", *specs, "t/space"])  # fmt: skip
    dump = "; ".join(f'printf %s "${var}" >{tmp_path}/{var}' for var in [*VARS, "T_SPACE"])
    script = f'set -euo pipefail; cd {tmp_path}; eval "$({cmd})"; {dump}'
    p = subprocess.run(["bash", "-c", script], capture_output=True, env=tricky.env, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    for var, name in VARS.items():
        assert (tmp_path / var).read_bytes() == TRICKY[name], name
    assert (tmp_path / "T_SPACE").read_bytes() == TRICKY["t/space"]  # NAME -> VAR
    assert not list(tmp_path.glob("PWNED*"))
    out = tricky.ok("env", "Q=t/quotes").out
    assert out == b"export Q='it'\\''s \"quoted\" '\\''twice'\\'''\\'' and '\\''\\'\\'''\\'' too'\n"


@pytest.mark.both_paths
def test_env_refuses_nul_and_prints_nothing(tricky: VaultDir) -> None:
    r = tricky.run("env", "t/space", "t/nul")
    assert (r.rc, r.out) == (2, b"")
    assert r.err == (
        "ossl-vault: error: value of 't/nul' holds a NUL byte, which T_NUL cannot carry\n"
        "hint: use 'ossl-vault get t/nul --out FILE' instead\n"
    )
    r = tricky.run("env", "9lives=t/space")
    assert r.rc == 2 and "invalid variable name '9lives'" in r.err
    assert os.environ.get("T_SPACE") is None


@pytest.mark.both_paths
def test_exec_env_and_serve_read_only_their_own_records(vault: VaultDir) -> None:
    """Format 2: another secret's damaged file (format.md 2.8) fails only its own reads."""
    vault.ok("put", "a", input=b"A")
    vault.ok("put", "b", input=b"B")
    with vault.secret_file("b").open("a") as f:
        f.write("not a record\n")
    r = vault.run("exec", "--env", "V=a", "--", "sh", "-c", 'printf %s "$V"')
    assert (r.rc, r.out, r.err) == (0, b"A", "")
    assert vault.ok("env", "V=a").out == b"export V='A'\n"
    assert_error(vault.run("exec", "--env", "V=b", "--", "true"), 5)
    requests = b'{"id":1,"op":"get","name":"a"}\n{"id":2,"op":"get","name":"b"}\n'
    r = vault.ok("serve", "--stdio", input=requests)
    replies = {reply["id"]: reply for reply in map(json.loads, r.out.splitlines())}
    assert replies[1] == {"id": 1, "result": {"value_b64": "QQ=="}}
    assert replies[2]["error"]["code"] == 5


@pytest.mark.parametrize("where", ["option", "environment"])
@pytest.mark.parametrize("args", [["exec", "--env", "X=a", "--", "true"], ["env", "a"],
                                  ["serve", "--stdio"]])  # fmt: skip
def test_local_only_commands_refuse_a_remote_vault(vault: VaultDir, where: str,
                                                   args: list[str]) -> None:  # fmt: skip
    """exec, env and serve read local vaults: --remote is refused, never read from disk instead."""
    vault.ok("put", "a", input=b"local value")
    remote = "alice@https://127.0.0.1:9"  # nothing listens: the refusal comes first
    if where == "option":
        r = vault.run("--remote", remote, *args)
    else:
        r = vault.run(*args, env={"OSSL_VAULT_REMOTE": remote})
    assert_error(r, 2, "reads a local vault only")
    assert b"local value" not in r.out
