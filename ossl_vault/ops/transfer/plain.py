"""Plain formats: ``.env``, JSON and a ``pass`` store for import and ``export --plaintext``;
the entries an import gathers; the JSON container of a several-secret CMS export.

Each reader returns :class:`Entry` values, bad entries included (each with
its own error), so the caller can report every one and import all or
nothing. docs/transfer.md describes what each accepts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ossl_vault.errors import (
    AccessDenied,
    FormatError,
    IntegrityError,
    OperationError,
    UsageError,
    VaultError,
)
from ossl_vault.format.fields import b64, check_name, unb64
from ossl_vault.format.seal import MAX_VALUE
from ossl_vault.keys import gpg

PasswordSource = Callable[[str], bytes | None]

CONTAINER_KEY = "ossl-vault-export"  # the JSON object of a several-secret CMS export
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")  # what an import accepts
SHELL_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # what an export writes
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$", "`": "`"}
# What export escapes: what a shell needs inside "..." (it reads the rest, newlines
# included, literally), and CR, which import would otherwise take for a CRLF line end.
_UNESCAPES = {c: "\\" + k for k, c in _ESCAPES.items() if c in '\\"$`\r'}


@dataclass
class Entry:
    """One value to import (a version of a secret), or a bad entry with its error."""

    name: str
    source: str  # where it came from: shown in the summary and in errors
    value: bytes = b""
    password: bytes | None = None  # a per-secret password the new version keeps
    error: VaultError | None = None


def entry(prefix: str, name: str, source: str, value: bytes) -> Entry:
    """An Entry for ``prefix + name``, or a bad one when the name or size is wrong."""
    full = prefix + name
    try:
        check_name(full)
        if len(value) > MAX_VALUE:
            raise UsageError(f"value of {full!r} is larger than 1 MiB")
    except UsageError as e:
        return Entry(full, source, error=e)
    return Entry(full, source, value)


def bad_entry(name: str, where: str, error: VaultError) -> Entry:
    """A bad entry whose message starts with where it was found."""
    return Entry(name, where, error=type(error)(f"{where}: {error.message}", error.hint))


def pack_values(values: dict[str, bytes]) -> bytes:
    """What a CMS export encrypts: one value's raw bytes, or the JSON container."""
    if len(values) == 1:
        return next(iter(values.values()))
    secrets = {name: b64(value) for name, value in sorted(values.items())}
    return json.dumps({CONTAINER_KEY: 1, "secrets": secrets}, sort_keys=True).encode() + b"\n"


def unpack_values(data: bytes, source: str) -> dict[str, bytes] | None:
    """The secrets of a JSON container, or None when ``data`` is not one."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or CONTAINER_KEY not in obj:
        return None
    secrets = obj.get("secrets")
    if obj[CONTAINER_KEY] != 1 or not isinstance(secrets, dict):
        raise FormatError(f"{source!r} holds an unsupported {CONTAINER_KEY} container")
    try:
        return {str(k): unb64(v, f"value of {k!r}") for k, v in secrets.items()}
    except (TypeError, FormatError) as e:
        raise FormatError(f"{source!r}: bad value in its container: {e}") from None


# -- .env -----------------------------------------------------------------------------


def _quoted(text: str, pos: int, quote: str) -> tuple[str, int]:
    """The value of a quoted string starting after its opening quote; may span lines."""
    out = []
    while pos < len(text):
        c = text[pos]
        if c == quote:
            return "".join(out), pos + 1
        if c == "\\" and quote == '"' and pos + 1 < len(text):
            nxt = text[pos + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                pos += 2
                continue
        out.append(c)
        pos += 1
    raise UsageError(f"unterminated {quote} quote")


def _env_line(text: str, pos: int) -> tuple[str | None, str, int]:
    """Parse one assignment at ``pos``: (key or None for a blank line, value, next pos)."""
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    line = text[pos:end].strip()
    if not line or line.startswith("#"):
        return None, "", end + 1
    if line.startswith("export ") or line.startswith("export\t"):
        line = line[7:].lstrip()
    key, sep, _ = line.partition("=")
    key = key.strip()
    if not sep or not ENV_KEY.match(key):
        raise UsageError(f"not a KEY=VALUE line: {line[:40]!r}")
    start = text.index("=", pos) + 1
    while start < end and text[start] in " \t":
        start += 1
    if start < end and text[start] in "\"'":
        value, after = _quoted(text, start + 1, text[start])
        stop = text.find("\n", after)
        stop = len(text) if stop < 0 else stop
        rest = text[after:stop].strip()
        if rest and not rest.startswith("#"):
            raise UsageError(f"unexpected text after the closing quote: {rest[:20]!r}")
        return key, value, stop + 1
    value = text[start:end]
    cut = re.search(r"\s#", value)
    return key, (value[: cut.start()] if cut else value).strip(), end + 1


def read_env(data: bytes, source: str, prefix: str = "") -> list[Entry]:
    """Entries of a ``.env`` file: ``KEY=VALUE`` lines (see docs/transfer.md)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{source!r} is not UTF-8 text") from None
    text = text.replace("\r\n", "\n")
    out: list[Entry] = []
    seen: dict[str, int] = {}
    pos = 0
    while pos < len(text):
        number = text.count("\n", 0, pos) + 1
        where = f"{source} line {number}"
        try:
            key, value, pos = _env_line(text, pos)
        except UsageError as e:
            out.append(Entry("-", where, error=UsageError(f"{where}: {e.message}")))
            nxt = text.find("\n", pos)
            pos = len(text) if nxt < 0 else nxt + 1
            continue
        if key is None:
            continue
        if key in seen:
            error = UsageError(f"{where}: {key!r} is already set on line {seen[key]}")
            out.append(Entry(prefix + key, where, error=error))
            continue
        seen[key] = number
        out.append(_located(entry(prefix, key, where, value.encode()), where))
    return out


def _located(e: Entry, where: str) -> Entry:
    """Prefix a bad entry's message with where it was found."""
    if e.error is not None and not e.error.message.startswith(where):
        e.error = type(e.error)(f"{where}: {e.error.message}", e.error.hint)
    return e


def render_env(values: dict[str, bytes]) -> bytes:
    """``NAME="VALUE"`` lines that :func:`read_env` (and a shell) read back exactly."""
    lines = []
    for name, value in sorted(values.items()):
        if not SHELL_KEY.match(name):
            raise UsageError(
                f"secret name {name!r} is not a shell variable name", hint="use --format json"
            )
        text = _text(name, value)
        lines.append(f'{name}="{"".join(_UNESCAPES.get(c, c) for c in text)}"\n')
    return "".join(lines).encode()


def _text(name: str, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(
            f"value of {name!r} is not UTF-8 text", hint="export it as CMS with --to CERT"
        ) from None


# -- JSON ------------------------------------------------------------------------------


def read_json(data: bytes, source: str, prefix: str = "") -> list[Entry]:
    """Entries of a JSON object of name -> string (stored as UTF-8)."""
    try:
        obj = json.loads(data)
    except RecursionError:  # json.loads recurses once per level of nesting
        raise UsageError(f"{source!r} is nested too deeply to be name -> string") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"{source!r} is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{source!r} is not a JSON object of name -> string")
    out = []
    for key, value in obj.items():
        where = f"{source} [{key}]"
        if not isinstance(value, str):
            kind = type(value).__name__
            error = UsageError(f"{where}: value is a JSON {kind}, not a string")
            out.append(Entry(prefix + key, where, error=error))
            continue
        out.append(_located(entry(prefix, key, where, value.encode()), where))
    return out


def render_json(values: dict[str, bytes]) -> bytes:
    """A JSON object of name -> value (UTF-8 values only), sorted, one key a line."""
    obj = {name: _text(name, value) for name, value in sorted(values.items())}
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


# -- pass ------------------------------------------------------------------------------


def pass_files(store: str) -> list[tuple[str, Path]]:
    """(name, path) of every ``.gpg`` file under a pass store, hidden ones aside."""
    root = Path(store)
    if not root.is_dir():
        raise UsageError(f"pass store {store!r} is not a directory")
    found = []
    for path in sorted(root.rglob("*.gpg")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            found.append((rel.as_posix()[: -len(".gpg")], path))
    if not found:
        raise UsageError(
            f"no .gpg files under {store!r}",
            hint="give the password store directory ($PASSWORD_STORE_DIR, ~/.password-store)",
        )
    return found


def gpg_decrypt_file(path: Path, gnupghome: str | None = None) -> bytes:
    """Decrypt one OpenPGP file with the user's keyring ($GNUPGHOME) via python-gnupg.

    Exact plaintext bytes. AccessDenied: no secret key; IntegrityError: a
    damaged or unprotected message; OperationError: gpg failed otherwise.
    """
    g = gpg._gpg(gnupghome, ["--no-auto-check-trustdb"])
    try:
        data = path.read_bytes()
    except OSError as e:
        raise OperationError(f"cannot read {str(path)!r}: {e.strerror}") from None
    result = g.decrypt(data)
    status = {line[9:].split(" ")[0] for line in (result.stderr or "").splitlines()
              if line.startswith("[GNUPG:] ")}  # fmt: skip
    failed = {"BADMDC", "DECRYPTION_FAILED"} & status
    if result.returncode == 0 and "DECRYPTION_OKAY" in status and not failed:
        return bytes(result.data)
    if "NO_SECKEY" in status and "DECRYPTION_OKAY" not in status:
        raise AccessDenied("no GnuPG secret key in this keyring opens it")
    if failed or "NODATA" in status:
        raise IntegrityError("gpg could not decrypt it: damaged or not an encrypted file")
    said = [ln for ln in (result.stderr or "").splitlines() if not ln.startswith("[GNUPG:]")]
    raise OperationError(f"gpg could not decrypt it: {(said or ['no message'])[-1].strip()}")


def read_pass(store: str, prefix: str = "", chomp: bool = False) -> list[Entry]:
    """Entries of a pass store: name = path without ``.gpg``, value = the exact plaintext.

    ``chomp`` drops one trailing newline (``pass insert`` without ``-m`` adds one).
    """
    out = []
    for name, path in pass_files(store):
        where = f"{store.rstrip('/')}/{name}.gpg"
        try:
            value = gpg_decrypt_file(path)
        except (AccessDenied, IntegrityError, OperationError) as e:
            out.append(bad_entry(prefix + name, where, e))
            continue
        if chomp and value.endswith(b"\n"):
            value = value[:-1]
        out.append(_located(entry(prefix, name, where, value), where))
    return out
