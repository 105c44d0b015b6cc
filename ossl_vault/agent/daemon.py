"""``ossl-vault agent``: unlocked identities and unwrapped data keys, in memory only.

Like ssh-agent: ``agent start`` loads the identities (decrypting a
passphrase-protected PEM key with ``openssl pkey -passin fd:N``, unlocking a
vault's passphrase recipients), binds a Unix socket (directory 0700, socket
0600) and detaches. Each connection speaks the line protocol of
:mod:`ossl_vault.agent.serve` (docs/protocol.md); a peer whose uid (SO_PEERCRED) is
not the agent's gets one error reply and is closed. After ``--ttl`` or on
``agent stop`` the agent zeroes what it holds, removes its socket and exits.
Nothing it holds is written anywhere: core dumps are off and the process is
not dumpable (no ptrace, no /proc/PID/mem for other processes of the uid).

A data key is cached by (vault, name, version, blob hash); a cached key still
goes through the blob hash and record MAC check before anything is decrypted.
Next to it the agent keeps the value it decrypted, under the record's MAC: a
read whose blob and MAC check out again gets that value without running
``openssl enc -d`` once more on the same authenticated bytes. Values under a
per-secret password are never kept (the password is checked on every read).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from ossl_vault.agent.client import MAX_LINE, peer_uid
from ossl_vault.agent.protocol import SCHEMAS, WORKERS, Fields, Session, reply_error
from ossl_vault.agent.serve import Operations
from ossl_vault.errors import DENIED, AccessDenied, OperationError, UsageError
from ossl_vault.format.records import Index, parse
from ossl_vault.format.wrapping import Identity, unlock_passphrase
from ossl_vault.openssl.proc import OpensslFailed, SecretFds, openssl
from ossl_vault.ops import sources
from ossl_vault.ops.vault import Identities, Vault

DEFAULT_TTL = 15 * 60.0
MAX_INDEXES = 8  # parsed indexes kept, one per vault
MAX_VALUE_BYTES = 32 * 1024 * 1024  # decrypted values kept, oldest forgotten first
MAX_SOCKET_PATH = 107  # bytes of sun_path, less its NUL
ENCRYPTED_PEM = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")
AGENT_SCHEMAS = {
    "get": (*SCHEMAS["get"], "vault"),
    "share": (*SCHEMAS["share"], "vault"),
    "ping": (),
    "status": (),
    "stop": (),
}

CacheKey = tuple[str, str, int, str]  # vault, name, version, blob SHA-256
ValueKey = tuple[str, str, int, str, bytes]  # and the record MAC


class Keyring:
    """Identities with their keys in memory, and the data keys they have opened."""

    def __init__(self, files: list[Identity], gpg: bool = True) -> None:
        self.files = files
        self.gpg = gpg
        self.keys: dict[CacheKey, tuple[bytearray, str | None]] = {}  # and the wrap's FPR
        self.values: dict[ValueKey, bytearray] = {}  # decrypted, oldest first
        self.value_bytes = 0
        self.indexes: dict[str, tuple[bytes, Index]] = {}  # parsed vault.tsv, by vault
        self.lock = threading.Lock()
        self.wiped = False

    def identities(self) -> Identities:
        with self.lock:
            return Identities(list(self.files), None, "", self.gpg and not self.wiped)

    def get(self, vault: Vault, name: str, number: int | None, password: bytes | None) -> bytes:
        """Like ``Vault.get``, opening the data key once per version; the read is audited."""
        index = self.index(vault)
        v = vault.version(name, number, index)
        key = (str(vault.store.root.resolve()), v.name, v.version, v.blob)
        with self.lock:
            held = self.keys.get(key)
            dk = bytes(held[0]) if held is not None else None
            fpr = held[1] if held is not None else None
        if dk is None:
            dk, ct = vault.open(index, v, self.identities())
            fpr = vault.opened_with
            with self.lock:
                if not self.wiped:
                    self.keys[key] = (bytearray(dk), fpr)
        else:  # the blob hash and record MAC are checked all the same
            ct = vault.open_with_key(index, v, dk)
        value_key = (*key, v.tag)
        with self.lock:
            kept = self.values.get(value_key) if v.password is None else None
            value = bytes(kept) if kept is not None else None
        if value is None:
            given = None if password is None else (lambda _name: password)
            value = vault._decrypt(v, dk, ct, given)
            if v.password is None:
                self.keep(value_key, value)
        vault.store.log(vault.event(v.name, v.version, [fpr] if fpr else []))
        return value

    def keep(self, key: ValueKey, value: bytes) -> None:
        """Hold a decrypted value, forgetting (and zeroing) the oldest past the limit."""
        if len(value) > MAX_VALUE_BYTES:
            return
        with self.lock:
            if self.wiped or key in self.values:
                return
            self.values[key] = bytearray(value)
            self.value_bytes += len(value)
            while self.value_bytes > MAX_VALUE_BYTES:
                old = self.values.pop(next(iter(self.values)))
                self.value_bytes -= len(old)
                old[:] = bytes(len(old))

    def index(self, vault: Vault) -> Index:
        """The vault's index, parsed again only when the bytes of vault.tsv change."""
        try:
            data = vault.store.index_path.read_bytes()
        except OSError:
            return vault.store.read_index()  # raises what any reader would
        root = str(vault.store.root)
        with self.lock:
            held = self.indexes.get(root)
        if held is not None and held[0] == data:
            return held[1]  # read-only from here on: reads never change an Index
        index = parse(data)
        with self.lock:
            self.indexes.pop(root, None)
            self.indexes[root] = (data, index)
            while len(self.indexes) > MAX_INDEXES:
                self.indexes.pop(next(iter(self.indexes)))
        return index

    def wipe(self) -> None:
        """Zero every key held and forget them; the keyring stays empty for good."""
        with self.lock:
            self.wiped = True
            for dk, _fpr in self.keys.values():
                dk[:] = bytes(len(dk))
            self.keys.clear()
            for value in self.values.values():
                value[:] = bytes(len(value))
            self.values.clear()
            self.value_bytes = 0
            self.indexes.clear()
            for identity in self.files:
                if isinstance(identity.key, bytearray):
                    identity.key[:] = bytes(len(identity.key))
            self.files.clear()

    def status(self) -> dict[str, object]:
        with self.lock:
            return {
                "identities": [
                    {"source": i.source, "fingerprint": i.fingerprint} for i in self.files
                ],
                "data_keys": len(self.keys),
                "values": len(self.values),
            }


# -- loading identities ---------------------------------------------------------------


def decrypt_pem(pem: bytes, passphrase: bytes, source: str) -> bytearray:
    """A passphrase-protected PEM private key, decrypted by openssl into memory."""
    with SecretFds(pem) as (kfd,), SecretFds(passphrase + b"\n") as (pfd,):
        args = ["pkey", "-in", f"/dev/fd/{kfd}", "-passin", f"fd:{pfd}"]
        try:
            return bytearray(openssl(args, pass_fds=[kfd, pfd], what="openssl pkey -passin"))
        except OpensslFailed:
            raise AccessDenied(f"wrong passphrase for identity {source!r}") from None


def in_memory(
    source: str, data: bytes, passphrase: Callable[[str], bytes | None]
) -> Identity | None:
    """An identity holding its PEM bytes, decrypted if need be, its key checked now.

    None for an encrypted key whose passphrase ``passphrase`` does not give.
    """
    if any(marker in data for marker in ENCRYPTED_PEM):
        secret = passphrase(source)
        if secret is None:
            return None
        pem = decrypt_pem(data, secret, source)
    else:
        pem = bytearray(data)
    identity = Identity(source, pem)  # type: ignore[arg-type]  (bytearray: zeroed on wipe)
    identity.fingerprint  # noqa: B018  (runs openssl pkey once, not on every request)
    return identity


def load_identities(
    given: tuple[str, ...],
    passphrase: Callable[[str], bytes | None],
    stdin_key: bytes | None = None,
) -> list[Identity]:
    """The identities the CLI would use, read into memory; plus one PEM key from stdin."""
    found, _searched = sources.identity_files(given)
    out: list[Identity | None] = []
    for identity in found:
        if isinstance(identity.key, str):
            try:
                data = Path(identity.key).read_bytes()
            except OSError as e:
                raise AccessDenied(f"cannot read identity {identity.key!r}: {e.strerror}") from e
            out.append(in_memory(identity.source, data, passphrase))
        else:
            out.append(identity)
    if stdin_key is not None:
        out.append(in_memory("stdin", stdin_key, passphrase))
    return [i for i in out if i is not None]


def unlock_vault(vault: Vault, passphrase: bytes) -> list[Identity]:
    """The private keys of a vault's passphrase recipients that ``passphrase`` opens."""
    lockable = [r for r in vault.recipients() if r.kind == "passphrase"]
    if not lockable:
        raise UsageError(f"vault '{vault.store.root}' has no passphrase recipient")
    unlocked = [i for i in (unlock_passphrase(r, passphrase) for r in lockable) if i]
    if not unlocked:
        raise AccessDenied(f"the passphrase opens no passphrase recipient of '{vault.store.root}'")
    return [replace(i, key=bytearray(i.key or b"")) for i in unlocked]


# -- the agent process ----------------------------------------------------------------


def bind(path: str | None) -> tuple[socket.socket, str, str | None]:
    """A listening socket (0600) in a fresh 0700 directory, or at ``path``: (sock, path, dir)."""
    directory = None
    if path is None:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        base = runtime if runtime and os.path.isdir(runtime) else None
        if base and len(os.fsencode(base)) > MAX_SOCKET_PATH - 40:
            base = None  # too deep for a socket address: the temp dir instead
        directory = tempfile.mkdtemp(prefix="ossl-vault-agent.", dir=base)  # 0700
        path = os.path.join(directory, "agent.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(64)
    except OSError as e:
        sock.close()
        if directory:
            shutil.rmtree(directory, ignore_errors=True)
        raise OperationError(f"cannot listen on {path!r}: {e.strerror or e}") from e
    finally:
        os.umask(old)
    return sock, path, directory


def boottime() -> float:
    """Seconds since boot, suspend included (the monotonic clock stops while asleep)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def harden() -> None:
    """No core dumps, not dumpable: what the agent holds stays in its memory."""
    import ctypes
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    pr_set_dumpable = 4
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0)


class Agent:
    """The serving side: accept, check the peer's uid, run sessions; stop on TTL or request."""

    def __init__(
        self, keyring: Keyring, sock: socket.socket, path: str, directory: str | None, ttl: float
    ) -> None:
        self.keyring, self.sock, self.path, self.directory = keyring, sock, path, directory
        self.ttl = ttl
        self.deadline = boottime() + ttl if ttl > 0 else None
        self.stopping: asyncio.Event | None = None
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="ossl-agent")

    def run(self, ready: Callable[[], None] = lambda: None) -> None:
        try:
            asyncio.run(self.main(ready))
        finally:
            self.keyring.wipe()
            self.cleanup()
            self.pool.shutdown(wait=False, cancel_futures=True)

    async def main(self, ready: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, self.stopping.set)
        server = await asyncio.start_unix_server(self.connected, sock=self.sock, limit=MAX_LINE)
        timer = asyncio.create_task(self.expire(self.deadline)) if self.deadline else None
        ready()
        await self.stopping.wait()
        if timer is not None:
            timer.cancel()
        self.keyring.wipe()
        server.close()

    async def expire(self, deadline: float) -> None:
        """Stop at ``deadline`` on the boot clock: time asleep counts toward the TTL."""
        while (left := deadline - boottime()) > 0:
            await asyncio.sleep(min(left, 1.0))
        assert self.stopping is not None
        self.stopping.set()

    def cleanup(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    async def connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            uid = peer_uid(writer.get_extra_info("socket"))
            if uid != os.getuid():
                message = f"uid {uid} may not use the agent of uid {os.getuid()}"
                writer.write(reply_error(None, DENIED, message))
                await writer.drain()
                return

            async def send(data: bytes) -> None:
                writer.write(data)
                await writer.drain()

            ops = Operations(self.keyring, agent_vault)
            local = {"status": self.status, "stop": self.stop}
            session = Session(ops, send, self.pool, AGENT_SCHEMAS, local, self.after)
            await session.serve(reader)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def status(self, _fields: Fields) -> dict[str, object]:
        left = None if self.deadline is None else max(0, round(self.deadline - boottime()))
        return {"pid": os.getpid(), "socket": self.path, "expires_in": left,
                **self.keyring.status()}  # fmt: skip

    def stop(self, _fields: Fields) -> dict[str, object]:
        self.keyring.wipe()
        return {"stopped": os.getpid()}

    def after(self, op: str) -> None:
        if op == "stop" and self.stopping is not None:
            self.stopping.set()


def agent_vault(fields: Fields, op: str) -> Vault:
    """The vault a request names; its audit records say the agent did ``op``."""
    path = fields["vault"]
    if not os.path.isabs(path):
        raise UsageError(f"field 'vault' must be an absolute path, not {path!r}")
    return Vault(path, None, f"agent:{op}")


def daemonize(serve: Callable[[Callable[[], None]], None], keep: tuple[int, ...]) -> int:
    """Run ``serve(ready)`` in a detached grandchild; its pid once it called ready()."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            said = pipe.read().split()
        os.waitpid(pid, 0)
        if len(said) != 2 or said[1] != b"ready":
            raise OperationError("the agent did not start")
        return int(said[0])
    code = 1
    try:  # the child: a new session, then the grandchild serves
        os.close(r)
        os.setsid()
        if os.fork():
            os._exit(0)  # the grandchild is no session leader: it never gets a terminal
        os.write(w, b"%d\n" % os.getpid())
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for low, high in _gaps(sorted({0, 1, 2, w, *keep})):
            os.closerange(low, high)

        def ready() -> None:
            os.write(w, b"ready\n")
            os.close(w)

        serve(ready)
        code = 0
    finally:
        os._exit(code)


def _gaps(kept: list[int]) -> list[tuple[int, int]]:
    """Ranges of fds to close: everything above 2 but ``kept``."""
    limit = os.sysconf("SC_OPEN_MAX")
    edges = [*kept, limit]
    return [(a + 1, b) for a, b in itertools.pairwise(edges) if b > a + 1]


def start(keyring: Keyring, ttl: float, path: str | None, foreground: bool,
          announce: Callable[[str, int], None]) -> None:  # fmt: skip
    """Bind the socket, then serve here (``foreground``) or in a detached daemon."""
    sock, path, directory = bind(path)
    agent = Agent(keyring, sock, path, directory, ttl)
    if foreground:
        harden()
        announce(path, os.getpid())
        agent.run()
        return

    def serve(ready: Callable[[], None]) -> None:
        harden()
        agent.run(ready)

    try:
        pid = daemonize(serve, (sock.fileno(),))
    finally:
        sock.close()
    keyring.wipe()  # this process's copy: the daemon holds its own
    announce(path, pid)
