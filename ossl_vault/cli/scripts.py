"""Commands for scripts: ``serve --stdio``, ``exec`` and ``env``, and the agent client read.

Registered on the main group by :mod:`ossl_vault.cli.main`. ``exec`` and ``env``
are thin click commands over :mod:`ossl_vault.cli.envs`, which the light path
(:mod:`ossl_vault.cli.light`) calls too; the protocol, the agent and asyncio
load when a command needs them.
"""

from __future__ import annotations

import os
import sys

import click

from ossl_vault.agent.client import AGENT_ENV
from ossl_vault.cli.common import EPILOG, Context, pass_ctx, reader_options
from ossl_vault.cli.envs import build_keyring, exec_with, export_lines, read_env_values
from ossl_vault.errors import UsageError
from ossl_vault.ops import sources

__all__ = ["build_keyring", "env_", "exec_", "get_via_agent", "key_passphrase_option", "serve"]


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


def local_only(obj: Context, command: str) -> None:
    """Refuse ``--remote`` for a command that reads a local vault only (not the server's)."""
    if getattr(obj, "remote", None):
        raise UsageError(
            f"'{command}' reads a local vault only, not one given with --remote",
            hint="read remote secrets with 'ossl-vault --remote USER@URL get NAME'",
        )


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
    local_only(obj, "serve")
    import asyncio

    from ossl_vault.agent.protocol import serve_stdio
    from ossl_vault.agent.serve import Operations
    from ossl_vault.ops.read import WORKERS
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
    local_only(obj, "exec")
    values = read_env_values(obj, specs, passphrase_file, ask_passphrase, password_file, "exec")
    exec_with(command, values)


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
    local_only(obj, "env")
    values = read_env_values(obj, specs, passphrase_file, ask_passphrase, password_file, "env")
    sys.stdout.buffer.write(export_lines(values))
    sys.stdout.flush()
