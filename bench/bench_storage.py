"""Write and read cost against the size of the vault and of the audit log (issue 12).

For each driver (format-1 directory, format-2 directory, SQLite), two vaults side
by side: 100 secrets and 10,000 (one recipient, one version each: one real
secret, the rest copies of its records under other names, which costs nothing
to make). Timed alternately through the real CLI: `put` of a new name, an
overwrite, `get`; and `list` of the 10,000. Then a format-2 vault whose audit
log holds 10 records against one holding 1,000,000. Prints medians and ratios.

    .venv/bin/python bench/bench_storage.py [--runs N] [--log-records N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from common import COMMAND, bench_env, make_host_key, timed

from ossl_vault.openssl.crypto import sha256_hex
from ossl_vault.storage.audit import Event
from ossl_vault.storage.backend import Change
from ossl_vault.storage.store import open_backend

DRIVERS = {"v1 directory": ["--format", "1"], "v2 directory": [], "sqlite": ["--storage", "sqlite"]}
FMT = {"v1 directory": "1", "v2 directory": "2", "sqlite": "sqlite"}


def make_vault(path: Path, cert: Path, driver: str, size: int, env: dict[str, str]) -> None:
    run = [*COMMAND, "--vault", str(path)]
    subprocess.run([*run, "init", *DRIVERS[driver], "-r", f"host={cert}"], check=True,
                   capture_output=True, env=env)  # fmt: skip
    subprocess.run([*run, "put", "real"], input=b"the value", check=True, capture_output=True,
                   env=env)  # fmt: skip
    backend = open_backend(path, 60, FMT[driver])
    part = backend.secret("real")
    assert part is not None
    clones = {}
    for i in range(size - 1):
        name = f"team{i % 10}/svc{i:05d}"
        clones[name] = part.data.replace(b"\treal\t", f"\t{name}\t".encode())
    if FMT[driver] == "2":  # the files a commit would write, without 10,000 fsyncs
        for name, data in clones.items():
            (path / "secrets" / f"{name}.tsv").parent.mkdir(parents=True, exist_ok=True)
            (path / "secrets" / f"{name}.tsv").write_bytes(data)
        return
    with backend.locked():
        backend.commit(Change(Event("bench"), secrets=clones))


def medians(runs: dict[str, list[str]], n: int, env: dict[str, str], stdin: bytes = b"") -> dict:
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(n):
        for key, argv in runs.items():
            times[key].append(timed([a.replace("{i}", str(i)) for a in argv], env, stdin))
    return {k: statistics.median(v) for k, v in times.items()}


def grow_log(vault: Path, records: int) -> None:
    """Append ``records`` chained read records to the audit log, as many reads would."""
    log = vault / "audit.log"
    lines = log.read_bytes().split(b"\n")[:-1]
    last = lines[-1] + b"\n"
    seq = len(lines)
    with open(log, "ab") as f:
        chunk = []
        for n in range(seq, seq + records):
            line = (f"{n}\t2026-01-01T00:00:00Z\t0\tbench\thost\t1\tget\treal\t1\t-\tok\t-\t"
                    f"{sha256_hex(last)}\n").encode()  # fmt: skip
            chunk.append(line)
            last = line
            if len(chunk) >= 100_000:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--log-records", type=int, default=1_000_000)
    args = parser.parse_args()
    env = bench_env()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        key, cert = make_host_key(tmp)
        print(f"{'driver':14} {'op':10} {'100':>9} {'10,000':>9} {'ratio':>6}")
        for driver in DRIVERS:
            vaults = {}
            for size in (100, 10_000):
                vaults[size] = tmp / f"{FMT[driver]}-{size}"
                make_vault(vaults[size], cert, driver, size, env)
            ops = {
                "put new": (["put", "new/{i}"], b"v"),
                "overwrite": (["put", "real"], b"v"),
                "get": (["-i", str(key), "get", "real"], b""),
            }
            for op, (argv, stdin) in ops.items():
                runs = {s: [*COMMAND, "--vault", str(p), *argv] for s, p in vaults.items()}
                got = medians(runs, args.runs, env, stdin)  # type: ignore[arg-type]
                ratio = got[10_000] / got[100]
                print(f"{driver:14} {op:10} {got[100]:8.3f}s {got[10_000]:8.3f}s {ratio:5.2f}x")
            listing = medians({"list": [*COMMAND, "--vault", str(vaults[10_000]), "list"]},
                              args.runs, env)  # fmt: skip
            print(f"{driver:14} {'list':10} {'':>9} {listing['list']:8.3f}s")
        small, big = tmp / "log-small", tmp / "log-big"
        for p in (small, big):
            make_vault(p, cert, "v2 directory", 100, env)
        grow_log(big, args.log_records)
        log_ops = {"put": (["put", "real"], b"v"), "get": (["-i", str(key), "get", "real"], b"")}
        for op, (argv, stdin) in log_ops.items():
            runs = {
                s: [*COMMAND, "--vault", str(p), *argv] for s, p in (("small", small), ("big", big))
            }
            got = medians(runs, args.runs, env, stdin)  # type: ignore[arg-type]
            print(f"audit log {op:6} 10 vs {args.log_records:,} records: {got['small']:.3f}s "
                  f"{got['big']:.3f}s {got['big'] / got['small']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
