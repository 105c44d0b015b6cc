"""The one module that starts child processes.

Every ``openssl`` call goes through :func:`openssl`. Secrets never travel on
argv or in the environment: they are written into anonymous pipes whose read
ends the child inherits (``pass_fds``) and names as ``fd:N`` or ``/dev/fd/N``.
stdout and stderr are drained concurrently by ``communicate``, so no pipe
blocks however large the value.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from types import TracebackType

from ossl_vault.errors import OperationError
from ossl_vault.openssl import cache

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
                r, w = os.pipe()
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
    """``'OpenSSL 3.0.19 27 Jan 2026'`` -> ``(3, 0, 19)``; refuses LibreSSL and the like."""
    m = re.match(r"OpenSSL (\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise OperationError(f"cannot use {text.strip()!r} as openssl", hint="install OpenSSL 3")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


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
    """Run ``openssl ARGS`` and return its stdout; raise :class:`OpensslFailed`."""
    path = check_openssl()
    return _run([path, *args], stdin, pass_fds, what or f"openssl {args[0]}")


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


def _run(argv: list[str], stdin: bytes, pass_fds: Sequence[int], what: str) -> bytes:
    try:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=tuple(pass_fds),
            shell=False,
        )
    except OSError as e:
        raise OperationError(f"cannot run {argv[0]!r}: {e.strerror}") from e
    out, err = child.communicate(stdin)
    if child.returncode != 0:
        text = err.decode("utf-8", "replace")
        first = next((line for line in text.splitlines() if line.strip()), "no message")
        raise OpensslFailed(f"{what} failed: {first.strip()}", text)
    return out


def run_interactive(argv: Sequence[str]) -> int:
    """Run a program on the user's terminal (``$EDITOR``) and return its exit status.

    It inherits stdin, stdout and stderr; nothing secret is on its argv (a
    file name) or in its environment.
    """
    path = which(argv[0])
    if not path:
        raise OperationError(f"{argv[0]!r} not found on PATH", hint="set $EDITOR")
    try:
        return subprocess.call([path, *argv[1:]], shell=False)
    except OSError as e:
        raise OperationError(f"cannot run {argv[0]!r}: {e.strerror}") from e
