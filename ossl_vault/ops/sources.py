"""Where the CLI finds vaults, identities, values and passwords.

Secrets are read from stdin, a no-echo prompt on the terminal, or a file;
never from argv.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from ossl_vault.errors import UsageError
from ossl_vault.format.seal import MAX_VALUE, Identities, check_password
from ossl_vault.format.wrapping import Identity, key_file_identity

SNAKEOIL_KEY = "/etc/ssl/private/ssl-cert-snakeoil.key"


def default_identity_paths() -> list[str]:
    """The user's own identity file, then the Debian snakeoil key."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return [os.path.join(base, "ossl-vault", "identity.pem"), SNAKEOIL_KEY]


def identity_files(given: tuple[str, ...]) -> tuple[list[Identity], str]:
    """Identities in lookup order: --identity, $OSSL_VAULT_IDENTITY, default paths."""
    env = [p for p in os.environ.get("OSSL_VAULT_IDENTITY", "").split(":") if p]
    explicit = list(given) or env
    paths = explicit or default_identity_paths()
    found = [key_file_identity(p, bool(explicit)) for p in paths]
    return [i for i in found if i is not None], ", ".join(paths)


def read_limited(stream: object, what: str, limit: int = MAX_VALUE) -> bytes:
    """Read a value of at most ``limit`` bytes from a binary stream."""
    data = stream.read(limit + 1)  # type: ignore[attr-defined]
    if len(data) > limit:
        raise UsageError(f"{what} is larger than 1 MiB")
    return data


def read_value_file(path: str) -> bytes:
    """A value from a file, exact bytes."""
    try:
        with open(path, "rb") as f:
            return read_limited(f, f"file {path!r}")
    except FileNotFoundError:
        raise UsageError(f"no such file {path!r}") from None
    except OSError as e:
        raise UsageError(f"cannot read {path!r}: {e.strerror}") from None


def read_line_file(path: str, what: str) -> bytes:
    """A password or passphrase: the file's content less one trailing newline."""
    data = read_value_file(path)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    return check_password(data, what)


def has_tty() -> bool:
    """Whether a prompt can reach a person."""
    try:
        with open("/dev/tty", "rb"):
            return True
    except OSError:
        return False


def prompt(label: str, confirm: bool = False) -> bytes:
    """Ask on the terminal without echo; twice when ``confirm``."""
    if not has_tty():
        raise UsageError(f"cannot prompt for the {label}: no terminal", hint="use a file option")
    import getpass  # only a person at a terminal needs it

    first = getpass.getpass(f"{label}: ").encode()
    if confirm and getpass.getpass(f"{label} (again): ").encode() != first:
        raise UsageError(f"the two {label}s differ")
    return first


def read_value(from_file: str | None, name: str) -> bytes:
    """The value to store: --from-file, else stdin when piped, else a prompt."""
    if from_file is not None:
        return read_value_file(from_file)
    if not sys.stdin.isatty():
        return read_limited(sys.stdin.buffer, "value on stdin")
    return prompt(f"value for {name!r}", confirm=True)


def secret_source(path: str | None, ask: bool, label: str, confirm: bool = False) -> bytes | None:
    """A password or passphrase from a file, a prompt, or nothing."""
    if path is not None:
        return read_line_file(path, label)
    if ask:
        return check_password(prompt(label, confirm), label)
    return None


def password_source(path: str | None) -> Callable[[str], bytes | None]:
    """A secret's own password, asked with its name: from ``path``, else a prompt if a
    terminal is there, else None."""

    def ask(name: str) -> bytes | None:
        if path is None and not has_tty():
            return None
        return secret_source(path, path is None, f"password of {name!r}")

    return ask


def identities(given: tuple[str, ...], passphrase_file: str | None, ask: bool) -> Identities:
    """Everything a reader may open wraps with."""
    files, searched = identity_files(given)

    def passphrase() -> bytes | None:
        return secret_source(passphrase_file, ask, "passphrase")

    return Identities(files, passphrase, searched)


def write_out(path: str, data: bytes) -> None:
    """Write a value to ``path`` (0600) atomically: no partial file on failure."""
    from ossl_vault.storage.files import atomic_write

    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--out {path!r} is a directory")
    try:
        atomic_write(target, data)
    except OSError as e:
        raise UsageError(f"cannot write {path!r}: {e.strerror}") from None
