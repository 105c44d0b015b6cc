"""Promise 4: concurrent writers serialize and lose nothing; a busy vault is
reported (exit 6) and left alone."""

from __future__ import annotations

import json
import random
import secrets
import shlex
import subprocess
import time
from pathlib import Path

import filelock
import pytest
from conftest import CLI, VaultDir

from ossl_vault.format.seal import Identities
from ossl_vault.format.wrapping import key_file_identity
from ossl_vault.ops.vault import Vault

WRITERS = 8
EACH = 25


def expected_value(token: str, writer: int, i: int) -> bytes:
    return f"value {token} writer {writer} secret {i}".encode()


def test_concurrent_writers_lose_nothing(vault: VaultDir, tmp_path: Path) -> None:
    v = vault
    token = secrets.token_hex(8)
    go = tmp_path / "go"
    cli = " ".join(shlex.quote(a) for a in [*CLI, "--vault", str(v.path)])
    # Each writer waits for the start signal, then stores its 25 secrets one
    # CLI call at a time; all 8 run at once.
    script = f"""
        while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.01; done
        for i in $(seq 1 {EACH}); do
            printf '%s' "value {token} writer $W secret $i" | {cli} put "w$W/s$i" || exit 1
        done
    """
    writers = [
        subprocess.Popen(
            ["bash", "-c", script],
            env={**v.env, "W": str(w)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in range(WRITERS)
    ]
    identity = key_file_identity(str(v.keydir / "rsa.key"), True)
    assert identity is not None
    ids = Identities([identity])
    lib = Vault(str(v.path))
    rng = random.Random()
    go.touch()
    # Meanwhile, a reader sees a whole index each time, that only ever grows,
    # and whatever secret it picks reads back right.
    seen, reads = 0, 0
    while any(p.poll() is None for p in writers):
        rows = lib.list()
        assert len(rows) >= seen, "a stored secret disappeared"
        seen = len(rows)
        if rows:
            name = rng.choice(rows)["name"]
            w, i = (int(x[1:]) for x in name.split("/"))
            assert lib.get(name, ids) == expected_value(token, w, i), name
            reads += 1
        time.sleep(0.1)
    print(f"{reads} reads during the writes")
    for w, p in enumerate(writers):
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, f"writer {w}: exit {p.returncode}: {err.decode()[-2000:]}"

    rows = [json.loads(line) for line in v.ok("list", "--json").out.splitlines()]
    names = {f"w{w}/s{i}" for w in range(WRITERS) for i in range(1, EACH + 1)}
    assert len(rows) == WRITERS * EACH
    assert {r["name"] for r in rows} == names
    assert all(r["version"] == 1 for r in rows)
    v.ok("fsck")

    # Every value, through the library (fast), and a sample through the CLI.
    for w in range(WRITERS):
        for i in range(1, EACH + 1):
            got = lib.get(f"w{w}/s{i}", ids)
            assert got == expected_value(token, w, i), f"w{w}/s{i}"
    for w, i in [(w, rng.randint(1, EACH)) for w in range(WRITERS)]:
        assert v.ok("get", f"w{w}/s{i}").out == expected_value(token, w, i)
    leftovers = [p.name for p in v.path.rglob(".tmp.*")]
    assert not leftovers, leftovers


@pytest.mark.parametrize(
    ("command", "stdin"),
    [
        (["put", "app/new"], b"new value"),
        (["put", "app/kept"], b"overwrite"),
        (["generate", "app/gen"], b""),
        (["rm", "app/kept"], b""),
        (["rotate"], b""),
    ],
)
def test_writer_times_out_on_a_held_lock(vault: VaultDir, command: list[str], stdin: bytes) -> None:
    v = vault
    v.ok("put", "app/kept", input=b"kept value")
    before = v.snapshot()
    lock = filelock.FileLock(str(v.path / ".lock"))
    with lock.acquire(timeout=5):
        t0 = time.monotonic()
        r = v.run("--lock-timeout", "0.5", *command, input=stdin)
        waited = time.monotonic() - t0
        # Readers take no lock: they are not held up by a writer.
        assert v.ok("get", "app/kept").out == b"kept value"
    assert r.rc == 6, f"exit {r.rc}: {r.err}"
    assert r.out == b""
    lines = r.err.splitlines()
    assert lines[0].startswith("ossl-vault: error: "), r.err
    assert "busy" in lines[0], r.err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), r.err
    assert waited >= 0.5
    assert v.snapshot() == before
    # With the lock free again, the same command goes through.
    v.ok("--lock-timeout", "5", *command, input=stdin)


def test_concurrent_rotate_share_unshare_serialise(vault: VaultDir) -> None:
    """Issue 10 #7: they take the lock, so contention never fails them (exit 1)."""
    v = vault
    v.ok("recipient", "add", "p256", str(v.keydir / "p256.pem"), "--no-default")
    for name in ("one", "two"):
        v.ok("put", name, input=f"value of {name}".encode())
    base = [*CLI, "--vault", str(v.path), "--identity", str(v.keydir / "rsa.key")]
    jobs = [["rotate", "one"]] * 4 + [["share", "one", "p256"], ["unshare", "one", "p256"]] * 2
    jobs += [["rotate", "two"], ["share", "two", "p256"], ["rotate"]]
    procs = [
        subprocess.Popen(
            [*base, *job], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=v.env
        )
        for job in jobs
    ]
    for job, p in zip(jobs, procs, strict=True):
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, f"{job}: exit {p.returncode}: {err.decode()}"
    v.ok("fsck")
    for name in ("one", "two"):
        assert v.ok("get", name).out == f"value of {name}".encode()
    rows = {r["name"]: r for r in map(json.loads, v.ok("list", "--json").out.splitlines())}
    assert rows["two"]["recipients"] == ["host", "p256"]  # the share was not lost to a rotate
    assert v.ok("get", "two", identity="p256").out == b"value of two"
