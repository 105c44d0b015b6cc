"""The JSON line protocol of ``ossl-vault serve --stdio`` and of the agent's socket.

docs/protocol.md is the contract. One JSON object a line each way; every
request carries an ``id`` that its reply repeats. Requests run on a small
thread pool (the library is synchronous; a thread waiting on an openssl child
holds no GIL), so a batch of reads keeps every core busy, and replies come
back in the order they finish. Requests about the same secret run in the
order they were sent. A malformed line gets an error reply and the session
goes on; end of input ends it once every reply is written.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ossl_vault.agent.client import MAX_LINE, encode
from ossl_vault.errors import FAILED, USAGE, FormatError, UsageError, VaultError
from ossl_vault.format import fields

MAX_IN_FLIGHT = 64  # past this, the session stops reading until a reply goes out
MAX_ID = 128  # characters of a string id

Send = Callable[[bytes], Awaitable[None]]
Fields = dict[str, Any]

# the kind of every field; every request also has "id" and "op"
KINDS = {
    "name": "str", "version": "int", "password_b64": "b64", "value_b64": "b64", "to": "strs",
    "format": "str", "bytes": "int", "length": "int", "symbols": "bool", "print": "bool",
    "users": "strs", "vault": "str", "names": "strs",
}  # fmt: skip
Schemas = dict[str, tuple[str, ...]]  # op -> its fields, "?" after the optional ones
SCHEMAS: Schemas = {
    "get": ("name", "version?", "password_b64?"),
    "put": ("name", "value_b64", "to?", "password_b64?"),
    "list": (),
    "generate": ("name", "format?", "bytes?", "length?", "symbols?", "to?", "print?"),
    "share": ("name", "users"),
    "ping": (),
}


class RequestError(UsageError):
    """A request line that is not a valid request; carries the id when it was readable."""

    def __init__(self, message: str, request_id: object = None) -> None:
        super().__init__(message)
        self.request_id = request_id


def unb64(text: str, field: str) -> bytes:
    """fields.unb64 (the one canonical spelling), as a usage error of the request.

    Unlike a vault.tsv field, an empty string is allowed: it is the empty value.
    """
    if text == "":
        return b""
    try:
        return fields.unb64(text, f"field {field!r}")
    except FormatError as e:
        raise UsageError(e.message) from None


def reply_ok(request_id: object, result: dict[str, object]) -> bytes:
    return encode({"id": request_id, "result": result})


def reply_error(
    request_id: object, code: int, message: str, hint: str | None = None, final: bool = False
) -> bytes:
    error: dict[str, object] = {"code": code, "message": message}
    if hint:
        error["hint"] = hint
    if final:
        error["final"] = True
    return encode({"id": request_id, "error": error})


def _check_id(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RequestError("field 'id' must be a string or an integer")
    if isinstance(value, int) and abs(value) >= 2**53:
        raise RequestError("integer id out of range (|id| < 2^53)")
    if isinstance(value, str) and len(value) > MAX_ID:
        raise RequestError(f"string id longer than {MAX_ID} characters")
    return value


def _check_field(name: str, kind: str, value: object) -> object:
    ok = {
        "str": isinstance(value, str),
        "b64": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "strs": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[kind]
    if not ok:
        what = {"strs": "a list of strings", "int": "an integer", "bool": "true or false"}
        raise UsageError(f"field {name!r} must be {what.get(kind, 'a string')}")
    if kind != "b64":
        return value
    data = unb64(value, name)  # type: ignore[arg-type]
    if name == "password_b64":  # one line for openssl -pass fd: as the CLI demands
        from ossl_vault.format.seal import check_password

        check_password(data)
    return data


def parse_request(line: bytes, schemas: Schemas) -> tuple[object, str, Fields]:
    """(id, op, fields) of a request line; base64 fields come back decoded."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError):  # nesting too deep is not JSON here
        raise RequestError("request is not valid JSON") from None
    if not isinstance(message, dict):
        raise RequestError("request is not a JSON object")
    if "id" not in message:
        raise RequestError("request has no 'id'")
    request_id = _check_id(message["id"])
    op = message.get("op")
    if not isinstance(op, str) or op not in schemas:
        known = ", ".join(sorted(schemas))
        raise RequestError(f"unknown op {op!r} (known: {known})", request_id)
    wanted = {f.rstrip("?"): not f.endswith("?") for f in schemas[op]}
    unknown = sorted(set(message) - {"id", "op"} - set(wanted))
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r} for op {op!r}", request_id)
    fields: Fields = {}
    for name, required in wanted.items():
        if name not in message:
            if required:
                raise RequestError(f"op {op!r} needs field {name!r}", request_id)
            continue
        try:
            fields[name] = _check_field(name, KINDS[name], message[name])
        except UsageError as e:
            raise RequestError(e.message, request_id) from None
    return request_id, op, fields


class Session:
    """One conversation: read request lines, run them, send replies as they finish.

    ``run`` is called on a worker thread with (op, fields) and returns the
    result object or raises ``VaultError``. ``local`` ops run on the event loop
    itself (the agent's status and stop); ``after`` is called once a local
    op's reply has been sent.
    """

    def __init__(
        self,
        run: Callable[[str, Fields], dict[str, object]],
        send: Send,
        pool: ThreadPoolExecutor,
        schemas: Schemas = SCHEMAS,
        local: dict[str, Callable[[Fields], dict[str, object]]] | None = None,
        after: Callable[[str], None] | None = None,
    ) -> None:
        self.run_op, self.send, self.pool, self.schemas = run, send, pool, schemas
        self.local = local or {}
        self.after = after
        self.slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.tails: dict[object, asyncio.Future[None]] = {}  # last request per secret
        self.tasks: set[asyncio.Task[None]] = set()
        self.broken = False

    async def serve(self, reader: asyncio.StreamReader) -> None:
        """Until end of input: then wait for every request in flight and return."""
        while not self.broken:
            try:
                line = await read_line(reader)
            except LineTooLong:
                too_long = f"request line longer than {MAX_LINE} bytes"
                await self._send(reply_error(None, USAGE, too_long))
                continue
            if line is None:
                break
            if not line.strip():
                continue  # a blank line is no request
            await self.slots.acquire()
            task = asyncio.create_task(self.answer(line))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if self.tasks:
            await asyncio.gather(*self.tasks)

    async def answer(self, line: bytes) -> None:
        """Run one request and send its reply; then free its slot."""
        request_id: object = None
        op = ""
        try:
            request_id, op, fields = parse_request(line, self.schemas)
            if op in self.local:
                result = self.local[op](fields)
            else:
                result = await self._ordered(fields, op)
            reply = reply_ok(request_id, result)
        except RequestError as e:
            reply = reply_error(e.request_id, e.exit_code, e.message, e.hint)
        except VaultError as e:
            reply = reply_error(request_id, e.exit_code, e.message, e.hint, e.final)
        except Exception as e:  # a bug must not end the session: report it, keep serving
            reply = reply_error(request_id, FAILED, f"internal error: {type(e).__name__}: {e}")
        finally:
            self.slots.release()
        await self._send(reply)
        if op in self.local and self.after is not None:
            self.after(op)

    async def _ordered(self, fields: Fields, op: str) -> dict[str, object]:
        """Run on the pool, after any earlier request about the same secret."""
        loop = asyncio.get_running_loop()
        key = (fields.get("vault"), fields["name"]) if "name" in fields else None
        previous = self.tails.get(key) if key else None
        done: asyncio.Future[None] = loop.create_future()
        if key:
            self.tails[key] = done
        try:
            if previous is not None:
                await previous
            return await loop.run_in_executor(self.pool, self.run_op, op, fields)
        finally:
            done.set_result(None)
            if key and self.tails.get(key) is done:
                del self.tails[key]

    async def _send(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            await self.send(data)
        except (BrokenPipeError, ConnectionError):
            self.broken = True  # the reader went away: finish what runs, read no more


class LineTooLong(Exception):
    """A request line over ``MAX_LINE``; it has been skipped to its end."""


async def read_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next line (None at EOF); ``LineTooLong`` once a line over the limit is skipped."""
    skipping = False
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:  # EOF: a last line without newline counts
            if skipping:
                raise LineTooLong from None
            return e.partial or None
        except asyncio.LimitOverrunError as e:
            await reader.readexactly(e.consumed)
            skipping = True
            continue
        except (ConnectionError, OSError):
            return None
        if skipping:
            raise LineTooLong
        return line


class _WriteProtocol(asyncio.streams.FlowControlMixin):
    """Flow control for a write pipe, and a future done when the pipe is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def _get_close_waiter(self, stream: asyncio.StreamWriter) -> asyncio.Future[None]:
        return self.closed


def pollable(fd: int) -> bool:
    """Whether epoll can watch ``fd``: a pipe, a socket or a terminal, not a file or /dev/null."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


async def stdio_streams() -> tuple[asyncio.StreamReader, Send, Callable[[], Awaitable[None]]]:
    """stdin as a stream reader and a sender to stdout, for pipes, sockets, ttys or files."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    if pollable(0):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    else:  # a file or /dev/null: epoll refuses them, so read on a thread

        def pump() -> None:
            while chunk := os.read(0, 65536):
                loop.call_soon_threadsafe(reader.feed_data, chunk)
            loop.call_soon_threadsafe(reader.feed_eof)

        threading.Thread(target=pump, daemon=True).start()
    if not pollable(1):  # a file or /dev/null: plain blocking writes

        async def send_file(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(1, view) :]

        async def nothing() -> None:
            return None

        return reader, send_file, nothing
    transport, protocol = await loop.connect_write_pipe(_WriteProtocol, sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)

    async def send(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def close() -> None:
        writer.close()  # after what is buffered is written
        await protocol.closed

    return reader, send, close


async def serve_stdio(run: Callable[[str, Fields], dict[str, object]], workers: int) -> None:
    """Serve requests from stdin until EOF; replies on stdout."""
    reader, send, close = await stdio_streams()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ossl-vault") as pool:
        await Session(run, send, pool).serve(reader)
    await close()
