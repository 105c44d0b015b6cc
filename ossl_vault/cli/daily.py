"""Daily verbs: ``list``, ``find``, ``show``, ``mv``, ``cp``, ``undelete``, ``purge``.

Registered lazily by :mod:`ossl_vault.cli.main`; the logic is in
:mod:`ossl_vault.ops.names` and :mod:`ossl_vault.ops.lifecycle`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from ossl_vault.cli.common import (
    EPILOG,
    Context,
    complete_deleted,
    complete_secret,
    note,
    paint,
    pass_ctx,
    password_source,
    reader_options,
    warn_expiring,
)
from ossl_vault.errors import NotFoundError
from ossl_vault.format.records import gc_paused
from ossl_vault.ops import lifecycle, names


def _json_lines(rows: list[dict[str, object]]) -> None:
    click.echo("".join(json.dumps(row) + "\n" for row in rows), nl=False)


@click.command("list", epilog=EPILOG)
@click.argument("pattern", required=False, metavar="[FOLDER|GLOB]", shell_complete=complete_secret)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--names", "names_only", is_flag=True, help="Only the names, one a line.")
@click.option("--tree", is_flag=True, help="The names as a tree (pass's look).")
@click.option("--exposed-to", metavar="USER", help="Only secrets USER could ever read.")
@click.option(
    "--needs-rotation",
    is_flag=True,
    help="Only secrets whose current value was readable by someone since removed.",
)
@click.option("--expiring", metavar="SPAN", help="Only secrets expiring within SPAN (14d), "
              "or expired.")  # fmt: skip
@click.option("--deleted", is_flag=True, help="Only secrets marked deleted (for undelete).")
@pass_ctx
def list_(
    obj: Context,
    pattern: str | None,
    as_json: bool,
    names_only: bool,
    tree: bool,
    exposed_to: str | None,
    needs_rotation: bool,
    expiring: str | None,
    deleted: bool,
) -> None:
    """List secrets: names, versions, recipients, metadata, dates (nothing is decrypted).

    FOLDER (db or db/) lists it and what is under it; a GLOB ('db/*') is
    matched against whole names. A pattern that matches nothing exits 3.
    """
    if sum((as_json, names_only, tree)) > 1:
        raise click.UsageError("--json, --names and --tree do not go together")
    with gc_paused():  # 10,000 secrets: 100,000 containers, no cycles, then exit
        vault = obj.vault()
        index = vault.store.read_index()
        rows = vault.list(index, deleted)
        warn_expiring(index)
        chosen = set(names.select([str(r["name"]) for r in rows], pattern))
        rows = [r for r in rows if r["name"] in chosen]
        if exposed_to is not None:
            known = set(index.recipients) | {u for r in rows for u in r["ever"]}  # type: ignore[attr-defined]
            if exposed_to not in known:  # a typo, not a reader of nothing (issue 9)
                raise NotFoundError(f"no recipient {exposed_to!r}, now or ever",
                                    hint="'ossl-vault recipient list' shows the names")  # fmt: skip
            rows = [r for r in rows if exposed_to in r["ever"]]  # type: ignore[operator]
        if needs_rotation:
            rows = [r for r in rows if r["needs_rotation"]]
        if expiring is not None:
            rows = lifecycle.expiring(rows, expiring)
        if as_json:
            _json_lines(rows)
        elif names_only:
            click.echo("".join(f"{r['name']}\n" for r in rows), nl=False)
        elif tree:
            _print_tree([str(r["name"]) for r in rows], obj.vault_dir)
        else:
            _print_table(rows)


def _print_table(rows: list[dict[str, object]]) -> None:
    from ossl_vault.cli.table import table as render

    def meta(r: dict[str, object]) -> str:
        pairs = r["meta"]
        assert isinstance(pairs, dict)
        return " ".join(f"{k}={v}" for k, v in sorted(pairs.items()))

    table = [
        [
            r["name"],
            r["version"],
            ",".join(r["recipients"]),  # type: ignore[arg-type]
            "yes" if r["password"] else "",
            ",".join(r["needs_rotation"]) or "",  # type: ignore[arg-type]
            r["updated"],
            r["deleted"] or r["expires"] or "",
            meta(r),
        ]
        for r in rows
    ]
    headers = ["NAME", "VERSION", "RECIPIENTS", "PASSWORD", "SEEN BY REMOVED", "UPDATED",
               "DELETED" if any(r["deleted"] for r in rows) else "EXPIRES", "META"]  # fmt: skip
    click.echo(render(table, headers))


def _print_tree(found: list[str], root: str) -> None:
    lines = [paint(root, "blue", bold=True, err=False)]
    for drawing, part, folder in names.tree(found):
        lines.append(drawing + (paint(part, "blue", bold=True, err=False) if folder else part))
    click.echo("\n".join(lines))


@click.command(epilog=EPILOG)
@click.argument("pattern")
@click.option("--json", "as_json", is_flag=True, help="One JSON string per line.")
@pass_ctx
def find(obj: Context, pattern: str, as_json: bool) -> None:
    """Find secrets whose name holds PATTERN (any case), or matches it as a glob."""
    rows = obj.vault().list()
    found = names.find([str(r["name"]) for r in rows], pattern)
    click.echo("".join((json.dumps(n) if as_json else n) + "\n" for n in found), nl=False)


@click.command(epilog=EPILOG)
@click.argument("name", shell_complete=complete_secret)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@pass_ctx
def show(obj: Context, name: str, as_json: bool) -> None:
    """Show a secret's metadata, versions, recipients and expiry; never its value."""
    info = lifecycle.show(obj.vault(), name)
    if as_json:
        click.echo(json.dumps(info))
        return
    lines = [f"name: {name}"]
    if info["deleted"]:
        lines.append(f"deleted: {info['deleted']} (purge after {info['purge_after']})")
    if info["expires"]:
        lines.append(f"expires: {info['expires']}{' (expired)' if info['expired'] else ''}")
    meta = info["meta"]
    assert isinstance(meta, dict)
    lines += [f"meta {k}: {v}" for k, v in sorted(meta.items())]
    lines.append(f"recipients: {','.join(info['recipients'])}")  # type: ignore[arg-type]
    if info["wanted"] is not None:
        lines.append(f"wanted: {','.join(info['wanted'])}")  # type: ignore[arg-type]
    lines.append(f"exposed to: {','.join(info['exposed'])}")  # type: ignore[arg-type]
    if info["needs_rotation"]:
        lines.append(f"needs rotation: seen by {','.join(info['needs_rotation'])}")  # type: ignore[arg-type]
    for v in info["versions"]:  # type: ignore[attr-defined]
        pw = " password" if v["password"] else ""
        lines.append(f"version {v['version']}: {v['created']} {','.join(v['recipients'])}{pw}")
    click.echo("\n".join(lines))


def two_names(f: Callable[..., Any]) -> Callable[..., Any]:
    """OLD NEW, --force and the reader options: what mv and cp take."""
    f = reader_options(f)
    f = click.option("--force", is_flag=True,
                     help="Replace NEW if it exists (destroying its versions).")(f)  # fmt: skip
    f = click.argument("new")(f)
    return click.argument("old", shell_complete=complete_secret)(f)


@click.command(epilog=EPILOG)
@two_names
@pass_ctx
def mv(obj: Context, old: str, new: str, force: bool, passphrase_file: str | None,
       ask_passphrase: bool, password_file: str | None) -> None:  # fmt: skip
    """Rename secret OLD to NEW, with its versions, ledger, metadata and expiry."""
    ids = obj.identities(passphrase_file, ask_passphrase)
    number = names.move(obj.vault(), old, new, ids, force)
    note(f"moved {old!r} to {new!r} (version {number})")


@click.command(epilog=EPILOG)
@two_names
@pass_ctx
def cp(obj: Context, old: str, new: str, force: bool, passphrase_file: str | None,
       ask_passphrase: bool, password_file: str | None) -> None:  # fmt: skip
    """Copy the value of OLD to a new secret NEW, under a fresh data key."""
    ids = obj.identities(passphrase_file, ask_passphrase)
    number = names.copy(obj.vault(), old, new, ids, password_source(password_file), force)
    note(f"copied {old!r} to {new!r} (version {number}, a fresh data key)")


@click.command(epilog=EPILOG)
@click.argument("name", shell_complete=complete_deleted)
@pass_ctx
def undelete(obj: Context, name: str) -> None:
    """Bring back a secret that 'rm' marked deleted."""
    number = lifecycle.undelete(obj.vault(), name)
    note(f"undeleted {name!r} (version {number})")


@click.command(epilog=EPILOG)
@click.argument("names_", nargs=-1, metavar="[NAME]...", shell_complete=complete_deleted)
@click.option("--due", is_flag=True, help="Also every deleted secret whose time to keep is over.")
@pass_ctx
def purge(obj: Context, names_: tuple[str, ...], due: bool) -> None:
    """Destroy deleted secrets for good: every version, wrap and ciphertext."""
    if not names_ and not due:
        raise click.UsageError("name a deleted secret, or give --due")
    done = lifecycle.purge(obj.vault(), list(names_), due)
    for name, count in done:
        note(f"purged {name!r} ({count} version(s))")
    if not done:
        note("nothing to purge")
