"""vault.tsv: the records of docs/format.md section 2, parsed strictly.

One canonical encoding: a reader refuses unsorted or duplicate lines, wrong
field counts, non-canonical base64, and unknown parameters; serialising what
was parsed gives back the same bytes.
"""

from __future__ import annotations

import functools
import gc
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager

from ossl_vault.errors import FormatError, IntegrityError, UsageError
from ossl_vault.format.fields import (
    HEX,
    MAX_ITER,
    b64,
    is_hex,
    is_time,
    parse_fixed,
    parse_iterations,
    parse_name,
    parse_number,
    unb64,
)
from ossl_vault.format.secretinfo import State, parse_meta, parse_state
from ossl_vault.keys import pubkeys
from ossl_vault.openssl.crypto import (
    CIPHER,
    DIGEST,
    IV_LEN,
    KDF,
    KEY_LEN,
    PASSWORD_ITER,
    SALT_LEN,
    sha256_hex,
)

MAGIC = "ossl-vault"
FORMAT_VERSION = "1"
HEADER = f"{MAGIC}\t{FORMAT_VERSION}\n"
MAX_INDEX = 256 * 1024 * 1024
KINDS = ("rsa", "p256", "p384", "x25519", "passphrase", "gpg", "recovery")
ORIGINS = ("new", "same")


# The parsed lines are named tuples: immutable and hashable as frozen dataclasses
# were, four times faster to build (``list`` builds 30,000), and without the 13 ms
# that importing dataclasses (and inspect) cost every cold read. The annotations
# in each class body document the fields; ``_replace`` changes some of them.


class Recipient(
    namedtuple(
        "Recipient",
        "name kind fingerprint added default spki cert private",
        defaults=(None, None),
    )
):
    """A ``recipient`` line."""

    __slots__ = ()
    name: str
    kind: str
    fingerprint: str
    added: str
    default: bool
    spki: bytes
    cert: bytes | None  # default None
    private: bytes | None  # default None

    def fields(self) -> list[str]:
        return [
            "recipient", self.name, self.kind, self.fingerprint, self.added,
            "default" if self.default else "-", b64(self.spki),
            b64(self.cert) if self.cert else "-", b64(self.private) if self.private else "-",
        ]  # fmt: skip


class Wrap(
    namedtuple(
        "Wrap",
        "name version recipient fingerprint scheme ct eph iterations salt iv tag",
        defaults=(b"", 0, b"", b"", b""),
    )
):
    """A ``wrap`` line: the data key of one version for one recipient's key."""

    __slots__ = ()
    name: str
    version: int
    recipient: str
    fingerprint: str  # of the key it was made for
    scheme: str  # "rsa-oaep", "ecdh" or "gpg"
    ct: bytes
    eph: bytes  # default b""
    iterations: int  # default 0
    salt: bytes  # default b""
    iv: bytes  # default b""
    tag: bytes  # default b""

    def ecdh_fields(self) -> list[str]:
        """Fields 5 to 13 of an ecdh wrap: the text its MAC covers."""
        return [
            "ecdh", b64(self.eph), CIPHER, KDF, DIGEST, str(self.iterations),
            b64(self.salt), b64(self.iv), b64(self.ct),
        ]  # fmt: skip

    def fields(self) -> list[str]:
        head = ["wrap", self.name, str(self.version), self.recipient, self.fingerprint]
        if self.scheme in ("rsa-oaep", "gpg"):
            return [*head, self.scheme, b64(self.ct)]
        return [*head, *self.ecdh_fields(), b64(self.tag)]


class Ledger(namedtuple("Ledger", "name version origin readers")):
    """A ``ledger`` line: who has held a wrap of one version, ever."""

    __slots__ = ()
    name: str
    version: int
    origin: str  # "new": a value a user gave; "same": the previous value re-encrypted
    readers: tuple[str, ...]

    def fields(self) -> list[str]:
        return ["ledger", self.name, str(self.version), self.origin, ",".join(self.readers)]


class Password(namedtuple("Password", "iterations salt check")):
    """The per-secret password parameters of a version."""

    __slots__ = ()
    iterations: int
    salt: bytes
    check: bytes


class Version(
    namedtuple(
        "Version",
        "name version created iterations salt iv password blob recipients tag",
        defaults=(b"",),
    )
):
    """A ``secret`` line: one stored version of a secret."""

    __slots__ = ()
    name: str
    version: int
    created: str
    iterations: int
    salt: bytes
    iv: bytes
    password: Password | None
    blob: str
    recipients: tuple[str, ...]
    tag: bytes  # default b""

    def signed_fields(self) -> list[str]:
        """Fields 1 to 15: everything the record MAC covers before the wraps."""
        pw = self.password
        return [
            "secret", self.name, str(self.version), self.created, CIPHER, KDF, DIGEST,
            str(self.iterations), b64(self.salt), b64(self.iv),
            str(pw.iterations) if pw else "-", b64(pw.salt) if pw else "-",
            b64(pw.check) if pw else "-", self.blob, ",".join(self.recipients),
        ]  # fmt: skip

    def fields(self) -> list[str]:
        return [*self.signed_fields(), b64(self.tag)]


class Index:
    """The whole of vault.tsv (or of a format-2 vault's files)."""

    __slots__ = (
        "access",
        "ledger",
        "meta",
        "names_read",
        "origin",
        "recipients",
        "state",
        "versions",
        "wraps",
    )  # fmt: skip

    def __init__(
        self,
        recipients: dict[str, Recipient] | None = None,
        versions: dict[str, list[Version]] | None = None,
        wraps: dict[tuple[str, int], list[Wrap]] | None = None,
        access: dict[str, tuple[str, ...]] | None = None,
        ledger: dict[str, list[Ledger]] | None = None,
        meta: dict[str, dict[str, str]] | None = None,
        state: dict[str, State] | None = None,
    ) -> None:
        self.recipients = {} if recipients is None else recipients
        self.versions = {} if versions is None else versions  # oldest first
        self.wraps = {} if wraps is None else wraps
        self.access = {} if access is None else access  # wanted, when not default
        self.ledger = {} if ledger is None else ledger  # oldest first
        self.meta = {} if meta is None else meta  # name -> key -> text
        self.state = {} if state is None else state
        # What storage gave when this index was read (storage/store.py): part ->
        # (revision, bytes), None where a secret was absent; the key None is the
        # recipients. Not part of the index's value: left out of == and repr.
        self.origin: dict[str | None, tuple[str, bytes] | None] = {}
        self.names_read: list[str] | None = None  # if all were

    def _value(self) -> tuple[object, ...]:
        return (
            self.recipients, self.versions, self.wraps, self.access, self.ledger, self.meta,
            self.state,
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        return type(other) is Index and self._value() == other._value()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Index({len(self.recipients)} recipients, {len(self.versions)} secrets)"

    def serialize(self) -> bytes:
        lines = [r.fields() for r in self.recipients.values()]
        lines += [["meta", name, key, b64(text.encode())]
                  for name, pairs in self.meta.items() for key, text in pairs.items()]  # fmt: skip
        lines += [s.fields() for s in self.state.values() if not s.empty]
        lines += [["access", name, ",".join(who)] for name, who in self.access.items()]
        lines += [entry.fields() for entries in self.ledger.values() for entry in entries]
        for versions in self.versions.values():
            for v in versions:
                lines.append(v.fields())
                lines.extend(w.fields() for w in self.wraps.get((v.name, v.version), []))
        return (HEADER + "".join(sorted("\t".join(f) + "\n" for f in lines))).encode("ascii")


def line_of(fields: list[str]) -> str:
    """A record as it stands in the file, with its newline."""
    return "\t".join(fields) + "\n"


def _parse_recipient(f: list[str]) -> Recipient:
    if len(f) != 9:
        raise FormatError(f"recipient line has {len(f)} fields, not 9")
    name = parse_name(f[1], "recipient")
    if f[2] not in KINDS:
        raise FormatError(f"unsupported recipient kind {f[2]!r}")
    fpr_ok = is_hex(f[3], 40, 64) if f[2] == "gpg" else is_hex(f[3], 64)
    if not fpr_ok or not is_time(f[4]) or f[5] not in ("default", "-"):
        raise FormatError(f"bad fields in recipient {name!r}")
    private = None if f[8] == "-" else unb64(f[8], "recipient key")
    if (f[2] == "passphrase") != (private is not None):
        raise FormatError(f"recipient {name!r}: private key field does not fit its kind")
    r = Recipient(
        name=name, kind=f[2], fingerprint=f[3], added=f[4], default=f[5] == "default",
        spki=unb64(f[6], "recipient key"), cert=None if f[7] == "-" else unb64(f[7], "cert"),
        private=private,
    )  # fmt: skip
    _check_recipient(r)
    return r


def fingerprint(spki: bytes, private: bytes | None = None) -> str:
    """FPR of format.md 2.1: over the SPKI, and the encrypted key of a passphrase recipient."""
    return sha256_hex(spki + (private or b""))


@functools.lru_cache(maxsize=256)
def _check_recipient(r: Recipient) -> None:
    """Self-consistency of a recipient line (it has no MAC): format.md 2.1.

    A gpg recipient's fingerprint is checked by gpg when the key is used.
    """
    if r.kind == "gpg":
        if r.cert is not None:
            raise FormatError(f"recipient {r.name!r}: a gpg key has no certificate")
        return
    if fingerprint(r.spki, r.private) != r.fingerprint:
        raise IntegrityError(f"recipient {r.name!r}: fingerprint does not match its key")
    try:
        kind = pubkeys.key_kind(r.spki)
        if r.cert is not None and pubkeys.cert_spki(r.cert) != r.spki:
            raise IntegrityError(f"recipient {r.name!r}: certificate does not hold its key")
        if r.private is not None:
            count = pubkeys.pkcs8_iterations(r.private)
            if not PASSWORD_ITER <= count <= MAX_ITER:
                raise FormatError(f"recipient {r.name!r}: key iterations {count} out of range")
    except (UsageError, ValueError) as e:
        raise IntegrityError(f"recipient {r.name!r}: {e}") from None
    if kind != ("x25519" if r.kind in ("passphrase", "recovery") else r.kind):
        raise IntegrityError(f"recipient {r.name!r} is {r.kind!r} but holds a {kind} key")


class _Unsorted(Exception):
    """A comma list of names that is not sorted and unique (the caller names it)."""


@functools.lru_cache(maxsize=4096)
def _name_list(text: str) -> tuple[str, ...]:
    """``a,b,c``: sorted, unique, each a recipient name (cached: lists recur on most lines)."""
    names = tuple(text.split(","))
    if list(names) != sorted(set(names)):
        raise _Unsorted
    for n in names:
        parse_name(n, "recipient")
    return names


def _names(text: str, what: str) -> tuple[str, ...]:
    try:
        return _name_list(text)
    except _Unsorted:
        raise FormatError(f"{what} are not sorted and unique") from None


@functools.lru_cache(maxsize=4096)
def _number(text: str, what: str) -> int:
    """parse_number, cached: versions and counts recur on most lines."""
    return parse_number(text, what)


@functools.lru_cache(maxsize=256)
def _iterations(text: str, what: str, low: int = 1) -> int:
    return parse_iterations(text, what, low)


def _fixed(cipher: str, kdf: str, digest: str) -> None:
    if cipher != CIPHER or kdf != KDF or digest != DIGEST:
        parse_fixed(cipher, CIPHER, "cipher")
        parse_fixed(kdf, KDF, "kdf")
        parse_fixed(digest, DIGEST, "digest")


def _parse_secret(f: list[str]) -> Version:
    if len(f) != 16:
        raise FormatError(f"secret line has {len(f)} fields, not 16")
    name = parse_name(f[1], "secret")
    _fixed(f[4], f[5], f[6])
    pw = None
    if f[10] != "-" or f[11] != "-" or f[12] != "-":
        pw = Password(
            _iterations(f[10], "password iterations", PASSWORD_ITER),
            unb64(f[11], "password salt", SALT_LEN),
            unb64(f[12], "password check", 16),
        )
    if not is_time(f[3]) or len(f[13]) != 64 or f[13].strip(HEX):
        raise FormatError(f"bad fields in secret {name!r}")
    try:
        recipients = _name_list(f[14])
    except _Unsorted:
        raise FormatError(f"recipients of {name!r} are not sorted and unique") from None
    return Version(
        name, _number(f[2], "version"), f[3], _iterations(f[7], "iterations"),
        unb64(f[8], "salt", SALT_LEN), unb64(f[9], "iv", IV_LEN), pw, f[13], recipients,
        unb64(f[15], "mac", KEY_LEN),
    )  # fmt: skip


def _parse_wrap(f: list[str]) -> Wrap:
    scheme = f[5] if len(f) > 5 else ""
    if scheme not in ("rsa-oaep", "ecdh", "gpg"):
        raise FormatError(f"unsupported wrap scheme {scheme!r}")
    want = 15 if scheme == "ecdh" else 7
    if len(f) != want:
        raise FormatError(f"{scheme} wrap line has {len(f)} fields, not {want}")
    if len(f[4]) not in (40, 64) or f[4].strip(HEX):  # is_hex, inlined: 2 lines a secret
        raise FormatError(f"bad key fingerprint {f[4]!r}")
    name, version = parse_name(f[1], "secret"), _number(f[2], "version")
    recipient = parse_name(f[3], "recipient")
    if scheme != "ecdh":
        return Wrap(name, version, recipient, f[4], scheme, unb64(f[6], "wrap"))
    _fixed(f[7], f[8], f[9])
    return Wrap(
        name, version, recipient, f[4], "ecdh", unb64(f[13], "wrap", 48),
        unb64(f[6], "ephemeral key"), _iterations(f[10], "iterations"),
        unb64(f[11], "salt", SALT_LEN), unb64(f[12], "iv", IV_LEN),
        unb64(f[14], "wrap mac", KEY_LEN),
    )  # fmt: skip


def _parse_ledger(f: list[str]) -> Ledger:
    if len(f) != 5:
        raise FormatError(f"ledger line has {len(f)} fields, not 5")
    if f[3] not in ORIGINS:
        raise FormatError(f"bad ledger origin {f[3]!r}")
    version = _number(f[2], "version")
    return Ledger(parse_name(f[1], "secret"), version, f[3], _names(f[4], "ledger readers"))


def parse(data: bytes) -> Index:
    """Parse vault.tsv strictly; raise FormatError on anything off."""
    if len(data) > MAX_INDEX:
        raise FormatError("vault.tsv is larger than 256 MiB")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("vault.tsv is not ASCII") from None
    first, _, rest = text.partition("\n")
    head = first.split("\t")
    if len(head) != 2 or head[0] != MAGIC:
        raise FormatError("not an ossl-vault index (bad header)")
    if head[1] != FORMAT_VERSION:
        raise FormatError(
            f"unsupported vault format version {head[1]!r}",
            hint="it was written by another version of ossl-vault",
        )
    if not text.endswith("\n"):
        raise FormatError("vault.tsv does not end with a newline")
    index = Index()
    with gc_paused():
        _read_lines(index, rest.split("\n")[:-1] if rest else [], "vault.tsv", 2)
        _check_wraps(index)
    return index


SECRET_KINDS = ("access", "ledger", "meta", "secret", "state", "wrap")  # a secret's own lines


def parse_parts(recipients: bytes, secrets: dict[str, bytes], where: str = "vault") -> Index:
    """Format 2's parts (docs/format.md section 2.8) parsed strictly into one Index.

    ``recipients``: the recipient lines of recipients.tsv (after its header);
    ``secrets``: each secret's file. Each part is checked as vault.tsv is (sorted,
    unique, no stray bytes, every line and link) and holds only its own lines:
    the recipients file recipient lines, a secret's file that secret's lines.
    """
    if len(recipients) + sum(map(len, secrets.values())) > MAX_INDEX:  # section 2.8: the
        raise FormatError(f"the records of {where} are larger than 256 MiB")  # union's rule
    index = Index()
    with gc_paused():
        what = f"{where} recipients.tsv"
        _read_lines(index, _part_lines(recipients, what), what, 2, ("recipient",))
        for name in sorted(secrets):
            data = secrets[name]
            if not data:
                raise FormatError(f"the records of secret {name!r} are empty")
            try:  # _part_lines, inlined: a list reads 10,000 of these
                text = data.decode("ascii")
            except UnicodeDecodeError:
                raise FormatError(f"{where} secret {name!r} is not ASCII") from None
            if not text.endswith("\n"):
                raise FormatError(f"{where} secret {name!r} does not end with a newline")
            _read_lines(index, text.split("\n")[:-1], (where, name), 1, SECRET_KINDS, name)
        _check_wraps(index)
    return index


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: for code that makes many containers and
    no cycles (a parse of 10,000 secrets makes 100,000), where each collection would
    walk everything made so far: a third of a ``list``. Mercurial's ``nogc``, as a
    context manager; it leaves a collector that was off as it was."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _part_lines(data: bytes, what: str) -> list[str]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(f"{what} is not ASCII") from None
    if text and not text.endswith("\n"):
        raise FormatError(f"{what} does not end with a newline")
    return text.split("\n")[:-1]


def _read_lines(
    index: Index,
    lines: list[str],
    part: str | tuple[str, str],
    first: int,
    kinds: tuple[str, ...] | None = None,
    name: str | None = None,
) -> None:
    """Add each line to ``index``; ``kinds`` and ``name``: what the part may hold.

    ``part`` names the file in messages: its name, or (where, secret name) for a
    secret's file, spelled only when there is an error to say.
    """
    previous = ""
    for number, line in enumerate(lines, start=first):
        if line <= previous:
            raise FormatError(f"{_spell(part)} line {number} is out of order or repeated")
        previous = line
        if "\r" in line or " " in line:
            raise FormatError(f"{_spell(part)} line {number} has a stray space or CR")
        f = line.split("\t")
        if kinds is not None:
            if f[0] not in kinds:
                raise FormatError(
                    f"{_spell(part)} line {number} is a {f[0]!r} line, which belongs elsewhere"
                )
            if name is not None and (len(f) < 2 or f[1] != name):
                raise IntegrityError(f"{_spell(part)} line {number} belongs to another secret")
        try:
            _add(index, f)
        except IntegrityError as e:
            raise type(e)(f"{_spell(part)} line {number}: {e.message}", e.hint) from None


def _spell(part: str | tuple[str, str]) -> str:
    return part if isinstance(part, str) else f"{part[0]} secret {part[1]!r}"


def _add(index: Index, f: list[str]) -> None:
    kind = f[0]
    if kind == "wrap":
        w = _parse_wrap(f)
        index.wraps.setdefault((w.name, w.version), []).append(w)
    elif kind == "secret":
        v = _parse_secret(f)
        index.versions.setdefault(v.name, []).append(v)
    elif kind == "ledger":
        entry = _parse_ledger(f)
        index.ledger.setdefault(entry.name, []).append(entry)
    elif kind == "recipient":
        r = _parse_recipient(f)
        if r.name in index.recipients:
            raise FormatError(f"recipient {r.name!r} appears twice")
        if any(o.fingerprint == r.fingerprint for o in index.recipients.values()):
            raise FormatError(f"recipient {r.name!r} repeats another's key")
        index.recipients[r.name] = r
    elif kind == "access":
        if len(f) != 3:
            raise FormatError(f"access line has {len(f)} fields, not 3")
        index.access[parse_name(f[1], "secret")] = _names(f[2], "access recipients")
    elif kind == "meta":
        name, key, text = parse_meta(f)
        pairs = index.meta.setdefault(name, {})
        if key in pairs:
            raise FormatError(f"metadata {key!r} of {name!r} appears twice")
        pairs[key] = text
    elif kind == "state":
        s = parse_state(f)
        if s.name in index.state:
            raise FormatError(f"state of {s.name!r} appears twice")
        index.state[s.name] = s
    else:
        raise FormatError(f"unknown record type {kind!r}")


def _version_of(v: Version | Ledger) -> int:
    return v.version


def _check_wraps(index: Index) -> None:
    """Sort versions numerically and check each has exactly its wraps."""
    wraps, recipients = index.wraps, index.recipients
    keys = set()
    for name, versions in index.versions.items():
        if len(versions) > 1:
            versions.sort(key=_version_of)
            if len({v.version for v in versions}) != len(versions):
                raise FormatError(f"secret {name!r} has a repeated version")
        for v in versions:
            key = (name, v.version)
            keys.add(key)
            wrapped = tuple([w.recipient for w in wraps.get(key, ())])
            if wrapped != v.recipients:
                raise FormatError(f"wraps of {name!r} version {v.version} do not match its record")
        for w in wraps[(name, versions[-1].version)]:
            r = recipients.get(w.recipient)
            if r is None:
                raise IntegrityError(
                    f"secret {name!r} is wrapped for unknown recipient {w.recipient!r}"
                )
            if w.fingerprint != r.fingerprint:
                raise IntegrityError(
                    f"the wrap of {name!r} for {w.recipient!r} names a key that is not theirs"
                )
    versions = index.versions
    for name in [*index.access, *index.ledger, *index.meta, *index.state]:
        if name not in versions:
            raise FormatError(f"a per-secret line for {name!r}, which has no versions")
    for name, entries in index.ledger.items():
        if len(entries) > 1:
            entries.sort(key=_version_of)
            if len({e.version for e in entries}) != len(entries):
                raise FormatError(f"ledger of {name!r} has a repeated version")
    if len(wraps) != len(keys):  # a wrap of a version with no secret line
        for key in wraps:
            if key not in keys:
                raise FormatError(f"wrap for {key[0]!r} version {key[1]} has no secret line")
