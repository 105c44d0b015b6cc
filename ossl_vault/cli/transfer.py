"""Commands ``export`` and ``import`` (docs/transfer.md); registered by :mod:`ossl_vault.cli.main`.

Import reports every bad entry on its own error line, then imports nothing
(``--atomic``, the default) or the good entries (``--no-atomic``); either
way the exit code says that some entries were bad.
"""

from __future__ import annotations

import json
import sys

import click

from ossl_vault.cli.bulk import Progress, bulk_options, many_reader_options, passwords_of
from ossl_vault.cli.common import (
    EPILOG,
    Context,
    note,
    pass_ctx,
    split_names,
)
from ossl_vault.errors import AccessDenied, IntegrityError, UsageError, VaultError
from ossl_vault.format.seal import Identities, PasswordSource
from ossl_vault.ops.sources import read_limited, write_out
from ossl_vault.ops.transfer import plain as transfer_formats
from ossl_vault.ops.transfer import sealed as transfer
from ossl_vault.ops.transfer.plain import Entry
from ossl_vault.ops.vault import Vault

MAX_INPUT = 512 * 1024 * 1024


def _warn(message: str) -> None:
    click.echo(f"ossl-vault: warning: {message}", err=True)


def _emit(data: bytes, out: str | None, binary: bool) -> None:
    """Write to ``--out FILE`` (0600, atomic) or stdout (never binary to a terminal)."""
    if out is not None:
        write_out(out, data)
        return
    if binary and sys.stdout.isatty():
        raise UsageError(
            "refusing to write binary CMS to a terminal", hint="use --out FILE or --pem"
        )
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def _values(
    obj: Context, vault: Vault, names: list[str], ids: Identities,
    passwords: PasswordSource, skip: bool,
) -> dict[str, bytes]:  # fmt: skip
    """Each value, or none: a secret that cannot be opened stops the export before any
    value goes out, naming every such secret (``skip``: they are left out, and said).
    Each read is recorded in the audit log before the values are released."""
    from ossl_vault.errors import AccessDenied, PasswordRefused
    from ossl_vault.ops.bulk import blocking

    values, opened, blocked = {}, {}, []
    bar = Progress("export", len(names))
    try:
        for name in names:
            try:
                values[name] = vault.get(name, ids, None, passwords)
                opened[name] = (vault.opened_version, vault.opened_with)
            except PasswordRefused:
                blocked.append((name, "wrong password"))
            except AccessDenied as e:
                why = "needs its password" if "needs its password" in e.message else None
                blocked.append((name, why or "no usable identity"))
            bar(name, "read")
    finally:
        bar.close()
    if blocked and not skip:
        raise blocking(blocked)
    for name, why in blocked:
        note(f"skipped {name!r}: {why}")
    for name, (number, fpr) in opened.items():
        vault.store.log(vault.event(name, number, [fpr] if fpr else []))
    if obj.verbose:
        for name in values:
            note(f"{name!r}: exported")
    return values


@click.command("export", epilog=EPILOG)
@click.argument("names", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every secret of the vault.")
@click.option("--to", "cert", metavar="CERT", help="The recipient's certificate (or public "
              "key, for --bundle).")  # fmt: skip
@click.option("--bundle", is_flag=True, help="Every kept version, re-wrapped for --to, with "
              "the audit trail: to move secrets to another vault.")  # fmt: skip
@click.option("--pem", is_flag=True, help="CMS in PEM instead of DER.")
@click.option("--plaintext", is_flag=True, help="Write the values unencrypted (warns).")
@click.option("--format", "fmt", type=click.Choice(["json", "env"]), default="json",
              show_default=True, help="Layout of --plaintext.")  # fmt: skip
@click.option("--out", metavar="FILE", help="Write to FILE (0600) instead of stdout.")
@bulk_options
@pass_ctx
def export(
    obj: Context,
    names: tuple[str, ...],
    everything: bool,
    cert: str | None,
    bundle: bool,
    pem: bool,
    plaintext: bool,
    fmt: str,
    out: str | None,
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_files: tuple[str, ...],
    skip_unreadable: bool,
) -> None:
    """Export secrets NAMES: CMS AuthEnvelopedData for --to CERT (opens with
    'openssl cms -decrypt'), a --bundle for another vault, or --plaintext."""
    if bool(names) == everything:
        raise UsageError("give secret NAMES or --all")
    if plaintext and (cert or bundle or pem):
        raise UsageError("--plaintext does not combine with --to, --bundle or --pem")
    if not plaintext and cert is None:
        raise UsageError(
            "say whom to export for with --to CERT",
            hint="or --plaintext to write the values unencrypted",
        )
    if bundle and pem:
        raise UsageError("--pem applies to CMS exports, not --bundle")
    vault = obj.vault()
    wanted = [str(row["name"]) for row in vault.list()] if everything else list(names)
    if not wanted:
        raise UsageError("the vault holds no secrets")
    ids = obj.identities(passphrase_file, ask_passphrase)
    if bundle:
        assert cert is not None
        data, notes = transfer.export_bundle(vault, wanted, ids, cert)
        for name in wanted:
            vault.store.log(vault.event(name))
        for line in notes:
            _warn(line)
        _emit(data, out, binary=False)
        note(f"exported {len(wanted)} secret(s) as a bundle")
        return
    values = _values(obj, vault, wanted, ids, passwords_of(password_files), skip_unreadable)
    if plaintext:
        render = transfer_formats.render_env if fmt == "env" else transfer_formats.render_json
        data = render(values)
        _warn(f"writing {len(values)} secret value(s) unencrypted")
        _emit(data, out, binary=False)
        return
    assert cert is not None
    _emit(
        transfer.cms_encrypt(transfer_formats.pack_values(values), cert, pem), out, binary=not pem
    )
    note(f"exported {len(values)} secret(s) as CMS for {cert!r}")


def _read_input(path: str, what: str) -> bytes:
    """A file's bytes, or stdin for ``-``."""
    if path == "-":
        return read_limited(sys.stdin.buffer, f"{what} on stdin", MAX_INPUT)
    try:
        with open(path, "rb") as f:
            return read_limited(f, f"{what} {path!r}", MAX_INPUT)
    except FileNotFoundError:
        raise UsageError(f"no such file {path!r}") from None
    except IsADirectoryError:
        raise UsageError(f"{path!r} is a directory") from None
    except OSError as e:
        raise UsageError(f"cannot read {path!r}: {e.strerror}") from None


def _summary(vault: Vault, entries: list[Entry], as_json: bool) -> str:
    """The table (NAME, SOURCE, ACTION: new, update or error, BYTES), or JSON lines."""
    existing = set(vault.store.names())
    rows = []
    for e in entries:
        action = "error" if e.error else ("update" if e.name in existing else "new")
        rows.append([e.name, e.source, action, None if e.error else len(e.value)])
        existing.add(e.name)  # a later version of the same secret updates it
    if as_json:
        keys = ("name", "source", "action", "bytes")
        return "\n".join(json.dumps(dict(zip(keys, row, strict=True))) for row in rows)
    from ossl_vault.cli.table import table as render

    table = [[*row[:3], "-" if row[3] is None else str(row[3])] for row in rows]
    return render(table, ["NAME", "SOURCE", "ACTION", "BYTES"])


def _error_class(bad: list[Entry]) -> type[VaultError]:
    """Exit 5 if any entry failed an integrity check, else 4 if any was denied, else 2."""
    for kind in (IntegrityError, AccessDenied):
        if any(isinstance(e.error, kind) for e in bad):
            return kind
    return UsageError


@click.command("import", epilog=EPILOG)
@click.option("--bundle", metavar="FILE", help="A bundle made by 'export --bundle' ('-': stdin).")
@click.option("--cms", metavar="FILE", help="A CMS file made by 'export --to' or 'openssl cms'.")
@click.option("--pass", "pass_dir", metavar="DIR", help="A pass password store (gpg).")
@click.option("--env", "env_file", metavar="FILE", help="A .env file of KEY=VALUE lines.")
@click.option("--json-file", metavar="FILE", help="A JSON object of name -> string.")
@click.option("--json", "as_json", is_flag=True, help="The summary as JSON lines.")
@click.option("--name", metavar="NAME", help="The secret name of a CMS file holding one value.")
@click.option("--prefix", default="", metavar="PREFIX", help="Put every name under PREFIX "
              "(e.g. 'prod/').")  # fmt: skip
@click.option("--to", multiple=True, metavar="R[,R...]", help="Only these recipients.")
@click.option("--chomp", is_flag=True, help="Drop one trailing newline of each pass value.")
@click.option("--dry-run", is_flag=True, help="Check and show the summary; change nothing.")
@click.option("--atomic/--no-atomic", default=True, show_default=True,
              help="Import nothing if any entry is bad, or import the good ones.")  # fmt: skip
@click.option("--audit-out", metavar="FILE", help="Save a bundle's audit trail to FILE.")
@many_reader_options
@pass_ctx
def import_(
    obj: Context,
    bundle: str | None,
    cms: str | None,
    pass_dir: str | None,
    env_file: str | None,
    json_file: str | None,
    as_json: bool,
    name: str | None,
    prefix: str,
    to: tuple[str, ...],
    chomp: bool,
    dry_run: bool,
    atomic: bool,
    audit_out: str | None,
    passphrase_file: str | None,
    ask_passphrase: bool,
    password_files: tuple[str, ...],
) -> None:
    """Import secrets from a bundle, a CMS file, a pass store, a .env or a JSON file."""
    given = [x for x in (bundle, cms, pass_dir, env_file, json_file) if x is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of --bundle, --cms, --pass, --env, --json-file")
    if name is not None and cms is None:
        raise UsageError("--name applies to --cms only")
    if audit_out is not None and bundle is None:
        raise UsageError("--audit-out applies to --bundle only")
    if chomp and pass_dir is None:
        raise UsageError("--chomp applies to --pass only")
    vault = obj.vault()
    vault.store.read_index([])  # a missing vault is reported before anything is decrypted
    trail: list[str] = []
    if bundle is not None:
        ids = obj.identities(passphrase_file, ask_passphrase)
        data = _read_input(bundle, "bundle")
        entries, trail = transfer.read_bundle(
            data, bundle, ids, passwords_of(password_files), prefix
        )
    elif cms is not None:
        ids = obj.identities(passphrase_file, ask_passphrase)
        entries = transfer.read_cms(_read_input(cms, "CMS file"), cms, ids, name, prefix)
    elif pass_dir is not None:
        entries = transfer_formats.read_pass(pass_dir, prefix, chomp)
    elif env_file is not None:
        entries = transfer_formats.read_env(_read_input(env_file, ".env file"), env_file, prefix)
    else:
        assert json_file is not None
        entries = transfer_formats.read_json(_read_input(json_file, "JSON file"), json_file,
                                             prefix)  # fmt: skip
    _finish(obj, vault, entries, trail, split_names(to), dry_run, atomic, audit_out, as_json)


def _finish(obj: Context, vault: Vault, entries: list[Entry], trail: list[str],
            to: list[str] | None, dry_run: bool, atomic: bool, audit_out: str | None,
            as_json: bool = False) -> None:  # fmt: skip
    """Report, store (unless dry or refused) and exit with the right code."""
    bad = [e for e in entries if e.error is not None]
    good = [e for e in entries if e.error is None]
    if not entries:
        raise UsageError("nothing to import: the source holds no entries")
    click.echo(_summary(vault, entries, as_json))
    for e in bad:
        assert e.error is not None
        click.echo(f"ossl-vault: error: {e.error.message}", err=True)
    secrets = len({e.name for e in good})
    if dry_run:
        note(f"dry run: {secrets} secret(s) would be imported; nothing was changed")
    elif bad and atomic:
        note("nothing was imported")
    else:
        bar = Progress("import", len(good))
        try:
            transfer.store_all(vault, good, to, bar)
        finally:
            bar.close()
        if audit_out is not None:
            write_out(audit_out, "".join(line + "\n" for line in trail).encode("ascii"))
        where = obj.remote or obj.vault_dir
        note(f"imported {len(good)} value(s) of {secrets} secret(s) into '{where}'")
    if bad:
        count = f"{len(bad)} bad entr{'y' if len(bad) == 1 else 'ies'}"
        hint = "fix them, or import the good entries with --no-atomic"
        raise _error_class(bad)(count, hint if atomic and not dry_run else None)


def clip_value(name: str, value: bytes, seconds: int) -> None:
    """``get --clip``: copy the value to the clipboard and say so on stderr."""
    from ossl_vault.cli import clipboard

    tool = clipboard.copy(value, seconds)
    later = f"; its old content comes back in {seconds} s" if seconds else ""
    note(f"copied {name!r} to the clipboard ({tool}){later}")
