"""Commands about where and how a vault is stored: ``migrate``, ``git-setup``, ``audit-merge``."""

from __future__ import annotations

import click

from ossl_vault.cli.common import EPILOG, Context, note, pass_ctx


@click.command(epilog=EPILOG)
@click.option("--dry-run", is_flag=True, help="Say what would be written; change nothing.")
@pass_ctx
def migrate(obj: Context, dry_run: bool) -> None:
    """Convert a format-1 vault (one vault.tsv) to format 2 (one file per secret).

    Atomic: a crash leaves the format-1 vault as it was. Values, keys and MACs
    are not touched; the audit log records one line per file written.
    """
    vault = obj.vault()
    files = vault.migrate(dry_run)
    secrets = len(files) - 1
    if dry_run:
        for path in files:
            click.echo(path)
        note(f"would write recipients.tsv and {secrets} secret file(s), then remove vault.tsv")
        return
    note(f"migrated '{obj.vault_dir}' to format 2: {secrets} secret file(s)")


@click.command("git-setup", epilog=EPILOG)
@pass_ctx
def git_setup(obj: Context) -> None:
    """Set up the git repository holding the vault: ignore files, and a merge driver
    that joins two clones' audit logs (run it in every clone; docs/teams.md)."""
    import shlex
    import sys

    from ossl_vault.ops.gitsetup import git_setup as setup

    vault = obj.vault()
    vault.store.read_index([])  # a vault must be there
    command = f"{shlex.quote(sys.executable)} -m ossl_vault audit-merge %O %A %B"
    for line in setup(vault.store.root, command):
        note(line)


@click.command("audit-merge", hidden=True)
@click.argument("base", type=click.Path(dir_okay=False))
@click.argument("ours", type=click.Path(dir_okay=False))
@click.argument("theirs", type=click.Path(dir_okay=False))
def audit_merge(base: str, ours: str, theirs: str) -> None:
    """git's merge driver for audit.log: BASE OURS THEIRS, the result into OURS."""
    from pathlib import Path

    from ossl_vault.storage.auditmerge import MergeRefused, merge_logs
    from ossl_vault.storage.files import atomic_write

    texts = [Path(p).read_bytes().decode("ascii", "surrogateescape") for p in (base, ours, theirs)]
    try:
        merged = merge_logs(*texts)
    except MergeRefused as e:
        click.echo(f"ossl-vault: audit-merge: {e}", err=True)
        raise SystemExit(1) from None  # git leaves the file in conflict
    atomic_write(Path(ours), merged.encode("ascii", "surrogateescape"))
