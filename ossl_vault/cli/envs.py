"""What ``exec`` and ``env`` do, without click: secrets read in parallel into variables.

The click commands (:mod:`ossl_vault.cli.scripts`) and the light path
(:mod:`ossl_vault.cli.light`, which answers a plain ``exec`` or ``env`` before
click loads) both call these, so both read, refuse and record alike. The
reads run on :data:`~ossl_vault.ops.read.WORKERS` threads: each waits on its
own openssl children, so the secrets' openssl processes share every core.
"""

from __future__ import annotations

import base64
import os
import re
import sys

from ossl_vault.agent.client import AGENT_ENV
from ossl_vault.errors import UsageError, VaultError
from ossl_vault.ops import sources
from ossl_vault.ops.read import WORKERS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the light path)
if TYPE_CHECKING:
    from ossl_vault.agent.keyring import Keyring

ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_IDENTITY = 64 * 1024


class Where:
    """What the global options chose for a read: the vault, identities, lock timeout."""

    def __init__(self, vault: str, identity: tuple[str, ...], lock_timeout: float | None) -> None:
        self.vault_dir = vault
        self.identity = identity
        self.lock_timeout = lock_timeout


class CommandFailed(VaultError):
    """``exec`` could not start the command: 127 not found, 126 not runnable (as a shell)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def note(message: str) -> None:
    sys.stderr.write(f"ossl-vault: {message}\n")
    sys.stderr.flush()


def build_keyring(
    obj: Where,
    passphrase_file: str | None,
    ask_passphrase: bool,
    key_passphrase_file: str | None,
    identity_stdin: bool = False,
    gpg: bool = True,
    optional: bool = True,
) -> Keyring:
    """Identities read into memory (encrypted PEM keys decrypted), passphrase keys unlocked.

    ``optional``: an encrypted key with no passphrase at hand is skipped, not an error.
    """
    from ossl_vault.agent.keyring import Keyring, load_identities, unlock_vault
    from ossl_vault.ops.vault import Vault

    cached: list[bytes] = []

    def key_passphrase(source: str) -> bytes | None:
        if key_passphrase_file is not None:
            if not cached:
                cached.append(sources.read_line_file(key_passphrase_file, "key passphrase"))
            return cached[0]
        if sources.has_tty():
            return sources.prompt(f"passphrase of identity {source!r}")
        if not optional:
            raise UsageError(
                f"identity {source!r} is encrypted", hint="give --key-passphrase-file FILE"
            )
        if not os.environ.get(AGENT_ENV):  # with an agent, it may well hold that key
            note(f"skipping encrypted identity {source!r} (no --key-passphrase-file)")
        return None

    stdin_key = None
    if identity_stdin:
        stdin_key = sources.read_limited(sys.stdin.buffer, "identity on stdin", MAX_IDENTITY)
    files = load_identities(obj.identity, key_passphrase, stdin_key)
    passphrase = sources.secret_source(passphrase_file, ask_passphrase, "passphrase")
    if passphrase is not None:
        files += unlock_vault(Vault(obj.vault_dir), passphrase)
    return Keyring(files, gpg)


def env_pair(spec: str) -> tuple[str, str]:
    """``VAR=NAME`` or ``NAME`` (VAR: NAME upper-cased, other characters '_')."""
    var, sep, name = spec.partition("=")
    if not sep:
        name = spec
        var = re.sub(r"[^A-Za-z0-9_]", "_", spec).upper()
        var = "_" + var if var[:1].isdigit() else var
    if not ENV_VAR.match(var):
        raise UsageError(f"invalid variable name {var!r}", hint="use [A-Za-z_][A-Za-z0-9_]*")
    return var, name


def read_env_values(
    obj: Where,
    specs: tuple[str, ...],
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_file: str | None,
    op: str,
) -> list[tuple[str, bytes]]:
    """(VAR, value) for each spec, read in parallel; refuses what a variable cannot hold."""
    from concurrent.futures import ThreadPoolExecutor

    from ossl_vault.agent.serve import Operations
    from ossl_vault.ops.vault import Vault
    from ossl_vault.storage.store import Deferred

    pairs = [env_pair(s) for s in specs]
    seen = [v for v, _ in pairs]
    twice = sorted({v for v in seen if seen.count(v) > 1})
    if twice:
        raise UsageError(f"variable {twice[0]!r} is given twice")
    keyring = build_keyring(obj, passphrase_file, ask_passphrase, None)
    password = sources.read_line_file(password_file, "password") if password_file else None
    root, timeout = os.path.abspath(obj.vault_dir), obj.lock_timeout
    records = Deferred()  # no value is released before all are read: one audit write for all

    def vault_of(_fields: object, _op: str) -> Vault:
        vault = Vault(root, timeout, op)
        vault.store.deferred = records
        return vault

    ops = Operations(keyring, vault_of, os.environ.get(AGENT_ENV), password)
    names = list(dict.fromkeys(name for _, name in pairs))
    # a share of the names per worker: through an agent, one request (and one audit
    # write there) a share; without one, each worker reads its share in turn
    shares = [names[i::WORKERS] for i in range(min(WORKERS, len(names)))]
    try:
        with ThreadPoolExecutor(max_workers=len(shares)) as pool:
            results = pool.map(lambda share: ops.read_many(vault_of(None, op), share), shares)
            values = {
                n: base64.b64decode(str(r["value_b64"]))
                for share, result in zip(shares, results, strict=True)
                for n, r in zip(share, result, strict=True)
            }
    except BaseException:
        try:
            records.flush()  # the failures' records (and the reads before them)
        except VaultError:
            pass  # already failing: the first error is the one to report
        raise
    finally:
        keyring.wipe()
    records.flush()
    for var, name in pairs:
        if b"\0" in values[name]:
            raise UsageError(
                f"value of {name!r} holds a NUL byte, which {var} cannot carry",
                hint=f"use 'ossl-vault get {name} --out FILE' instead",
            )
    return [(var, values[name]) for var, name in pairs]


def exec_with(command: tuple[str, ...] | list[str], values: list[tuple[str, bytes]]) -> None:
    """Replace this process by ``command`` with the values in its environment."""
    env = dict(os.environb)
    env.update((var.encode(), value) for var, value in values)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], list(command), env)  # type: ignore[arg-type]  # noqa: S606
    except FileNotFoundError:
        raise CommandFailed(f"command {command[0]!r} not found", 127) from None
    except OSError as e:
        raise CommandFailed(f"cannot run {command[0]!r}: {e.strerror}", 126) from None


def shell_quote(value: bytes) -> bytes:
    """Single quotes, each ' spelled '\\'': bash reads back every byte but NUL."""
    return b"'" + value.replace(b"'", b"'\\''") + b"'"


def export_lines(values: list[tuple[str, bytes]]) -> bytes:
    """``export VAR='value'`` lines, for ``eval "$(ossl-vault env ...)"``."""
    return b"".join(b"export %s=%s\n" % (var.encode(), shell_quote(v)) for var, v in values)
