"""What a terminal must not be sent: shared by ``get`` and the agent's fast path (stdlib only)."""

from __future__ import annotations

BINARY_HINT = "use --out FILE, a pipe, or --force"


def binary(value: bytes) -> bool:
    """Bytes a terminal would garble, or act on (escape sequences): not UTF-8, or controls."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in text)


def binary_refusal(name: str) -> str:
    return f"secret {name!r} holds binary data: not written to a terminal"
