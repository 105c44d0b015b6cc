"""The one module that starts child processes.

Every ``openssl`` call goes through :func:`openssl`. Secrets never travel on
argv or in the environment: they are written into anonymous pipes whose read
ends the child inherits (``pass_fds``) and names as ``fd:N`` or ``/dev/fd/N``.
Children start with ``os.posix_spawn`` (a vfork and an exec, no copy of
this process's memory) rather than ``subprocess``, whose import alone costs a
cold ``get`` 8 ms; :func:`_exchange` then writes stdin and drains stdout and
stderr together through ``poll``, so no pipe blocks however large the value.
"""

from __future__ import annotations

import fcntl
import os
import select
from _signal import SIGKILL, SIGPIPE, SIGXFSZ  # the C module: ``signal`` loads enum

from ossl_vault.errors import OperationError
from ossl_vault.openssl import cache

TYPE_CHECKING = False  # typing itself stays off the read path
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

MIN_OPENSSL = (3, 0)
# A pipe holds at least 64 KiB on Linux; a secret we hand over this way is
# written completely before the child starts, so it must fit.
_PIPE_LIMIT = 60_000

_checked: dict[str, str] = {}


class OpensslFailed(OperationError):
    """openssl exited non-zero; ``stderr`` keeps what it said."""

    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


def pipe() -> tuple[int, int]:
    """``os.pipe()`` with both ends at fd 3 or above (close-on-exec, as os.pipe's).

    A child's stdin, stdout and stderr are dup2'd onto 0, 1 and 2; started
    with one of those closed, this process would get a pipe end there, and
    the dup2 would silently replace it in the child (a key pipe with no reader).
    """
    ends = []
    for fd in os.pipe():
        if fd < 3:
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
            fd = moved
        ends.append(fd)
    return ends[0], ends[1]


class SecretFds:
    """Pipes carrying secrets to one child: ``with SecretFds(a, b) as fds``.

    ``fds[i]`` is the read end holding ``secrets[i]``; name it in argv as
    ``fd:{fds[i]}`` (openssl ``-pass``) or ``/dev/fd/{fds[i]}`` (a key file).
    """

    def __init__(self, *secrets: bytes) -> None:
        self._secrets = secrets
        self.fds: list[int] = []

    def __enter__(self) -> list[int]:
        try:
            for data in self._secrets:
                if len(data) > _PIPE_LIMIT:
                    raise OperationError("secret too large to pass on a pipe")
                r, w = pipe()
                self.fds.append(r)
                try:
                    os.write(w, data)
                finally:
                    os.close(w)
        except BaseException:
            self._close()
            raise
        return self.fds

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def which(name: str) -> str | None:
    """The first executable ``name`` on $PATH, as :func:`shutil.which` finds it.

    Not shutil itself: importing it (it loads zlib, bz2 and lzma) costs a
    cold read more than the search.
    """
    if os.sep in name:
        return name if os.access(name, os.X_OK) and not os.path.isdir(name) else None
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or os.curdir, name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


def openssl_path() -> str:
    """The openssl to run: ``$OSSL_VAULT_OPENSSL`` or the first on PATH."""
    configured = os.environ.get("OSSL_VAULT_OPENSSL")
    path = configured or which("openssl")
    if not path:
        raise OperationError(
            "openssl not found on PATH", hint="install openssl 3 or set OSSL_VAULT_OPENSSL"
        )
    return path


def parse_version(text: str) -> tuple[int, int, int]:
    """``'OpenSSL 3.0.19 27 Jan 2026'`` -> ``(3, 0, 19)``; refuses LibreSSL and the like.

    The third number may run on into a suffix (``3.2.0-alpha1``); the first two may not.
    """
    words = text.split(" ", 2)
    parts = words[1].split(".", 2) if len(words) > 1 and words[0] == "OpenSSL" else []
    if len(parts) == 3:
        patch = parts[2][: len(parts[2]) - len(parts[2].lstrip("0123456789"))]
        if all(_digits(x) for x in (parts[0], parts[1], patch)):
            return int(parts[0]), int(parts[1]), int(patch)
    raise OperationError(f"cannot use {text.strip()!r} as openssl", hint="install OpenSSL 3")


def _digits(text: str) -> bool:
    return 0 < len(text) <= 9 and text.isascii() and text.isdigit()


def check_openssl() -> str:
    """Refuse anything below 3.0: ``openssl version`` once per binary (see :mod:`.cache`)."""
    path = openssl_path()
    if path in _checked:
        return path

    def version() -> str:
        out = _run([path, "version"], b"", (), "openssl version")
        return out.decode("ascii", "replace").strip()

    text = cache.file_value("version", path, version)
    if parse_version(text)[:2] < MIN_OPENSSL:
        raise OperationError(
            f"openssl {text.split()[1]!r} is too old (need 3.0 or later)",
            hint="install OpenSSL 3 or set OSSL_VAULT_OPENSSL",
        )
    _checked[path] = text
    return path


def openssl(
    args: Sequence[str],
    *,
    stdin: bytes = b"",
    pass_fds: Sequence[int] = (),
    what: str | None = None,
) -> bytes:
    """Run ``openssl ARGS`` and return its stdout; raise :class:`OpensslFailed`.

    A child :func:`prestart` started with these very ARGS (and no fds) is fed
    instead of a new one.
    """
    early = _early.pop(tuple(args), None) if not pass_fds else None
    if early is not None:
        return early.finish(stdin)
    path = check_openssl()
    return _run([path, *args], stdin, pass_fds, what or f"openssl {args[0]}")


_early: dict[tuple[str, ...], Child] = {}  # prestart()'s children, by their ARGS


def prestart(args: Sequence[str], what: str) -> None:
    """Start ``openssl ARGS`` (which takes its input on stdin) before it is needed.

    The light path starts the unwrap's openssl this way before it imports the
    rest of the read path, so that openssl loads on the other core meanwhile.
    The first :func:`openssl` call with the same ARGS feeds it; if none comes,
    it is killed at exit. Only what needs no secret on a pipe can start early.
    """
    if tuple(args) in _early:
        return
    try:
        _early[tuple(args)] = start(args, what=what)
    except OperationError:
        return  # no openssl to start: the call itself will say so
    if len(_early) == 1:
        import atexit

        atexit.register(_cancel_early)


def _cancel_early() -> None:
    for child in _early.values():
        child.cancel()
    _early.clear()


def run_tool(
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    pass_fds: Sequence[int] = (),
    what: str | None = None,
) -> bytes:
    """Run another program on PATH (``ssh-keygen``) with the same rules as :func:`openssl`.

    Returns its stdout; raises :class:`OpensslFailed` (an ``OperationError``) when it
    exits non-zero, and ``OperationError`` when it is not installed.
    """
    path = which(argv[0])
    if not path:
        raise OperationError(f"{argv[0]!r} not found on PATH")
    return _run([path, *argv[1:]], stdin, pass_fds, what or argv[0])


_inherited: list[int] | None = None  # see _inherited_fds


def _inherited_fds() -> list[int]:
    """The fds above 2 this process was given open and would hand on to a child.

    subprocess closes them in its children (close_fds); so do ours. Only a
    caller hands such fds in (every fd Python opens is close-on-exec), so
    they are listed once; each is checked again at every spawn.
    """
    global _inherited
    if _inherited is None:
        try:
            names = os.listdir("/proc/self/fd")
        except OSError:
            names = []
        _inherited = [int(n) for n in names if n.isdigit() and int(n) > 2]
    found = []
    for fd in _inherited:
        try:
            if os.get_inheritable(fd):
                found.append(fd)
        except OSError:  # closed since (or the directory listing's own fd)
            continue
    return found


# What a child starts with: the default action for the signals Python ignores
# (SIGPIPE, SIGXFSZ), as subprocess's restore_signals gives.
_DEFAULT_SIGNALS = (SIGPIPE, SIGXFSZ)
_CHUNK = 65536


def _run(argv: list[str], stdin: bytes, pass_fds: Sequence[int], what: str) -> bytes:
    """Run ``argv`` with ``stdin`` on a pipe and ``pass_fds`` kept open; its stdout."""
    return Child(argv, pass_fds, what).finish(stdin)


def start(args: Sequence[str], *, pass_fds: Sequence[int] = (), what: str) -> Child:
    """``openssl ARGS`` started now and fed later (:meth:`Child.finish`): its start-up
    then overlaps other work, such as the openssl process before it."""
    return Child([check_openssl(), *args], pass_fds, what)


class Child:
    """A started child with stdin, stdout and stderr on pipes.

    Each fd of ``pass_fds`` is duplicated onto itself in the child, which
    clears its close-on-exec flag there only (glibc 2.29 and later): other
    threads' children never see it. Every other fd this process opened is
    close-on-exec (PEP 446), and those a caller handed in are closed in the
    child (:func:`_inherited_fds`). :meth:`finish` or :meth:`cancel` must follow.
    """

    def __init__(self, argv: list[str], pass_fds: Sequence[int], what: str) -> None:
        self.what = what
        self.ends: list[int] = []  # the pipes' ends this process still holds
        self.pid = 0
        try:
            in_r, self.in_w = self._pipe()
            self.out_r, out_w = self._pipe()
            self.err_r, err_w = self._pipe()
            actions = [
                (os.POSIX_SPAWN_DUP2, in_r, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
                *((os.POSIX_SPAWN_DUP2, fd, fd) for fd in pass_fds),
                *((os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds() if fd not in pass_fds),
            ]
            try:
                self.pid = os.posix_spawn(
                    argv[0], argv, os.environ, file_actions=actions, setsigdef=_DEFAULT_SIGNALS
                )
            except OSError as e:
                raise OperationError(f"cannot run {argv[0]!r}: {e.strerror}") from e
            for fd in (in_r, out_w, err_w):  # the child's ends
                self._close(fd)
        except BaseException:
            self._close_all()
            raise

    def _pipe(self) -> tuple[int, int]:
        r, w = pipe()
        self.ends += (r, w)
        return r, w

    def _close(self, fd: int) -> None:
        self.ends.remove(fd)
        os.close(fd)

    def _close_all(self) -> None:
        for fd in self.ends:
            os.close(fd)
        self.ends = []

    def finish(self, stdin: bytes = b"") -> bytes:
        """Write ``stdin``, collect stdout and the exit status; raise OpensslFailed."""
        try:
            out, err = _exchange(self.ends, self.in_w, self.out_r, self.err_r, stdin)
            code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            self.pid = 0
        except BaseException:
            self.cancel()  # interrupted: leave no child behind
            raise
        finally:
            self._close_all()
        if code != 0:
            text = err.decode("utf-8", "replace")
            first = next((line for line in text.splitlines() if line.strip()), "no message")
            raise OpensslFailed(f"{self.what} failed: {first.strip()}", text)
        return out

    def cancel(self) -> None:
        """Kill the child and reap it, unless :meth:`finish` already did (then nothing)."""
        if self.pid:
            os.kill(self.pid, SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = 0
        self._close_all()


def _exchange(
    ends: list[int], in_w: int, out_r: int, err_r: int, data: bytes
) -> tuple[bytes, bytes]:
    """Write ``data`` to the child's stdin while reading its stdout and stderr to their ends.

    Each fd is closed (and taken out of ``ends``) when it is done with.
    """
    got: dict[int, list[bytes]] = {out_r: [], err_r: []}
    poller = select.poll()
    pending = memoryview(data)
    if pending:
        os.set_blocking(in_w, False)
        poller.register(in_w, select.POLLOUT)
    else:
        _done(ends, poller, in_w, registered=False)
    for fd in got:
        poller.register(fd, select.POLLIN)
    waiting = len(got) + bool(pending)
    while waiting:
        for fd, _event in poller.poll():
            if fd == in_w:
                try:
                    pending = pending[os.write(in_w, pending[:_CHUNK]) :]
                except BrokenPipeError:
                    pending = pending[:0]  # the child stopped reading: its exit status says why
                except BlockingIOError:
                    continue
                if not pending:
                    _done(ends, poller, in_w)
                    waiting -= 1
                continue
            chunk = os.read(fd, _CHUNK)
            if chunk:
                got[fd].append(chunk)
            else:
                _done(ends, poller, fd)
                waiting -= 1
    return b"".join(got[out_r]), b"".join(got[err_r])


def _done(ends: list[int], poller: select.poll, fd: int, registered: bool = True) -> None:
    if registered:
        poller.unregister(fd)
    ends.remove(fd)
    os.close(fd)


def run_interactive(argv: Sequence[str]) -> int:
    """Run a program on the user's terminal (``$EDITOR``) and return its exit status.

    It inherits stdin, stdout and stderr; nothing secret is on its argv (a
    file name) or in its environment.
    """
    import subprocess  # the one child that shares our terminal: not a read's

    path = which(argv[0])
    if not path:
        raise OperationError(f"{argv[0]!r} not found on PATH", hint="set $EDITOR")
    try:
        return subprocess.call([path, *argv[1:]], shell=False)
    except OSError as e:
        raise OperationError(f"cannot run {argv[0]!r}: {e.strerror}") from e
