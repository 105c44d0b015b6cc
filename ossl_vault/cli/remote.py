"""``ossl-vault remote ...``: register, log in and out, change the password, copy secrets,
read the server's audit log (docs/api.md). ``--remote USER@URL`` runs the vault commands
themselves on the server (:func:`remote_vault`)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from ossl_vault.cli.common import EPILOG, Context, note, pass_ctx
from ossl_vault.errors import UsageError
from ossl_vault.ops import sources
from ossl_vault.ops.vault import Identities, Vault
from ossl_vault.remote.client import Remote, check_url, resolve
from ossl_vault.remote.protocol import check_user
from ossl_vault.remote.vault import remote_identities, remote_vault


def password(path: str | None, confirm: bool) -> bytes:
    given = sources.secret_source(path, path is None, "password", confirm=confirm)
    if given is None:
        raise UsageError("a password is needed", hint="give --password-file FILE")
    return given


def parse_ttl(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    if not number.isdigit() or int(number) < 1:
        raise UsageError(f"bad --ttl {text!r}", hint="seconds, or a number with s, m or h")
    return int(number) * units[unit]


password_file = click.option(
    "--password-file",
    metavar="FILE",
    help="The account password (first line); else a prompt, no echo.",
)
ca_option = click.option(
    "--ca", metavar="FILE", help="Verify the server's certificate with this CA, not a pin."
)
ttl_option = click.option(
    "--ttl",
    default="15m",
    show_default=True,
    metavar="DURATION",
    help="How long the session lives (s, m, h).",
)


@click.group("remote", epilog=EPILOG)
def remote_group() -> None:
    """Your account on a key server: OPAQUE over TLS 1.3, end-to-end encrypted."""


def account_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """URL USER, --password-file, --ca, --ttl: what register and login share."""
    for decorate in (ttl_option, ca_option, password_file, click.argument("user"),
                     click.argument("url")):  # fmt: skip
        f = decorate(f)
    return f


@remote_group.command(epilog=EPILOG)
@account_options
@click.option("--invite-file", metavar="FILE",
              help="The invitation token from the server's administrator.")  # fmt: skip
def register(url: str, user: str, password_file: str | None, ca: str | None, ttl: str,
             invite_file: str | None) -> None:  # fmt: skip
    """Create an account (and its account key), log in, and create its vault."""
    from ossl_vault.format.records import Index
    from ossl_vault.keys.pubkeys import PublicKey
    from ossl_vault.openssl import crypto
    from ossl_vault.ops import edits
    from ossl_vault.remote.account import RECIPIENT
    from ossl_vault.storage.audit import Event

    remote = Remote(check_url(url), check_user(user), ca)
    given = password(password_file, confirm=True)
    token = None
    if invite_file is not None:
        token = sources.read_line_file(invite_file, "invitation").decode("ascii", "replace")
    key_pem = remote.register(given, token)
    remote.login(given, parse_ttl(ttl))
    vault = remote_vault(f"{remote.user}@{remote.url}", "init")
    index = Index()
    key = edits.add_key(index, RECIPIENT, PublicKey("x25519", crypto.public_der(key_pem)), True)
    with vault.store.locked(creating=True):
        vault.store.commit(index, {}, Event("init", keys=(key.fingerprint,)))
    note(f"registered {remote.user!r} on {remote.url} and logged in")


@remote_group.command(epilog=EPILOG)
@account_options
@click.option("--repin", is_flag=True, help="Accept the server's new TLS certificate.")
def login(url: str, user: str, password_file: str | None, ca: str | None, ttl: str,
          repin: bool) -> None:  # fmt: skip
    """Log in with the password alone (a new device needs nothing else)."""
    remote = Remote(check_url(url), check_user(user), ca)
    expires = remote.login(password(password_file, confirm=False), parse_ttl(ttl), repin)
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
    note(f"logged in to {remote.url} as {remote.user!r} until {until}")


@remote_group.command(epilog=EPILOG)
@click.argument("spec", required=False, metavar="[URL | USER@URL]")
@pass_ctx
def logout(obj: Context, spec: str | None) -> None:
    """End the session; this device forgets the account key until the next login."""
    user, url = resolve(spec or obj.remote)
    Remote(url, user).logout()
    note(f"logged out of {url}")


@remote_group.command(epilog=EPILOG)
@password_file
@pass_ctx
def passwd(obj: Context, password_file: str | None) -> None:
    """Change the password: re-register, re-seal the account key; secrets untouched."""
    user, url = resolve(obj.remote)
    Remote(url, user).passwd(password(password_file, confirm=True))
    note(f"changed the password of {user!r} on {url}")


@remote_group.command("export-key", epilog=EPILOG)
@click.option("--out", metavar="FILE", help="Write the key to FILE (0600) instead of stdout.")
@pass_ctx
def export_key(obj: Context, out: str | None) -> None:
    """Print the account key (PEM): scripts/ossl-vault-recover opens a pulled copy with it."""
    user, url = resolve(obj.remote)
    key = Remote(url, user).account_key()
    if out:
        sources.write_out(out, key)
    else:
        sys.stdout.buffer.write(key)


@remote_group.command(epilog=EPILOG)
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def push(obj: Context, names: tuple[str, ...]) -> None:
    """Copy secrets from the local vault to the server (re-wrapped for the account key)."""
    local = Vault(obj.vault_dir, obj.lock_timeout, "remote-push")
    remote = remote_vault(obj.remote, "remote-push", obj.lock_timeout)
    local_ids = sources.identities(obj.identity, None, False)  # not --remote's account key
    copy(local, local_ids, remote, names)


@remote_group.command(epilog=EPILOG)
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def pull(obj: Context, names: tuple[str, ...]) -> None:
    """Copy secrets from the server to the local vault (re-wrapped for its recipients)."""
    remote = remote_vault(obj.remote, "remote-pull", obj.lock_timeout)
    local = Vault(obj.vault_dir, obj.lock_timeout, "remote-pull")
    copy(remote, remote_identities(obj.remote), local, names)


def copy(source: Vault, ids: Identities, target: Vault, names: tuple[str, ...]) -> None:
    """Each value read (and its read recorded at the source), then stored at the target."""
    for name in names:
        value = source.get(name, ids)
        opened = [source.opened_with] if source.opened_with else []
        source.store.log(source.event(name, source.opened_version, opened))
        number = target.put(name, value)
        note(f"copied {name!r} to version {number}")


@remote_group.command("audit", epilog=EPILOG)
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_ctx
def audit_(obj: Context, name: str | None, as_json: bool) -> None:
    """The server's audit log of your account, its chain checked here, names decrypted here."""
    show_audit(obj.remote, name, as_json)


def show_audit(spec: str | None, name: str | None, as_json: bool) -> None:
    from ossl_vault.remote import audit

    vault = remote_vault(spec, "audit")
    store = vault.store
    if store.exists():  # type: ignore[attr-defined]
        store.read_index()
    entries = audit.fetch(store.remote, store.known)  # type: ignore[attr-defined]
    if name is not None:
        entries = [e for e in entries if e.name == name]
    if as_json:
        click.echo("".join(json.dumps(e.__dict__) + "\n" for e in entries), nl=False)
        return
    from ossl_vault.cli.table import table as render

    rows = [[e.seq, e.time, e.addr, e.op, e.name if e.name != "-" else e.id[:16],
             e.version, e.result] for e in entries]  # fmt: skip
    headers = ["SEQ", "TIME", "FROM", "OP", "SECRET", "VERSION", "RESULT"]
    click.echo(render(rows, headers))
    note(f"{len(entries)} record(s); the chain verifies")


@remote_group.command(epilog=EPILOG)
@click.argument("directory", type=click.Path(file_okay=False))
@pass_ctx
def clone(obj: Context, directory: str) -> None:
    """Copy your whole remote vault to a new local vault DIRECTORY (a pulled copy).

    Its one recipient is the account key: `remote export-key` and then
    scripts/ossl-vault-recover DIRECTORY NAME KEYFILE read it with openssl alone.
    """
    from pathlib import Path

    from ossl_vault.remote.store import clone as copy_all

    vault = remote_vault(obj.remote, "remote-clone", obj.lock_timeout)
    count = copy_all(vault.store, Path(directory))  # type: ignore[arg-type]
    note(f"copied {count} secret(s) to '{directory}'")
