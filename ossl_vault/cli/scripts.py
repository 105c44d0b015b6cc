"""Commands for scripts: ``serve --stdio``, ``exec`` and ``env``, and the agent client read.

Registered on the main group by :mod:`ossl_vault.cli.main`. This module is imported
by every ``ossl-vault`` run, so it imports only click and the standard library
at the top; the protocol, the agent and asyncio load when a command needs them.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING

import click

from ossl_vault.agent.client import AGENT_ENV
from ossl_vault.cli.common import EPILOG, Context, note, pass_ctx, reader_options
from ossl_vault.errors import UsageError, VaultError
from ossl_vault.ops import sources

if TYPE_CHECKING:
    from ossl_vault.agent.keyring import Keyring

ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_IDENTITY = 64 * 1024


class CommandFailed(VaultError):
    """``exec`` could not start the command: 127 not found, 126 not runnable (as a shell)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def get_via_agent(
    vault_dir: str, name: str, number: int | None, password_file: str | None
) -> bytes | None:
    """The value through ``$OSSL_VAULT_AGENT``; None when there is none or it cannot help."""
    path = os.environ.get(AGENT_ENV)
    if not path:
        return None
    from ossl_vault.agent.client import remote_get

    password = sources.read_line_file(password_file, "password") if password_file else None
    return remote_get(path, vault_dir, name, number, password)


def build_keyring(
    obj: Context,
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


def key_passphrase_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--key-passphrase-file",
        metavar="FILE",
        help="Passphrase of encrypted PEM identities (first line); else a prompt.",
    )(f)


@click.command(epilog=EPILOG)
@click.option("--stdio", is_flag=True, help="Requests on stdin, replies on stdout (required).")
@click.option("--jobs", type=click.IntRange(1, 64), help="Requests run at once (default 2/core).")
@reader_options
@key_passphrase_option
@pass_ctx
def serve(
    obj: Context,
    stdio: bool,
    jobs: int | None,
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_file: str | None,
    key_passphrase_file: str | None,
) -> None:
    """Answer JSON requests, one a line, on stdin and stdout (docs/protocol.md).

    For bash: coproc VAULT { ossl-vault serve --stdio; }, or source
    scripts/ossl-vault.bash and call vault_get NAME. Reads go through the
    agent ($OSSL_VAULT_AGENT) when one runs.
    """
    if not stdio:
        raise UsageError("give --stdio (the one transport so far)")
    import asyncio

    from ossl_vault.agent.protocol import WORKERS, serve_stdio
    from ossl_vault.agent.serve import Operations
    from ossl_vault.ops.vault import Vault

    keyring = build_keyring(obj, passphrase_file, ask_passphrase, key_passphrase_file)
    password = sources.read_line_file(password_file, "password") if password_file else None
    root, timeout = os.path.abspath(obj.vault_dir), obj.lock_timeout

    def vault_of(_fields: dict[str, object], op: str) -> Vault:
        return Vault(root, timeout, f"serve:{op}")

    ops = Operations(keyring, vault_of, os.environ.get(AGENT_ENV) or None, password)
    try:
        asyncio.run(serve_stdio(ops, jobs or WORKERS))
    finally:
        keyring.wipe()


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
    obj: Context,
    specs: tuple[str, ...],
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_file: str | None,
    op: str,
) -> list[tuple[str, bytes]]:
    """(VAR, value) for each spec, read in parallel; refuses what a variable cannot hold."""
    from concurrent.futures import ThreadPoolExecutor

    from ossl_vault.agent.protocol import WORKERS, unb64
    from ossl_vault.agent.serve import Operations
    from ossl_vault.ops.vault import Vault

    pairs = [env_pair(s) for s in specs]
    seen = [v for v, _ in pairs]
    twice = sorted({v for v in seen if seen.count(v) > 1})
    if twice:
        raise UsageError(f"variable {twice[0]!r} is given twice")
    keyring = build_keyring(obj, passphrase_file, ask_passphrase, None)
    password = sources.read_line_file(password_file, "password") if password_file else None
    root, timeout = os.path.abspath(obj.vault_dir), obj.lock_timeout
    ops = Operations(
        keyring, lambda _f, _op: Vault(root, timeout, op), os.environ.get(AGENT_ENV), password
    )
    names = list(dict.fromkeys(name for _, name in pairs))
    try:
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(names))) as pool:
            results = pool.map(lambda n: ops("get", {"name": n}), names)
            values = {
                n: unb64(str(r["value_b64"]), "value_b64")
                for n, r in zip(names, results, strict=True)
            }
    finally:
        keyring.wipe()
    for var, name in pairs:
        if b"\0" in values[name]:
            raise UsageError(
                f"value of {name!r} holds a NUL byte, which {var} cannot carry",
                hint=f"use 'ossl-vault get {name} --out FILE' instead",
            )
    return [(var, values[name]) for var, name in pairs]


@click.command("exec", epilog=EPILOG, context_settings={"allow_interspersed_args": False})
@click.option("--env", "specs", multiple=True, required=True, metavar="VAR=NAME",
              help="Put secret NAME in variable VAR (repeatable).")  # fmt: skip
@reader_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_ctx
def exec_(
    obj: Context,
    specs: tuple[str, ...],
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_file: str | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND with secrets in its environment; its exit code is ours.

    ossl-vault exec --env PGPASSWORD=db/password -- psql -h db. The values are
    in COMMAND's environment only (readable by its own uid and root through
    /proc), never on a command line. 127: COMMAND not found; 126: not runnable.
    """
    values = read_env_values(obj, specs, passphrase_file, ask_passphrase, password_file, "exec")
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


@click.command("env", epilog=EPILOG)
@click.argument("specs", nargs=-1, required=True, metavar="[VAR=]NAME...")
@reader_options
@pass_ctx
def env_(
    obj: Context,
    specs: tuple[str, ...],
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_file: str | None,
) -> None:
    """Print 'export VAR=...' lines for eval "$(ossl-vault env NAME...)".

    VAR defaults to NAME upper-cased with other characters as '_' (db/password:
    DB_PASSWORD). Every byte but NUL survives the quoting; a value holding NUL
    is refused (exit 2) and nothing is printed.
    """
    values = read_env_values(obj, specs, passphrase_file, ask_passphrase, password_file, "env")
    out = b"".join(b"export %s=%s\n" % (var.encode(), shell_quote(v)) for var, v in values)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
