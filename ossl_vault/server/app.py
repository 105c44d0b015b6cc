"""The key server's JSON API under /v1/ (docs/api.md, docs/openapi.json): a starlette app.

Every route answers JSON. Errors are ``{"error", "hint", "exit"}`` with the
CLI's exit code, so the client reports them as a local command would.
Requests of a session are checked (session, counter, MAC) before anything
else runs; answers carry a MAC the client checks.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ossl_vault.errors import (
    AccessDenied,
    BusyError,
    IntegrityError,
    NotFoundError,
    UsageError,
    VaultError,
)
from ossl_vault.format.records import parse
from ossl_vault.remote import opaque, protocol
from ossl_vault.remote.protocol import b64, check_user, unb64
from ossl_vault.server import state
from ossl_vault.server.db import ConflictError, Database
from ossl_vault.server.requestlog import RequestLog
from ossl_vault.server.sessions import Gate, Session

HEX64 = re.compile(r"[0-9a-f]{64}")
STATUS = {1: 500, 2: 400, 3: 404, 4: 401, 5: 422, 6: 503}
Handler = Callable[[Request, dict[str, Any]], Awaitable[dict[str, Any]]]
SessionHandler = Callable[[Request, dict[str, Any], Session], Awaitable[dict[str, Any]]]


class TooLarge(UsageError):
    """A request body over the server's limit (HTTP 413)."""


class Backoff(AccessDenied):
    """A login refused for a while after failed ones (HTTP 429, with the delay)."""

    def __init__(self, delay: int) -> None:
        super().__init__(
            f"too many failed logins: try again in {delay} s", hint=f"retry_after={delay}"
        )
        self.delay = delay


def reply(status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(doc, sort_keys=True).encode()
    return Response(body, status, headers, media_type="application/json")


def error_doc(e: VaultError) -> tuple[int, dict[str, Any]]:
    status = STATUS.get(e.exit_code, 500)
    if isinstance(e, TooLarge):
        status = 413
    elif isinstance(e, ConflictError):
        status = 409
    elif isinstance(e, Backoff):
        status = 429
    doc: dict[str, Any] = {"error": e.message, "exit": e.exit_code}
    if e.hint:
        doc["hint"] = e.hint
    if isinstance(e, Backoff):
        doc["retry_after"] = e.delay
    return status, doc


class KeyServer:
    """One server directory, served: the state every route shares."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.settings = state.load_settings(directory)
        self.opaque = opaque.Server(state.load_setup(directory))
        self.db = Database(directory / state.DATABASE)
        self.gate = Gate(self.settings)
        self.blob_names: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {}

    # -- plumbing ------------------------------------------------------------------

    async def body(self, request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared and (not declared.isdigit() or int(declared) > self.settings.max_body):
            raise TooLarge(f"request body over {self.settings.max_body} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > self.settings.max_body:
                raise TooLarge(f"request body over {self.settings.max_body} bytes")
        data = request.state.raw = b"".join(chunks)
        if not data:
            return {}
        try:
            doc = json.loads(data)
        except ValueError:
            raise UsageError("the request body is not JSON") from None
        if not isinstance(doc, dict):
            raise UsageError("the request body must be a JSON object")
        return doc

    def public(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                doc = await handler(request, await self.body(request))
                return reply(200, doc)
            except VaultError as e:
                return reply(*error_doc(e))
            except Exception as e:  # a bug: one log line, no traceback with request data
                return reply(*internal(request, e))

        return endpoint

    def private(self, handler: SessionHandler) -> Callable[[Request], Awaitable[Response]]:
        """A route of a session: session, counter and MAC checked first; the answer MACed."""

        async def endpoint(request: Request) -> Response:
            session: Session | None = None
            sid = request.headers.get(protocol.SESSION_HEADER, "")
            counter_text = request.headers.get(protocol.COUNTER_HEADER, "")
            counter = int(counter_text) if counter_text.isdigit() and len(counter_text) < 19 else 0
            try:
                doc = await self.body(request)
                session = self.gate.session(sid)
                want = protocol.request_mac(
                    session.request_key, sid, counter, request.method, request.url.path,
                    request.state.raw,
                )  # fmt: skip
                if not protocol.mac_ok(request.headers.get(protocol.MAC_HEADER, ""), want):
                    self.deny(request, session, "bad-mac")
                    raise AccessDenied("the request's MAC does not verify")
                if counter <= session.counter:
                    self.deny(request, session, "replayed")
                    raise AccessDenied(f"request counter {counter} was already used")
                session.counter = counter
                status, out = 200, await handler(request, doc, session)
            except VaultError as e:
                status, out = error_doc(e)
            except Exception as e:  # a bug: one log line, no traceback with request data
                status, out = internal(request, e)
            body = json.dumps(out, sort_keys=True).encode()
            headers = {}
            if session is not None:
                mac = protocol.response_mac(session.response_key, sid, counter, status, body)
                headers[protocol.MAC_HEADER] = mac
            return Response(body, status, headers, media_type="application/json")

        return endpoint

    def deny(self, request: Request, session: Session, why: str) -> None:
        self.db.log(session.user, [(addr(request), "denied", "-", "-", f"exit=4:{why}")])

    # -- registration and login --------------------------------------------------------

    async def info(self, request: Request, doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "api": 1,
            "opaque_suite": opaque.SUITE,
            "argon2id": opaque.ARGON2ID,
            "opaque_public_key": b64(self.opaque.public_key),
            "max_body": self.settings.max_body,
            "max_ttl": self.settings.max_ttl,
        }

    async def register_start(self, request: Request, doc: dict[str, Any]) -> dict[str, Any]:
        user = check_user(doc.get("user"))
        response = self.opaque.registration_response(unb64(doc.get("request"), "request"), user)
        return {"response": b64(response)}

    async def register_finish(self, request: Request, doc: dict[str, Any]) -> dict[str, Any]:
        user = check_user(doc.get("user"))
        record = self.opaque.record(unb64(doc.get("upload"), "upload"))
        account = unb64(doc.get("account"), "account")
        if len(account) > 4096:
            raise UsageError("the sealed account key is too large")
        invite = doc.get("invite")
        if self.settings.open_registration:
            invite = None  # anyone who reaches the server may register
        elif not isinstance(invite, str):
            raise AccessDenied(
                "registration on this server needs an invitation",
                hint="ask its administrator for one: ossl-vault server invite DIR USER",
            )
        self.db.add_user(user, record, account, addr(request), invite)
        return {"user": user}

    async def login_start(self, request: Request, doc: dict[str, Any]) -> dict[str, Any]:
        user = check_user(doc.get("user"))
        ke1 = unb64(doc.get("ke1"), "ke1")
        delay = self.gate.delay(user, addr(request))
        if delay:
            raise Backoff(delay)
        found = self.db.user(user)
        # an unknown user takes the same path with a fake record (RFC 9807 section 10.9)
        ke2, login_state = self.opaque.login_start(ke1, user, found[0] if found else None)
        lid = self.gate.start(user, addr(request), login_state)
        return {"login": lid, "ke2": b64(ke2)}

    async def login_finish(self, request: Request, doc: dict[str, Any]) -> dict[str, Any]:
        pending = self.gate.take(str(doc.get("login", "")))
        ttl = doc.get("ttl", protocol.DEFAULT_TTL)
        if not isinstance(ttl, int) or ttl < 1:
            raise UsageError("ttl must be a positive number of seconds")
        try:
            session_key = self.opaque.login_finish(pending.state, unb64(doc.get("ke3"), "ke3"))
            found = self.db.user(pending.user)
            if found is None:  # cannot happen: a fake record never authenticates
                raise AccessDenied("login failed")
        except (AccessDenied, UsageError):
            raise Backoff(self.gate.failed(pending.user, pending.addr)) from None
        self.gate.succeeded(pending.user, pending.addr)
        sid, expires = self.gate.open(pending.user, session_key, ttl, pending.addr)
        self.db.log(pending.user, [(pending.addr, "login", "-", "-", "ok")])
        return {"session": sid, "expires": int(expires), "account": b64(found[1])}

    async def login_abort(self, request: Request, doc: dict[str, Any]) -> dict[str, Any]:
        """A client whose password did not open the envelope says so: a failure, now."""
        try:
            pending = self.gate.take(str(doc.get("login", "")))
        except AccessDenied:
            return {"retry_after": 0}
        return {"retry_after": self.gate.failed(pending.user, pending.addr)}

    def login_failed(self, user: str, address: str) -> None:
        self.db.log(user, [(address, "login", "-", "-", "exit=4:AccessDenied")])

    # -- a session's routes -------------------------------------------------------------

    async def logout(self, request: Request, doc: dict[str, Any], s: Session) -> dict[str, Any]:
        self.gate.close(request.headers.get(protocol.SESSION_HEADER, ""))
        self.db.log(s.user, [(addr(request), "logout", "-", "-", "ok")])
        return {}

    async def passwd_start(self, request: Request, doc: dict[str, Any], s: Session) -> dict:
        response = self.opaque.registration_response(unb64(doc.get("request"), "request"), s.user)
        return {"response": b64(response)}

    async def passwd_finish(self, request: Request, doc: dict[str, Any], s: Session) -> dict:
        record = self.opaque.record(unb64(doc.get("upload"), "upload"))
        account = unb64(doc.get("account"), "account")
        self.db.set_credentials(s.user, record, account, addr(request))
        self.gate.close_user(s.user, keep=request.headers.get(protocol.SESSION_HEADER))
        return {}

    async def vault(self, request: Request, doc: dict[str, Any], s: Session) -> dict[str, Any]:
        found = self.db.index(s.user)
        if found is None:
            return {"index": None, "hash": None, "names": None}
        index, digest, names = found
        return {"index": b64(index), "hash": digest, "names": b64(names)}

    async def blob(self, request: Request, doc: dict[str, Any], s: Session) -> dict[str, Any]:
        digest = request.path_params["digest"]
        if not HEX64.fullmatch(digest):
            raise UsageError("a blob is named by its SHA-256 in lowercase hex")
        data = self.db.blob(s.user, digest)
        ident, version = self.name_of(s.user, digest)
        self.db.log(s.user, [(addr(request), "read-blob", ident, version, "ok")])
        return {"data": b64(data)}

    def name_of(self, user: str, digest: str) -> tuple[str, str]:
        """The keyed id and version a blob belongs to (for the audit record)."""
        found = self.db.index(user)
        if found is None:
            return "-", "-"
        cached = self.blob_names.get(user)
        if cached is None or cached[0] != found[1]:
            index = parse(found[0])
            table = {v.blob: (v.name, str(v.version)) for vs in index.versions.values() for v in vs}
            cached = self.blob_names[user] = (found[1], table)
        return cached[1].get(digest, ("-", "-"))

    async def lock(self, request: Request, doc: dict[str, Any], s: Session) -> dict[str, Any]:
        timeout = doc.get("timeout", 60)
        if not isinstance(timeout, int | float) or not 0 <= timeout <= 300:
            raise UsageError("timeout must be 0 to 300 seconds")
        return {"lease": await self.gate.acquire(s.user, float(timeout))}

    async def unlock(self, request: Request, doc: dict[str, Any], s: Session) -> dict[str, Any]:
        await self.gate.release(s.user, doc.get("lease"))
        return {}

    async def commit(self, request: Request, doc: dict[str, Any], s: Session) -> dict[str, Any]:
        if not self.gate.holds(s.user, doc.get("lease")):
            raise BusyError("the write lease has expired", hint="retry the command")
        blobs = doc.get("blobs") or {}
        if not isinstance(blobs, dict):
            raise UsageError("blobs must be an object")
        base = doc.get("base")
        digest = self.db.commit(
            s.user,
            base if isinstance(base, str) else None,
            unb64(doc.get("index"), "index"),
            unb64(doc.get("names"), "names"),
            {str(k): unb64(v, "blob") for k, v in blobs.items()},
            self.events(request, doc),
        )
        return {"hash": digest}

    async def log(self, request: Request, doc: dict[str, Any], s: Session) -> dict[str, Any]:
        self.db.log(s.user, self.events(request, doc))
        return {}

    def events(self, request: Request, doc: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
        events = doc.get("events") or []
        if not isinstance(events, list) or len(events) > 10000:
            raise UsageError("events must be a list")
        out = []
        for e in events:
            if not isinstance(e, dict):
                raise UsageError("each event must be an object")
            fields = [str(e.get(k, "-")) for k in ("op", "id", "version", "result")]
            out.append((addr(request), *fields))
        return out  # type: ignore[return-value]

    async def audit(self, request: Request, doc: dict[str, Any], s: Session) -> dict[str, Any]:
        self.db.log(s.user, [(addr(request), "audit", "-", "-", "ok")])
        return {"lines": self.db.audit(s.user)}

    # -- the app ---------------------------------------------------------------------

    def routes(self) -> list[Route]:
        p, s = self.public, self.private
        v = protocol.API
        return [
            Route(f"{v}/info", p(self.info), methods=["GET"]),
            Route(f"{v}/register/start", p(self.register_start), methods=["POST"]),
            Route(f"{v}/register/finish", p(self.register_finish), methods=["POST"]),
            Route(f"{v}/login/start", p(self.login_start), methods=["POST"]),
            Route(f"{v}/login/finish", p(self.login_finish), methods=["POST"]),
            Route(f"{v}/login/abort", p(self.login_abort), methods=["POST"]),
            Route(f"{v}/logout", s(self.logout), methods=["POST"]),
            Route(f"{v}/passwd/start", s(self.passwd_start), methods=["POST"]),
            Route(f"{v}/passwd/finish", s(self.passwd_finish), methods=["POST"]),
            Route(f"{v}/vault", s(self.vault), methods=["GET"]),
            Route(f"{v}/vault/blobs/{{digest:str}}", s(self.blob), methods=["GET"]),
            Route(f"{v}/vault/lock", s(self.lock), methods=["POST"]),
            Route(f"{v}/vault/unlock", s(self.unlock), methods=["POST"]),
            Route(f"{v}/vault/commit", s(self.commit), methods=["POST"]),
            Route(f"{v}/vault/log", s(self.log), methods=["POST"]),
            Route(f"{v}/audit", s(self.audit), methods=["GET"]),
        ]

    def app(self) -> Starlette:
        self.gate.on_fail = self.login_failed
        app = Starlette(routes=self.routes())
        app.add_middleware(RequestLog)
        return app


def internal(request: Request, e: Exception) -> tuple[int, dict[str, Any]]:
    print(f"ossl-vault: error: {request.url.path}: internal {type(e).__name__}", file=sys.stderr)
    return 500, {"error": "internal server error", "exit": 1}


def addr(request: Request) -> str:
    return request.client.host if request.client else "-"


__all__ = ["IntegrityError", "KeyServer", "NotFoundError"]
