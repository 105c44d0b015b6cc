"""Reading 1 and 100 secrets: per-call CLI, coprocess, agent, openssl, pass, age.

    python bench/bench_fastpath.py [--runs N] [--count M]

One vault, one RSA 2048 host key, M (default 100) secrets of 44 bytes. Each
way of reading is timed for 1 secret (median of N runs, interleaved) and for
all M (one run each); `pass show` and `age -d` read the same values where they
are installed, and are skipped where not. Prints a table, ratios, and the
issue's targets: a cold `get` without an agent at most 40 ms and 1.6x `pass
show`; M reads in one `exec` or coprocess without an agent at most 1.5x M `age
-d` calls, through a warm agent at most 0.5x (issue 15 names `exec`; the
coprocess batch is shown against the same mark); a single `get` with the agent
running at most 1.5x `pass show` (pass asks gpg-agent, which holds the key).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import COMMAND, ROOT, bench_env, make_host_key

from ossl_vault.ops.vault import Vault

HELPER = ROOT / "scripts" / "ossl-vault.bash"
Run = Callable[[list[str]], None]  # reads the given secret names once


def clock(run: Run, names: list[str], cpu: list[float] | None = None) -> float:
    """Wall seconds of ``run``; appends its CPU seconds (children included) to ``cpu``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run(names)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def sh(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> bytes:
    return subprocess.run(argv, input=stdin, check=True, capture_output=True, env=env).stdout


class Setup:
    """The vault, its key, and the same values in a password store and age files."""

    def __init__(self, d: Path, count: int) -> None:
        self.d, self.env = d, bench_env()
        self.key, cert = make_host_key(d)
        self.vault = d / "vault"
        self.cli = [*COMMAND, "--vault", str(self.vault)]
        sh([*self.cli, "init", "--recipient", f"host={cert}"], self.env)
        self.values = {f"s/{i}": base64.b64encode(os.urandom(32)) for i in range(count)}
        Vault(str(self.vault)).put_many(self.values)
        self.agent_env: dict[str, str] | None = None
        self.full_env = {**self.env, "OSSL_VAULT_FAST_PATH": "0"}  # click for every command

    # -- ossl-vault -----------------------------------------------------------------

    def cli_get(self, names: list[str], env: dict[str, str] | None = None) -> None:
        for name in names:
            out = sh([*self.cli, "--identity", str(self.key), "get", name], env or self.env)
            assert out == self.values[name]

    def exec_env(self, names: list[str], env: dict[str, str] | None = None) -> None:
        """One ``exec`` with every name in its environment, the way a service starts."""
        specs = [a for i, n in enumerate(names) for a in ("--env", f"V{i}={n}")]
        check = f'test "$V0" = {shlex.quote(self.values[names[0]].decode())}'
        argv = [*self.cli, "--identity", str(self.key), "exec", *specs, "--", "sh", "-c", check]
        sh(argv, env or self.env)

    def coproc(self, names: list[str], batch: bool, env: dict[str, str] | None = None,
               serve_opts: str = "") -> None:  # fmt: skip
        """A bash script: one coprocess, then vault_get in a loop or one vault_read."""
        cmd = shlex.join(COMMAND)
        start = f"vault_start --vault {self.vault} --identity {self.key} -- {serve_opts}"
        if batch:
            specs = " ".join(f"V{i}={n}" for i, n in enumerate(names))
            body = f'vault_read {specs}; printf \'%s\\n\' "$V0" "${{V{len(names) - 1}}}"'
        else:
            body = "for n in " + " ".join(names) + '; do vault_get "$n"; echo; done'
        script = f"set -e; source {HELPER}; OSSL_VAULT_CMD=({cmd}); {start}; {body}; vault_stop"
        out = sh(["bash", "-c", script], env or self.env).split()
        assert out[0] == self.values[names[0]] and out[-1] == self.values[names[-1]]

    def start_agent(self) -> float:
        """A fresh agent holding the host key; returns how long starting took."""
        self.stop_agent()
        t = time.perf_counter()
        out = sh([*self.cli, "--identity", str(self.key), "agent", "start"], self.env).decode()
        took = time.perf_counter() - t
        path = re.search(r"OSSL_VAULT_AGENT=([^;]+);", out)
        assert path is not None
        self.agent_env = {**self.env, "OSSL_VAULT_AGENT": shlex.split(path.group(1))[0]}
        return took

    def stop_agent(self) -> None:
        if self.agent_env is not None:
            sh([*self.cli, "agent", "stop"], self.agent_env)
            self.agent_env = None

    def make_script(self, script: Path) -> Run | None:
        """A bash + openssl reader run per secret; None if it cannot read this vault."""
        argv = ["bash", str(script), str(self.vault)]

        def run(names: list[str]) -> None:
            for name in names:
                out = sh([*argv, name, str(self.key)], self.env)
                assert out == self.values[name]

        try:
            run(["s/0"])
        except (subprocess.CalledProcessError, AssertionError):
            print(f"note: {script.relative_to(ROOT)} cannot read this vault: row left out")
            return None
        return run

    # -- the others, where installed -------------------------------------------------

    def make_pass(self) -> Run | None:
        if not (shutil.which("pass") and shutil.which("gpg")):
            return None
        home, store = self.d / "gnupg", self.d / "store"
        home.mkdir(mode=0o700)
        env = {**self.env, "GNUPGHOME": str(home), "PASSWORD_STORE_DIR": str(store)}
        gen = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
        sh([*gen, "--quick-gen-key", "bench@example.org", "default", "default", "never"], env)
        listing = sh(["gpg", "--with-colons", "--list-secret-keys"], env).decode()
        fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
        sh(["pass", "init", fpr], env)
        for name, value in self.values.items():
            sh(["pass", "insert", "--multiline", name], env, stdin=value)
        sh(["pass", "show", "s/0"], env)  # gpg-agent up, as on a desktop
        self.pass_env = env

        def run(names: list[str]) -> None:
            for name in names:
                assert sh(["pass", "show", name], env) == self.values[name]

        return run

    def make_floor(self) -> Run:
        """The two openssl processes a read needs and nothing else, on both cores.

        Each secret's ``pkeyutl -decrypt`` of its wrap and ``enc -d`` of its blob (the
        key, derived beforehand, on a pipe), two secrets at a time, started the way
        ossl-vault starts them (openssl/proc.py): no format checks, no MAC, no audit
        record. No reader that runs two openssl processes a secret can beat it.
        """
        from concurrent.futures import ThreadPoolExecutor

        from ossl_vault.format.seal import VALUE_ENC
        from ossl_vault.openssl import crypto, proc

        vault, jobs = Vault(str(self.vault)), {}
        for name in self.values:
            index = vault.store.read_secret(name)
            v = index.versions[name][-1]
            w = index.wraps[(name, v.version)][0]
            key = crypto.hkdf(crypto.rsa_oaep_decrypt(str(self.key), w.ct), VALUE_ENC).hex()
            jobs[name] = (w.ct, vault.store.read_blob(v.blob), key, v)

        def read(name: str) -> bytes:
            wrap, ct, key, v = jobs[name]
            args = ["pkeyutl", "-decrypt", "-inkey", str(self.key), *crypto.OAEP_OPTS]
            proc.openssl(args, stdin=wrap)
            return crypto.dec(ct, key, v.salt, v.iv, v.iterations)

        def run(names: list[str]) -> None:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                for name, value in zip(names, pool.map(read, names), strict=True):
                    assert value == self.values[name]

        return run

    def make_age(self) -> Run | None:
        if not (shutil.which("age") and shutil.which("age-keygen")):
            return None
        key = self.d / "age.key"
        sh(["age-keygen", "-o", str(key)], self.env)
        recipient = sh(["age-keygen", "-y", str(key)], self.env).decode().strip()
        files = {}
        for i, (name, value) in enumerate(self.values.items()):
            files[name] = self.d / f"{i}.age"
            sh(["age", "-r", recipient, "-o", str(files[name])], self.env, stdin=value)

        def run(names: list[str]) -> None:
            for name in names:
                assert (
                    sh(["age", "-d", "-i", str(key), str(files[name])], self.env)
                    == (self.values[name])
                )

        return run

    def close(self) -> None:
        self.stop_agent()
        if hasattr(self, "pass_env"):
            subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=self.pass_env, check=False)


def measure(setup: Setup, runs: int) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """Seconds for 1 read (median of ``runs``) and for all, per way of reading."""
    one, every = ["s/0"], list(setup.values)
    ways: dict[str, Callable[[list[str]], None]] = {
        "ossl-vault get, per call": setup.cli_get,
        "get, full CLI (FAST_PATH=0)": lambda n: setup.cli_get(n, setup.full_env),
        "exec --env per name, one call": setup.exec_env,
        "coprocess, vault_get loop": lambda n: setup.coproc(n, batch=False),
        "coprocess, vault_read batch": lambda n: setup.coproc(n, batch=True),
        "coprocess, batch, --jobs 1": lambda n: setup.coproc(n, True, serve_opts="--jobs 1"),
        "agent (warm), get per call": lambda n: setup.cli_get(n, setup.agent_env),
        "agent (warm), exec --env, one call": lambda n: setup.exec_env(n, setup.agent_env),
        "agent (warm), coprocess batch": lambda n: setup.coproc(n, True, setup.agent_env),
    }
    others = {
        "floor: 2 openssl a read, 2 cores": setup.make_floor(),
        "openssl pipeline, per secret": setup.make_script(ROOT / "bench" / "openssl-pipeline"),
        "recovery script, per secret": setup.make_script(ROOT / "scripts" / "ossl-vault-recover"),
        "pass show": setup.make_pass(),
        "age -d": setup.make_age(),
    }
    for name, run in others.items():
        if run is not None:
            ways[name] = run
    notes = {"agent start": setup.start_agent()}
    ways["agent (warm), get per call"](every)  # the agent opens every data key once
    t = time.perf_counter()
    setup.start_agent()
    setup.coproc(every, True, setup.agent_env)
    notes[f"agent (cold), coprocess batch of {len(every)}"] = time.perf_counter() - t
    setup.cli_get(every, setup.agent_env)  # warm again for the rows below
    singles: dict[str, list[float]] = {k: [] for k in ways}
    cpus: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(runs):
        for name, run in ways.items():
            singles[name].append(clock(run, one, cpus[name]))
    table = {
        name: (statistics.median(singles[name]), clock(run, every)) for name, run in ways.items()
    }
    notes.update({f"CPU of 1 read, {k}": statistics.median(v) for k, v in cpus.items()})
    return table, notes


def report(table: dict[str, tuple[float, float]], notes: dict[str, float], count: int,
           runs: int) -> None:  # fmt: skip
    base_name = "age -d" if "age -d" in table else "ossl-vault get, per call"
    base = table[base_name]
    print(f"reading secrets: 1 (median of {runs}) and {count} (one run), RSA 2048 host key, "
          f"{os.cpu_count()} cores")  # fmt: skip
    print(
        f"{'':32s} {'1 read':>10s} {count:>7d} reads {'per read':>10s} {'vs ' + base_name[:9]:>12s}"
    )
    for name, (t1, tn) in table.items():
        print(f"{name:32s} {t1 * 1000:8.1f} ms {tn:9.2f} s {tn / count * 1000:7.1f} ms"
              f" {tn / base[1]:10.2f}x")  # fmt: skip
    for name, seconds in notes.items():
        shown = f"{seconds * 1000:.1f} ms" if name.startswith("CPU") else f"{seconds:.2f} s"
        print(f"  ({name}: {shown})")
    print("targets:")
    if "age -d" in table:
        age = table["age -d"][1]
        for name in ("agent (warm), exec --env, one call", "agent (warm), coprocess batch"):
            warm = table[name][1] / age
            verdict = "ok" if warm <= 0.5 else "MISSED"
            print(f"  {count} reads, {name} / {count} age -d: {warm:.2f}x (<= 0.5): {verdict}")
        for name in ("exec --env per name, one call", "coprocess, vault_read batch"):
            ratio = table[name][1] / age
            verdict = "ok" if ratio <= 1.5 else "MISSED"
            print(f"  {count} reads, no agent, {name} / {count} age -d: {ratio:.2f}x (<= 1.5): "
                  f"{verdict}")  # fmt: skip
        floor = table["floor: 2 openssl a read, 2 cores"][1] / age
        print(f"    (the floor of any reader running two openssl processes a read, "
              f"{os.cpu_count()} at a time: {floor:.2f}x)")  # fmt: skip
    else:
        print("  age not installed: the coprocess / age -d target is not measured")
    if "pass show" in table:  # pass asks gpg-agent, which holds the unlocked key: so does ours
        ratio = table["agent (warm), get per call"][0] / table["pass show"][0]
        verdict = "ok" if ratio <= 1.5 else "MISSED"
        print(f"  cold single get (agent running) / pass show: {ratio:.2f}x (<= 1.5): {verdict}")
        cold = table["ossl-vault get, per call"][0]
        ratio = cold / table["pass show"][0]
        verdict = "ok" if ratio <= 1.6 and cold <= 0.040 else "MISSED"
        print(f"  cold get, no agent: {cold * 1000:.1f} ms (<= 40), {ratio:.2f}x pass show "
              f"(<= 1.6): {verdict}")  # fmt: skip
        full = table["get, full CLI (FAST_PATH=0)"][0] / table["pass show"][0]
        print(f"    (the same get through click, as before the light path: {full:.2f}x)")
    else:
        print("  pass not installed: the get / pass show target is not measured")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="runs of each single read")
    ap.add_argument("--count", type=int, default=100, help="secrets in the batch")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup = Setup(Path(tmp), args.count)
        try:
            table, notes = measure(setup, args.runs)
        finally:
            setup.close()
    report(table, notes, args.count, args.runs)


if __name__ == "__main__":
    main()
