"""The key server's client: TLS 1.3 with a pinned certificate, OPAQUE login, signed requests.

A device's state lives under ``$XDG_CONFIG_HOME/ossl-vault/remote/`` (0700):
one ``USER@HOST_PORT.json`` per account (URL, pinned TLS fingerprint and
OPAQUE key, the session) and, while logged in, ``USER@HOST_PORT.key`` (the
account key, 0600). A fresh config directory is a new device.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ossl_vault.errors import (
    AccessDenied,
    BusyError,
    IntegrityError,
    NotFoundError,
    OperationError,
    UsageError,
    VaultError,
)
from ossl_vault.remote import account, opaque, protocol
from ossl_vault.remote.protocol import b64, check_user, unb64
from ossl_vault.storage.files import atomic_write

ERRORS: dict[int, type[VaultError]] = {
    1: OperationError, 2: UsageError, 3: NotFoundError, 4: AccessDenied, 5: IntegrityError,
    6: BusyError,
}  # fmt: skip
TIMEOUT = 120.0


class Stale(Exception):
    """A kept-alive connection the server had closed: the request did not run."""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "ossl-vault" / "remote"


def parse_spec(spec: str) -> tuple[str, str]:
    """``USER@URL`` -> (user, url)."""
    user, sep, url = spec.partition("@")
    if not sep:
        raise UsageError(f"bad remote {spec!r}", hint="USER@https://HOST:PORT")
    return check_user(user), check_url(url)


def check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise UsageError(f"bad server URL {url!r}", hint="https://HOST[:PORT]")
    return f"https://{parts.netloc}"


def saved() -> list[tuple[str, str]]:
    """(user, url) of every account this device knows."""
    found = []
    for path in sorted(config_dir().glob("*.json")):
        try:
            doc = json.loads(path.read_text())
            found.append((doc["user"], doc["url"]))
        except (OSError, ValueError, KeyError):
            continue
    return found


def resolve(spec: str | None) -> tuple[str, str]:
    """The account to use: ``spec`` (USER@URL, or a URL this device has one account on),
    else the only one this device knows."""
    known = saved()
    if spec and spec.startswith("https://"):
        on = [(u, url) for u, url in known if url == check_url(spec)]
        if len(on) == 1:
            return on[0]
        raise UsageError(f"this device has {len(on)} accounts on {spec}", hint="give USER@URL")
    if spec:
        return parse_spec(spec)
    if len(known) == 1:
        return known[0]
    raise UsageError(
        "which server?" if known else "this device has no server account",
        hint="give --remote USER@URL (or $OSSL_VAULT_REMOTE)"
        if known
        else "ossl-vault remote register URL USER, or remote login URL USER",
    )


class Remote:
    """One account on one server, from this device."""

    def __init__(
        self, url: str, user: str, ca: str | None = None, home: Path | None = None
    ) -> None:
        self.home = home or config_dir()  # a device's state; a fresh one is a new device
        self.url = check_url(url)
        self.user = check_user(user)
        parts = urllib.parse.urlsplit(self.url)
        self.host, self.port = parts.hostname or "", parts.port or 443
        stem = f"{self.user}@{self.host}_{self.port}"
        self.path = self.home / f"{stem}.json"
        self.key_path = self.home / f"{stem}.key"
        self.config: dict[str, Any] = self._load()
        self._conn: http.client.HTTPSConnection | None = None
        self._wire = threading.Lock()
        if ca is not None:
            self.config["ca"] = os.path.abspath(ca)

    # -- local state ---------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return {"url": self.url, "user": self.user}
        except (OSError, ValueError) as e:
            raise OperationError(f"cannot read '{self.path}': {e}") from None

    def save(self, durable: bool = True) -> None:
        """Write the config; ``durable=False`` skips the fsyncs (a counter step: see _signed)."""
        d = self.home
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        data = json.dumps(self.config, indent=2, sort_keys=True).encode()
        if durable:
            atomic_write(self.path, data)
            return
        tmp = self.path.with_name(f".tmp.{os.getpid()}.{self.path.name}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One request of this account at a time on this device: the counter stays in order."""
        d = self.home
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.config = self._load()
            yield
        finally:
            os.close(fd)

    def account_key(self) -> bytes:
        try:
            return self.key_path.read_bytes()
        except FileNotFoundError:
            raise AccessDenied(
                f"not logged in to {self.url} as {self.user!r}",
                hint=f"ossl-vault remote login {self.url} {self.user}",
            ) from None

    # -- the wire ----------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        ca = self.config.get("ca")
        if ca:
            ctx = ssl.create_default_context(cafile=ca)
        else:  # trust on first use: the fingerprint is checked before a byte is sent
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        return ctx

    def _connect(self, pin: bool) -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self._context(), timeout=TIMEOUT
        )
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as e:
            raise IntegrityError(
                f"the TLS certificate of {self.url} does not verify: {e.verify_message}",
                hint=f"--ca {self.config.get('ca')} is not the CA that issued it",
            ) from None
        except (OSError, ssl.SSLError) as e:
            raise OperationError(f"cannot reach {self.url}: {e}") from None
        if self.config.get("ca"):
            return conn
        cert = conn.sock.getpeercert(binary_form=True) if conn.sock else None  # type: ignore[union-attr]
        seen = hashlib.sha256(cert or b"").hexdigest()
        pinned = self.config.get("tls_sha256")
        if pinned is None and pin:
            self.config["tls_sha256"] = seen
        elif pinned is None or not protocol.mac_ok(seen, pinned):
            conn.close()
            raise IntegrityError(
                f"the TLS certificate of {self.url} changed (sha256 {seen[:16]}..., "
                f"pinned {str(pinned)[:16]}...)",
                hint="if the server's certificate was renewed, log in again with --repin "
                "(or use --ca FILE for a CA-issued one)",
            )
        return conn

    def _send(
        self, method: str, path: str, body: bytes, headers: dict[str, str], pin: bool = False
    ) -> tuple[int, bytes, http.client.HTTPResponse]:
        """One request on this object's kept-alive connection (made and pinned on first use).

        A kept connection the server has closed raises Stale: the request did
        not run, and the caller sends it again (a session request, with a new
        counter).
        """
        with self._wire:  # one request at a time on the connection, whichever thread asks
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._connect(pin)
            try:
                headers = {"Content-Type": "application/json", **headers}
                self._conn.request(method, path, body=body or None, headers=headers)
                response = self._conn.getresponse()
                return response.status, response.read(), response
            except (OSError, http.client.HTTPException) as e:
                self._conn.close()
                self._conn = None
                if reused and isinstance(e, ConnectionError | http.client.RemoteDisconnected):
                    raise Stale() from None
                raise OperationError(f"the request to {self.url} failed: {e}") from None

    @staticmethod
    def _decode(status: int, data: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            raise OperationError(f"the server answered HTTP {status} without JSON") from None
        if status == 200 and isinstance(doc, dict):
            return doc
        if not isinstance(doc, dict) or "error" not in doc:
            raise OperationError(f"the server answered HTTP {status}")
        kind = ERRORS.get(doc.get("exit", 1), OperationError)
        hint = doc.get("hint")
        if "retry_after" in doc:
            hint = f"the server delays the next login by {doc['retry_after']} s"
        raise kind(f"server: {doc['error']}", hint=hint)

    def public(self, method: str, path: str, doc: dict[str, Any] | None = None,
               pin: bool = False) -> dict[str, Any]:  # fmt: skip
        """A request outside a session (info, register, login)."""
        body = json.dumps(doc).encode() if doc is not None else b""
        try:
            status, data, _ = self._send(method, protocol.API + path, body, {}, pin)
        except Stale:
            status, data, _ = self._send(method, protocol.API + path, body, {}, pin)
        return self._decode(status, data)

    def call(self, method: str, path: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        """A request of the session: counter, MAC, and the answer's MAC checked."""
        body = json.dumps(doc).encode() if doc is not None else b""
        full = protocol.API + path
        with self._locked():
            try:
                sid, counter, resp_key, (status, data, response) = self._signed(method, full, body)
            except Stale:
                sid, counter, resp_key, (status, data, response) = self._signed(method, full, body)
        mac = response.getheader(protocol.MAC_HEADER)
        want = protocol.response_mac(resp_key, sid, counter, status, data)
        if mac is None or not protocol.mac_ok(mac, want):
            if status == 401:  # the server no longer knows the session: nothing to verify with
                return self._decode(status, data)
            raise IntegrityError(f"the answer of {self.url} failed its MAC check")
        return self._decode(status, data)

    def _signed(
        self, method: str, full: str, body: bytes
    ) -> tuple[str, int, bytes, tuple[int, bytes, http.client.HTTPResponse]]:
        """Send a session request under the next counter; the caller holds the lock."""
        session = self.config.get("session")
        if not session or session["expires"] <= time.time():
            raise AccessDenied(
                f"not logged in to {self.url} as {self.user!r}"
                + (" (the session expired)" if session else ""),
                hint=f"ossl-vault remote login {self.url} {self.user}",
            )
        # counters follow the clock too, so a step lost with an unsynced write is never reused
        counter = max(session["counter"] + 1, time.time_ns() // 1000)
        session["counter"] = counter
        self.save(durable=False)  # before sending: a counter is never used twice
        req_key, resp_key = protocol.session_keys(unb64(session["key"], "session key"))
        sid = session["id"]
        headers = {
            protocol.SESSION_HEADER: sid,
            protocol.COUNTER_HEADER: str(counter),
            protocol.MAC_HEADER: protocol.request_mac(req_key, sid, counter, method, full, body),
        }
        return sid, counter, resp_key, self._send(method, full, body, headers)

    # -- flows -------------------------------------------------------------------------

    def info(self, pin: bool) -> bytes:
        """The server's OPAQUE public key, checked against the pinned one."""
        doc = self.public("GET", "/info", pin=pin)
        key = unb64(doc.get("opaque_public_key"), "opaque_public_key")
        pinned = self.config.get("opaque_key")
        if pinned is not None and not protocol.mac_ok(b64(key), pinned):
            raise IntegrityError(f"the OPAQUE key of {self.url} is not the one pinned")
        return key

    def register(self, password: bytes, invite: str | None = None) -> bytes:
        """Register; returns the new account key (PEM). The caller then logs in."""
        server_key = self.info(pin=True)
        reg = opaque.Registration(password)
        doc = self.public("POST", "/register/start",
                          {"user": self.user, "request": b64(reg.request_bytes())})  # fmt: skip
        upload, export_key, registered = reg.finish(unb64(doc.get("response"), "response"))
        if registered != server_key:
            raise IntegrityError("the server registered with another OPAQUE key than it shows")
        key_pem = account.new_key()
        sealed = account.seal_account(key_pem, export_key, self.user, server_key)
        doc = {"user": self.user, "upload": b64(upload), "account": b64(sealed)}
        if invite is not None:
            doc["invite"] = invite
        self.public("POST", "/register/finish", doc)
        self.config["opaque_key"] = b64(server_key)
        self.save()
        return key_pem

    def login(self, password: bytes, ttl: int, repin: bool = False) -> int:
        """OPAQUE login; the session and the account key are kept for this device.

        Returns when the session expires (Unix time): the server may cap ``ttl``.
        """
        if repin:
            self.config.pop("tls_sha256", None)
        server_key = self.info(pin=True)
        login = opaque.Login(password)
        doc = self.start_login(login.ke1_bytes())
        lid = str(doc.get("login"))
        try:
            ke3, session_key, export_key = login.finish(unb64(doc.get("ke2"), "ke2"))
        except AccessDenied as e:
            delay = self.public("POST", "/login/abort", {"login": lid}).get("retry_after", 0)
            hint = f"the server delays the next login by {delay} s"
            raise AccessDenied(e.message, hint=hint) from None
        doc = self.public("POST", "/login/finish", {"login": lid, "ke3": b64(ke3), "ttl": ttl})
        key_pem = account.open_account(
            unb64(doc.get("account"), "account"), export_key, self.user, server_key
        )
        self.config["opaque_key"] = b64(server_key)
        self.config["session"] = {
            "id": str(doc["session"]), "key": b64(session_key), "counter": 0,
            "expires": int(doc["expires"]),
        }  # fmt: skip
        self.save()
        atomic_write(self.key_path, key_pem)
        return int(doc["expires"])

    def start_login(self, ke1: bytes) -> dict[str, Any]:
        """KE1 out, KE2 back; a server busy with other logins of this user is asked again."""
        for attempt in range(40):
            try:
                return self.public("POST", "/login/start", {"user": self.user, "ke1": b64(ke1)})
            except BusyError:
                if attempt == 39:
                    raise
                time.sleep(0.05 + 0.01 * attempt)
        raise AssertionError("unreachable")

    def logout(self) -> None:
        try:
            if self.config.get("session"):
                self.call("POST", "/logout")
        finally:
            self.config = self._load()
            self.config.pop("session", None)
            self.save()
            self.key_path.unlink(missing_ok=True)

    def passwd(self, password: bytes) -> None:
        """A new password: re-register and re-seal the same account key."""
        key_pem = self.account_key()
        server_key = unb64(self.config.get("opaque_key"), "pinned OPAQUE key")
        reg = opaque.Registration(password)
        doc = self.call("POST", "/passwd/start", {"request": b64(reg.request_bytes())})
        upload, export_key, registered = reg.finish(unb64(doc.get("response"), "response"))
        if registered != server_key:
            raise IntegrityError("the server answered with another OPAQUE key than the pinned one")
        sealed = account.seal_account(key_pem, export_key, self.user, server_key)
        self.call("POST", "/passwd/finish", {"upload": b64(upload), "account": b64(sealed)})
