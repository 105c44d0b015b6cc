"""The client half of the agent protocol: light enough to run before the CLI loads.

Only the standard library's socket, struct, json and base64 (and the exit
codes): ``ossl-vault get`` through a running agent (:mod:`ossl_vault.cli.entry`)
pays for nothing more.
docs/protocol.md is the contract.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import socket
import struct

from ossl_vault.errors import BUSY, INTEGRITY, NOT_FOUND, VaultError

AGENT_ENV = "OSSL_VAULT_AGENT"
ASKED = False  # the agent was asked already in this process: the CLI need not ask again
CLIENT_TIMEOUT = 60.0
MAX_LINE = 2 * 1024 * 1024  # a 1 MiB value is about 1.4 MiB of base64
FINAL = (NOT_FOUND, INTEGRITY, BUSY)  # agent answers a client takes; others mean "try locally"


def encode(message: dict[str, object]) -> bytes:
    """One line: compact, ASCII-only JSON, keys in a fixed order (a shell can match it)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def connect(path: str, timeout: float = CLIENT_TIMEOUT) -> socket.socket:
    """A connection to the agent at ``path``; OSError when there is none.

    The listener must run as our own uid (SO_PEERCRED) before anything is
    sent: a stale $OSSL_VAULT_AGENT path under /tmp could have been taken
    over by another user, who would then see passwords and answer values.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        if peer_uid(s) != os.getuid():
            raise PermissionError(f"the agent socket {path!r} belongs to another user")
    except BaseException:
        s.close()
        raise
    return s


class Unanswered(ConnectionError):
    """The connection was closed before any byte of a reply: the request may be sent again."""


def exchange(s: socket.socket, message: dict[str, object], request_id: int = 1) -> dict:
    """Send one request, read its reply line (no request is ever in flight beside it)."""
    try:
        s.sendall(encode({"id": request_id, **message}))
    except (BrokenPipeError, ConnectionResetError) as e:
        raise Unanswered(str(e)) from e
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk and not data:
            raise Unanswered("the agent closed the connection")
        if not chunk or len(data) > MAX_LINE:
            raise ConnectionError("the agent closed the connection")
        data += chunk
    reply = json.loads(data)
    if not isinstance(reply, dict) or reply.get("id") != request_id:
        raise ConnectionError("the agent sent no reply to this request")
    return reply


def call(path: str, message: dict[str, object], timeout: float = CLIENT_TIMEOUT) -> dict:
    """One request on a fresh connection; the reply. OSError when there is no agent."""
    with connect(path, timeout) as s:
        return exchange(s, message)


def final(reply: dict) -> dict[str, object] | None:
    """``reply`` if a client should take it: a result, or an error no local read changes.

    None for an error that means "read it yourself" (the agent holds no key
    for this), or a reply that is not one.
    """
    if isinstance(reply.get("result"), dict):
        return reply
    error = reply.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        if error["code"] in FINAL or error.get("final") is True:
            return reply
    return None


def ask(path: str, message: dict[str, object]) -> dict[str, object] | None:
    """The agent's final reply (see :func:`final`); None also when there is no agent."""
    try:
        return final(call(path, message))
    except (OSError, ValueError):
        return None


def get_request(
    vault_dir: str, name: str, number: int | None, password: bytes | None = None
) -> dict[str, object]:
    """The agent's ``get`` of a secret (``vault`` made absolute, as the agent demands)."""
    message: dict[str, object] = {"op": "get", "vault": os.path.abspath(vault_dir), "name": name}
    if number is not None:
        message["version"] = number
    if password is not None:
        message["password_b64"] = base64.b64encode(password).decode("ascii")
    return message


def value_of(result: dict) -> bytes | None:
    """The value a ``get`` result carries; None if it carries none that decodes."""
    text = result.get("value_b64")
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class Connections:
    """Connections to one agent kept open across requests, one per thread (serve's workers).

    A kept connection closed before it took the request or answered any of
    it (the agent restarted) is replaced once; any other failure, or one on a
    fresh connection, means no agent, and the caller reads the secret itself.
    Request ids count up per connection and each reply must carry its own.
    """

    def __init__(self, path: str) -> None:
        import itertools
        import threading

        self.path = path
        self.local = threading.local()
        self.ids = itertools.count(1)

    def ask(self, message: dict[str, object]) -> dict[str, object] | None:
        for _attempt in range(2):
            s: socket.socket | None = getattr(self.local, "socket", None)
            kept = s is not None
            try:
                if s is None:
                    s = self.local.socket = connect(self.path)
                return final(exchange(s, message, next(self.ids)))
            except (OSError, ValueError) as e:
                if s is not None:
                    s.close()
                self.local.socket = None
                if not (kept and isinstance(e, Unanswered)):
                    return None
        return None


class RemoteError(VaultError):
    """An error the agent answered, with its exit code."""

    def __init__(self, code: int, message: str, hint: str | None) -> None:
        super().__init__(message, hint)
        self.exit_code = code


def forward(path: str | Connections, message: dict[str, object]) -> dict[str, object] | None:
    """The agent's result; None when it is gone or cannot serve this; RemoteError if final."""
    reply = path.ask(message) if isinstance(path, Connections) else ask(path, message)
    if reply is None:
        return None
    if isinstance(reply.get("result"), dict):
        return reply["result"]  # type: ignore[return-value]
    error: dict = reply["error"]  # type: ignore[assignment]
    raise RemoteError(error["code"], str(error.get("message")), error.get("hint"))


def remote_get(
    path: str, vault_dir: str, name: str, number: int | None, password: bytes | None
) -> bytes | None:
    """A secret's value through the agent; None when the caller should read it itself."""
    result = forward(path, get_request(vault_dir, name, number, password))
    return None if result is None else value_of(result)
