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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ossl_vault.agent.client import MAX_LINE, peer_uid
from ossl_vault.agent.keyring import Keyring
from ossl_vault.agent.protocol import SCHEMAS, Fields, Session, reply_error
from ossl_vault.agent.serve import Operations
from ossl_vault.errors import DENIED, OperationError, UsageError
from ossl_vault.ops.read import WORKERS
from ossl_vault.ops.vault import Vault

DEFAULT_TTL = 15 * 60.0
MAX_SOCKET_PATH = 107  # bytes of sun_path, less its NUL
AGENT_SCHEMAS = {
    "get": (*SCHEMAS["get"], "vault"),
    "get_many": ("names", "password_b64?", "vault"),  # the agent's alone (exec, env)
    "share": (*SCHEMAS["share"], "vault"),
    "ping": (),
    "status": (),
    "stop": (),
}

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
    return Vault(path, None, f"agent:{'get' if op == 'get_many' else op}")  # a get each


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
