"""``ossl-vault server init`` and ``server start``: the key server (docs/api.md)."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from ossl_vault.cli.common import EPILOG, note


@click.group("server", epilog=EPILOG)
def server_group() -> None:
    """A key server: OPAQUE logins over TLS 1.3, end-to-end encrypted vaults."""


@server_group.command("init", epilog=EPILOG)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--cert", metavar="FILE", help="The host's TLS certificate (PEM) to serve.")
@click.option("--key", metavar="FILE", help="Its private key (PEM); copied in, 0600.")
@click.option("--hostname", default=socket.gethostname, show_default="this host's name",
              help="The name in a generated certificate.")  # fmt: skip
def init(directory: Path, cert: str | None, key: str | None, hostname: str) -> None:
    """Create a server directory (0700): OPAQUE setup, TLS pair, settings, database."""
    from ossl_vault.server import state

    state.init(directory, cert, key, hostname)
    note(f"created server '{directory}'")
    note(f"TLS certificate: '{directory / state.CERT}'" + ("" if cert else " (self-signed)"))


@server_group.command("start", epilog=EPILOG)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--listen", default="127.0.0.1:8443", show_default=True, metavar="HOST:PORT",
              help="Where to listen (port 0: any free port, printed).")  # fmt: skip
def start(directory: Path, listen: str) -> None:
    """Serve in the foreground until SIGTERM; one log line per request on stderr."""
    from ossl_vault.server.run import serve

    serve(directory, listen, note)


@server_group.command("invite", epilog=EPILOG)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("user")
def invite(directory: Path, user: str) -> None:
    """Print a one-time token that lets USER register (with open_registration 0)."""
    import secrets

    from ossl_vault.remote.protocol import check_user
    from ossl_vault.server import state
    from ossl_vault.server.db import Database

    state.load_settings(directory)  # no server there: exit 3 with a hint
    token = secrets.token_urlsafe(24)
    db = Database(directory / state.DATABASE)
    try:
        db.invite(check_user(user), token)
    finally:
        db.close()
    click.echo(token)
    note(f"invited {user!r}: give them the token; it registers that name once")
