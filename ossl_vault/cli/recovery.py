"""``recovery split|combine|rotate|status``: the Shamir (SLIP-39) recovery quorum.

Registered on the main group by :mod:`ossl_vault.cli.main`; docs/recovery.md is the
user's guide and docs/format.md section 4.5 the bytes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ossl_vault.cli.bulk import Progress
from ossl_vault.cli.common import (
    EPILOG,
    Context,
    note,
    pass_ctx,
    password_source,
)
from ossl_vault.errors import AccessDenied, NotFoundError, OperationError, UsageError, VaultError
from ossl_vault.format.fields import check_recipient_name
from ossl_vault.format.seal import Identities
from ossl_vault.keys import loader
from ossl_vault.ops import recovery, share_files, sources
from ossl_vault.ops.recovery import RecoveryKey


@click.group()
def recovery_group() -> None:
    """A recovery key split into SLIP-39 shares: any K of N rebuild it."""


_OUTPUT_HELP = {
    "shares": "How many shares to make (N, at most 16; default: one per --to-cert).",
    "threshold": "How many shares rebuild the key (K).",
    "out-dir": "Write each share to its own 0600 file in DIR instead of printing them.",
    "to-cert": "Encrypt a share to this person's certificate (repeatable; one share each), "
    "as DIR/NAME.share.pem that 'openssl cms -decrypt' opens. Needs --out-dir.",
}


def output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Where new shares go: stdout (once), --out-dir files, or --to-cert CMS files."""
    h = _OUTPUT_HELP
    f = click.option("--to-cert", multiple=True, metavar="NAME=CERT", help=h["to-cert"])(f)
    f = click.option("--out-dir", metavar="DIR", help=h["out-dir"])(f)
    f = click.option("--threshold", "-k", type=int, required=True, help=h["threshold"])(f)
    return click.option("--shares", "-n", "count", type=int, help=h["shares"])(f)


def identity_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """A passphrase recipient's passphrase, for reading the secrets to re-wrap."""
    f = click.option("--passphrase", "ask_passphrase", is_flag=True, help="Prompt for one.")(f)
    text = "Passphrase of a passphrase recipient (first line)."
    return click.option("--passphrase-file", metavar="FILE", help=text)(f)


class Outputs:
    """The shares of one split and where they go; files are written before the commit."""

    def __init__(
        self, count: int | None, threshold: int, out_dir: str | None, to_cert: tuple[str, ...]
    ) -> None:
        self.certs: list[tuple[str, str]] = []
        for spec in to_cert:
            name, sep, path = spec.partition("=")
            if not sep or not path:
                raise UsageError(f"--to-cert {spec!r} is not NAME=CERT")
            check_recipient_name(name)
            if any(n == name for n, _ in self.certs):
                raise UsageError(f"--to-cert names {name!r} twice")
            self.certs.append((name, path))
        if self.certs and count is not None and count != len(self.certs):
            raise UsageError(f"--shares {count} but {len(self.certs)} --to-cert")
        if count is None and not self.certs:
            raise UsageError("give --shares N (or one --to-cert per share)")
        if self.certs and out_dir is None:
            raise UsageError("--to-cert needs --out-dir DIR for the encrypted shares")
        self.count = count if count is not None else len(self.certs)
        self.threshold = threshold
        recovery.check_counts(threshold, self.count)
        for _, path in self.certs:
            if not Path(path).is_file():
                raise UsageError(f"no such certificate file {path!r}")
        self.paths: list[Path] = []
        if out_dir is not None:
            names = (
                [f"{name}.share.pem" for name, _ in self.certs]
                if self.certs
                else [f"recovery-share-{i}-of-{self.count}.txt" for i in range(1, self.count + 1)]
            )
            self.paths = share_files.prepare_files(out_dir, names)
        self.texts: list[str] = []
        self.printed = False

    def make(self, rk: RecoveryKey) -> None:
        """Split the key; write the files as NAME.partial (encrypted to each cert with --to-cert).

        A file keeps its .partial name until the vault holds the key: a split
        killed before its commit leaves only .partial files, which rebuild
        nothing (their key-check is not the vault's, 'recovery status' shows).
        """
        mnemonics = recovery.make_shares(rk, self.threshold, self.count)
        self.texts = [
            recovery.share_text(m, i, self.count, self.threshold, rk.fingerprint)
            for i, m in enumerate(mnemonics, start=1)
        ]
        if not self.paths:
            return
        data = [t.encode() for t in self.texts]
        if self.certs:
            data = [
                share_files.encrypt_to_cert(d, c)
                for d, (_, c) in zip(data, self.certs, strict=True)
            ]
        share_files.write_files(dict(zip(self.partials, data, strict=True)))

    @property
    def partials(self) -> list[Path]:
        return [p.with_name(p.name + share_files.PARTIAL) for p in self.paths]

    def undo(self) -> None:
        share_files.remove_files(self.partials)

    def print_shares(self) -> None:
        """Stdout mode, before the commit: a vault must never hold a key whose shares
        were not delivered (a full disk or a closed pipe stops the split here)."""
        if self.paths or self.printed:
            return
        try:
            sys.stdout.write("\n".join(self.texts))
            sys.stdout.flush()
        except OSError as e:
            raise OperationError(
                f"cannot print the shares: {e.strerror or e}; the vault is unchanged"
            ) from None
        self.printed = True

    def deliver(self) -> None:
        """After the commit: name the files (renamed into place now), or the printed shares."""
        if self.paths:
            share_files.finish_files(dict(zip(self.partials, self.paths, strict=True)))
            how = "encrypted to each certificate, " if self.certs else ""
            note(f"wrote {self.count} share(s), {how}to {', '.join(str(p) for p in self.paths)}")
        else:
            note(
                f"the {self.count} shares above are shown once and kept nowhere: "
                "give each to its holder now"
            )
        note(f"any {self.threshold} of the {self.count} shares rebuild the recovery key")


def commit_with(outputs: Outputs, rk: RecoveryKey, action: Callable[[], object]) -> object:
    """Shares made and delivered (or written as .partial files), then the commit."""
    outputs.make(rk)
    try:
        result = action()
    except VaultError as e:
        outputs.undo()
        if outputs.printed:
            raise type(e)(
                e.message, hint="the shares printed above rebuild nothing: discard them"
            ) from None
        raise
    except BaseException:
        outputs.undo()
        raise
    outputs.deliver()
    return result


@recovery_group.command("split", epilog=EPILOG)
@output_options
@identity_options
@click.option(
    "--skip-unreadable",
    is_flag=True,
    help="Leave out secrets the identities cannot open (default: refuse).",
)
@pass_ctx
def split(
    obj: Context,
    count: int | None,
    threshold: int,
    out_dir: str | None,
    to_cert: tuple[str, ...],
    passphrase_file: str | None,
    ask_passphrase: bool,
    skip_unreadable: bool,
) -> None:
    """Make a recovery key, add it as a recipient of every secret (and of later
    ones), and give out N SLIP-39 shares, any K of which rebuild it. The
    identities (the host key) must open every secret."""
    vault = obj.vault()
    existing = recovery.find(vault.store.read_index())
    if existing is not None:
        raise UsageError(
            "this vault already has a recovery key",
            hint="make new shares with 'ossl-vault recovery rotate'",
        )
    outputs = Outputs(count, threshold, out_dir, to_cert)
    ids = obj.identities(passphrase_file, ask_passphrase)
    rk = recovery.new_key()
    bar = Progress("recovery split", len(vault.store.read_index().versions))
    try:
        added = commit_with(
            outputs,
            rk,
            lambda: recovery.attach(vault, rk, ids, not skip_unreadable, bar, outputs.print_shares),
        )
    finally:
        bar.close()
    assert isinstance(added, recovery.Added)
    note(
        f"added recipient {recovery.NAME!r} (key-check {rk.fingerprint[:16]}) "
        f"to {len(added.secrets)} secret(s)"
    )
    if added.skipped:
        click.echo(
            f"ossl-vault: warning: {len(added.skipped)} secret(s) left out (not readable here): "
            + ", ".join(added.skipped),
            err=True,
        )


def read_shares(files: tuple[str, ...], ask: bool) -> list[str]:
    """Mnemonics from files ('-': stdin), else prompted without echo until enough."""
    if files:
        out: list[str] = []
        for path in files:
            data = (
                sources.read_limited(sys.stdin.buffer, "stdin")
                if path == "-"
                else sources.read_value_file(path)
            )
            try:
                found = recovery.parse_shares(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise UsageError(f"share file {path!r} is not text") from None
            if not found:
                raise UsageError(f"share file {path!r} holds no share")
            out += found
        return out
    if not ask:
        raise UsageError("give the shares with --share-file FILE (repeatable), or at a prompt")
    out = []
    need = 1
    while len(set(out)) < need:
        answer = sources.prompt(f"recovery share {len(set(out)) + 1}").decode("utf-8", "replace")
        got = recovery.parse_shares(answer)
        if not got:
            raise UsageError("no share given")
        if not out:
            need = recovery.threshold_of(got[0])
        out += got
    return out


def combined(obj: Context, files: tuple[str, ...], ask: bool = True) -> RecoveryKey:
    """The vault's recovery key rebuilt from shares (and checked against the vault)."""
    return recovery.recover(obj.vault(), read_shares(files, ask))


@recovery_group.command("combine", epilog=EPILOG)
@click.option(
    "--share-file",
    multiple=True,
    metavar="FILE",
    help="A file of shares, one per line, '#' lines ignored (repeatable; '-' is stdin). "
    "Without it, the shares are asked for without echo.",
)
@click.option("--get", "name", metavar="NAME", help="Print the value of secret NAME.")
@click.option("--version", "number", type=click.IntRange(min=1), help="With --get: this version.")
@click.option("--out", metavar="FILE", help="With --get: write the value to FILE (0600).")
@click.option("--password-file", metavar="FILE", help="Per-secret password (first line).")
@click.option(
    "--add-recipient",
    nargs=2,
    metavar="NAME CERT",
    help="Add a new host or person from a certificate or public key, and wrap every "
    "secret the recovery key opens for it.",
)
@click.option(
    "--default/--no-default",
    default=True,
    show_default=True,
    help="With --add-recipient: whether new secrets are shared with it.",
)
@click.option("--rekey", "do_rekey", is_flag=True, help="Run 'rekey' with the recovery key.")
@click.option(
    "--print-key",
    is_flag=True,
    help="Print the recovery key (64 hex digits) for scripts/ossl-vault-recover "
    "--recovery-key-file.",
)
@click.option("--check", "do_check", is_flag=True, help="Only check the shares.")
@pass_ctx
def combine(
    obj: Context,
    share_file: tuple[str, ...],
    name: str | None,
    number: int | None,
    out: str | None,
    password_file: str | None,
    add_recipient: tuple[str, str] | None,
    default: bool,
    do_rekey: bool,
    print_key: bool,
    do_check: bool,
) -> None:
    """Rebuild the recovery key from K shares, check it against the vault, then
    --get a secret, --add-recipient a new host or person, --rekey, --print-key or --check."""
    actions = [name is not None, bool(add_recipient), do_rekey, print_key, do_check]
    if sum(actions) != 1:
        raise UsageError(
            "give exactly one of --get, --add-recipient, --rekey, --print-key, --check"
        )
    if (number is not None or out is not None) and name is None:
        raise UsageError("--version and --out go with --get")
    key = loader.from_file(add_recipient[1]) if add_recipient else None
    vault = obj.vault()
    rk = combined(obj, share_file)
    ids = Identities([rk.identity(), *obj.identities().files], gpg=False)
    if name is not None:
        value = vault.get(name, ids, number, password_source(password_file))
        obj.log_read([vault.opened_with] if vault.opened_with else [])
        if out is not None:
            sources.write_out(out, value)
        else:
            sys.stdout.buffer.write(value)
            sys.stdout.flush()
    elif add_recipient:
        assert key is not None
        bar = Progress("add recipient", len(vault.store.read_index().versions))
        try:
            added = recovery.add_everywhere(vault, add_recipient[0], key, ids, default, False, bar)
        finally:
            bar.close()
        note(
            f"added recipient {added.recipient.name!r} ({added.recipient.kind}, "
            f"{added.recipient.fingerprint[:16]}); wrapped {len(added.secrets)} secret(s) for it"
        )
        if added.skipped:
            click.echo(
                f"ossl-vault: warning: the recovery key does not open {len(added.skipped)} "
                "secret(s), left out: " + ", ".join(added.skipped),
                err=True,
            )
    elif do_rekey:
        from ossl_vault.cli.recipients import run_rekey

        run_rekey(obj, vault, ids, password_source(password_file), False)
    elif print_key:
        obj.log_read([rk.fingerprint])
        click.echo(rk.key.hex())
    else:
        note(f"the shares rebuild this vault's recovery key (key-check {rk.fingerprint[:16]})")


@recovery_group.command("rotate", epilog=EPILOG)
@output_options
@click.option(
    "--old-share-file",
    multiple=True,
    metavar="FILE",
    help="Shares of the current recovery key (repeatable; '-' is stdin).",
)
@click.option(
    "--ask-old-shares", is_flag=True, help="Prompt for shares of the current recovery key."
)
@identity_options
@pass_ctx
def rotate(
    obj: Context,
    count: int | None,
    threshold: int,
    out_dir: str | None,
    to_cert: tuple[str, ...],
    old_share_file: tuple[str, ...],
    ask_old_shares: bool,
    passphrase_file: str | None,
    ask_passphrase: bool,
) -> None:
    """Make a new recovery key and new shares; the old shares open nothing
    written from now on (older versions keep their wraps). Needs the old shares,
    or identities that open every secret the recovery key reads."""
    vault = obj.vault()
    if recovery.find(vault.store.read_index()) is None:
        raise NotFoundError(
            "this vault has no recovery key to rotate",
            hint="make one with 'ossl-vault recovery split'",
        )
    outputs = Outputs(count, threshold, out_dir, to_cert)
    ids = obj.identities(passphrase_file, ask_passphrase)
    if old_share_file or ask_old_shares:
        ids.files.insert(0, combined(obj, old_share_file).identity())
    rk = recovery.new_key()

    def action() -> list[str]:
        try:
            return recovery.replace_key(vault, rk, ids, outputs.print_shares)
        except AccessDenied as e:
            raise AccessDenied(
                e.message,
                hint="give the old shares (--old-share-file, --ask-old-shares) or an "
                "--identity that opens every secret",
            ) from None

    done = commit_with(outputs, rk, action)
    assert isinstance(done, list)
    note(
        f"rotated the recovery key (key-check {rk.fingerprint[:16]}); "
        f"re-wrapped {len(done)} secret(s); the old shares open nothing written from now on"
    )


@recovery_group.command("status", epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@pass_ctx
def status(obj: Context, as_json: bool) -> None:
    """Show the recovery key's check value and the secrets it does not open."""
    index = obj.vault().store.read_index()
    r = recovery.find(index)
    if r is None:
        raise NotFoundError("this vault has no recovery key", hint="ossl-vault recovery split")
    missing = recovery.uncovered(index, r)
    total = len(index.versions)
    if as_json:
        import json

        click.echo(json.dumps({"recipient": r.name, "key_check": r.fingerprint, "added": r.added,
                               "secrets": total, "covered": total - len(missing),
                               "not_covered": missing}))  # fmt: skip
        return
    click.echo(f"recipient: {r.name}\nkey-check: {r.fingerprint}\nadded: {r.added}")
    click.echo(f"secrets: {total - len(missing)} of {total} readable with it")
    click.echo("".join(f"not covered: {n}\n" for n in missing), nl=False)
