"""Commands ``init``, ``rotate`` and ``fsck``: making a vault and keeping it sound.

Registered on the main group by :mod:`ossl_vault.cli.main`, imported only when named.
"""

from __future__ import annotations

import os

import click

from ossl_vault.cli.bulk import Progress, bulk_options, passwords_of, summary
from ossl_vault.cli.common import (
    EPILOG,
    Context,
    note,
    pass_ctx,
    reader_options,
)
from ossl_vault.errors import (
    AccessDenied,
    IntegrityError,
    UsageError,
    VaultError,
)
from ossl_vault.keys import loader


@click.command(epilog=EPILOG)
@click.option(
    "--recipient",
    "-r",
    "recipients",
    multiple=True,
    metavar="[NAME=]FILE",
    help="A certificate or public key to encrypt to (repeatable); NAME defaults "
    "to the file name without extension.",
)
@click.option(
    "--audit",
    "audit_mode",
    type=click.Choice(["required", "best-effort"]),
    default="required",
    show_default=True,
    help="required: an operation whose audit record cannot be written fails (as "
    "HashiCorp Vault does); best-effort: it goes ahead without the record.",
)
@click.option(
    "--audit-checkpoints/--no-audit-checkpoints",
    default=None,
    help="After each change, sign an audit checkpoint with the writer's RSA or EC "
    "identity when it is a recipient. Default: on when your identity can sign.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["1", "2"]),
    default="2",
    show_default=True,
    help="Directory format: 2 keeps one file per secret; 1 is the single vault.tsv that "
    "ossl-vault before format 2 reads.",
)
@click.option(
    "--storage",
    type=click.Choice(["dir", "sqlite"]),
    default="dir",
    show_default=True,
    help="dir: record files in the vault directory; sqlite: one SQLite database in it "
    "(also chosen by a vault path 'sqlite:DIR').",
)
@pass_ctx
def init(
    obj: Context,
    recipients: tuple[str, ...],
    audit_mode: str,
    audit_checkpoints: bool | None,
    fmt: str,
    storage: str,
) -> None:
    """Create a vault directory (0700) with its first recipients."""
    pairs = []
    for spec in recipients:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            name = os.path.basename(spec).split(".")[0]
        pairs.append((name, loader.from_file(path)))
    if obj.remote:
        raise UsageError(
            "a remote vault is created by 'ossl-vault remote register'", hint="drop --remote"
        )
    signers = []
    if audit_checkpoints is None:  # on when we can sign; an unusable identity only means off
        try:
            signers = obj.identities().files
        except VaultError:
            signers = []
    vault = obj.vault("sqlite" if storage == "sqlite" else fmt)
    on = vault.init(pairs, audit_mode, audit_checkpoints, signers)
    note(f"created vault '{obj.vault_dir}' with {len(pairs)} recipient(s)")
    if on:
        note("audit checkpoints on: each change is signed by the writer's RSA or EC recipient key")
    else:
        note(
            "audit checkpoints off: no identity here can sign for a recipient, so an unkeyed "
            "hash chain alone protects the log (see 'ossl-vault audit checkpoint')"
        )


@click.command(epilog=EPILOG)
@click.argument("names", nargs=-1)
@bulk_options
@pass_ctx
def rotate(
    obj: Context,
    names: tuple[str, ...],
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_files: tuple[str, ...],
    skip_unreadable: bool,
) -> None:
    """Re-encrypt secrets (all by default) under fresh data keys, as new versions,
    in one commit: all of them or, if one cannot be opened, none."""
    from ossl_vault.ops import bulk

    ids = obj.identities(passphrase_file, ask_passphrase)
    vault = obj.vault()
    bar = Progress("rotate", len(names) or len(vault.store.read_index().versions))
    try:
        result = bulk.rotate(
            vault, list(names) or None, ids, passwords_of(password_files),
            skip_unreadable, bar,
        )  # fmt: skip
    finally:
        bar.close()
    summary("rotate", result, obj.verbose, None, "run it again with their passwords or identities")


@click.command(epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="The findings as one JSON object.")
@reader_options
@pass_ctx
def fsck(
    obj: Context,
    as_json: bool,
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_file: str | None,
) -> None:
    """Check every record's integrity without printing any value."""
    problems = obj.vault().fsck(obj.identities(passphrase_file, ask_passphrase))
    errors = sum(1 for level, _ in problems if level == "error")
    if as_json:
        import json

        found = [{"level": level, "message": message} for level, message in problems]
        click.echo(json.dumps({"ok": not errors, "errors": errors, "problems": found}))
    else:
        for level, message in problems:
            click.echo(f"{level}: {message}", err=True)
    if errors:
        raise IntegrityError(f"{errors} record(s) failed the check")
    unchecked = sum(1 for _, message in problems if "MAC not checked" in message)
    total = sum(len(vs) for vs in obj.vault().store.read_index().versions.values())
    if total and unchecked == total:  # blobs hashed, but no MAC: no assurance to give
        raise AccessDenied(
            f"no record's MAC could be checked ({total} record(s)): no usable identity",
            hint="give --identity with a recipient's key",
        )
    how = f"MACs of {total - unchecked} of {total} record(s) checked"
    if unchecked:
        how += f", {unchecked} not (no usable identity)"
    note(f"vault is consistent: {how}")
