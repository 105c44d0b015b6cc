"""`ossl-vault list` on a vault of 10,000 secrets, and its independence of value size.

    python bench/bench_list.py [--count 10000] [--runs 5]

The records are real: each value is sealed by openssl for an RSA host key (in
parallel threads, then committed once), so building the vault takes a while.
The baseline printed beside `list` is `cat` of the record files into `wc -l` (reading them at
all) and `python -c pass` (interpreter start-up). Targets: list under 0.5 s,
and the same time whatever the values' size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from common import COMMAND, bench_env, interleaved, make_host_key

from ossl_vault.keys import loader
from ossl_vault.ops.vault import Vault


def build(root: Path, cert: Path, count: int, size: int) -> float:
    """A vault of ``count`` real secrets of ``size`` bytes; returns seconds taken."""
    start = time.perf_counter()
    v = Vault(str(root))
    v.init([("host", loader.from_file(str(cert)))])
    value = os.urandom(size)
    v.put_many({f"app{i // 100:03d}/secret{i % 100:02d}": value for i in range(count)})
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    env = bench_env()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _key, cert = make_host_key(d)
        small, large = d / "small", d / "large"
        took = build(small, cert, args.count, 16)
        print(f"built {args.count} real records of 16-byte values in {took:.0f} s")
        n_large = max(args.count // 10, 1)
        small_n = d / "small_n"
        build(small_n, cert, n_large, 16)
        build(large, cert, n_large, 64 * 1024)
        cli = list(COMMAND)
        runs = {
            f"list, {args.count} secrets": [*cli, "--vault", str(small), "list"],
            f"list --json, {args.count} secrets": [*cli, "--vault", str(small), "list", "--json"],
            f"list, {n_large} x 16 B values": [*cli, "--vault", str(small_n), "list"],
            f"list, {n_large} x 64 KiB values": [*cli, "--vault", str(large), "list"],
            "baseline: python -c pass": [sys.executable, "-c", "pass"],
            "baseline: cat record files | wc -l": [
                "bash",
                "-c",
                f"cat {small}/recipients.tsv {small}/secrets/*/*.tsv | wc -l",
            ],
        }
        med = interleaved(runs, args.runs, env)
    base = med["baseline: python -c pass"]
    print(f"median of {args.runs} runs each")
    for name, t in med.items():
        print(f"  {name:40s} {t * 1000:8.1f} ms   {t / base:5.2f}x python start-up")
    top = med[f"list, {args.count} secrets"]
    for target, issue in ((0.5, 12), (0.3, 15)):
        verdict = "ok" if top < target else "MISSED"
        print(f"list of {args.count}: {top:.3f} s (issue {issue}: < {target} s): {verdict}")
    ratio = med[f"list, {n_large} x 64 KiB values"] / med[f"list, {n_large} x 16 B values"]
    print(f"64 KiB values / 16 B values: {ratio:.2f}x (independent of size when ~1.0)")


if __name__ == "__main__":
    main()
