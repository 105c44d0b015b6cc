"""The command lines the light path answers: a parser that needs nothing but os.

:func:`plain` recognises a plain read -- ``get NAME [--version N]``, ``env
[VAR=]NAME...`` or ``exec --env VAR=NAME... [--] COMMAND...``, with the global
options ``--vault``, ``--identity``/``-i`` and ``--lock-timeout`` before or
after the command name -- and says None for everything else, which the full
CLI then judges (and explains, when it is wrong). One parser, for both the
agent's path and the light path (:mod:`ossl_vault.cli.entry`).
"""

from __future__ import annotations

import os
import sys

from ossl_vault.storage import paths

MAX_LOCK_TIMEOUT = 86400  # seconds: a day (cli/common.py's check_lock_timeout)
_GLOBAL = {"--vault": "vault", "--identity": "identity", "-i": "identity",
           "--lock-timeout": "lock-timeout"}  # fmt: skip


class Plain:
    """A plain read's command line: the command, its global options and its arguments."""

    def __init__(self, command: str) -> None:
        self.command = command  # "get", "env" or "exec"
        self.vault_dir = ""
        self.identity: tuple[str, ...] = ()
        self.lock_timeout: float | None = None
        self.args: list[str] = []  # get: NAME; env: the specs; exec: COMMAND and its arguments
        self.specs: list[str] = []  # exec: each --env
        self.number: int | None = None  # get: --version N
        self.given: dict[str, list[str]] = {"vault": [], "identity": [], "lock-timeout": []}


def plain(argv: list[str]) -> Plain | None:
    """The plain read ``argv`` asks for; None for anything else (the full CLI's to judge)."""
    found: Plain | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        option, eq, value = arg.partition("=")
        if option in _GLOBAL and not (option == "-i" and eq):
            if not eq:
                if i + 1 >= len(argv):
                    return None
                i, value = i + 1, argv[i + 1]
            if found is None:
                found = Plain("")
            found.given[_GLOBAL[option]].append(value)
        elif found is None or not found.command:
            if arg not in ("get", "env", "exec"):
                return None  # another command, or an option the light path does not know
            given = found.given if found else None
            found = Plain(arg)
            found.given = given or found.given
        elif found.command == "exec" and (arg == "--" or not arg.startswith("-")):
            found.args = argv[i + 1 :] if arg == "--" else argv[i:]
            break  # COMMAND and everything after it are its own
        else:
            taken = _argument(found, arg, argv[i + 1] if i + 1 < len(argv) else None)
            if taken is None:
                return None
            i += taken
        i += 1
    return found if found is not None and _settle(found) else None


def _argument(found: Plain, arg: str, after: str | None) -> int | None:
    """Take ``arg`` (``after`` is the next word): how many more words it used; None if unknown."""
    option, eq, value = arg.partition("=")
    wanted = {"get": "--version", "exec": "--env"}.get(found.command)
    if option == wanted:
        if not eq and after is None:
            return None
        value = value if eq else str(after)
        if option == "--env":
            found.specs.append(value)
        elif found.number is not None or not _is_number(value):
            return None  # given twice, or not a number: the CLI says so
        else:
            found.number = int(value)
        return 0 if eq else 1
    if arg.startswith("-") or (found.command == "get" and found.args):
        return None
    found.args.append(arg)
    return 0


def _settle(found: Plain) -> bool:
    """Fill in the globals (options, else the environment); False when the CLI should judge."""
    given = found.given
    if not found.command or not found.args or (found.command == "exec" and not found.specs):
        return False
    if len(given["vault"]) > 1 or len(given["lock-timeout"]) > 1 or "" in given["vault"]:
        return False
    timeout = given["lock-timeout"] or [os.environ.get("OSSL_VAULT_LOCK_TIMEOUT") or ""]
    if timeout != [""]:
        if not _is_timeout(timeout[0]):
            return False  # the CLI says what is wrong with it
        found.lock_timeout = float(timeout[0])
    found.identity = tuple(given["identity"])
    found.vault_dir = (given["vault"] or [os.environ.get("OSSL_VAULT_DIR") or ""])[0]
    found.vault_dir = found.vault_dir or paths.default_vault()
    return True


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and text[0] != "0" and len(text) <= 10


def _is_timeout(text: str) -> bool:
    """A lock timeout the CLI accepts: finite, 0 to a day (it refuses nan, inf, -1: exit 2)."""
    try:
        seconds = float(text)
    except ValueError:
        return False
    return 0 <= seconds <= MAX_LOCK_TIMEOUT  # False for nan


def error_line(message: str, hint: str | None, code: int) -> None:
    """The one error line (and hint), then exit ``code``: what the CLI prints too."""
    sys.stderr.write(f"ossl-vault: error: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    sys.stderr.flush()
    sys.exit(code)


def internal_message(e: BaseException) -> str:
    """One line naming an unexpected exception, never ending in a period."""
    text = " ".join(str(e).split())[:200].rstrip(".")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


AUDIT_SKIPPED = "{} audit record(s) could not be written (the vault's audit mode is best-effort)"
