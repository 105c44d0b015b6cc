"""``ossl-vault agent``: keys held in memory, a uid-checked socket, TTL, stop, fallback.

Every agent here is started as a user would (``eval "$(ossl-vault agent
start)"`` in bash) and detaches; its identity is a passphrase-protected copy
of the RSA key that the CLI alone cannot use, so a successful read proves the
agent served it.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CLI, Result, VaultDir, assert_error, read_until_closed

PASSPHRASE = "correct horse agent staple"
# A client run as another uid: perl-base is Essential in Debian, the venv's
# python may sit where uid 65534 cannot reach it.
PERL_CLIENT = r"""
use IO::Socket::UNIX;
$SIG{PIPE} = 'IGNORE';
my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ARGV[0])
    or do { print "connect failed: $!\n"; exit 0 };
print $s qq({"id":1,"op":"status"}\n);
my $line = <$s>;
print "reply: $line";
my $more = <$s>;
print defined($more) ? "more: $more" : "closed\n";
"""


@dataclass
class Agent:
    env: dict[str, str]  # the vault's env plus OSSL_VAULT_AGENT
    pid: int
    socket: Path

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return (
            Path(f"/proc/{self.pid}").exists()
            and "zombie" not in Path(f"/proc/{self.pid}/status").read_text().lower()
        )


@pytest.fixture
def enc_key(tmp_path: Path, keydir: Path) -> Iterator[tuple[Path, Path]]:
    """The RSA key under a passphrase (PKCS#8, AES-256-CBC), and the passphrase file."""
    pf = tmp_path / "key-passphrase"
    pf.write_text(PASSPHRASE + "\n")
    enc = tmp_path / "enc.key"
    subprocess.run(["openssl", "pkey", "-in", str(keydir / "rsa.key"), "-aes-256-cbc",
                    "-passout", f"file:{pf}", "-out", str(enc)], check=True)  # fmt: skip
    assert b"ENCRYPTED PRIVATE KEY" in enc.read_bytes()
    yield enc, pf


def runtime_dir(tmp_path: Path) -> Path:
    """A short $XDG_RUNTIME_DIR (a socket address holds 107 bytes), linked from tmp_path."""
    link = tmp_path / "run"
    if not link.exists():
        link.symlink_to(tempfile.mkdtemp(prefix="ovr."))
    return link.resolve()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[Agent]]:
    """Agents started by a test; killed at its end if still running."""
    started: list[Agent] = []
    yield started
    for a in started:
        if a.alive():
            os.kill(a.pid, signal.SIGKILL)
    if (tmp_path / "run").exists():
        shutil.rmtree((tmp_path / "run").resolve(), ignore_errors=True)


def start(v: VaultDir, tmp_path: Path, agents: list[Agent], *args: str,
          identity: Path | None = None, stdin: bytes = b"") -> Agent:  # fmt: skip
    """``eval "$(ossl-vault agent start ...)"`` in bash; the variables it set."""
    env = {**v.env, "XDG_RUNTIME_DIR": str(runtime_dir(tmp_path))}
    argv = [*CLI, "--vault", str(v.path)]
    if identity is not None:
        argv += ["--identity", str(identity)]
    cmd = shlex.join([*argv, "agent", "start", *args])
    script = f'eval "$({cmd})" && printf "%s\\n" "$OSSL_VAULT_AGENT" "$OSSL_VAULT_AGENT_PID"'
    p = subprocess.run(["bash", "-c", script], input=stdin, capture_output=True, env=env,
                       timeout=60, start_new_session=True)  # fmt: skip
    assert p.returncode == 0, p.stderr.decode()
    sock, pid = p.stdout.decode().splitlines()
    agent = Agent({**env, "OSSL_VAULT_AGENT": sock}, int(pid), Path(sock))
    agents.append(agent)
    return agent


def get(v: VaultDir, name: str, env: dict[str, str], identity: Path | None) -> Result:
    """``get NAME`` with only ``identity`` (and no default key) to read with."""
    args = ["--identity", str(identity)] if identity else []
    return v.run(*args, "get", name, env=env, identity=None)


def status(v: VaultDir, env: dict[str, str]) -> tuple[int, dict]:
    r = v.run("agent", "status", "--json", env=env, identity=None)
    return r.rc, json.loads(r.out) if r.rc == 0 else {}


def test_agent_serves_a_key_only_it_holds(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    enc, pf = enc_key
    vault.ok("put", "db/password", input=b"s3cret\n")
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    assert a.socket.parent.parent == runtime_dir(tmp_path)  # under $XDG_RUNTIME_DIR
    assert stat.S_IMODE(a.socket.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(a.socket.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(a.socket.stat().st_mode)
    assert [p.name for p in a.socket.parent.iterdir()] == ["agent.sock"]  # nothing else
    assert get(vault, "db/password", vault.env, enc).rc == 4  # the CLI alone cannot
    r = get(vault, "db/password", a.env, enc)
    assert (r.rc, r.out, r.err) == (0, b"s3cret\n", "")
    assert get(vault, "db/password", a.env, None).out == b"s3cret\n"  # cached key, same bytes
    rc, st = status(vault, a.env)
    assert rc == 0 and st["pid"] == a.pid and st["data_keys"] == 1
    assert [i["source"] for i in st["identities"]] == [str(enc)]
    assert 0 < st["expires_in"] <= 900
    assert "agent:get\tdb/password\t1" in (vault.path / "audit.log").read_text()
    text = vault.ok("agent", "status", env=a.env, identity=None).out.decode()
    assert f"agent {a.pid} at {a.socket}" in text and "data keys held: 1" in text
    assert "values held: 1" in text


def test_a_cached_key_still_fails_closed(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    enc, pf = enc_key
    vault.ok("put", "a", input=b"A")
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    assert get(vault, "a", a.env, enc).out == b"A"
    assert status(vault, a.env)[1]["data_keys"] == 1
    # a field under the record MAC, not in the cache key: the date of the version
    index = vault.path / "secrets" / "a.tsv"
    lines = index.read_text().splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if line.startswith("secret\ta\t1\t"))
    fields = lines[i].split("\t")
    fields[3] = "2001-01-01T00:00:00Z"
    lines[i] = "\t".join(fields)
    index.write_text("".join(lines))
    r = get(vault, "a", a.env, enc)
    assert (r.rc, r.out) == (5, b"")
    assert "failed its integrity check" in r.err
    assert status(vault, a.env)[1]["data_keys"] == 1  # it was the cached key that refused


def enc_calls(log: Path) -> int:
    """How many ``openssl enc`` the logging shim has seen."""
    from test_no_secret_argv import parse_log

    return sum(1 for argv, _env in parse_log(log.read_bytes()) if argv[1:2] == [b"enc"])


def shim_path(v: VaultDir, tmp_path: Path) -> Path:
    """The logging openssl shim first on the PATH of ``v``'s commands; its log file."""
    from test_no_secret_argv import logging_openssl

    shim_env, log = logging_openssl(tmp_path, v.env)
    v.env.update(shim_env)
    return log


def test_a_kept_value_skips_openssl_but_not_the_checks(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    """The second read of a value is answered without openssl enc, after the blob hash and
    record MAC are checked again; a changed blob is refused, a new version decrypted."""
    enc, pf = enc_key
    vault.ok("put", "a", input=b"A1")
    log = shim_path(vault, tmp_path)
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    assert get(vault, "a", a.env, enc).out == b"A1"
    first = enc_calls(log)
    assert first == 1
    for _ in range(3):
        r = get(vault, "a", a.env, enc)
        assert (r.rc, r.out, r.err) == (0, b"A1", "")
    assert enc_calls(log) == first  # answered from memory
    st = status(vault, a.env)[1]
    assert (st["data_keys"], st["values"]) == (1, 1)
    reads = (vault.path / "audit.log").read_text().count("agent:get\ta\t1\t")
    assert reads == 4  # every read is still recorded
    blob = next((vault.path / "blobs").iterdir())
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.chmod(0o600)
    blob.write_bytes(bytes(data))
    r = get(vault, "a", a.env, enc)
    assert (r.rc, r.out) == (5, b"") and "does not match its hash" in r.err
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    vault.ok("put", "a", input=b"A2")  # a new version: a new value, decrypted once
    assert get(vault, "a", a.env, enc).out == b"A2"
    assert get(vault, "a", a.env, enc).out == b"A2"
    assert enc_calls(log) == first + 2  # the put's encryption and one decryption
    vault.ok("agent", "stop", env=a.env, identity=None)


def test_values_under_a_password_are_not_kept(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    enc, pf = enc_key
    (tmp_path / "pw").write_text("per-secret pw\n")
    (tmp_path / "wrong").write_text("not it\n")
    vault.ok("put", "p", "--password-file", str(tmp_path / "pw"), input=b"P")
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    for _ in range(2):
        r = vault.run("--identity", str(enc), "get", "p", "--password-file", str(tmp_path / "pw"),
                      env=a.env, identity=None)  # fmt: skip
        assert (r.rc, r.out) == (0, b"P"), r.err
    st = status(vault, a.env)[1]
    assert (st["data_keys"], st["values"]) == (1, 0)
    r = vault.run("--identity", str(enc), "get", "p", "--password-file", str(tmp_path / "wrong"),
                  env=a.env, identity=None)  # fmt: skip
    assert (r.rc, r.out) == (4, b"") and "wrong password" in r.err


def test_another_uid_is_refused(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    enc, pf = enc_key
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "perl", "-e",
              PERL_CLIENT, str(a.socket)]  # fmt: skip
    # as made: the 0700 directory and 0600 socket keep uid 65534 out
    p = subprocess.run(nobody, capture_output=True, text=True, timeout=30)
    assert p.stdout.startswith("connect failed: Permission denied"), (p.stdout, p.stderr)
    # loosened by mistake: SO_PEERCRED still refuses, with one error reply
    runtime_dir(tmp_path).chmod(0o755)
    a.socket.parent.chmod(0o755)
    a.socket.chmod(0o666)
    p = subprocess.run(nobody, capture_output=True, text=True, timeout=30)
    reply, end = p.stdout.splitlines()
    assert end == "closed"
    error = json.loads(reply.removeprefix("reply: "))
    assert error["id"] is None and error["error"]["code"] == 4
    assert error["error"]["message"] == f"uid 65534 may not use the agent of uid {os.getuid()}"
    assert status(vault, a.env)[0] == 0  # its owner is still served


def test_ttl_expiry_forgets_the_keys(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    enc, pf = enc_key
    vault.ok("put", "a", input=b"A")
    a = start(vault, tmp_path, agents, "--ttl", "3s", "--key-passphrase-file", str(pf),
              identity=enc)  # fmt: skip
    assert get(vault, "a", a.env, enc).out == b"A"
    assert 0 < status(vault, a.env)[1]["expires_in"] <= 3
    deadline = time.monotonic() + 30
    while a.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not a.alive() and not a.socket.exists() and not a.socket.parent.exists()
    assert status(vault, a.env)[0] == 3
    r = get(vault, "a", a.env, enc)  # the key went with it: the CLI alone cannot read
    assert r.rc == 4 and r.out == b""


def test_stop_wipes_and_exits(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    enc, pf = enc_key
    vault.ok("put", "a", input=b"A")
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    assert get(vault, "a", a.env, enc).out == b"A"
    r = vault.ok("agent", "stop", env=a.env, identity=None)
    assert r.out == b"unset OSSL_VAULT_AGENT OSSL_VAULT_AGENT_PID;\n"
    assert f"agent {a.pid} stopped" in r.err
    deadline = time.monotonic() + 10
    while a.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not a.alive() and not a.socket.parent.exists()
    assert get(vault, "a", a.env, enc).rc == 4  # nothing of it left
    r = vault.run("get", "a", env=a.env)  # a key of our own: the gone agent is no bother
    assert (r.rc, r.out, r.err) == (0, b"A", "")
    assert vault.run("agent", "stop", env=a.env, identity=None).rc == 3


def test_get_works_with_the_agent_killed(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    enc, pf = enc_key
    vault.ok("put", "a", input=b"A")
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    os.kill(a.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while a.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.socket.exists()  # a stale socket: connections are refused
    r = vault.run("get", "a", env=a.env)
    assert (r.rc, r.out, r.err) == (0, b"A", "")
    assert get(vault, "a", a.env, enc).rc == 4


def test_serve_and_exec_use_the_agent(
    vault: VaultDir, tmp_path: Path, keydir: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    enc, pf = enc_key
    vault.ok("recipient", "add", "alice", str(keydir / "p256.pem"), "--no-default")
    vault.ok("put", "a", input=b"A value")
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    requests = (
        b'{"id":1,"op":"get","name":"a"}\n{"id":2,"op":"share","name":"a","users":["alice"]}\n'
    )
    serve = [*CLI, "--vault", str(vault.path), "--identity", str(enc), "serve", "--stdio"]
    p = subprocess.run(serve, input=requests, capture_output=True, env=a.env, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    replies = sorted((json.loads(line) for line in p.stdout.splitlines()), key=lambda r: r["id"])
    assert replies == [{"id": 1, "result": {"value_b64": "QSB2YWx1ZQ=="}},
                       {"id": 2, "result": {"added": ["alice"]}}]  # fmt: skip
    assert vault.ok("get", "a", identity="p256").out == b"A value"
    r = vault.run("--identity", str(enc), "exec", "--env", "V=a", "--", "sh", "-c",
                  'printf %s "$V"', env=a.env, identity=None)  # fmt: skip
    assert (r.rc, r.out) == (0, b"A value")


def test_agent_holds_passphrase_recovery_and_stdin_keys(
    vault: VaultDir, tmp_path: Path, keydir: Path, agents: list[Agent]
) -> None:
    phrase = tmp_path / "phrase"
    phrase.write_text("vault passphrase for the safe\n")
    vault.ok("recipient", "add", "safe", "--passphrase-file", str(phrase), "--no-default")
    vault.ok("put", "safe-only", "--to", "safe", input=b"in the safe")
    vault.ok("put", "host-only", input=b"for the host")
    shares = tmp_path / "shares"
    out = vault.ok("recovery", "split", "-n", "3", "-k", "2", "--passphrase-file", str(phrase))
    out = out.out.decode()
    shares.write_text("\n".join([s for s in out.splitlines() if s and s[0] != "#"][:2]) + "\n")
    vault.ok("put", "late", input=b"written after the split")  # the recovery key reads it too
    a = start(vault, tmp_path, agents, "--passphrase-file", str(phrase), "--identity-stdin",
              stdin=(keydir / "rsa.key").read_bytes())  # fmt: skip
    sources = [i["source"] for i in status(vault, a.env)[1]["identities"]]
    assert sources == ["stdin", "passphrase for safe"]
    assert get(vault, "safe-only", a.env, None).out == b"in the safe"
    assert get(vault, "host-only", a.env, None).out == b"for the host"
    assert get(vault, "safe-only", vault.env, None).rc == 4  # without it: no passphrase
    b = start(vault, tmp_path, agents, "--recovery-share-file", str(shares))
    assert [i["source"] for i in status(vault, b.env)[1]["identities"]] == ["recovery key"]
    assert get(vault, "late", b.env, None).out == b"written after the split"


def test_no_secret_on_an_openssl_command_line(
    vault: VaultDir, tmp_path: Path, keydir: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    """Promise 2 for the agent and the coprocess: the logging shim sees every openssl."""
    from test_no_secret_argv import parse_log, pem_der, spellings

    from ossl_vault.format.seal import Identities
    from ossl_vault.format.wrapping import Identity
    from ossl_vault.ops.vault import Vault

    enc, pf = enc_key
    phrase = tmp_path / "phrase"
    phrase.write_text("a vault passphrase never on argv\n")
    vault.ok("recipient", "add", "pp", "--passphrase-file", str(phrase))
    log = shim_path(vault, tmp_path)
    value = b"value-" + os.urandom(24).hex().encode()
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), "--passphrase-file",
              str(phrase), identity=enc)  # fmt: skip
    pw = base64.b64encode(b"pw-never-on-argv").decode()
    put = json.dumps({"id": 1, "op": "put", "name": "v", "password_b64": pw,
                      "value_b64": base64.b64encode(value).decode()})  # fmt: skip
    get = json.dumps({"id": 2, "op": "get", "name": "v", "password_b64": pw})
    serve = [*CLI, "--vault", str(vault.path), "serve", "--stdio"]
    for line in (put, get, get):  # cold, then from the agent's cached key
        p = subprocess.run(serve, input=line.encode() + b"\n", capture_output=True, env=a.env)
        assert p.returncode == 0 and b'"result"' in p.stdout, p
    assert base64.b64decode(json.loads(p.stdout)["result"]["value_b64"]) == value
    index = Vault(str(vault.path)).store.read_index()
    v = index.versions["v"][-1]
    rsa = Identity(str(keydir / "rsa.key"), str(keydir / "rsa.key"))
    dk, _ct = Vault(str(vault.path)).open(index, v, Identities([rsa]))
    secrets = {
        "key passphrase": PASSPHRASE.encode(),
        "vault passphrase": b"a vault passphrase never on argv",
        "password": b"pw-never-on-argv",
        "value": value,
        "data key": dk,
        "private key": pem_der((keydir / "rsa.key").read_bytes()),
    }
    records = parse_log(log.read_bytes())
    assert len(records) > 10  # the agent's and the coprocess's openssl calls are all here
    for argv, environ in records:
        text = b"\0".join(argv + environ)
        for what, secret in secrets.items():
            for spelling in spellings(secret):
                assert spelling not in text, f"{what} on an openssl command line: {argv}"


IMPOSTOR = r"""
use IO::Socket::UNIX;
my ($path, $log) = @ARGV;
my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $path, Listen => 5)
    or die "listen: $!";
$| = 1;
print "ready\n";
open(my $fh, '>>', $log) or die "log: $!";
$SIG{ALRM} = sub { exit 0 };
alarm 20;
while (my $c = $s->accept) {
    my $buf = '';
    $c->recv($buf, 65536);
    print $fh $buf;
    $fh->flush;
    print $c qq({"id":1,"result":{"value_b64":"Zm9yZ2Vk"}}\n);
    close $c;
}
"""


def test_a_socket_of_another_uid_gets_nothing(vault: VaultDir, tmp_path: Path) -> None:
    """A stale $OSSL_VAULT_AGENT path taken over by another user: the client checks the
    listener's uid (SO_PEERCRED) first, sends it nothing, and reads the value itself."""
    (tmp_path / "pw").write_text("per-secret pw\n")
    vault.ok("put", "a", "--password-file", str(tmp_path / "pw"), input=b"real value")
    shared = Path(tempfile.mkdtemp(prefix="imp", dir="/tmp"))
    try:
        shared.chmod(0o777)
        sock, log = shared / "agent.sock", shared / "received"
        log.write_bytes(b"")
        log.chmod(0o666)
        impostor = subprocess.Popen(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
             "perl", "-e", IMPOSTOR, str(sock), str(log)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert impostor.stdout is not None and impostor.stdout.readline() == "ready\n"
            env = {**vault.env, "OSSL_VAULT_AGENT": str(sock)}
            r = vault.run("get", "a", "--password-file", str(tmp_path / "pw"), env=env)
            assert (r.rc, r.out) == (0, b"real value"), r.err
        finally:
            impostor.kill()
            impostor.wait()
        assert log.read_bytes() == b""  # not even the request reached it
    finally:
        shutil.rmtree(shared)


# -- `get` through the agent before the CLI loads (ossl_vault/cli/entry.py) -------------------


def imported(v: VaultDir, env: dict[str, str], *args: str) -> tuple[Result, set[str]]:
    """Run ``python -X importtime -m ossl_vault ARGS``: the result, the modules imported."""
    from conftest import CLI

    p = subprocess.run([CLI[0], "-X", "importtime", *CLI[1:], *args], capture_output=True,
                       env=env, timeout=60, start_new_session=True)  # fmt: skip
    err = p.stderr.decode()
    modules = {
        ln.split("|")[-1].strip() for ln in err.splitlines() if ln.startswith("import time:")
    }
    rest = "".join(ln + "\n" for ln in err.splitlines() if not ln.startswith("import time:"))
    return Result(p.returncode, p.stdout, rest), modules


def test_a_plain_get_is_answered_before_the_cli_loads(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    enc, pf = enc_key
    vault.ok("put", "db/pw", input=b"one")
    vault.ok("put", "db/pw", input=b"two\n")
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    at = ["--vault", str(vault.path), "--identity", str(enc)]
    for args, out in (
        ([*at, "get", "db/pw"], b"two\n"),
        ([f"--vault={vault.path}", "-i", str(enc), "get", "db/pw", "--version", "1"], b"one"),
        ([*at, "--lock-timeout", "5", "get", "db/pw", "--version=2"], b"two\n"),
        ([*at, "get", "--version", "1", "db/pw"], b"one"),  # options in click's orders too
        # the global options after the command too (issue 9)
        (["get", "db/pw", "--vault", str(vault.path), "-i", str(enc), "--version", "1"], b"one"),
        (["--vault", str(vault.path), "get", "--identity", str(enc), "db/pw"], b"two\n"),
    ):
        r, modules = imported(vault, a.env, *args)
        assert (r.rc, r.out, r.err) == (0, out, ""), args
        assert "click" not in modules and "ossl_vault.cli.main" not in modules, args
    records = (vault.path / "audit.log").read_text()
    assert records.count("\tagent:get\tdb/pw\t") == 6  # each fast read recorded by the agent
    # a final error from the agent: the CLI's error line and exit code, still no CLI
    r, modules = imported(vault, a.env, *at, "get", "no/such")
    assert (r.rc, r.out) == (3, b"") and "click" not in modules
    assert r.err == vault.run("get", "no/such").err  # the same words as without an agent
    # anything else goes to the full CLI
    for args in (["get", "db/pw", "--out", str(tmp_path / "o")], ["--version"], ["list"],
                 ["get", "--version", "01", "db/pw"], ["-i=x", "get", "db/pw"]):  # fmt: skip
        _r, modules = imported(vault, a.env, "--vault", str(vault.path), *args)
        assert "click" in modules, args
    r, modules = imported(vault, {**a.env, "OSSL_VAULT_LOCK_TIMEOUT": "soon"}, *at, "get", "db/pw")
    assert (r.rc, r.out) == (2, b"") and "click" in modules  # the CLI refuses it, as always


def test_exec_and_env_ask_the_agent_without_the_cli(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    """Issue 15: with an agent, env and exec take the light path too (click is a third
    of their time), and their reads are the agent's (recorded as agent:get)."""
    enc, pf = enc_key
    vault.ok("put", "db/pw", input=b"two")
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    at = ["--vault", str(vault.path), "--identity", str(enc)]
    for args, out in (
        ([*at, "env", "DB=db/pw"], b"export DB='two'\n"),
        ([*at, "exec", "--env", "DB=db/pw", "--", "sh", "-c", 'printf %s "$DB"'], b"two"),
    ):
        before = (vault.path / "audit.log").read_text().count("\tagent:get\tdb/pw\t")
        r, modules = imported(vault, a.env, *args)
        assert (r.rc, r.out, r.err) == (0, out, ""), args
        assert "click" not in modules and "ossl_vault.cli.light" in modules, args
        after = (vault.path / "audit.log").read_text().count("\tagent:get\tdb/pw\t")
        assert after == before + 1, args
    r, modules = imported(vault, a.env, *at, "env", "no/such")
    assert (r.rc, r.out) == (3, b"") and "click" not in modules
    assert r.err == vault.run("env", "no/such").err  # the same words as without an agent


def test_exec_takes_the_agents_answers_and_reads_the_rest_itself(
    vault: VaultDir, tmp_path: Path, keydir: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    """exec's get_many: the agent answers what it holds (the host key's secrets); a secret
    only alice's key opens is refused there (4, not final) and read by exec itself; each
    read is recorded once where it was made, the agent's as agent:get."""
    enc, pf = enc_key
    vault.ok("recipient", "add", "alice", str(keydir / "p256.pem"), "--no-default")
    names = [f"s/{i}" for i in range(9)]
    for n in names:
        vault.ok("put", n, input=n.encode())
    vault.ok("put", "hers", "--to", "alice", input=b"alice's")
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    specs = [x for i, n in enumerate(names) for x in ("--env", f"V{i}={n}")]
    show = 'printf "%s," "$V0" "$V8" "$H"'
    before = len(vault.audit())
    r = vault.run("exec", *specs, "--env", "H=hers", "--", "sh", "-c", show, env=a.env,
                  identity="p256")  # fmt: skip
    assert (r.rc, r.out) == (0, b"s/0,s/8,alice's,"), r.err
    records = [(rec[6], rec[7], rec[10]) for rec in vault.audit()[before:]]
    assert sorted(x for x in records if x[1] != "hers") == [("agent:get", n, "ok") for n in names]
    assert sorted(x for x in records if x[1] == "hers") == [
        ("agent:get", "hers", "exit=4:AccessDenied"), ("exec", "hers", "ok")]  # fmt: skip
    # a final answer (no such secret): exec fails with the agent's words, recorded there
    before = len(vault.audit())
    r = vault.run("exec", *specs, "--env", "X=no/such", "--", "true", env=a.env)
    assert_error(r, 3, "no secret 'no/such'")
    failed = [rec[6:11:4] for rec in vault.audit()[before:] if rec[7] == "no/such"]
    assert failed == [["agent:get", "exit=3:NotFoundError"]]  # not read again by exec


def test_the_agent_refuses_a_symlinked_vault_tsv(
    tmp_path: Path, keydir: Path, enc_key: tuple[Path, Path], agents: list[Agent], env: dict
) -> None:
    """Format 1: the agent read vault.tsv through a symbolic link, which a plain get
    refuses (exit 5, format.md section 1): it refuses it the same way now."""
    enc, pf = enc_key
    v = VaultDir(tmp_path / "v1", keydir, env)
    v.ok("init", "--format", "1", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    v.ok("put", "a", input=b"value")
    elsewhere = tmp_path / "elsewhere.tsv"
    shutil.move(v.path / "vault.tsv", elsewhere)
    (v.path / "vault.tsv").symlink_to(elsewhere)
    a = start(v, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    for r in (get(v, "a", v.env, keydir / "rsa.key"), get(v, "a", a.env, enc)):
        assert (r.rc, r.out) == (5, b""), r.err
        assert "symbolic link" in r.err


def test_a_full_get_many_reply_leaves_the_rest_to_the_client(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    """Two values of 800 kB would not fit one 2 MiB reply line. With one name more than
    workers, one worker's share holds two: the agent answers the first and leaves the
    second unread and unrecorded, and env reads it itself; each value is read and
    recorded once."""
    from ossl_vault.ops.read import WORKERS

    enc, pf = enc_key
    names = [f"big{i}" for i in range(WORKERS + 1)]  # the first share: big0 and the last
    big = {n: os.urandom(400_000).hex().encode() for n in names}  # 800 kB: 2 too many a line
    for n, value in big.items():
        vault.ok("put", n, input=value)
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    before = len(vault.audit())
    r = vault.run("env", *names, env=a.env)
    assert r.rc == 0, r.err
    assert r.out == b"".join(b"export %s='%s'\n" % (n.upper().encode(), v) for n, v in big.items())
    records = sorted((rec[6], rec[7]) for rec in vault.audit()[before:])
    assert records == sorted([("agent:get", n) for n in names[:-1]] + [("env", names[-1])])


def test_a_get_the_agent_cannot_answer_asks_it_once(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    """The agent holds no key for this vault: one refusal in its log, then a local read."""
    enc, pf = enc_key
    vault.ok("put", "a", input=b"A")
    (tmp_path / "other").mkdir()
    other = VaultDir(tmp_path / "other" / "v", vault.keydir, vault.env)
    ed = vault.keydir / "p256.pem"
    other.ok("init", "--recipient", f"p256={ed}", identity=None)
    other.ok("put", "a", input=b"B", identity=None)
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    r = other.run("get", "a", env=a.env, identity="p256")
    assert (r.rc, r.out, r.err) == (0, b"B", "")
    log = (other.path / "audit.log").read_text()
    assert log.count("\tagent:get\ta\t") == 1  # refused once (exit 4), not asked again
    assert log.count("\tget\ta\t1\t") == 1  # the local read


def test_a_missing_password_is_asked_for_at_a_terminal(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    """The agent cannot prompt; its "needs its password" is not final, so the CLI asks."""
    from conftest import CLI, run_pty

    enc, pf = enc_key
    (tmp_path / "pw").write_text("guard pw\n")
    vault.ok("put", "guarded", "--password-file", str(tmp_path / "pw"), input=b"G!")
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    argv = [*CLI, "--vault", str(vault.path), "--identity", str(vault.keydir / "rsa.key"),
            "get", "guarded"]  # fmt: skip
    rc, seen = run_pty(argv, a.env, ((b"password of 'guarded'", b"guard pw\n"),))
    assert rc == 0, seen
    assert seen.endswith(b"G!"), seen


def test_agent_start_and_stop_are_audited(
    vault: VaultDir, keydir: Path, tmp_path: Path, agents: list[Agent]
) -> None:
    """System events (start-up, shutdown) are records of the vault the command names."""
    n = len(vault.audit())
    a = start(vault, tmp_path, agents, identity=keydir / "rsa.key")
    vault.ok("agent", "stop", env=a.env, identity=None)
    records = [(r[6], r[9], r[10]) for r in vault.audit()[n:]]
    fpr = subprocess.run(
        f"openssl pkey -in {keydir / 'rsa.key'} -pubout -outform DER | sha256sum",
        shell=True, capture_output=True, text=True, check=True,
    ).stdout[:16]  # fmt: skip
    assert records == [("agent-start", fpr, "ok"), ("agent-stop", "-", "ok")]
    vault.ok("audit", "verify")


def test_the_fast_path_refuses_a_binary_value_on_a_terminal(
    vault: VaultDir, keydir: Path, tmp_path: Path, agents: list[Agent]
) -> None:
    import pty

    vault.ok("put", "bin", input=b"\x1b]0;owned\x07")
    a = start(vault, tmp_path, agents, identity=keydir / "rsa.key")
    primary, secondary = pty.openpty()
    p = subprocess.Popen([*CLI, "--vault", str(vault.path), "get", "bin"], stdout=secondary,
                         stderr=subprocess.PIPE, env=a.env)  # fmt: skip
    os.close(secondary)
    shown = read_until_closed(primary)
    os.close(primary)
    assert p.wait(timeout=60) == 2 and b"owned" not in shown
    assert b"binary data" in p.stderr.read()  # type: ignore[union-attr]
    assert vault.run("get", "bin", env=a.env, identity=None).out == b"\x1b]0;owned\x07"


def test_an_expired_secret_warns_through_the_agent_too(
    vault: VaultDir, keydir: Path, tmp_path: Path, agents: list[Agent]
) -> None:
    from test_daily import expire_by_hand

    vault.ok("put", "db", "--expires", "30d", input=b"v")
    expire_by_hand(vault, "db")
    a = start(vault, tmp_path, agents, identity=keydir / "rsa.key")
    r, modules = imported(vault, a.env, "--vault", str(vault.path), "get", "db")
    assert (r.rc, r.out) == (0, b"v") and "click" not in modules  # the fast path
    assert "warning: secret 'db' expired on 2001-01-01T00:00:00Z" in r.err
    r = vault.run("get", "db", "--strict", env=a.env, identity=None)
    assert r.rc == 3 and "expired" in r.err


def test_an_agent_read_needs_only_its_own_records(
    vault: VaultDir, tmp_path: Path, enc_key: tuple[Path, Path], agents: list[Agent]
) -> None:
    """Format 2: a read uses recipients.tsv and its secret's file alone (format.md 2.8), so
    another secret's damaged file fails that secret's reads only, through the agent too."""
    enc, pf = enc_key
    vault.ok("put", "a", input=b"A")
    vault.ok("put", "b", input=b"B")
    with vault.secret_file("b").open("a") as f:  # a malformed line: reading b is exit 5
        f.write("not a record\n")
    assert vault.ok("get", "a").out == b"A"  # the CLI alone
    assert vault.run("get", "b").rc == 5
    a = start(vault, tmp_path, agents, "--key-passphrase-file", str(pf), identity=enc)
    for _ in range(2):  # the data key unwrapped, then held
        r = get(vault, "a", a.env, enc)
        assert (r.rc, r.out, r.err) == (0, b"A", "")
    reads = [rec[6:11] for rec in vault.audit() if rec[6] == "agent:get"]
    assert [rec[:3] + rec[4:] for rec in reads] == [["agent:get", "a", "1", "ok"]] * 2
    r = get(vault, "b", a.env, enc)
    assert (r.rc, r.out) == (5, b"")
