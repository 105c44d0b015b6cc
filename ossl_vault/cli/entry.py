"""The ``ossl-vault`` command: ``get`` through a running agent before the CLI loads.

A script that calls ``ossl-vault get NAME`` in a loop pays Python's start-up
each time, and most of the rest is importing the CLI (click, the vault code).
With an agent running (``$OSSL_VAULT_AGENT``), a plain read -- ``get NAME``
with at most ``--version N`` and the global options ``--vault``,
``--identity``/``-i`` and ``--lock-timeout`` before or after it -- is asked
of the agent first, importing only the standard library's socket and json.
The agent checks, decrypts and records the read exactly as for any client
(docs/protocol.md). Any other
command line, no agent, or an answer that means "read it yourself" goes to
the full CLI, which then does not ask the agent a second time.
"""

from __future__ import annotations

import os
import sys

from ossl_vault.cli.terminal import BINARY_HINT, binary, binary_refusal
from ossl_vault.storage import paths

_GLOBAL = {"--vault": "vault", "--identity": "identity", "-i": "identity",
           "--lock-timeout": "lock-timeout"}  # fmt: skip


def plain_get(argv: list[str]) -> tuple[str, str, int | None] | None:
    """(vault, name, version) of ``get NAME [--version N]`` with the global options
    before or after ``get``; None for anything else (the full CLI then says what)."""
    vault = None
    given = set()
    words: list[str] = []
    number = None
    i = 0
    while i < len(argv):
        option, eq, value = argv[i].partition("=")
        if option in _GLOBAL or (option == "--version" and len(words) == 2):
            if option == "-i" and eq:
                return None
            if not eq:
                if i + 1 >= len(argv):
                    return None
                i, value = i + 1, argv[i + 1]
            if option == "--version":
                if number is not None or not _is_number(value):
                    return None
                number = int(value)
            elif _GLOBAL[option] == "vault":
                if not value:
                    return None
                vault = value
            elif _GLOBAL[option] == "lock-timeout" and not _is_float(value):
                return None  # the CLI says what is wrong with it
            given.add(option)
        elif argv[i].startswith("-") or len(words) >= 2:
            return None
        else:
            words.append(argv[i])
        i += 1
    if len(words) != 2 or words[0] != "get":
        return None
    timeout = os.environ.get("OSSL_VAULT_LOCK_TIMEOUT")
    if "--lock-timeout" not in given and timeout and not _is_float(timeout):
        return None  # the CLI says what is wrong with it
    vault = vault or os.environ.get("OSSL_VAULT_DIR") or paths.default_vault()
    return vault, words[1], number


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and text[0] != "0" and len(text) <= 10


def _is_float(text: str) -> bool:
    """A lock timeout the CLI accepts (it refuses nan, inf and negatives, exit 2)."""
    try:
        return 0 <= float(text) <= 86400  # False for nan
    except ValueError:
        return False


def agent_get(path: str, argv: list[str]) -> None:
    """Answer a plain ``get`` through the agent and exit; return when it cannot."""
    wanted = plain_get(argv)
    if wanted is None:
        return
    from ossl_vault.agent import client

    client.ASKED = True
    reply = client.ask(path, client.get_request(*wanted))
    if reply is None:
        return
    result, error = reply.get("result"), reply.get("error")
    if isinstance(result, dict):
        value = client.value_of(result)
        if value is None:
            return  # garbled: the CLI reads it itself
        if isinstance(result.get("expired"), str):
            sys.stderr.write(f"ossl-vault: warning: secret {wanted[1]!r} expired on "
                             f"{result['expired']}\n")  # fmt: skip
        if sys.stdout.isatty() and binary(value):
            refusal = binary_refusal(wanted[1])
            sys.stderr.write(f"ossl-vault: error: {refusal}\nhint: {BINARY_HINT}\n")
            sys.exit(2)
        try:
            sys.stdout.buffer.write(value)
            sys.stdout.flush()
        except BrokenPipeError:
            os._exit(1)
        sys.exit(0)
    assert isinstance(error, dict)  # ask() returns only results and final errors
    sys.stderr.write(f"ossl-vault: error: {error.get('message')}\n")
    if error.get("hint"):
        sys.stderr.write(f"hint: {error['hint']}\n")
    sys.exit(int(error["code"]))


def main() -> None:
    """The console script: the agent's fast path for a plain read, else the CLI.

    It never returns (both exit). ``typing`` is not imported for ``NoReturn``:
    that import alone costs a fast read a quarter of its time.
    """
    path = os.environ.get("OSSL_VAULT_AGENT")
    if path and not os.environ.get("OSSL_VAULT_REMOTE"):  # the agent serves local vaults only
        agent_get(path, sys.argv[1:])
    from ossl_vault.cli.main import main as cli_main

    cli_main()
