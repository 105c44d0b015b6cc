"""What every command module of the CLI shares: the context, the error line, common options.

Command modules import this, never :mod:`ossl_vault.cli.main`, which imports
them (lazily) to register them on the group.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from ossl_vault.cli.argv import AUDIT_SKIPPED
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
    """What the group's options chose, and the invocation's vault and audit records."""

    def __init__(self, vault: str, identity: tuple[str, ...], lock_timeout: float | None) -> None:
        super().__init__(vault, identity, lock_timeout)
        self._vault: Vault | None = None
        self.op = "-"
        self.secret = "-"  # noqa: S105 (a secret's name)
        self.version: int | None = None

    def vault(self) -> Vault:
        """The vault of this invocation; its audit records name the command."""
        if self._vault is None:
            ctx = click.get_current_context()
            self.op = "-".join(ctx.command_path.split()[1:]) or "-"
            self.secret = str(ctx.params.get("name") or "-")
            number = ctx.params.get("number")
            self.version = number if isinstance(number, int) else None
            self._vault = Vault(self.vault_dir, self.lock_timeout, self.op)
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

        log = audit.AuditLog(vault.store.root)
        if not log.auto_checkpoint():
            return
        found = audit.signing_identity(vault.store.read_index(), self.identities().files)
        if found is not None:
            with vault.store.locked():
                audit.write_checkpoint(log, *found)

    def identities(self, passphrase_file: str | None = None, ask: bool = False) -> Identities:
        return sources.identities(self.identity, passphrase_file, ask)


pass_ctx = click.make_pass_decorator(Context)


def reader_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options of commands that decrypt: passphrase and per-secret password."""
    f = click.option("--password-file", metavar="FILE", help="Per-secret password (first line).")(f)
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


def split_names(values: tuple[str, ...]) -> list[str] | None:
    names = [n for v in values for n in v.split(",") if n]
    return names or None


def warn_expiring(index: Index) -> None:
    """A warning line per recipient certificate expired or expiring within 30 days."""
    from ossl_vault.ops.sharing import expiring

    for name, days, when in expiring(index):
        state = f"expired on {when}" if days < 0 else f"expires in {days} day(s), on {when}"
        warn(f"certificate of recipient {name!r} {state}")
        click.echo(f"hint: ossl-vault recipient renew {name} NEWCERT", err=True)
