"""The field encodings of docs/format.md section 2: names, canonical base64, numbers.

Each reader here accepts exactly one spelling of a value and refuses the
rest, so that serialising what was parsed gives back the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re

from ossl_vault.errors import FormatError, UsageError

MAX_NAME = 128
MAX_RECIPIENT = 64
MAX_ITER = 10_000_000
NAME_HINT = "use letters, digits and ._@+=:,- in components separated by single '/'"
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@+=:,-]*\Z")
_RECIPIENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@+-]*\Z")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")
_NUMBER = re.compile(r"[1-9][0-9]{0,9}\Z")
HEX64 = re.compile(r"[0-9a-f]{64}\Z")
FPR = re.compile(r"[0-9a-f]{64}\Z|[0-9a-f]{40}\Z")  # SHA-256, or an OpenPGP v4 fingerprint


def check_name(name: str) -> str:
    """Validate a secret name (format.md section 2); raise UsageError if bad."""
    if not name:
        raise UsageError("secret name is empty")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:  # bytes of argv that are not UTF-8
        raise UsageError(f"invalid secret name {name!a}", hint=NAME_HINT) from None
    if size > MAX_NAME:
        raise UsageError(f"secret name {name!r} is longer than {MAX_NAME} bytes")
    for part in name.split("/"):
        if part in ("", ".", "..") or not _COMPONENT.match(part):
            raise UsageError(f"invalid secret name {name!r}", hint=NAME_HINT)
    return name


def check_recipient_name(name: str) -> str:
    """Validate a recipient name; raise UsageError if bad."""
    if not name or len(name) > MAX_RECIPIENT or not _RECIPIENT.match(name):
        raise UsageError(
            f"invalid recipient name {name!r}",
            hint="use 1 to 64 letters, digits and ._@+- (an email address fits)",
        )
    return name


def b64(data: bytes) -> str:
    """Canonical base64 (RFC 4648, padded, one line)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str, length: int | None = None) -> bytes:
    """Strict base64: refuse anything but the one canonical spelling."""
    if not text:
        raise FormatError(f"empty {what}")
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"broken base64 in {what}") from None
    if binascii.b2a_base64(data, newline=False) != text.encode():
        raise FormatError(f"non-canonical base64 in {what}")
    if length is not None and len(data) != length:
        raise FormatError(f"{what} is {len(data)} bytes, not {length}")
    return data


def parse_number(text: str, what: str) -> int:
    if not _NUMBER.match(text):
        raise FormatError(f"bad {what} {text!r}")
    return int(text)


def parse_iterations(text: str, what: str, low: int = 1) -> int:
    n = parse_number(text, what)
    if not low <= n <= MAX_ITER:
        raise FormatError(f"{what} {n} out of range ({low} to {MAX_ITER})")
    return n


def parse_fixed(text: str, want: str, what: str) -> None:
    if text != want:
        raise FormatError(f"unsupported {what} {text!r}")


@functools.lru_cache(maxsize=65536)
def parse_name(text: str, what: str) -> str:
    """A name read from the file (cached: each name recurs on many lines)."""
    try:
        return check_recipient_name(text) if what == "recipient" else check_name(text)
    except UsageError:
        raise FormatError(f"bad {what} name {text!r}") from None
