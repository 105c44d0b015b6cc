"""The key server on this machine: logins/s, authenticated reads/s, latency, RSS; remote get.

    python bench/bench_server.py [--logins N] [--reads N] [--clients C] [--runs N]

Starts a throwaway server on 127.0.0.1 (TLS 1.3), registers one user, then
measures, with C client threads each its own device: full OPAQUE logins
(KE1..KE3, client-side Argon2id included) and authenticated blob reads (one
MACed request each, answer MAC checked), with p50/p99 latency and the server's
RSS; then a cold `ossl-vault --remote ... get` beside a local `ossl-vault get`
of the same value (median of --runs, run alternately). Every loop is bounded.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import COMMAND, bench_env, interleaved, make_host_key

VALUE = b"bench-value-123"
PASSWORD = b"bench password 1"


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M))
    return int(found["VmRSS"]), int(found["VmHWM"])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def start_server(work: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    subprocess.run([*COMMAND, "server", "init", str(work / "srv"), "--hostname", "localhost"],
                   check=True, capture_output=True, env=env)  # fmt: skip
    proc = subprocess.Popen([*COMMAND, "server", "start", str(work / "srv"), "--listen",
                             "127.0.0.1:0"], stderr=subprocess.PIPE, env=env)  # fmt: skip
    assert proc.stderr is not None
    for raw in proc.stderr:
        m = re.search(rb"listening on (https://127\.0\.0\.1:\d+)", raw)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
            return proc, m.group(1).decode()
    raise SystemExit("the server did not start")


def timed_all(fn: object, count: int, clients: int) -> tuple[float, list[float]]:
    """(wall seconds, per-call latencies) of ``count`` calls of fn(i) on ``clients`` threads."""
    latencies: list[float] = []

    def one(i: int) -> None:
        t = time.perf_counter()
        fn(i)  # type: ignore[operator]
        latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - start, latencies


def report(label: str, wall: float, lat: list[float]) -> None:
    p50, p99 = statistics.median(lat) * 1000, percentile(lat, 99) * 1000
    rate = len(lat) / wall
    print(f"  {label:<34} {rate:8.1f}/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms", end="")
    print(f"   ({len(lat)} in {wall:.2f} s)")


def measure_server(url: str, work: Path, pid: int, args: argparse.Namespace) -> None:
    """Logins, then authenticated reads, then the server's RSS."""
    from ossl_vault.ops.vault import Vault
    from ossl_vault.remote import opaque
    from ossl_vault.remote.client import Remote
    from ossl_vault.remote.store import RemoteStore

    devices = [Remote(url, "bench", home=work / f"device{i}") for i in range(args.clients)]

    def login(i: int) -> None:
        devices[i % args.clients].login(PASSWORD, 600)

    print(f"key server on 2 cores, {args.clients} client threads; "
          f"OPAQUE {opaque.SUITE}, Argon2id {opaque.ARGON2ID}")  # fmt: skip
    for d in devices:
        d.login(PASSWORD, 600)  # warm-up, and every device has a session
    wall, lat = timed_all(login, args.logins, 1)
    report("login (KE1..KE3), one at a time", wall, lat)
    wall, lat = timed_all(login, args.logins, args.clients)
    report(f"login, {args.clients} at once", wall, lat)

    stores = [RemoteStore(d, "get") for d in devices]
    digest = Vault(str(stores[0].root), store=stores[0]).version("bench/value").blob  # type: ignore[arg-type]

    def read(i: int) -> None:
        stores[i % args.clients].read_blob(digest)

    wall, lat = timed_all(read, args.reads, args.clients)
    report(f"authenticated read, {args.clients} at once", wall, lat)
    rss, peak = rss_kib(pid)
    print(f"  server RSS {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB)")


def measure_get(url: str, work: Path, env: dict[str, str], runs: int) -> None:
    """A cold remote get beside a cold local get of the same value."""
    key, cert = make_host_key(work)
    local = work / "local"
    subprocess.run([*COMMAND, "--vault", str(local), "init", "--recipient",
                    f"host={cert}"], check=True, capture_output=True, env=env)  # fmt: skip
    subprocess.run([*COMMAND, "--vault", str(local), "put", "bench/value"],
                   input=VALUE, check=True, capture_output=True, env=env)  # fmt: skip
    medians = interleaved({
        "local": [*COMMAND, "--vault", str(local), "--identity", str(key), "get", "bench/value"],
        "remote": [*COMMAND, "--remote", f"bench@{url}", "get", "bench/value"],
    }, runs, env)  # fmt: skip
    local_ms, remote_ms = medians["local"] * 1000, medians["remote"] * 1000
    print(f"cold get, median of {runs} runs each")
    print(f"  ossl-vault get (local vault, RSA 2048)   {local_ms:7.1f} ms    1.00x")
    print(f"  ossl-vault --remote ... get              {remote_ms:7.1f} ms"
          f"    {remote_ms / local_ms:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logins", type=int, default=40)
    parser.add_argument("--reads", type=int, default=400)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    env = bench_env()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env["XDG_CONFIG_HOME"] = str(work / "cli-device")
        proc, url = start_server(work, env)
        try:
            password = work / "password"
            password.write_bytes(PASSWORD + b"\n")
            subprocess.run([*COMMAND, "remote", "register", url, "bench", "--password-file",
                            str(password)], check=True, capture_output=True, env=env)  # fmt: skip
            subprocess.run([*COMMAND, "--remote", f"bench@{url}", "put", "bench/value"],
                           input=VALUE, check=True, capture_output=True, env=env)  # fmt: skip
            measure_server(url, work, proc.pid, args)
            measure_get(url, work, env, args.runs)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
