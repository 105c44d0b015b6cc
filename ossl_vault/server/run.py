"""Run the key server in the foreground: uvicorn, TLS 1.3 only, one process (docs/api.md).

One process, because opaque-snake's login state cannot be serialized: KE2 and
KE3 must reach the process that made KE2. SIGTERM and SIGINT stop it cleanly
(uvicorn finishes the requests in flight), as systemd expects.
"""

from __future__ import annotations

import signal
import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ossl_vault.errors import OperationError, UsageError
from ossl_vault.server import state
from ossl_vault.server.app import KeyServer

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _foreground_class() -> type:
    import uvicorn

    class Foreground(uvicorn.Server):
        """uvicorn's server, but a SIGTERM ends it with exit 0 after a clean shutdown.

        uvicorn re-raises a captured signal once it has stopped, so the
        process would die of it before closing the database.
        """

        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # serve() installed handle_exit before it said it was listening

    return Foreground


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise UsageError(f"bad --listen {text!r}", hint="HOST:PORT, such as 127.0.0.1:8443")
    return host.strip("[]"), int(port)


def serve(directory: Path, listen: str, note: Callable[[str], None]) -> None:
    """Serve ``directory`` on ``listen`` until SIGTERM."""
    import uvicorn

    Foreground = _foreground_class()
    host, port = parse_listen(listen)
    server = KeyServer(directory)
    context = state.tls_context(directory)

    def context_factory(config: object, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return context  # ours: TLS 1.3 minimum, never uvicorn's defaults

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        raise OperationError(f"cannot listen on {listen!r}: {e.strerror}") from e
    config = uvicorn.Config(
        server.app(),
        ssl_context_factory=context_factory,
        log_level="warning",
        access_log=False,  # the app logs one line per request itself, without bodies
        lifespan="off",
        timeout_graceful_shutdown=10,
    )
    sock.listen(128)
    foreground = Foreground(config)
    for signum in STOP_SIGNALS:  # from now on a SIGTERM is a clean stop, even during start-up
        signal.signal(signum, foreground.handle_exit)
    bound = sock.getsockname()
    note(f"listening on https://{host}:{bound[1]} (TLS 1.3 only), state in '{directory}'")
    sys.stderr.flush()
    try:
        foreground.run(sockets=[sock])
    finally:
        server.db.close()
    note("stopped")
