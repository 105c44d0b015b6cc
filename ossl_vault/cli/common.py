"""What every command module of the CLI shares: the context, the error line, common options.

Command modules import this, never :mod:`ossl_vault.cli.main`, which imports
them (lazily) to register them on the group.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from ossl_vault.cli.argv import AUDIT_SKIPPED, MAX_LOCK_TIMEOUT
from ossl_vault.cli.argv import internal_message as internal_message  # main.py's import
from ossl_vault.cli.envs import Where
from ossl_vault.errors import EXIT_CODES
from ossl_vault.format.records import Index
from ossl_vault.format.seal import Identities
from ossl_vault.ops import sources
from ossl_vault.ops.sources import password_source as password_source  # the commands' import
from ossl_vault.ops.vault import Vault

EPILOG = "Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + "."


def fail(message: str, hint: str | None, code: int) -> NoReturn:
    click.echo(f"ossl-vault: error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    sys.exit(code)


def check_lock_timeout(value: float | None) -> float | None:
    """A finite number of seconds, 0 to a day: -1 would wait forever, nan breaks the lock."""
    if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_LOCK_TIMEOUT):
        raise click.BadParameter(f"'{value:g}' is not a number of seconds from 0 to 86400")
    return value


QUIET: list[bool] = []  # set by -q/--quiet, given anywhere on the command line


def note(message: str) -> None:
    """An informational line on stderr; -q/--quiet silences it (not warnings or errors)."""
    if not QUIET:
        click.echo(f"ossl-vault: {message}", err=True)


def warn(message: str) -> None:
    click.echo(f"ossl-vault: {paint('warning', 'yellow')}: {message}", err=True)


def color_wanted(err: bool = False) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    stream = sys.stderr if err else sys.stdout
    return not os.environ.get("NO_COLOR") and stream.isatty()


def paint(text: str, color: str, bold: bool = False, err: bool = True) -> str:
    return click.style(text, fg=color, bold=bold) if color_wanted(err) else text


def _set_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not QUIET:
        QUIET.append(True)


def _quiet() -> click.Option:
    return click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_quiet, help="Print no informational messages.")  # fmt: skip


def quiet_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """-q/--quiet on the group (before the command)."""
    f.__click_params__ = [*getattr(f, "__click_params__", []), _quiet()]  # type: ignore[attr-defined]
    return f


def with_quiet(command: click.Command) -> click.Command:
    """Give a command (and a group's commands) -q/--quiet, once: every command takes it."""
    if not any(p.name == "quiet" for p in command.params):
        command.params.append(_quiet())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            with_quiet(sub)
    return command


def _names_of(ctx: click.Context, recipients: bool, deleted: bool = False) -> list[str]:
    """Names from the vault the command line names, for shell completion; [] on any error."""
    root = ctx.find_root()
    path = root.params.get("vault") or os.environ.get("OSSL_VAULT_DIR")
    try:
        if not path:
            from ossl_vault.storage import paths

            path = paths.default_vault()
        index = Vault(str(path)).store.read_index()
    except Exception:  # completion must never print an error into the shell
        return []
    if recipients:
        return sorted(index.recipients)
    gone = {n for n, s in index.state.items() if s.deleted}
    return sorted(n for n in index.versions if (n in gone) == deleted)


def complete_secret(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """shell_complete: the vault's secret names starting with what was typed."""
    return [n for n in _names_of(ctx, False) if n.startswith(incomplete)]


def complete_deleted(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """shell_complete: the names of secrets marked deleted (undelete, purge)."""
    return [n for n in _names_of(ctx, False, True) if n.startswith(incomplete)]


def complete_recipients(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """shell_complete: recipient names (after the last comma of R[,R...])."""
    head, _, tail = incomplete.rpartition(",")
    prefix = head + "," if head else ""
    return [prefix + n for n in _names_of(ctx, True) if n.startswith(tail)]


class Context(Where):
    """What the global options chose (given before or after the command), and the
    invocation's vault and audit records."""

    def __init__(
        self,
        vault: str,
        identity: tuple[str, ...],
        lock_timeout: float | None,
        verbose: bool = False,
        remote: str | None = None,
    ) -> None:
        super().__init__(vault, identity, lock_timeout)
        self.remote = remote  # USER@URL: the vault commands run on the key server
        self.verbose = verbose
        self.key_passphrase_file: str | None = None
        self._key_passphrase: sources.KeyPassphrase | None = None
        self._vault: Vault | None = None
        self.op = "-"
        self.secret = "-"  # noqa: S105 (a secret's name)
        self.version: int | None = None

    def vault(self, fmt: str = "2") -> Vault:
        """The vault of this invocation; its audit records name the command.

        ``fmt`` is the format a new vault gets (``init``): "1", "2" or "sqlite".
        """
        if self._vault is None:
            ctx = click.get_current_context()
            self.op = "-".join(ctx.command_path.split()[1:]) or "-"
            self.secret = str(ctx.params.get("name") or "-")
            number = ctx.params.get("number")
            self.version = number if isinstance(number, int) else None
            if self.remote:
                from ossl_vault.remote.vault import remote_vault

                self._vault = remote_vault(self.remote, self.op, self.lock_timeout)
                return self._vault
            self._vault = Vault(self.vault_dir, self.lock_timeout, self.op, fmt)
            self._vault.store.check_audit_log()
        return self._vault

    def log_read(self, keys: list[str]) -> None:
        """Record a read before its result is released (fails closed in 'required' mode)."""
        vault = self.vault()
        vault.store.log(vault.event(self.secret, vault.opened_version, keys))

    def log_outcome(self, result: str) -> None:
        """At exit: one record for a command that recorded nothing itself."""
        vault = self._vault
        if vault is None or not vault.store.exists():
            return  # no vault: nowhere to log (a missing audit log is refused by store.log)
        attempted = vault.store.logged + vault.store.audit_skipped
        if not attempted or result != "ok":
            event = vault.event(self.secret, self.version)
            event.result = result
            vault.store.log(event)
        if vault.store.changes and result == "ok":
            self.auto_checkpoint(vault)
        if vault.store.audit_skipped:  # best-effort mode went ahead without them
            warn(AUDIT_SKIPPED.format(vault.store.audit_skipped))

    def auto_checkpoint(self, vault: Vault) -> None:
        """Sign a checkpoint after a change, when the vault asks and we can."""
        from ossl_vault.storage import audit

        if self.remote:
            return  # the server's log is chained per user; checkpoints are the local vault's
        log = audit.AuditLog(vault.store.root)
        if not log.auto_checkpoint():
            return
        files, _ = sources.identity_files(self.identity)  # never asks: a write is done
        found = audit.signing_identity(vault.store.read_index([]), files)
        if found is not None:
            with vault.store.locked():
                audit.write_checkpoint(log, *found)

    def identities(self, passphrase_file: str | None = None, ask: bool = False) -> Identities:
        if self.remote:
            from ossl_vault.remote.vault import remote_identities

            return remote_identities(self.remote)
        return sources.identities(self.identity, passphrase_file, ask, self.key_passphrase)

    def key_passphrase(self, path: str) -> bytes | None:
        """An encrypted identity's passphrase: --key-passphrase-file, else asked once."""
        if self._key_passphrase is None:  # --key-passphrase-file may come after the command
            self._key_passphrase = sources.key_passphrase_source(self.key_passphrase_file)
        return self._key_passphrase(path)


pass_ctx = click.make_pass_decorator(Context)


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A global option given after the command: it changes the invocation's Context."""
    obj = ctx.find_object(Context)
    if obj is None or value in (None, (), False):
        return value
    if param.name == "vault":
        obj.vault_dir = value
    elif param.name == "identity":
        obj.identity = (*obj.identity, *value)
    elif param.name == "lock_timeout":
        obj.lock_timeout = check_lock_timeout(value)  # after the command too: 0..86400
    elif param.name == "remote":
        obj.remote = value
    elif param.name == "verbose":
        obj.verbose = True
    elif param.name == "key_passphrase_file":
        obj.key_passphrase_file = value
    return value


def global_params() -> list[click.Parameter]:
    """The global options, for a command's own parameters: they work after it too."""
    return [
        click.Option(["--vault"], metavar="DIR", expose_value=False, callback=_set_global,
                     help="The vault directory (global option)."),
        click.Option(["--identity", "-i"], multiple=True, metavar="FILE", expose_value=False,
                     callback=_set_global, help="Private key to read with (global option)."),
        click.Option(["--lock-timeout"], type=float, metavar="SECONDS", expose_value=False,
                     callback=_set_global, help="Writer's wait for the lock (global option)."),
        click.Option(["--remote"], metavar="USER@URL", expose_value=False, callback=_set_global,
                     help="Run the command on a key server (global option)."),
        click.Option(["--verbose", "-v"], is_flag=True, default=False, expose_value=False,
                     callback=_set_global, help="Per-secret lines (global option)."),
        click.Option(["--key-passphrase-file"], metavar="FILE", expose_value=False,
                     callback=_set_global,
                     help="Passphrase of encrypted PEM identities (first line); else asked "
                     "once on a terminal (global option)."),
    ]  # fmt: skip


def with_globals(command: click.Command) -> click.Command:
    """Give ``command`` (and a group's subcommands) the global options, once."""
    if getattr(command, "_with_globals", False):
        return command
    taken = {o for p in command.params for o in getattr(p, "opts", [])}
    command.params.extend(
        p
        for p in global_params()
        if not taken & set(p.opts)  # type: ignore[attr-defined]
    )
    command._with_globals = True  # type: ignore[attr-defined]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            with_globals(sub)
    return command


def passphrase_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--passphrase and --passphrase-file: a passphrase recipient's passphrase."""
    f = click.option(
        "--passphrase",
        "ask_passphrase",
        is_flag=True,
        help="Prompt for a passphrase recipient's passphrase.",
    )(f)
    f = click.option(
        "--passphrase-file",
        metavar="FILE",
        help="Passphrase of a passphrase recipient (first line).",
    )(f)
    return f


def reader_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options of commands that decrypt: passphrase and per-secret password."""
    f = click.option("--password-file", metavar="FILE", help="Per-secret password (first line).")(f)
    return passphrase_options(f)


def split_names(values: tuple[str, ...]) -> list[str] | None:
    names = [n for v in values for n in v.split(",") if n]
    return names or None


def warn_expiring(index: Index, only: set[str] | None = None) -> None:
    """A warning line per recipient certificate expired or expiring within 30 days."""
    from ossl_vault.ops.sharing import expiring

    for name, days, when in expiring(index):
        if only is not None and name not in only:
            continue
        state = f"expired on {when}" if days < 0 else f"expires in {days} day(s), on {when}"
        warn(f"certificate of recipient {name!r} {state}")
        click.echo(f"hint: ossl-vault recipient renew {name} NEWCERT", err=True)
