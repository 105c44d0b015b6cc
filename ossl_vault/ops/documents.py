"""``get --field KEY``: one field of a value that is a document.

Two shapes are read, as their tools write them: a JSON object (the field's
string, or its JSON text for other types), and gopass's ``key: value`` lines,
whose first line is the password itself unless it is a ``key: value`` line.
Encrypted notes ride inside the value this way (``notes: ...``): the value is
the one encrypted part of a secret.
"""

from __future__ import annotations

import json
import re

from ossl_vault.errors import NotFoundError, UsageError

_LINE = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_. -]*?):(?: (.*))?\Z")


def fields_of(value: bytes) -> dict[str, str]:
    """Every field of a JSON object or a ``key: value`` document (first of a repeated key)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the value is not text: it has no fields") from None
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
    found: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            found.setdefault(m.group(1), m.group(2) or "")
    return found


def field_of(value: bytes, key: str, name: str) -> bytes:
    """Field ``key`` of the value of secret ``name``; NotFoundError when it has none."""
    found = fields_of(value)
    if key not in found:
        keys = ", ".join(sorted(found)) or "none"
        raise NotFoundError(f"secret {name!r} has no field {key!r}", hint=f"its fields: {keys}")
    return found[key].encode("utf-8")
