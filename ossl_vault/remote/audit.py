"""A user's audit log on the key server, fetched and checked on the client (docs/api.md).

Line 0 is ``ossl-vault-server-audit TAB 1 TAB USER``; record N has 8 fields,
SEQ TIME ADDR OP ID VERSION RESULT PREV, PREV being the SHA-256 (hex) of line
N-1 with its LF. The client checks every link, and that the log still holds
the head it saw last time (so a server that cuts or rewrites it is caught on
this device).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ossl_vault.errors import IntegrityError
from ossl_vault.remote.client import Remote

FIELDS = ("seq", "time", "addr", "op", "id", "version", "result", "prev")


@dataclass
class Entry:
    seq: int
    time: str
    addr: str
    op: str
    id: str
    version: str
    result: str
    name: str  # the secret's name, decrypted here, or "-"


def line_hash(line: str) -> str:
    return hashlib.sha256((line + "\n").encode()).hexdigest()


def verify(lines: list[str], user: str) -> list[list[str]]:
    """The records' fields, after checking the chain; IntegrityError naming the first bad one."""
    if not lines or lines[0] != f"ossl-vault-server-audit\t1\t{user}":
        raise IntegrityError("the server's audit log has a wrong header")
    records = []
    for n, line in enumerate(lines[1:], 1):
        f = line.split("\t")
        if len(f) != len(FIELDS) or f[0] != str(n):
            raise IntegrityError(f"audit record {n} on the server is malformed")
        if f[7] != line_hash(lines[n - 1]):
            raise IntegrityError(f"audit record {n} on the server does not chain to record {n - 1}")
        records.append(f)
    return records


def fetch(remote: Remote, names: dict[str, str]) -> list[Entry]:
    """Every record of the user's log, verified, with names where this device knows them."""
    lines = remote.call("GET", "/audit").get("lines") or []
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise IntegrityError("the server's audit log is malformed")
    records = verify(lines, remote.user)
    seen = remote.config.get("audit_head")
    if seen:  # the log must still hold what this device saw
        count, head = int(seen[0]), seen[1]
        if count >= len(lines) or line_hash(lines[count]) != head:
            raise IntegrityError(
                f"the server's audit log no longer holds record {count} seen before",
                hint="the server cut or rewrote the log",
            )
    remote.config["audit_head"] = [len(lines) - 1, line_hash(lines[-1])]
    remote.save()
    return [
        Entry(int(f[0]), f[1], f[2], f[3], f[4], f[5], f[6], names.get(f[4], "-")) for f in records
    ]
