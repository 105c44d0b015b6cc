"""serve --stdio: the JSON line protocol of docs/protocol.md, through real pipes.

The server is the real CLI in a subprocess; bash drives it through
scripts/ossl-vault.bash as a coprocess, Python through raw pipes.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from conftest import CLI, ROOT, VaultDir

from ossl_vault.ops.vault import Vault

HELPER = ROOT / "scripts" / "ossl-vault.bash"
MAX_LINE = 2 * 1024 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tricky_values(n: int) -> dict[str, bytes]:
    """``n`` values: NUL, newlines, invalid UTF-8, quotes, empty, a few KiB of random."""
    special = [b"", b"\0", b"\n", b"x\n\n", b"\xff\xfe\x00bin", b"'\"$`\\", b"a b\tc", b"\r\n"]
    out = {}
    for i in range(n):
        value = special[i] if i < len(special) else os.urandom(i % 97).replace(b"\0", b"") + b"."
        if i % 50 == 49:
            value = os.urandom(4096)  # NUL bytes likely
        out[f"s/{i}"] = value
    return out


class Server:
    """``ossl-vault serve --stdio`` with request and reply helpers."""

    def __init__(self, v: VaultDir, *args: str, identity: str = "rsa",
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        argv = [*CLI, "--vault", str(v.path), "--identity", str(v.keydir / f"{identity}.key")]
        self.p = subprocess.Popen(
            [*argv, "serve", "--stdio", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env={**v.env, **(env or {})}, start_new_session=True,
        )  # fmt: skip
        self.buffer = b""

    def send(self, request: dict[str, object] | bytes) -> None:
        line = request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n"
        assert self.p.stdin is not None
        self.p.stdin.write(line)
        self.p.stdin.flush()

    def recv(self, timeout: float = 60) -> dict:
        assert self.p.stdout is not None
        fd = self.p.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, "no reply in time"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"server ended: {self.p.stderr.read().decode()}"  # type: ignore[union-attr]
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def call(self, request: dict[str, object]) -> dict:
        self.send(request)
        return self.recv()

    def close(self) -> tuple[int, str]:
        assert self.p.stdin is not None
        if not self.p.stdin.closed:
            self.p.stdin.close()
        self.p.stdin = None  # communicate() would flush it
        out, err = self.p.communicate(timeout=60)
        assert out == b"", out
        return self.p.returncode, err.decode()


def test_bash_coproc_reads_200_secrets_exactly(vault: VaultDir, tmp_path: Path) -> None:
    values = tricky_values(200)
    values["every-byte"] = bytes(range(1, 256))  # decoded by bash itself: every byte but NUL
    values["long"] = os.urandom(3000).replace(b"\0", b"") + b"."  # by a base64 process
    for n in range(1, 6):  # each padding case
        values[f"len/{n}"] = os.urandom(n).replace(b"\0", b"\1")
    Vault(str(vault.path)).put_many(values)
    texts = {f"T{i}": f"s/{i}" for i in (0, 2, 3, 5, 6, 7, 10, 11, 98)}  # no NUL in these
    texts.update(B="every-byte", L="long", P1="len/1", P2="len/2", P3="len/3", P4="len/4",
                 P5="len/5")  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    script = f"""
        set -euo pipefail
        source {HELPER}
        OSSL_VAULT_CMD=({sys.executable} -m ossl_vault)
        vault_start --vault {vault.path} --identity {vault.keydir / "rsa.key"}
        for ((i = 0; i < 200; i++)); do vault_get "s/$i" >"{out}/$i"; done
        vault_read {" ".join(f"{k}={n}" for k, n in texts.items())}
        for var in {" ".join(texts)}; do printf '%s' "${{!var}}" >"{out}/$var"; done
        rc=0; vault_read E=s/0 N=s/1 || rc=$?; echo "nul=$rc"
        rc=0; vault_get no/such >/dev/null || rc=$?; echo "missing=$rc"
        vault_stop
    """
    p = subprocess.run(["bash", "-c", script], capture_output=True, env=vault.env, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().split() == ["nul=2", "missing=3"]
    err = p.stderr.decode()
    assert "ossl-vault: error: value of 's/1' holds a NUL byte, which N cannot carry" in err
    assert "ossl-vault: error: no secret 'no/such'" in err
    for i in range(200):
        assert (out / str(i)).read_bytes() == values[f"s/{i}"], i
    for var, name in texts.items():
        assert (out / var).read_bytes() == values[name], name


def test_concurrent_requests_interleave(vault: VaultDir) -> None:
    server = Server(vault)
    slow = server.call({"id": "p", "op": "put", "name": "slow", "value_b64": b64(b"S"),
                        "password_b64": b64(b"pw")})  # fmt: skip
    assert slow == {"id": "p", "result": {"version": 1}}
    fast = {f"f/{i}": os.urandom(20) for i in range(12)}
    Vault(str(vault.path)).put_many(fast)
    # the password's 600,000 PBKDF2 rounds make the first request the slowest by far
    server.send({"id": 0, "op": "get", "name": "slow", "password_b64": b64(b"pw")})
    for i, name in enumerate(fast, 1):
        server.send({"id": i, "op": "get", "name": name})
    # same secret, in request order: each get sees the put sent before it
    server.send({"id": "w1", "op": "put", "name": "x", "value_b64": b64(b"one")})
    server.send({"id": "r1", "op": "get", "name": "x"})
    server.send({"id": "w2", "op": "put", "name": "x", "value_b64": b64(b"two")})
    server.send({"id": "r2", "op": "get", "name": "x"})
    replies = [server.recv() for _ in range(len(fast) + 5)]
    order = [r["id"] for r in replies]
    assert sorted(map(str, order)) == sorted(
        map(str, [*range(len(fast) + 1), "w1", "r1", "w2", "r2"])
    )
    assert order.index(0) > order.index(1), "a fast read waited for the slow one"
    by_id = {r["id"]: r["result"] for r in replies}
    assert base64.b64decode(by_id[0]["value_b64"]) == b"S"
    for i, (_name, value) in enumerate(fast.items(), 1):
        assert base64.b64decode(by_id[i]["value_b64"]) == value
    assert (by_id["w1"], by_id["w2"]) == ({"version": 1}, {"version": 2})
    assert base64.b64decode(by_id["r1"]["value_b64"]) == b"one"
    assert base64.b64decode(by_id["r2"]["value_b64"]) == b"two"
    assert order.index("r1") > order.index("w1") and order.index("r2") > order.index("w2")
    assert server.close() == (0, "")


def test_malformed_lines_get_error_replies_and_serving_goes_on(vault: VaultDir) -> None:
    vault.ok("put", "a", input=b"value of a")
    server = Server(vault)
    bad: list[tuple[bytes, object, str]] = [
        (b"not json", None, "request is not valid JSON"),
        (b"[1, 2]", None, "request is not a JSON object"),
        (b'{"op": "get", "name": "a"}', None, "request has no 'id'"),
        (b'{"id": true, "op": "ping"}', None, "field 'id' must be a string or an integer"),
        (b'{"id": 1.5, "op": "ping"}', None, "field 'id' must be a string or an integer"),
        (b"\xff\xfe{}", None, "request is not valid JSON"),
        (b'{"id": 7, "op": "frobnicate"}', 7, "unknown op 'frobnicate'"),
        (b'{"id": 8, "op": "get"}', 8, "op 'get' needs field 'name'"),
        (b'{"id": 9, "op": "get", "name": "a", "extra": 1}', 9, "unknown field 'extra'"),
        (b'{"id": 10, "op": "put", "name": "b", "value_b64": "!!"}', 10, "broken base64"),
        (b'{"id": 11, "op": "put", "name": "b", "value_b64": "AB=="}', 11, "non-canonical base64"),
        (b'{"id": 12, "op": "get", "name": 5}', 12, "field 'name' must be a string"),
        (b'{"id": 13, "op": "get", "name": "a", "version": "1"}', 13, "must be an integer"),
        (b'{"id": 14, "op": "get", "name": "../etc"}', 14, "invalid secret name"),
        (b"{" + b" " * MAX_LINE + b"}", None, f"request line longer than {MAX_LINE} bytes"),
    ]
    for line, _, _ in bad:
        server.send(line + b"\n")
    server.send(b"\n   \n")  # blank lines are no requests: no reply
    server.send(b'{"id": "last", "op": "get", "name": "a"}')  # the last line may lack "\n"
    assert server.p.stdin is not None
    server.p.stdin.close()
    replies = [server.recv() for _ in range(len(bad) + 1)]
    ok = [r for r in replies if "result" in r]
    assert ok == [{"id": "last", "result": {"value_b64": b64(b"value of a")}}]
    errors = [r for r in replies if "error" in r]
    assert all(r["error"]["code"] == 2 for r in errors), errors
    with_id = {r["id"]: r["error"]["message"] for r in errors if r["id"] is not None}
    assert sorted(with_id) == sorted(i for _, i, _ in bad if i is not None)
    anonymous = [r["error"]["message"] for r in errors if r["id"] is None]
    for _, want_id, message in bad:  # replies come as they finish: match, not order
        if want_id is not None:
            assert message in with_id[want_id], (message, with_id[want_id])
        else:
            found = next(m for m in anonymous if message in m)
            anonymous.remove(found)
    assert anonymous == []
    assert server.p.wait(timeout=30) == 0
    assert vault.run("get", "b").rc == 3  # no bad put stored anything


def test_errors_carry_the_cli_exit_codes(vault: VaultDir) -> None:
    vault.ok("put", "a", input=b"A")
    vault.ok("put", "b", input=b"B")
    blob = next(p for p in (vault.path / "blobs").iterdir() if p.read_bytes())
    server = Server(vault)
    assert server.call({"id": 1, "op": "get", "name": "nope"})["error"]["code"] == 3
    assert server.call({"id": 2, "op": "get", "name": "a", "version": 9})["error"]["code"] == 3
    assert (
        server.call({"id": 3, "op": "share", "name": "a", "users": ["nobody"]})["error"]["code"]
        == 3
    )
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    replies = [server.call({"id": n, "op": "get", "name": n}) for n in "ab"]
    codes = [r["error"]["code"] if "error" in r else 0 for r in replies]
    assert sorted(codes) == [0, 5]  # the flipped blob fails closed; the other still reads
    assert "integrity" in str(replies[codes.index(5)]) or "hash" in str(replies[codes.index(5)])
    assert server.close()[0] == 0
    stranger = Server(vault, identity="p256")  # not a recipient
    reply = stranger.call({"id": "s", "op": "get", "name": "ab"[codes.index(0)]})
    assert reply["id"] == "s" and reply["error"]["code"] == 4
    assert "no usable identity" in reply["error"]["message"]
    assert stranger.close()[0] == 0


def test_eof_ends_the_server_after_every_reply(vault: VaultDir) -> None:
    values = {f"e/{i}": os.urandom(8) for i in range(6)}
    Vault(str(vault.path)).put_many(values)
    server = Server(vault)
    for i, name in enumerate(values):
        server.send({"id": i, "op": "get", "name": name})
    assert server.p.stdin is not None
    server.p.stdin.close()  # EOF with every request still in flight
    replies = {r["id"]: r for r in (server.recv() for _ in values)}
    for i, value in enumerate(values.values()):
        assert base64.b64decode(replies[i]["result"]["value_b64"]) == value
    assert server.p.wait(timeout=30) == 0
    assert server.p.stdout.read() == b""  # type: ignore[union-attr]
    assert server.p.stderr.read() == b""  # type: ignore[union-attr]


def test_stdin_and_stdout_from_dev_null_or_files(vault: VaultDir, tmp_path: Path) -> None:
    """epoll refuses /dev/null and regular files: the server reads and writes them anyway."""
    Vault(str(vault.path)).put_many({"f/1": b"one"})
    argv = [*CLI, "--vault", str(vault.path), "--identity", str(vault.keydir / "rsa.key")]
    with open(os.devnull, "rb") as null_in, open(os.devnull, "wb") as null_out:
        done = subprocess.run([*argv, "serve", "--stdio"], stdin=null_in, stdout=null_out,
                              stderr=subprocess.PIPE, env=vault.env, timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (0, b"")
    requests, replies = tmp_path / "requests", tmp_path / "replies"
    requests.write_bytes(b'{"id": 1, "op": "get", "name": "f/1"}\n')
    with requests.open("rb") as f_in, replies.open("wb") as f_out:
        done = subprocess.run([*argv, "serve", "--stdio"], stdin=f_in, stdout=f_out,
                              stderr=subprocess.PIPE, env=vault.env, timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (0, b"")
    assert json.loads(replies.read_bytes()) == {"id": 1, "result": {"value_b64": b64(b"one")}}


def test_put_list_generate_share(vault: VaultDir, keydir: Path) -> None:
    vault.ok("recipient", "add", "alice", str(keydir / "p256.pem"), "--no-default")
    server = Server(vault)
    value = bytes(range(256)) * 3
    assert server.call({"id": 1, "op": "put", "name": "bin", "value_b64": b64(value)}) == {
        "id": 1, "result": {"version": 1}}  # fmt: skip
    got = server.call({"id": 2, "op": "get", "name": "bin"})["result"]["value_b64"]
    assert base64.b64decode(got) == value
    made = server.call({"id": 3, "op": "generate", "name": "gen", "format": "hex", "bytes": 16,
                        "print": True})["result"]  # fmt: skip
    assert made["version"] == 1 and len(base64.b64decode(made["value_b64"])) == 32
    listed = server.call({"id": 4, "op": "list"})["result"]["secrets"]
    assert [row["name"] for row in listed] == ["bin", "gen"]
    assert listed[0]["recipients"] == ["host"]
    shared = server.call({"id": 5, "op": "share", "name": "bin", "users": ["alice"]})
    assert shared == {"id": 5, "result": {"added": ["alice"]}}
    assert server.call({"id": 6, "op": "ping"})["result"]["version"]
    assert server.close() == (0, "")
    assert vault.ok("get", "bin", identity="p256").out == value  # alice reads it now
    assert vault.ok("get", "gen").out == base64.b64decode(made["value_b64"])
