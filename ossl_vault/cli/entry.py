"""The ``ossl-vault`` command: plain reads answered before click and the full CLI load.

A script that calls ``ossl-vault get NAME`` in a loop pays Python's start-up
each time, and most of the rest used to be importing the CLI (click, tabulate,
filelock, the code of every command). So a plain read -- ``get NAME [--version
N]``, ``env [VAR=]NAME...`` or ``exec --env VAR=NAME... [--] COMMAND...``, with
the global options ``--vault``, ``--identity``/``-i`` and ``--lock-timeout``
before or after the command name -- is parsed here (:func:`plain`), once:

- with an agent running (``$OSSL_VAULT_AGENT``), a ``get`` is asked of the
  agent first, importing only socket and json (:func:`agent_get`);
- otherwise, or when the agent says "read it yourself", the light path
  (:mod:`ossl_vault.cli.light`) reads it with the same operations the full CLI
  calls, importing only what a read needs (tests/test_light.py lists it);
  ``env`` and ``exec`` ask the agent from there, as the full CLI's do.

Any other command line goes to the full CLI, which then says what is wrong
with it; so does every command line when ``OSSL_VAULT_FAST_PATH=0``.
"""

from __future__ import annotations

import os
import sys

from ossl_vault.cli.argv import Plain, error_line, plain
from ossl_vault.cli.terminal import BINARY_HINT, binary, binary_refusal

FAST_PATH_ENV = "OSSL_VAULT_FAST_PATH"


def agent_get(path: str, wanted: Plain) -> None:
    """Answer a plain ``get`` through the agent and exit; return when it cannot."""
    from ossl_vault.agent import client

    client.ASKED = True
    reply = client.ask(path, client.get_request(wanted.vault_dir, wanted.args[0], wanted.number))
    if reply is None:
        return
    result, error = reply.get("result"), reply.get("error")
    if isinstance(result, dict):
        value = client.value_of(result)
        if value is None:
            return  # garbled: read it here
        name = wanted.args[0]
        if isinstance(result.get("expired"), str):
            when = result["expired"]
            sys.stderr.write(f"ossl-vault: warning: secret {name!r} expired on {when}\n")
        if sys.stdout.isatty() and binary(value):
            error_line(binary_refusal(name), BINARY_HINT, 2)
        try:
            sys.stdout.buffer.write(value)
            sys.stdout.flush()
        except BrokenPipeError:
            os._exit(1)
        sys.exit(0)
    assert isinstance(error, dict)  # ask() returns only results and final errors
    error_line(str(error.get("message")), error.get("hint"), int(error["code"]))


def prestart(wanted: Plain) -> None:
    """Start the unwrap's openssl for the one identity file named, before the read path
    loads: it then loads on the other core while Python imports (openssl.crypto)."""
    explicit = list(wanted.identity) or [
        p for p in os.environ.get("OSSL_VAULT_IDENTITY", "").split(":") if p
    ]  # the lookup order of ops.sources.identity_files
    if len(explicit) == 1:
        from ossl_vault.openssl import crypto

        try:
            crypto.prestart_unwrap(explicit[0])
        except Exception:  # noqa: S110 (only ever a head start: the read itself reports)
            pass


def main() -> None:
    """The console script: a plain read on the agent's or the light path, else the CLI.

    It never returns (both exit). ``typing`` is not imported for ``NoReturn``:
    that import alone costs a fast read a tenth of its time.
    """
    # A remote vault (issue 13) is read through the full CLI; the agent and the
    # light path serve local vaults only.
    local = not os.environ.get("OSSL_VAULT_REMOTE")
    wanted = plain(sys.argv[1:]) if local and os.environ.get(FAST_PATH_ENV) != "0" else None
    if wanted is not None:
        agent = os.environ.get("OSSL_VAULT_AGENT")
        if agent and wanted.command == "get":
            agent_get(agent, wanted)
        if wanted.command == "get":
            prestart(wanted)
        from ossl_vault.cli import light  # env and exec ask the agent from there

        light.run(wanted)
    from ossl_vault.cli.main import main as cli_main

    cli_main()
