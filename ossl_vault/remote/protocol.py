"""The key server's wire protocol, shared by the server and its client (docs/api.md).

After an OPAQUE login, both sides hold a 64-byte session key. Every request of
the session carries an HMAC over its method, path, counter and body under a
key derived from it, and every answer an HMAC under another, so a party that
broke TLS can neither replay, reorder, alter nor forge a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from ossl_vault.errors import UsageError
from ossl_vault.openssl import crypto

API = "/v1"
SESSION_HEADER = "x-ov-session"
COUNTER_HEADER = "x-ov-counter"
MAC_HEADER = "x-ov-mac"
REQUEST_INFO = "ossl-vault/v1/session-request"
RESPONSE_INFO = "ossl-vault/v1/session-response"
USER_RE = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,63}")
DEFAULT_TTL = 15 * 60
MAX_TTL = 12 * 3600


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object, what: str) -> bytes:
    """Strict base64 from JSON; UsageError (HTTP 400) on anything else."""
    if not isinstance(text, str):
        raise UsageError(f"{what} must be a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{what} is not valid base64") from None
    if b64(data) != text:
        raise UsageError(f"{what} is not canonical base64")
    return data


def check_user(user: object) -> str:
    """A user name: 1 to 64 of lowercase letters, digits and ``._@+-``."""
    if not isinstance(user, str) or not USER_RE.fullmatch(user):
        raise UsageError(
            f"bad user name {str(user)[:64]!r}",
            hint="1 to 64 characters: a-z 0-9 . _ @ + - (starting with a letter or digit)",
        )
    return user


def session_keys(session_key: bytes) -> tuple[bytes, bytes]:
    """(request MAC key, response MAC key): HKDF-SHA256 of OPAQUE's session key."""
    return crypto.hkdf(session_key, REQUEST_INFO), crypto.hkdf(session_key, RESPONSE_INFO)


def request_mac(key: bytes, session: str, counter: int, method: str, path: str, body: bytes) -> str:
    """b64(HMAC-SHA256(key, ...)) over the request as docs/api.md spells it."""
    text = f"ossl-vault-request\n{session}\n{counter}\n{method.upper()}\n{path}\n"
    return b64(crypto.mac(key, text.encode() + hashlib.sha256(body).hexdigest().encode()))


def response_mac(key: bytes, session: str, counter: int, status: int, body: bytes) -> str:
    """b64(HMAC-SHA256(key, ...)) over the answer to request ``counter``."""
    text = f"ossl-vault-response\n{session}\n{counter}\n{status}\n"
    return b64(crypto.mac(key, text.encode() + hashlib.sha256(body).hexdigest().encode()))


def mac_ok(given: str, want: str) -> bool:
    """Constant-time comparison of two MACs in base64."""
    return crypto.mac_equal(given.encode(), want.encode())
