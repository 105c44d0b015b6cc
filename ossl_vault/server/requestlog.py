"""One line per request on the key server's stderr (docs/api.md section 1)."""

from __future__ import annotations

import sys
import time
from typing import Any


class RequestLog:
    """One line per request on stderr: time, client, method, path, status, bytes, ms.

    Paths hold keyed ids and blob hashes only; bodies (which hold sealed
    values, KE messages and user names) are never logged.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        seen = {"status": 0, "bytes": 0}

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            ms = (time.monotonic() - started) * 1000
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            print(
                f"{stamp} {client[0]} {scope['method']} {scope['path']} {seen['status']} "
                f"{seen['bytes']} {ms:.1f}ms",
                file=sys.stderr,
                flush=True,
            )
