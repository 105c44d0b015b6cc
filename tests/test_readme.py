"""The README's bash examples, extracted and run against a real vault (issue 9).

Paths of the examples (/etc/ossl-vault, /run/app) are swapped for temporary
ones; everything else runs as a reader would paste it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, VaultDir

README = (ROOT / "README.md").read_text()


def example(heading: str) -> str:
    """The first ```bash block after ``heading``."""
    section = README[README.index(f"## {heading}\n") :]
    found = re.search(r"```bash\n(.*?)```", section, re.S)
    assert found, heading
    return found.group(1)


@pytest.fixture
def shell(vault: VaultDir, tmp_path: Path) -> dict[str, str]:
    """An environment with `ossl-vault` on PATH and the host key as the identity."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ossl-vault").write_text(f'#!/bin/sh\nexec {sys.executable} -m ossl_vault "$@"\n')
    (bindir / "ossl-vault").chmod(0o755)
    (tmp_path / "run").mkdir()
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    return {**vault.env, "PATH": f"{bindir}:{vault.env['PATH']}",
            "OSSL_VAULT_IDENTITY": str(vault.keydir / "rsa.key")}  # fmt: skip


def run(
    script: str, vault: VaultDir, tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    script = script.replace("/etc/ossl-vault", str(vault.path))
    script = script.replace("/run/app", str(tmp_path / "run"))
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120, start_new_session=True)  # fmt: skip


def test_in_a_bash_script_sees_each_exit_code(
    vault: VaultDir, tmp_path: Path, shell: dict[str, str]
) -> None:
    script = example("In a bash script")
    vault.ok("put", "tls/key", input=b"KEY")
    p = run(script, vault, tmp_path, shell)  # no db/password: exit 3
    assert p.returncode == 1 and "db/password is not in the vault" in p.stderr, p.stderr
    vault.ok("put", "db/password", "--to", "host", input=b"pw")
    p = run(
        script, vault, tmp_path, {**shell, "OSSL_VAULT_IDENTITY": str(vault.keydir / "p256.key")}
    )
    assert p.returncode == 1 and "this host cannot read db/password" in p.stderr, p.stderr
    p = run(script, vault, tmp_path, shell)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "run" / "server.key").read_bytes() == b"KEY"
    blob = next((vault.path / "blobs").iterdir())
    for b in (vault.path / "blobs").iterdir():
        data = bytearray(b.read_bytes())
        data[-1] ^= 1
        b.write_bytes(bytes(data))
    assert blob.exists()
    p = run(script, vault, tmp_path, shell)
    assert p.returncode == 1 and "the vault is damaged" in p.stderr, p.stderr


def test_many_reads_from_one_script(vault: VaultDir, tmp_path: Path, shell: dict[str, str]) -> None:
    script = example("Many reads from one script")
    vault.ok("put", "db/password", input=b"pw 1")
    vault.ok("put", "api/token", input=b"tok")
    app = tmp_path / "app"
    app.write_text('#!/bin/sh\n[ "$DB_PASS" = "pw 1" ] && [ "$1" = --migrate ] && echo migrated\n')
    app.chmod(0o755)
    checks = '\n[ "$db_pass" = "pw 1" ] && [ "$API_TOKEN" = tok ] && [ "$DB_PASS" = "pw 1" ]\n'
    env = {**shell, "OSSL_VAULT_DIR": str(vault.path)}  # as the sysadmin's day exports it
    p = run(script.replace("vault_stop\n", checks + "vault_stop\n"), vault, tmp_path, env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("pw 1") == 1 and "migrated" in p.stdout, p.stdout  # get, then ./app
