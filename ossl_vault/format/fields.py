"""The field encodings of docs/format.md section 2: names, canonical base64, numbers.

Each reader here accepts exactly one spelling of a value and refuses the
rest, so that serialising what was parsed gives back the same bytes.

The character classes are checked with ``str.strip`` (:func:`made_of`), not
``re``: importing re (and the enum it loads) was a tenth of a cold ``get``.
Only ASCII digits count as digits.
"""

from __future__ import annotations

import binascii
import functools

from ossl_vault.errors import FormatError, UsageError

MAX_NAME = 128
MAX_RECIPIENT = 64
MAX_ITER = 10_000_000
NAME_HINT = "use letters, digits and ._@+=:,- in components separated by single '/'"
DIGITS = "0123456789"
HEX = "0123456789abcdef"  # lowercase only: the one spelling
_FIRST = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
_COMPONENT = _FIRST + ".@+=:,-"  # of a secret name
_RECIPIENT = _FIRST + ".@+-"
_TIME_SHAPE = "0000-00-00T00:00:00Z"  # each ASCII digit read as 0 (_ZERO), the rest as is
_ZERO = str.maketrans("123456789", "000000000")


def made_of(text: str, chars: str) -> bool:
    """Whether every character of ``text`` is one of ``chars`` (so is "")."""
    return not text.strip(chars)


def is_hex(text: str, *lengths: int) -> bool:
    """Lowercase hex of one of ``lengths`` characters (64: SHA-256; 40: OpenPGP v4)."""
    return len(text) in lengths and made_of(text, HEX)


def is_number(text: str, digits: int = 10) -> bool:
    """A decimal of 1 to ``digits`` digits without a leading zero."""
    return 0 < len(text) <= digits and text[0] != "0" and made_of(text, DIGITS)


def is_time(text: str, prefix: bool = False) -> bool:
    """``YYYY-MM-DDTHH:MM:SSZ``; with ``prefix``, also a leading part of it that ends
    with a number (``2026``, ``2026-12``, ... ``2026-12-02T10:00:00``)."""
    n = len(text)
    if n != len(_TIME_SHAPE) and not (prefix and n in (4, 7, 10, 13, 16, 19)):
        return False
    return text.translate(_ZERO) == _TIME_SHAPE[:n]


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
        if part in ("", ".", "..") or part[0] not in _FIRST or not made_of(part, _COMPONENT):
            raise UsageError(f"invalid secret name {name!r}", hint=NAME_HINT)
    return name


def check_recipient_name(name: str) -> str:
    """Validate a recipient name; raise UsageError if bad."""
    if (
        not name
        or len(name) > MAX_RECIPIENT
        or name[0] not in _FIRST
        or not made_of(name, _RECIPIENT)
    ):
        raise UsageError(
            f"invalid recipient name {name!r}",
            hint="use 1 to 64 letters, digits and ._@+- (an email address fits)",
        )
    return name


def b64(data: bytes) -> str:
    """Canonical base64 (RFC 4648, padded, one line)."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


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
    if not is_number(text):
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
