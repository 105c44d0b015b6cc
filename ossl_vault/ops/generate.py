"""Uniformly random values from ``openssl rand``.

Characters from an alphabet are drawn by rejection sampling: a random byte is
used only when it falls below the largest multiple of the alphabet's size,
so every character is exactly equally likely (no modulo bias).
"""

from __future__ import annotations

import base64
import math
import string

from ossl_vault.errors import UsageError
from ossl_vault.openssl import crypto

DEFAULT_BITS = 256
ALPHABETS = {
    "alnum": string.ascii_letters + string.digits,
    "symbols": string.ascii_letters + string.digits + "!#%+,-./:=?@^_~",
}
FORMATS = ("base64", "hex", "password", "raw")
MAX_BYTES = 1024 * 1024


def sample(alphabet: str, length: int) -> str:
    """``length`` characters drawn uniformly from ``alphabet``."""
    size = len(alphabet)
    if not 2 <= size <= 256:
        raise UsageError("an alphabet needs 2 to 256 characters")
    limit = 256 - 256 % size  # bytes at or above this would bias the draw
    out: list[str] = []
    while len(out) < length:
        # ask for a little more than needed so one openssl call usually suffices
        need = length - len(out)
        for b in crypto.rand(need + need // 4 + 8):
            if b < limit:
                out.append(alphabet[b % size])
                if len(out) == length:
                    break
    return "".join(out)


def password_length(alphabet: str, bits: int = DEFAULT_BITS) -> int:
    """The fewest characters of ``alphabet`` carrying ``bits`` bits of entropy."""
    return math.ceil(bits / math.log2(len(alphabet)))


def generate(
    fmt: str = "base64",
    nbytes: int | None = None,
    length: int | None = None,
    alphabet: str = "alnum",
) -> bytes:
    """A new random value; 256 bits of entropy unless told otherwise."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}", hint="use " + ", ".join(FORMATS))
    if fmt == "password":
        if nbytes is not None:
            raise UsageError("--bytes does not apply to --format password; use --length")
        chars = ALPHABETS[alphabet]
        n = password_length(chars) if length is None else length
        if not 1 <= n <= 4096:
            raise UsageError(f"length {n} is out of range (1 to 4096)")
        return sample(chars, n).encode()
    if length is not None:
        raise UsageError("--length applies to --format password only; use --bytes")
    n = DEFAULT_BITS // 8 if nbytes is None else nbytes
    most = {"hex": MAX_BYTES // 2, "base64": MAX_BYTES // 4 * 3, "raw": MAX_BYTES}[fmt]
    if not 1 <= n <= most:
        raise UsageError(f"--bytes {n} is out of range (1 to {most} for --format {fmt})")
    data = crypto.rand(n)
    if fmt == "hex":
        return data.hex().encode()
    if fmt == "base64":
        return base64.b64encode(data)
    return data
