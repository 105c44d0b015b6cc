"""The ``ossl-vault`` command line: thin click commands over :mod:`ossl_vault.ops.vault`.

Only this module prints and exits (and :mod:`ossl_vault.cli.entry`, the console
script, which answers a plain ``get`` through the agent before this loads).
Every error is one line ``ossl-vault: error: ...``, maybe a ``hint: ...``
line, and an exit code from :mod:`ossl_vault.errors`.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import click

from ossl_vault import __version__
from ossl_vault.agent import client
from ossl_vault.cli.common import (
    EPILOG,
    Context,
    check_lock_timeout,
    complete_recipients,
    complete_secret,
    fail,
    internal_message,
    note,
    pass_ctx,
    password_source,
    quiet_option,
    reader_options,
    split_names,
    warn,
    with_globals,
    with_quiet,
)
from ossl_vault.cli.terminal import BINARY_HINT, binary, binary_refusal
from ossl_vault.errors import (
    DENIED,
    FAILED,
    PERMISSION_HINT,
    USAGE,
    UsageError,
    VaultError,
)
from ossl_vault.ops import sources
from ossl_vault.ops.read import read
from ossl_vault.storage import paths

_INVOKED: list[Context] = []  # the invocation's context, for its audit record at exit


# Commands that live in other modules, imported only when named (so `get`
# does not pay for asyncio, shamir-mnemonic or the CMS code).
LAZY_COMMANDS = {
    "agent": "ossl_vault.cli.agent:agent",
    "audit-merge": "ossl_vault.cli.storage:audit_merge",
    "audit": "ossl_vault.cli.audit:audit_cmd",
    "completion": "ossl_vault.cli.shell:completion",
    "cp": "ossl_vault.cli.daily:cp",
    "edit": "ossl_vault.cli.edit:edit",
    "env": "ossl_vault.cli.scripts:env_",
    "exec": "ossl_vault.cli.scripts:exec_",
    "export": "ossl_vault.cli.transfer:export",
    "find": "ossl_vault.cli.daily:find",
    "fsck": "ossl_vault.cli.upkeep:fsck",
    "git-setup": "ossl_vault.cli.storage:git_setup",
    "import": "ossl_vault.cli.transfer:import_",
    "init": "ossl_vault.cli.upkeep:init",
    "list": "ossl_vault.cli.daily:list_",
    "migrate": "ossl_vault.cli.storage:migrate",
    "mv": "ossl_vault.cli.daily:mv",
    "purge": "ossl_vault.cli.daily:purge",
    "recipient": "ossl_vault.cli.recipients:recipient",
    "recovery": "ossl_vault.cli.recovery:recovery_group",
    "rekey": "ossl_vault.cli.recipients:rekey",
    "remote": "ossl_vault.cli.remote:remote_group",
    "rotate": "ossl_vault.cli.upkeep:rotate",
    "serve": "ossl_vault.cli.scripts:serve",
    "server": "ossl_vault.cli.server:server_group",
    "share": "ossl_vault.cli.recipients:share",
    "show": "ossl_vault.cli.daily:show",
    "undelete": "ossl_vault.cli.daily:undelete",
    "unshare": "ossl_vault.cli.recipients:unshare",
}


class LazyGroup(click.Group):
    """A group whose commands in other modules load on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            import importlib

            module, attr = LAZY_COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attr)
        else:
            command = super().get_command(ctx, cmd_name)
        return with_globals(with_quiet(command)) if command is not None else None


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--vault",
    envvar="OSSL_VAULT_DIR",
    default=paths.default_vault,
    show_default="$OSSL_VAULT_DIR or ~/.local/share/ossl-vault",
    metavar="DIR",
    help="The vault directory.",
)
@click.option(
    "--identity",
    "-i",
    multiple=True,
    metavar="FILE",
    help="Private key to read with (repeatable). Default: $OSSL_VAULT_IDENTITY "
    "(colon-separated), then ~/.config/ossl-vault/identity.pem and " + sources.SNAKEOIL_KEY + ".",
)
@click.option(
    "--lock-timeout",
    type=float,
    envvar="OSSL_VAULT_LOCK_TIMEOUT",
    metavar="SECONDS",
    callback=lambda _ctx, _param, value: check_lock_timeout(value),
    help="How long a writer waits for the vault lock: 0 to 86400 (default 60).",
)
@click.option(
    "--remote",
    envvar="OSSL_VAULT_REMOTE",
    metavar="USER@URL",
    help="Run the command on your vault on a key server (see 'ossl-vault remote').",
)
@quiet_option
@click.option("--verbose", "-v", is_flag=True, help="Per-secret lines from bulk commands.")
@click.option(
    "--key-passphrase-file",
    metavar="FILE",
    help="Passphrase of encrypted PEM identities (first line); else asked once on a terminal.",
)
@click.version_option(__version__, prog_name="ossl-vault")
@click.pass_context
def main_group(
    ctx: click.Context,
    vault: str,
    identity: tuple[str, ...],
    lock_timeout: float | None,
    verbose: bool,
    key_passphrase_file: str | None,
    remote: str | None,
) -> None:
    """Keep small secrets encrypted on disk with the openssl command line.

    Values are encrypted with `openssl enc` and each secret's key is wrapped
    for every recipient with `openssl pkeyutl`; docs/format.md tells how to
    recover any secret with openssl alone.
    """
    os.umask(0o077)
    ctx.obj = Context(vault, identity, lock_timeout, verbose, remote)
    ctx.obj.key_passphrase_file = key_passphrase_file
    _INVOKED.append(ctx.obj)


@main_group.command(epilog=EPILOG)
@click.argument("name", shell_complete=complete_secret)
@click.option(
    "--from-file", metavar="FILE", help="Read the value from FILE (else stdin or a prompt)."
)
@click.option("--to", multiple=True, metavar="R[,R...]", shell_complete=complete_recipients,
              help="Only these recipients (repeatable).")  # fmt: skip
@click.option(
    "--meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Unencrypted metadata (owner, url, rotation; repeatable; KEY= removes).",
)
@click.option(
    "--expires",
    metavar="WHEN",
    help="Expiry: a span (90d, 12h, 2w), a date, a UTC time, or 'never'.",
)
@click.option(
    "--password", "ask_password", is_flag=True, help="Add a per-secret password (prompt)."
)
@click.option("--password-file", metavar="FILE", help="Add a per-secret password from FILE.")
@click.option("--allow-empty", is_flag=True, help="Store an empty value (else refused).")
@pass_ctx
def put(
    obj: Context,
    name: str,
    from_file: str | None,
    to: tuple[str, ...],
    ask_password: bool,
    password_file: str | None,
    meta: tuple[str, ...],
    expires: str | None,
    allow_empty: bool,
) -> None:
    """Store a value read from stdin, a prompt or --from-file as a new version of NAME."""
    info: dict[str, str | None] = {}
    when: str | bool | None = False
    if meta or expires is not None:
        from ossl_vault.ops import lifecycle

        info = lifecycle.parse_meta(meta)
        when = False if expires is None else lifecycle.parse_expiry(expires)
    value = sources.read_value(from_file, name)
    if not value and not allow_empty:  # as from cron's </dev/null, or Enter at the prompt
        where = f"file {from_file!r}" if from_file is not None else "the value"
        raise UsageError(f"{where} is empty: nothing stored", hint="give --allow-empty to store it")
    password = sources.secret_source(password_file, ask_password, "password", confirm=True)
    number = obj.vault().put(name, value, split_names(to), password, info, when)
    note(f"stored {name!r} version {number}")


@main_group.command(epilog=EPILOG)
@click.argument("name", shell_complete=complete_secret)
@click.option(
    "--out",
    metavar="FILE",
    help="Write the value to FILE instead of stdout: a new or regular file is replaced "
    "atomically (0600); an existing FIFO or character device (/dev/stdout, a named pipe) "
    "is written into, never replaced; anything else is refused.",
)
@click.option(
    "--field",
    metavar="KEY",
    help="Only field KEY of a 'key: value' document (gopass) or a JSON object.",
)
@click.option("--strict", is_flag=True, help="Refuse an expired secret (exit 3).")
@click.option("--force", is_flag=True, help="Write a binary value to a terminal all the same.")
@click.option("--version", "number", type=click.IntRange(min=1), help="An older version.")
@click.option("--clip", is_flag=True, help="Copy to the clipboard instead (wl-copy, xclip, xsel).")
@click.option("--clip-seconds", type=click.IntRange(min=0), default=45, show_default=True,
              help="Then restore the clipboard's old content (0: never).")  # fmt: skip
@reader_options
@pass_ctx
def get(
    obj: Context,
    name: str,
    out: str | None,
    field: str | None,
    strict: bool,
    force: bool,
    number: int | None,
    clip: bool,
    clip_seconds: int,
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_file: str | None,
) -> None:
    """Print the value of NAME, exactly the stored bytes, after checking its integrity."""
    if clip and out is not None:
        raise click.UsageError("--clip and --out do not go together")
    value = None
    expired = None
    if os.environ.get("OSSL_VAULT_AGENT") and not client.ASKED and not obj.remote:  # agent first
        from ossl_vault.cli.scripts import get_via_agent
        from ossl_vault.ops.vault import expiry

        # the agent does not judge expiry: the index tells, before anything is read
        expired = expiry(obj.vault().store.read_index(), name, strict)
        value = get_via_agent(obj.vault_dir, name, number, password_file)
    if value is None:  # no agent, or it holds no key for this: read it here
        ids = obj.identities(passphrase_file, ask_passphrase)
        vault = obj.vault()
        value = read(vault, name, ids, number, password_source(password_file), strict)
        expired = vault.expired
    if expired:
        warn(f"secret {name!r} expired on {expired}")
    if field is not None:
        from ossl_vault.ops.documents import field_of

        value = field_of(value, field, name)
    if clip:
        from ossl_vault.cli.transfer import clip_value

        clip_value(name, value, clip_seconds)
    elif out is not None:
        sources.write_out(out, value)
    else:
        if not force and sys.stdout.isatty() and binary(value):
            raise UsageError(binary_refusal(name), hint=BINARY_HINT)
        sys.stdout.buffer.write(value)
        sys.stdout.flush()


@main_group.command(epilog=EPILOG)
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["base64", "hex", "password", "raw"]),
    default="base64",
    show_default=True,
    help="How the random bytes are spelled.",
)
@click.option("--bytes", "nbytes", type=int, help="Random bytes (default 32: 256 bits).")
@click.option("--length", type=int, help="Characters for --format password (default: 256 bits).")
@click.option("--symbols", is_flag=True, help="Passwords also use punctuation.")
@click.option("--to", multiple=True, metavar="R[,R...]", help="Only these recipients.")
@click.option("--print", "show", is_flag=True, help="Also print the new value.")
@pass_ctx
def generate(
    obj: Context,
    name: str,
    fmt: str,
    nbytes: int | None,
    length: int | None,
    symbols: bool,
    to: tuple[str, ...],
    show: bool,
) -> None:
    """Store a new uniformly random value (256 bits unless told otherwise)."""
    from ossl_vault.ops.generate import generate as make

    value = make(fmt, nbytes, length, "symbols" if symbols else "alnum")
    number = obj.vault().put(name, value, split_names(to))
    note(f"stored {name!r} version {number} (generated)")
    if show:
        sys.stdout.buffer.write(value + (b"\n" if fmt != "raw" else b""))


@main_group.command(epilog=EPILOG)
@click.argument("name", shell_complete=complete_secret)
@click.option("--keep", "keep_days", type=click.IntRange(0, 36500), default=30,
              show_default=True, metavar="DAYS",
              help="Keep it this long for 'undelete'; then 'purge --due' destroys it.")  # fmt: skip
@pass_ctx
def rm(obj: Context, name: str, keep_days: int) -> None:
    """Mark a secret deleted: it no longer lists or reads; 'undelete' brings it back."""
    from ossl_vault.ops import lifecycle

    after = lifecycle.soft_delete(obj.vault(), name, keep_days)
    note(f"deleted {name!r}: kept until {after} ('ossl-vault undelete {name}' brings it back)")


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the CLI and turn every failure into one line and an exit code.

    Nothing escapes as a Python traceback: an exception the code did not
    expect is reported as an internal error (exit 1), recorded in the audit
    log where it is writable, like any other failure.
    """
    try:
        main_group.main(args=argv, prog_name="ossl-vault", standalone_mode=False)
        for obj in _INVOKED:
            obj.log_outcome("ok")
    except VaultError as e:
        _log_failure(e.exit_code, type(e).__name__)
        fail(e.message, e.hint, e.exit_code)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else "", err=True)
        sys.exit(USAGE)
    except click.UsageError as e:
        message = e.format_message().rstrip(".")
        hint = f"run '{e.ctx.command_path} --help'" if e.ctx else None
        fail(message[:1].lower() + message[1:], hint, USAGE)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _log_failure(FAILED, "Interrupted")
        fail("interrupted", None, FAILED)
    except BrokenPipeError:
        sys.exit(FAILED)
    except PermissionError as e:  # a vault or file of another user's: no traceback either
        _log_failure(DENIED, "PermissionError")
        where = f" on {e.filename!r}" if e.filename else ""
        fail(f"permission denied{where}", PERMISSION_HINT, DENIED)
    except Exception as e:  # a bug: still one line, an exit code and an audit record
        _log_failure(FAILED, type(e).__name__)
        fail(f"internal error: {internal_message(e)}", "this is a bug in ossl-vault", FAILED)
    sys.exit(0)


def _log_failure(code: int, name: str) -> None:
    """The failure's audit record, where the log is writable; the first error wins."""
    for obj in _INVOKED:
        try:
            obj.log_outcome(f"exit={code}:{name}")
        except Exception:  # noqa: S110 (already failing: the first error is the one to report)
            pass
