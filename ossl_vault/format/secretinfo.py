"""A secret's own unencrypted records: metadata and state (docs/format.md 2.6, 2.7).

They belong to a secret, not to a version, carry no MAC (no key is shared by
all readers) and never decide what a reader decrypts; format.md section 8 says
what someone who can write the vault can do with them.
"""

from __future__ import annotations

import time
from collections import namedtuple

from ossl_vault.errors import FormatError
from ossl_vault.format.fields import DIGITS, is_time, made_of, parse_name, unb64

META_KEY_FIRST = "abcdefghijklmnopqrstuvwxyz" + DIGITS  # a key: 1 to 32 of these and _.-
MAX_META = 1024  # bytes of one metadata value


class State(namedtuple("State", "name expires deleted purge_after", defaults=(None,) * 3)):
    """A ``state`` line: a secret's expiry and soft deletion (format.md 2.7)."""

    __slots__ = ()
    name: str
    expires: str | None  # default None; UTC time, format.md's spelling
    deleted: str | None  # default None
    purge_after: str | None  # default None; set exactly when ``deleted`` is

    def fields(self) -> list[str]:
        return ["state", self.name, self.expires or "-", self.deleted or "-",
                self.purge_after or "-"]  # fmt: skip

    @property
    def empty(self) -> bool:
        return self.expires is None and self.deleted is None

    def expired(self, clock: float | None = None) -> bool:
        """Whether EXPIRES has passed (at ``clock``, a Unix time; default now)."""
        if self.expires is None:
            return False
        return seconds_of(self.expires) <= (time.time() if clock is None else clock)


def seconds_of(when: str) -> int:
    """The Unix time of a time as format.md spells it."""
    import calendar  # here: only a secret with a state line pays for it on the read path

    return calendar.timegm(time.strptime(when, "%Y-%m-%dT%H:%M:%SZ"))


def meta_key(key: str) -> bool:
    """A metadata key: ``[a-z0-9][a-z0-9_.-]{0,31}``."""
    return 0 < len(key) <= 32 and key[0] in META_KEY_FIRST and made_of(key, META_KEY_FIRST + "_.-")


def parse_meta(f: list[str]) -> tuple[str, str, str]:
    if len(f) != 4:
        raise FormatError(f"meta line has {len(f)} fields, not 4")
    name = parse_name(f[1], "secret")
    if not meta_key(f[2]):
        raise FormatError(f"bad metadata key {f[2]!r}")
    raw = unb64(f[3], "metadata value")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"metadata {f[2]!r} of {name!r} is not UTF-8") from None
    if len(raw) > MAX_META:
        raise FormatError(f"metadata {f[2]!r} of {name!r} is longer than {MAX_META} bytes")
    return name, f[2], text


def parse_state(f: list[str]) -> State:
    if len(f) != 5:
        raise FormatError(f"state line has {len(f)} fields, not 5")
    name = parse_name(f[1], "secret")
    times = [None if t == "-" else t for t in f[2:5]]
    if any(t is not None and not is_time(t) for t in times):
        raise FormatError(f"bad time in the state of {name!r}")
    s = State(name, *times)
    if s.empty or (s.deleted is None) != (s.purge_after is None):
        raise FormatError(f"state line of {name!r} does not fit its fields")
    return s
