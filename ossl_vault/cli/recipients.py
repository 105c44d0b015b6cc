"""Commands about who can read: ``recipient add|list|rm|renew``, ``share``,
``unshare`` and ``rekey``. Registered on the main group by :mod:`ossl_vault.cli.main`."""

from __future__ import annotations

import json

import click

from ossl_vault.cli.bulk import Progress, bulk_options, passwords_of, summary
from ossl_vault.cli.common import (
    EPILOG,
    Context,
    complete_recipients,
    note,
    pass_ctx,
    reader_options,
    warn_expiring,
)
from ossl_vault.errors import UsageError
from ossl_vault.format.seal import Identities, PasswordSource
from ossl_vault.keys import loader
from ossl_vault.ops import sharing, sources
from ossl_vault.ops.vault import Vault


@click.group()
def recipient() -> None:
    """Manage who can read the vault's secrets."""


@recipient.command("add", epilog=EPILOG)
@click.argument("name")
@click.argument("source", required=False)
@click.option("--ssh-pubkey", metavar="FILE", help="An OpenSSH public key (RSA or ECDSA).")
@click.option("--github", metavar="USER", help="The SSH keys of a GitHub user (NAME, NAME-2, ...).")
@click.option("--gpg", "gpg_key", metavar="KEYID", help="A key of your GnuPG keyring.")
@click.option("--passphrase", "ask_passphrase", is_flag=True, help="A passphrase (prompt).")
@click.option("--passphrase-file", metavar="FILE", help="A passphrase from FILE (first line).")
@click.option(
    "--default/--no-default",
    default=True,
    show_default=True,
    help="Whether new secrets are shared with it.",
)
@pass_ctx
def recipient_add(
    obj: Context,
    name: str,
    source: str | None,
    ssh_pubkey: str | None,
    github: str | None,
    gpg_key: str | None,
    ask_passphrase: bool,
    passphrase_file: str | None,
    default: bool,
) -> None:
    """Add recipient NAME (an email is a good name) from SOURCE, a certificate or
    public key file (RSA, EC P-256/P-384, X25519, or an OpenSSH RSA/ECDSA .pub),
    or from one of the options."""
    chosen = [
        x is not None for x in (source, ssh_pubkey, github, gpg_key, passphrase_file or None)
    ] + [ask_passphrase]
    if sum(chosen) != 1:
        raise UsageError(
            "give exactly one of SOURCE, --ssh-pubkey, --github, --gpg, --passphrase(-file)"
        )
    vault = obj.vault()
    if github is not None:
        added = sharing.add_github(vault, name, github, default)
    elif gpg_key is not None:
        added = [sharing.add_gpg(vault, name, gpg_key, default)]
    elif source is not None or ssh_pubkey is not None:
        key = loader.from_file(source or ssh_pubkey or "")
        added = [sharing.add_recipient(vault, name, key, default)]
    else:
        secret = sources.secret_source(passphrase_file, True, "passphrase", confirm=True)
        assert secret is not None
        added = [sharing.add_passphrase(vault, name, secret, default)]
    for r in added:
        note(f"added recipient {r.name!r} ({r.kind}, {r.fingerprint[:16]})")
    warn_expiring(vault.store.read_index(), {r.name for r in added})  # said now, not later


@recipient.command("set", epilog=EPILOG)
@click.argument("name", shell_complete=complete_recipients)
@click.option("--default/--no-default", "default", required=True,
              help="Whether new secrets are shared with it.")  # fmt: skip
@pass_ctx
def recipient_set(obj: Context, name: str, default: bool) -> None:
    """Change a recipient's flags (recorded in the audit log as a configuration change)."""
    changed = sharing.set_default(obj.vault(), name, default)
    state = "default" if default else "not default"
    note(f"recipient {name!r} is {'now' if changed else 'already'} {state}")


@recipient.command("list", epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@pass_ctx
def recipient_list(obj: Context, as_json: bool) -> None:
    """List the recipients, with certificate expiry warnings."""
    vault = obj.vault()
    index = vault.store.read_index()
    warn_expiring(index)
    rows = [
        {
            "name": r.name,
            "kind": r.kind,
            "fingerprint": r.fingerprint,
            "added": r.added,
            "default": r.default,
            "cert": r.cert is not None,
            "expires": sharing.expiry(r),
        }
        for r in sorted(index.recipients.values(), key=lambda r: r.name)
    ]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    from ossl_vault.cli.table import table as render

    table = [
        [r["name"], r["kind"], str(r["fingerprint"])[:16], r["added"],
         "yes" if r["default"] else "no", r["expires"] or ""]
        for r in rows
    ]  # fmt: skip
    headers = ["NAME", "KIND", "FINGERPRINT", "ADDED", "DEFAULT", "CERT EXPIRES"]
    click.echo(render(table, headers))


@recipient.command("rm", epilog=EPILOG)
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete secrets that would have no reader left.")
@click.option("--keep-keys", is_flag=True, help="Only drop its wraps (no fresh data keys).")
@bulk_options
@pass_ctx
def recipient_rm(
    obj: Context,
    name: str,
    force: bool,
    keep_keys: bool,
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_files: tuple[str, ...],
    skip_unreadable: bool,
) -> None:
    """Remove a recipient from every secret, re-encrypting each under a fresh key,
    in one commit: if a secret cannot be opened, nothing changes (or, with
    --skip-unreadable, those keep it and it stays a recipient)."""
    ids = obj.identities(passphrase_file, ask_passphrase)
    vault = obj.vault()
    index = vault.store.read_index()
    bar = Progress("recipient rm", sum(name in vs[-1].recipients for vs in index.versions.values()))
    try:
        result = sharing.remove_recipient(
            vault, name, ids, force, keep_keys, passwords_of(password_files),
            skip_unreadable, bar,
        )  # fmt: skip
    finally:
        bar.close()
    summary("recipient rm", result, obj.verbose)
    if result.skipped:
        note(
            f"left to do: {name!r} is still a recipient and can read {len(result.skipped)} "
            "secret(s): run it again with their passwords or identities"
        )
    else:
        how = "dropped its wraps from" if keep_keys else "re-encrypted"
        note(f"removed recipient {name!r}; {how} {len(result.changed)} secret(s)")
    if result.changed:
        click.echo(
            f"ossl-vault: warning: {name!r} could read the current value of "
            f"{len(result.changed)} secret(s): change them at their source "
            "(ossl-vault list --needs-rotation)",
            err=True,
        )


@recipient.command("renew", epilog=EPILOG)
@click.argument("name")
@click.argument("newcert")
@reader_options
@pass_ctx
def recipient_renew(
    obj: Context,
    name: str,
    newcert: str,
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_file: str | None,
) -> None:
    """Give recipient NAME a renewed certificate or key and re-wrap every secret
    it reads (the identities must open them: e.g. --identity OLD-KEY)."""
    ids = obj.identities(passphrase_file, ask_passphrase)
    done = sharing.renew(obj.vault(), name, loader.from_file(newcert), ids)
    note(f"renewed recipient {name!r}; re-wrapped {len(done)} secret(s)")


@click.command(epilog=EPILOG)
@click.argument("name")
@click.argument("users", nargs=-1, required=True)
@reader_options
@pass_ctx
def share(
    obj: Context,
    name: str,
    users: tuple[str, ...],
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_file: str | None,
) -> None:
    """Let recipients USERS read secret NAME (you must be able to read it)."""
    ids = obj.identities(passphrase_file, ask_passphrase)
    added = sharing.share(obj.vault(), name, list(users), ids)
    note(f"shared {name!r} with {', '.join(added) or 'nobody new'}")


@click.command(epilog=EPILOG)
@click.argument("name")
@click.argument("users", nargs=-1, required=True)
@bulk_options
@pass_ctx
def unshare(
    obj: Context,
    name: str,
    users: tuple[str, ...],
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_files: tuple[str, ...],
    skip_unreadable: bool,
) -> None:
    """Stop USERS reading secret NAME: re-encrypts it under a fresh data key."""
    ids = obj.identities(passphrase_file, ask_passphrase)
    gone = sharing.unshare(obj.vault(), name, list(users), ids, passwords_of(password_files))
    if not gone:
        note(f"{name!r} was not shared with {', '.join(users)}")
        return
    note(f"re-encrypted {name!r} without {', '.join(gone)}")
    click.echo(
        f"ossl-vault: warning: {', '.join(repr(u) for u in gone)} could read the current "
        f"value of {name!r}: change it at its source, then 'ossl-vault put {name}'",
        err=True,
    )


@click.command(epilog=EPILOG)
@bulk_options
@pass_ctx
def rekey(
    obj: Context,
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_files: tuple[str, ...],
    skip_unreadable: bool,
) -> None:
    """Re-wrap every secret for its wanted recipients (its own list, else the
    defaults), in one commit; only secrets whose recipients differ are touched."""
    vault = obj.vault()
    ids = obj.identities(passphrase_file, ask_passphrase)
    run_rekey(obj, vault, ids, passwords_of(password_files), skip_unreadable)


def run_rekey(
    obj: Context, vault: Vault, ids: Identities, passwords: PasswordSource, skip: bool
) -> None:
    """rekey with a progress bar and its summary (``recovery combine --rekey`` too)."""
    index = vault.store.read_index()
    todo = sum(set(vs[-1].recipients) != set(sharing.wanted(index, n))
               for n, vs in index.versions.items())  # fmt: skip
    bar = Progress("rekey", todo)
    try:
        result = sharing.rekey(vault, ids, passwords, skip, bar)
    finally:
        bar.close()
    summary("rekey", result, obj.verbose, len(index.versions),
            "run it again with their passwords or identities")  # fmt: skip
