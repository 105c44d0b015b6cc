"""``ossl-vault audit``: show, verify and checkpoint the hash-chained audit log."""

from __future__ import annotations

import json

import click

from ossl_vault.cli.common import EPILOG, Context, note, pass_ctx
from ossl_vault.errors import AccessDenied, IntegrityError, NotFoundError, UsageError, VaultError
from ossl_vault.format.fields import is_time
from ossl_vault.openssl.crypto import sha256_hex
from ossl_vault.storage import audit, landing
from ossl_vault.storage.store import Store

NOT_LANDED = "did-not-land"  # shown for a change whose writer stopped before vault.tsv


@click.command("audit", epilog=EPILOG)
@click.argument("args", nargs=-1, metavar="[NAME | verify | checkpoint]")
@click.option("--since", metavar="TIME", help="Records at or after TIME (RFC 3339, UTC).")
@click.option("--op", metavar="OP", help="Only this operation (get, put, recipient-add, ...).")
@click.option("--actor", metavar="USER", help="Only records by this user name or uid.")
@click.option("--result", type=click.Choice(["ok", "failed"]), help="Only successes or failures.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_ctx
def audit_cmd(
    obj: Context,
    args: tuple[str, ...],
    since: str | None,
    op: str | None,
    actor: str | None,
    result: str | None,
    as_json: bool,
) -> None:
    """Show the audit log (all of it, or of secret NAME); `audit verify` checks
    the hash chain, the last change and the signed checkpoint; `audit checkpoint`
    signs the log's count and head with your RSA or EC identity."""
    if len(args) > 1:
        raise UsageError("give at most one of NAME, 'verify' or 'checkpoint'")
    if since is not None and not is_time(since, prefix=True):
        raise UsageError(
            f"invalid time {since!r}", hint="give UTC as YYYY-MM-DDTHH:MM:SSZ (or a prefix of it)"
        )
    if obj.remote:  # the server's log of this account, checked here
        from ossl_vault.cli.remote import show_audit

        if args in (("verify",), ("checkpoint",)) or since or op or actor or result:
            raise UsageError("with --remote, audit takes only NAME and --json")
        show_audit(obj.remote, args[0] if args else None, as_json)
        return
    vault = obj.vault()
    if not vault.store.exists():
        raise NotFoundError(
            f"no vault at '{vault.store.root}'",
            hint="create one with 'ossl-vault init' or pass --vault DIR",
        )
    log = audit.AuditLog(vault.store.root)
    if args == ("verify",):
        verify_log(vault.store, log, as_json)
        return
    if args == ("checkpoint",):
        index = vault.store.read_index([])  # the recipients: who may sign
        found = audit.signing_identity(index, obj.identities().files)
        if found is None:
            raise AccessDenied(
                "no identity can sign a checkpoint",
                hint="give --identity with the RSA or EC key of a recipient",
            )
        with vault.store.locked():
            count = audit.write_checkpoint(log, *found)
        note(f"checkpoint signed over {count} record(s)")
        return
    records = log.records()
    lost = _unlanded(vault.store, records)
    name = args[0] if args else None
    if name is not None and name not in vault.store.names():
        if not any(r.secret == name for r in records):  # a typo, not an empty history
            raise NotFoundError(f"no secret {name!r} in the vault or its audit log")
    rows = [
        r if str(r.seq) not in lost else r._replace(result=NOT_LANDED)
        for r in records
        if (name is None or r.secret == name)
        and (since is None or r.time >= since)
        and (op is None or r.op == op)
        and (actor is None or actor in (r.user, r.uid))
        and (result is None or (r.result == "ok" and str(r.seq) not in lost) == (result == "ok"))
    ]
    if as_json:
        click.echo("".join(json.dumps(r.as_dict()) + "\n" for r in rows), nl=False)
        return
    from ossl_vault.cli.table import table as render

    table = [[r.seq, r.time, f"{r.user}@{r.host}", r.op, r.secret, r.version, r.keys, r.result]
             for r in rows]  # fmt: skip
    headers = ["SEQ", "TIME", "ACTOR", "OP", "SECRET", "VERSION", "KEYS", "RESULT"]
    click.echo(render(table, headers))


def _unlanded(store: Store, records: list[audit.Record]) -> set[str]:
    """SEQs of the change records whose change never landed (docs/format.md section 7)."""
    fields = [r.line.split("\t") for r in records]
    pending = landing.pending_indexes(store.root)
    try:
        state = store.audit_state()
    except VaultError:
        return set()
    if isinstance(state, dict):
        return landing.unlanded_v2(fields, state, pending)
    return landing.unlanded(landing.changes_of(fields), sha256_hex(state), pending)


def verify_log(store: Store, log: audit.AuditLog, as_json: bool = False) -> None:
    """`audit verify`: the chain, the last change, the checkpoint; warn what is unsigned."""
    state = store.audit_state()

    def check(*args: object) -> bool:  # the recipients are read only if there is a checkpoint
        return audit.signature_checker(store.read_index([]))(*args)  # type: ignore[no-any-return, operator]

    verdict = audit.verify(log, state, check)
    if as_json:
        click.echo(json.dumps({"ok": not verdict.problems, "records": verdict.records,
                               "checkpoint": verdict.checkpoint or None,
                               "problems": verdict.problems, "notes": verdict.notes,
                               "unsigned": verdict.unsigned}))  # fmt: skip
    if verdict.problems:
        raise IntegrityError(
            verdict.problems[0], hint="the log or the vault was changed outside ossl-vault"
        )
    for text in verdict.notes:
        note(f"note: {text}")
    if verdict.unsigned:
        first = verdict.records - verdict.unsigned + 1
        span = (
            f"record {first}"
            if first == verdict.records
            else f"records {first} to {verdict.records}"
        )
        where = (
            "after the last signed checkpoint"
            if verdict.checkpoint
            else "and no checkpoint signs them"
        )
        click.echo(
            f"ossl-vault: warning: {span} {where}: anyone who can write the vault could "
            "have rewritten them and the hash chain with them (docs/format.md section 7)",
            err=True,
        )
        click.echo("hint: sign one with 'ossl-vault audit checkpoint'", err=True)
    covered = f", checkpoint covers {verdict.checkpoint}" if verdict.checkpoint else ""
    note(f"audit log holds: {verdict.records} record(s){covered}")
