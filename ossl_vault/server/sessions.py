"""Logins in progress, sessions, failed-login backoff and vault write leases: in memory.

All of it lives in the one server process: opaque-snake's login state cannot
be serialized, so KE2 and KE3 must reach the same process, and a restart
ends every session (clients log in again).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ossl_vault.errors import AccessDenied, BusyError
from ossl_vault.remote import protocol
from ossl_vault.server.state import Settings

FORGET_AFTER = 3600.0  # seconds after its last failure that a user's or address's count goes


def token() -> str:
    return secrets.token_urlsafe(24)


def _key(text: str) -> str:
    # sessions are looked up by a hash of their id, so a lookup's timing says nothing of it
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Pending:
    user: str
    state: Any
    addr: str
    started: float


@dataclass
class Session:
    user: str
    request_key: bytes
    response_key: bytes
    expires: float
    addr: str
    counter: int = 0


@dataclass
class Failures:
    count: int = 0
    last: float = 0.0


@dataclass
class Lease:
    token: str
    expires: float


@dataclass
class Gate:
    """Who is logging in, who is logged in, who failed, who holds a vault's lock."""

    settings: Settings
    pending: dict[str, Pending] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    by_user: dict[str, Failures] = field(default_factory=dict)
    by_addr: dict[str, Failures] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    lease_changed: asyncio.Condition | None = None
    on_fail: Callable[[str, str], None] = lambda user, addr: None  # the server's audit

    # -- backoff ---------------------------------------------------------------------

    def delay(self, user: str, addr: str) -> int:
        """Seconds before ``user`` may try again from ``addr`` (0: now)."""
        now = time.monotonic()
        waits = [0.0]
        f = self.by_user.get(user)
        if f and f.count:
            waits.append(f.last + min(2 ** (f.count - 1), self.settings.backoff_max) - now)
        a = self.by_addr.get(addr)
        free = self.settings.address_free_failures
        if a and a.count >= free:
            waits.append(a.last + min(2 ** (a.count - free), self.settings.backoff_max) - now)
        return max(0, int(max(waits) + 0.999))

    def failed(self, user: str, addr: str) -> int:
        """Count a failed login; the delay it earns."""
        now = time.monotonic()
        for table, key in ((self.by_user, user), (self.by_addr, addr)):
            f = table.setdefault(key, Failures())
            f.count += 1
            f.last = now
        self.on_fail(user, addr)
        return self.delay(user, addr)

    def succeeded(self, user: str, addr: str) -> None:
        self.by_user.pop(user, None)
        self.by_addr.pop(addr, None)

    # -- logins ------------------------------------------------------------------------

    def sweep(self) -> None:
        """Logins left without KE3 count as failures (a client with a wrong password stops)."""
        now = time.monotonic()
        for lid, p in list(self.pending.items()):
            if now - p.started > self.settings.login_window:
                del self.pending[lid]
                self.failed(p.user, p.addr)
        for sid, s in list(self.sessions.items()):
            if s.expires < time.time():
                del self.sessions[sid]
        # failures long past are forgotten, so probes of random names cannot fill memory
        for table in (self.by_user, self.by_addr):
            for key, f in list(table.items()):
                if now - f.last > FORGET_AFTER:
                    del table[key]

    def start(self, user: str, addr: str, state: Any) -> str:
        self.sweep()
        # each KE2 is one password guess: a few at a time per user, the rest wait
        mine = sum(1 for p in self.pending.values() if p.user == user)
        if mine >= self.settings.max_pending_per_user:
            raise BusyError(f"{mine} logins of this user are in progress", hint="retry")
        if len(self.pending) >= self.settings.max_pending_logins:
            raise BusyError("too many logins in progress", hint="retry in a few seconds")
        lid = token()
        self.pending[_key(lid)] = Pending(user, state, addr, time.monotonic())
        return lid

    def take(self, lid: str) -> Pending:
        p = self.pending.pop(_key(lid), None)
        if p is None or time.monotonic() - p.started > self.settings.login_window:
            raise AccessDenied("no such login in progress", hint="start again with KE1")
        return p

    def open(self, user: str, session_key: bytes, ttl: int, addr: str) -> tuple[str, float]:
        sid = token()
        req, resp = protocol.session_keys(session_key)
        expires = time.time() + max(1, min(ttl, self.settings.max_ttl))
        self.sessions[_key(sid)] = Session(user, req, resp, expires, addr)
        return sid, expires

    def session(self, sid: str) -> Session:
        s = self.sessions.get(_key(sid))
        if s is None or s.expires < time.time():
            self.sessions.pop(_key(sid), None)
            raise AccessDenied(
                "the session has ended", hint="log in again: ossl-vault remote login"
            )
        return s

    def close(self, sid: str) -> None:
        self.sessions.pop(_key(sid), None)

    def close_user(self, user: str, keep: str | None = None) -> None:
        for k, s in list(self.sessions.items()):
            if s.user == user and k != (keep and _key(keep)):
                del self.sessions[k]

    # -- vault write leases ---------------------------------------------------------

    async def acquire(self, user: str, timeout: float) -> str:
        """A lease on ``user``'s vault; waits up to ``timeout`` for the holder."""
        if self.lease_changed is None:
            self.lease_changed = asyncio.Condition()
        deadline = time.monotonic() + timeout
        async with self.lease_changed:
            while True:
                held = self.leases.get(user)
                if held is None or held.expires < time.monotonic():
                    lease = Lease(token(), time.monotonic() + self.settings.lock_lease)
                    self.leases[user] = lease
                    return lease.token
                left = min(deadline, held.expires) - time.monotonic()
                if deadline - time.monotonic() <= 0:
                    raise BusyError("the vault is busy (another device is writing)")
                try:
                    await asyncio.wait_for(self.lease_changed.wait(), max(0.01, left))
                except TimeoutError:
                    pass

    def holds(self, user: str, lease: object) -> bool:
        held = self.leases.get(user)
        return (
            isinstance(lease, str)
            and held is not None
            and held.expires >= time.monotonic()
            and secrets.compare_digest(held.token, lease)
        )

    async def release(self, user: str, lease: object) -> None:
        if self.holds(user, lease):
            del self.leases[user]
            if self.lease_changed is not None:
                async with self.lease_changed:
                    self.lease_changed.notify_all()
