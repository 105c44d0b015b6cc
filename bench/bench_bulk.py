"""`rekey`, `rotate` and `recipient rm` of 200 and 2,000 secrets, and how they grow.

    python bench/bench_bulk.py [--counts 200,2000]

Each vault is built through the library (RSA host key, values sealed on
parallel threads and committed once), with a second recipient so that every
command has work on every secret; the commands are then timed through the
`ossl-vault` console script, as a user runs them:

- ``rekey`` after adding a recipient: one new wrap per secret (same data key);
- ``rotate``: a fresh data key and value encryption per secret;
- ``recipient rm``: re-encrypts every secret without the removed reader.

Target (issue 9): each under 60 s for 2,000 secrets on the 2-core machine,
growing linearly: the ratio 2,000 / 200 should be about 10x (it was 46x when
every secret was its own commit).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from common import COMMAND, bench_env, make_host_key

from ossl_vault.keys import loader
from ossl_vault.ops.vault import Vault

COMMANDS = ("rekey", "rotate", "recipient rm")


def build(root: Path, cert: Path, count: int) -> None:
    v = Vault(str(root))
    v.init([("host", loader.from_file(str(cert)))])
    v.put_many({f"app{i // 100:03d}/secret{i % 100:02d}": b"v%06d" % i for i in range(count)})


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its openssl children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(
    d: Path, key: Path, cert: Path, other: Path, count: int
) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of each command on a vault of ``count`` secrets."""
    env = bench_env()
    root = d / f"vault{count}"
    build(root, cert, count)
    cli = [*COMMAND, "--vault", str(root), "--identity", str(key)]
    subprocess.run([*cli, "recipient", "add", "other", str(other)], check=True,
                   capture_output=True, env=env)  # fmt: skip
    return {
        "rekey": timed([*cli, "rekey"], env),  # wraps every secret for 'other'
        "rotate": timed([*cli, "rotate"], env),  # fresh keys for host and other
        "recipient rm": timed([*cli, "recipient", "rm", "other"], env),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="200,2000")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        key, cert = make_host_key(d)
        (d / "o").mkdir()
        _okey, other = make_host_key(d / "o")
        results = {n: measure(d, key, cert, other, n) for n in counts}
    small, large = counts[0], counts[-1]
    cores = os.cpu_count() or 1
    print(f"bulk commands through the CLI (RSA 2048 keys), {cores} cores, "
          f"load average {os.getloadavg()[0]:.1f}                 bench/bench_bulk.py")  # fmt: skip
    print(f"  {'command':14s}" + "".join(f"{n:>10d}" for n in counts)
          + f"   {large}/{small}   CPU at {large} / {cores} cores")  # fmt: skip
    for c in COMMANDS:
        ratio = results[large][c][0] / results[small][c][0]
        row = "".join(f"{results[n][c][0]:9.1f}s" for n in counts)
        floor = results[large][c][1] / cores  # the wall time on idle cores, at best
        verdict = "ok" if results[large][c][0] < 60 else "MISSED"
        print(f"  {c:14s}{row}   {ratio:5.1f}x   {floor:6.1f}s   wall < 60 s: {verdict}")
    print("(the wall figures include other load on the machine: the CPU column does not)")


if __name__ == "__main__":
    main()
