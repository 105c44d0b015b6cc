"""Where the CLI finds vaults, identities, values and passwords.

Secrets are read from stdin, a no-echo prompt on the terminal, or a file;
never from argv.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable

from ossl_vault.errors import AccessDenied, OperationError, UsageError
from ossl_vault.format.seal import MAX_VALUE, Identities, check_password
from ossl_vault.format.wrapping import Identity, key_file_identity
from ossl_vault.openssl.proc import OpensslFailed, SecretFds, openssl

SNAKEOIL_KEY = "/etc/ssl/private/ssl-cert-snakeoil.key"


def default_identity_paths() -> list[str]:
    """The user's own identity file, then the Debian snakeoil key."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return [os.path.join(base, "ossl-vault", "identity.pem"), SNAKEOIL_KEY]


ENCRYPTED_PEM = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")
KeyPassphrase = Callable[[str], bytes | None]  # asked with the identity's path


def decrypt_pem(pem: bytes, passphrase: bytes, source: str) -> bytearray:
    """A passphrase-protected PEM private key, decrypted by openssl into memory.

    The passphrase goes on an fd, so openssl never prompts (nor prints its
    prompt into an error line).
    """
    with SecretFds(pem) as (kfd,), SecretFds(passphrase + b"\n") as (pfd,):
        args = ["pkey", "-in", f"/dev/fd/{kfd}", "-passin", f"fd:{pfd}"]
        try:
            return bytearray(openssl(args, pass_fds=[kfd, pfd], what="openssl pkey -passin"))
        except OpensslFailed:
            raise AccessDenied(f"wrong passphrase for identity {source!r}") from None


def _unlocked(identity: Identity, key_passphrase: KeyPassphrase) -> Identity:
    """The identity with an encrypted PEM key file decrypted into memory, once."""
    if not isinstance(identity.key, str):
        return identity
    try:
        with open(identity.key, "rb") as f:
            data = f.read()
    except OSError:
        return identity  # reported where it is used
    if not any(marker in data for marker in ENCRYPTED_PEM):
        return identity
    secret = key_passphrase(identity.key)
    if secret is None:
        raise AccessDenied(
            f"identity {identity.key!r} is encrypted", hint="give --key-passphrase-file FILE"
        )
    return Identity(identity.source, bytes(decrypt_pem(data, secret, identity.key)))


def identity_files(
    given: tuple[str, ...], key_passphrase: KeyPassphrase | None = None
) -> tuple[list[Identity], str]:
    """Identities in lookup order: --identity, $OSSL_VAULT_IDENTITY, default paths.

    With ``key_passphrase``, encrypted PEM keys are decrypted into memory now
    (the agent reads and decrypts them itself).
    """
    env = [p for p in os.environ.get("OSSL_VAULT_IDENTITY", "").split(":") if p]
    explicit = list(given) or env
    paths = explicit or default_identity_paths()
    found = [i for i in (key_file_identity(p, bool(explicit)) for p in paths) if i is not None]
    if key_passphrase is not None:
        found = [_unlocked(i, key_passphrase) for i in found]
    return found, ", ".join(paths)


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


def key_passphrase_source(path: str | None) -> KeyPassphrase:
    """An encrypted identity's passphrase: the first line of ``path``, else asked once per
    identity on a terminal, else None (the identity is then refused, exit 4)."""
    given: dict[str, bytes | None] = {}

    def ask(identity: str) -> bytes | None:
        if identity not in given:
            if path is not None:
                given[identity] = read_line_file(path, "key passphrase")
            elif has_tty():
                given[identity] = prompt(f"passphrase of identity {identity!r}")
            else:
                given[identity] = None
        return given[identity]

    return ask


def identities(
    given: tuple[str, ...],
    passphrase_file: str | None,
    ask: bool,
    key_passphrase: KeyPassphrase | None = None,
) -> Identities:
    """Everything a reader may open wraps with."""
    files, searched = identity_files(given, key_passphrase)

    def passphrase() -> bytes | None:
        return secret_source(passphrase_file, ask, "passphrase")

    return Identities(files, passphrase, searched)


def write_out(path: str, data: bytes) -> None:
    """Write a value to ``--out PATH``; never replaces anything but a regular file.

    A new or regular file (through a symlink: its target) is written 0600
    atomically, so a failure leaves no partial file. An existing FIFO or
    character device (``/dev/stdout``, a named pipe, a terminal) is written
    into as it is: replacing it would hide the value from its reader in a
    new regular file (or, as root, replace a device node). Anything else
    (a directory, a socket, a block device) is refused, exit 2.
    """
    from ossl_vault.storage.files import atomic_write

    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None  # a new file (or a dangling symlink's target)
    except OSError as e:
        raise UsageError(f"cannot write {path!r}: {e.strerror}") from None
    if st is not None and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        _write_into(path, data)
        return
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"--out {path!r} is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UsageError(f"--out {path!r} is not a regular file, a FIFO or a character device")
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        atomic_write(target, data)
    except OSError as e:  # an I/O failure (exit 1), not a usage error
        raise OperationError(f"cannot write {path!r}: {e.strerror}") from None


def _write_into(path: str, data: bytes) -> None:
    """Write into an existing FIFO or character device (blocks until a FIFO has a reader)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)  # no O_CREAT, no O_TRUNC
    except OSError as e:
        raise UsageError(f"cannot write {path!r}: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):  # swapped since the stat
            raise UsageError(f"--out {path!r} changed while it was opened")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as e:
        raise OperationError(f"cannot write {path!r}: {e.strerror}") from None
    finally:
        os.close(fd)
