"""Helpers shared by the benchmarks: timing runs side by side, and test keys."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SCRIPT = Path(sys.executable).parent / "ossl-vault"  # the console script, as users run it
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "ossl_vault"]


def timed(argv: Sequence[str], env: dict[str, str] | None = None, stdin: bytes = b"") -> float:
    """Wall time of one run; the run must succeed."""
    return timed_both(argv, env, stdin)[0]


def timed_both(
    argv: Sequence[str], env: dict[str, str] | None = None, stdin: bytes = b""
) -> tuple[float, float]:
    """(wall, CPU) seconds of one run, CPU being user + system of it and its children.

    CPU time barely moves when other work shares the machine; wall time does.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, input=stdin, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def interleaved(
    runs: dict[str, Sequence[str]], n: int, env: dict[str, str], cpu: dict[str, float] | None = None
) -> dict[str, float]:
    """Median wall time of each command, run alternately so drift hits all alike.

    ``cpu``, when given, receives the median CPU time of each.
    """
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpus: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(n):
        for name, argv in runs.items():
            wall, used = timed_both(argv, env)
            times[name].append(wall)
            cpus[name].append(used)
    if cpu is not None:
        cpu.update({k: statistics.median(v) for k, v in cpus.items()})
    return {k: statistics.median(v) for k, v in times.items()}


def make_host_key(d: Path) -> tuple[Path, Path]:
    """A snakeoil-style RSA 2048 self-signed cert and key, like Debian's."""
    key, cert = d / "host.key", d / "host.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-subj", "/CN=bench-host", "-days", "30"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def bench_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSSL_VAULT_")}
    env["PYTHONPATH"] = str(ROOT)
    return env
