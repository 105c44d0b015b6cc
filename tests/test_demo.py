"""`make demo` (scripts/demo) runs end to end: the README's first command must work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, clean_env


def test_demo_runs_and_recovers_with_openssl(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env["TMPDIR"] = str(tmp_path)
    p = subprocess.run(["bash", str(ROOT / "scripts" / "demo")], capture_output=True,
                       env=env, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert "ok: plain openssl recovered exactly what ossl-vault stored" in out
    assert "./secrets/db/password.tsv" in out and "./recipients.tsv" in out
    assert "ok: the second device read back what the first stored" in out
    assert "Traceback" not in p.stderr.decode()
