"""A cold `ossl-vault get` against the plain-openssl pipeline of docs/format.md.

    python bench/bench_get.py [--runs N]

Both read the same record of the same vault with the same RSA host key; the
baseline is scripts/ossl-vault-recover (bash, openssl, coreutils). Prints the
medians and their ratio (target: at most 3x), then the import time of each
module on the `get` path (python -X importtime).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import COMMAND, ROOT, bench_env, interleaved, make_host_key


def import_times(env: dict[str, str]) -> list[tuple[str, float]]:
    """Cumulative import time (ms) of the top-level modules `ossl-vault get` loads."""
    out = []
    light = ("subprocess", "dataclasses", "pathlib", "ossl_vault.cli.light")
    full = ("click", "filelock", "tabulate", "json", "ossl_vault.cli.main")
    for module, shown in (("ossl_vault.cli.light", light), ("ossl_vault.cli.main", full)):
        p = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                           capture_output=True, text=True, env=env, check=True)  # fmt: skip
        for line in p.stderr.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s+(\S+)$", line)
            if m and m.group(2) in shown:
                out.append((f"{m.group(2)} ({module.split('.')[-1]} path)", int(m.group(1)) / 1000))
    sh = subprocess.run([sys.executable, "-X", "importtime", "-c", "import sh"],
                        capture_output=True, text=True, env=env)  # fmt: skip
    m = re.search(r"import time:\s+\d+ \|\s+(\d+) \| sh$", sh.stderr, re.M)
    if m and sh.returncode == 0:
        out.append(("sh (not imported by ossl-vault)", int(m.group(1)) / 1000))
    else:
        out.append(("sh (not installed: pip install sh)", float("nan")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    env = bench_env()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        key, cert = make_host_key(d)
        vault = d / "vault"
        cli = [*COMMAND, "--vault", str(vault)]
        subprocess.run([*cli, "init", "--recipient", f"host={cert}"], check=True, env=env,
                       capture_output=True)  # fmt: skip
        subprocess.run([*cli, "put", "db/password"], input=b"correct horse battery staple",
                       check=True, env=env, capture_output=True)  # fmt: skip
        runs = {
            "ossl-vault get": [*cli, "--identity", str(key), "get", "db/password"],
            "ossl-vault get, full CLI (FAST_PATH=0)": [  # env(1) adds about 1 ms
                "env", "OSSL_VAULT_FAST_PATH=0", *cli, "--identity", str(key), "get", "db/password"
            ],
            "openssl pipeline (ossl-vault-recover)": [
                "bash", str(ROOT / "scripts" / "ossl-vault-recover"), str(vault),
                "db/password", str(key),
            ],
            "bare openssl steps (bench/openssl-pipeline)": [
                "bash", str(ROOT / "bench" / "openssl-pipeline"), str(vault), "db/password",
                str(key),
            ],
        }  # fmt: skip
        cpu: dict[str, float] = {}
        med = interleaved(runs, args.runs, env, cpu)
    base = med["openssl pipeline (ossl-vault-recover)"]
    print(f"cold get, median of {args.runs} runs each (RSA 2048 host key, 28-byte value)")
    print(f"  {'':40s} {'wall':>8s}      {'ratio':>5s}  {'CPU (+children)':>15s}")
    for name, t in med.items():
        print(f"  {name:40s} {t * 1000:8.1f} ms   {t / base:5.2f}x {cpu[name] * 1000:8.1f} ms")
    ratio = med["ossl-vault get"] / base
    print(f"ratio get / openssl pipeline: {ratio:.2f}x (target <= 3x): "
          + ("ok" if ratio <= 3 else "MISSED"))  # fmt: skip
    bare = med["ossl-vault get"] / med["bare openssl steps (bench/openssl-pipeline)"]
    print(f"ratio get / bare openssl steps (no format checks): {bare:.2f}x")
    print("import time on the get path (cumulative, ms):")
    for name, ms in import_times(env):
        print(f"  {name:40s} {ms:8.1f}")


if __name__ == "__main__":
    main()
