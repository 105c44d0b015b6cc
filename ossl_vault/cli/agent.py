"""Commands ``agent start``, ``agent stop`` and ``agent status`` (docs/protocol.md).

Registered on the main group by :mod:`ossl_vault.cli.main`, imported only when named.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING

import click

from ossl_vault.agent.client import AGENT_ENV
from ossl_vault.cli.common import EPILOG, Context, note, pass_ctx
from ossl_vault.cli.scripts import build_keyring, key_passphrase_option
from ossl_vault.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from ossl_vault.format.wrapping import Identity


def parse_ttl(text: str) -> float:
    """``900``, ``90s``, ``15m``, ``2h``, ``1d``; 0 means until ``agent stop``."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not m:
        raise UsageError(f"invalid --ttl {text!r}", hint="e.g. 900, 90s, 15m, 2h; 0 for none")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


@click.group()
def agent() -> None:
    """Hold unlocked identities and data keys in memory, like ssh-agent."""


@agent.command("start", epilog=EPILOG)
@click.option("--ttl", default="15m", show_default=True, help="Forget everything after this.")
@click.option("--socket", "socket_path", metavar="PATH", help="Listen here (default: a 0700 dir).")
@click.option("--foreground", is_flag=True, help="Do not detach (for systemd, or debugging).")
@click.option("--identity-stdin", is_flag=True, help="Also hold a PEM private key read on stdin.")
@click.option("--recovery-share-file", "share_files", multiple=True, metavar="FILE",
              help="Also hold the vault's recovery key, rebuilt from these shares.")  # fmt: skip
@click.option("--recovery", "ask_shares", is_flag=True, help="The same, shares asked for.")
@click.option("--passphrase-file", metavar="FILE", help="Unlock the vault's passphrase recipients.")
@click.option("--passphrase", "ask_passphrase", is_flag=True, help="The same, asked for.")
@key_passphrase_option
@pass_ctx
def agent_start(
    obj: Context,
    ttl: str,
    socket_path: str | None,
    foreground: bool,
    identity_stdin: bool,
    share_files: tuple[str, ...],
    ask_shares: bool,
    passphrase_file: str | None,
    ask_passphrase: bool,
    key_passphrase_file: str | None,
) -> None:
    """Start an agent; prints shell lines: eval "$(ossl-vault agent start)".

    It holds the identities a read would use (--identity, $OSSL_VAULT_IDENTITY
    or the default paths; encrypted PEM keys are decrypted once), the vault's
    passphrase recipients when --passphrase(-file) is given, its recovery key
    when shares are given, and the data keys it opens, in memory only, until
    --ttl passes or 'agent stop'.
    """
    from ossl_vault.agent.daemon import start

    seconds = parse_ttl(ttl)
    keyring = build_keyring(
        obj, passphrase_file, ask_passphrase, key_passphrase_file, identity_stdin, False, False
    )
    if share_files or ask_shares:
        keyring.files.append(recovery_identity(obj, share_files))
    if not keyring.files:
        raise NotFoundError("no identity for the agent to hold", hint="give --identity FILE")

    held = len(keyring.files)

    def announce(path: str, pid: int) -> None:
        import shlex

        quoted = shlex.quote(path)
        click.echo(f"{AGENT_ENV}={quoted}; export {AGENT_ENV};")
        click.echo(f"{AGENT_ENV}_PID={pid}; export {AGENT_ENV}_PID;")
        sys.stdout.flush()
        note(f"agent {pid} holds {held} identity(ies) at {path}")

    # recorded before it starts, so that a vault whose log cannot take it refuses the agent
    record_system_event(obj, [i.fingerprint for i in keyring.files])
    start(keyring, seconds, socket_path, foreground, announce)


def record_system_event(obj: Context, fprs: list[str] | None = None) -> None:
    """An agent's start and stop are system events: a record in the vault's audit log.

    The agent serves any vault; the record goes to the one this command names
    (--vault, $OSSL_VAULT_DIR, the default), when it exists. An agent that
    ends because its --ttl passed writes none.
    """
    vault = obj.vault()
    if vault.store.exists():
        vault.store.log(vault.event(keys=fprs or []))


def recovery_identity(obj: Context, share_files: tuple[str, ...]) -> Identity:
    """The vault's recovery key rebuilt from K shares, as an identity held in memory."""
    from ossl_vault.cli.recovery import read_shares
    from ossl_vault.ops.recovery import recover
    from ossl_vault.ops.vault import Vault

    identity = recover(Vault(obj.vault_dir), read_shares(share_files, True)).identity()
    return identity.with_key(bytearray(identity.key or b""))  # type: ignore[arg-type]


def agent_socket(socket_path: str | None) -> str:
    path = socket_path or os.environ.get(AGENT_ENV)
    if not path:
        raise NotFoundError(f"no agent: ${AGENT_ENV} is not set", hint="ossl-vault agent start")
    return path


def agent_call(path: str, op: str) -> dict[str, object]:
    from ossl_vault.agent.client import RemoteError, call

    try:
        reply = call(path, {"op": op}, timeout=10)
    except (OSError, ValueError):
        raise NotFoundError(f"no agent at {path!r}") from None
    error = reply.get("error")
    if isinstance(error, dict):
        raise RemoteError(int(error.get("code", 1)), str(error.get("message")), None)
    result = reply.get("result")
    return result if isinstance(result, dict) else {}


@agent.command("stop", epilog=EPILOG)
@click.option("--socket", "socket_path", metavar="PATH", help="Default: $OSSL_VAULT_AGENT.")
@pass_ctx
def agent_stop(obj: Context, socket_path: str | None) -> None:
    """Make the agent zero what it holds and exit; prints 'unset' lines for eval."""
    import time

    path = agent_socket(socket_path)
    result = agent_call(path, "stop")
    for _ in range(200):  # it removes its socket on the way out
        if not os.path.exists(path):
            break
        time.sleep(0.01)
    click.echo(f"unset {AGENT_ENV} {AGENT_ENV}_PID;")
    note(f"agent {result.get('stopped')} stopped")
    record_system_event(obj)


@agent.command("status", epilog=EPILOG)
@click.option("--socket", "socket_path", metavar="PATH", help="Default: $OSSL_VAULT_AGENT.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def agent_status(socket_path: str | None, as_json: bool) -> None:
    """Say whether an agent runs, what it holds and for how long (exit 3: none)."""
    import json

    result = agent_call(agent_socket(socket_path), "status")
    if as_json:
        click.echo(json.dumps(result))
        return
    left = result.get("expires_in")
    click.echo(f"agent {result.get('pid')} at {result.get('socket')}")
    click.echo("expires: " + ("never (until 'agent stop')" if left is None else f"in {left} s"))
    identities = result.get("identities") or []
    click.echo(f"identities: {len(identities)}")  # type: ignore[arg-type]
    for i in identities:  # type: ignore[attr-defined]
        click.echo(f"  {str(i['fingerprint'])[:16]}  {i['source']}")
    click.echo(f"data keys held: {result.get('data_keys')}")
    click.echo(f"values held: {result.get('values')}")


# -- secrets into a command's environment ---------------------------------------------
