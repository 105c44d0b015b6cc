"""What the bulk commands share: per-secret passwords, --skip-unreadable, progress, the summary.

Used by rotate, rekey, recipient rm, unshare, export, import and the recovery
re-wraps, whose work runs in :mod:`ossl_vault.ops.bulk`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from ossl_vault.cli.common import note, passphrase_options, password_source
from ossl_vault.ops import sources


def bulk_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options of commands that open many secrets: passwords per secret, skipping."""
    f = click.option(
        "--skip-unreadable",
        is_flag=True,
        help="Leave out the secrets that cannot be opened (else nothing changes).",
    )(f)
    return many_reader_options(f)


def many_reader_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`reader_options` with a password per secret: ``--password-file [NAME=]FILE``."""
    f = click.option(
        "--password-file",
        "password_files",
        multiple=True,
        metavar="[NAME=]FILE",
        help="Per-secret password (first line): NAME=FILE for one secret (repeatable), "
        "FILE for every other one.",
    )(f)
    return passphrase_options(f)


def passwords_of(specs: tuple[str, ...]) -> Callable[[str], bytes | None]:
    """The passwords of ``--password-file [NAME=]FILE ...``; a prompt for the rest on a terminal.

    A spec that names an existing file is that file, for every secret not
    named otherwise; else ``NAME=FILE`` is split at its first '='.
    """

    per_secret: dict[str, str] = {}
    every: str | None = None
    for spec in specs:
        name, eq, path = spec.partition("=")
        if os.path.exists(spec) or not eq:
            if every is not None:
                raise click.UsageError(f"more than one --password-file for every secret: {spec!r}")
            every = spec
        elif not name or not path:
            raise click.UsageError(f"--password-file {spec!r} is not NAME=FILE")
        else:
            per_secret[name] = path
    cache: dict[str, bytes | None] = {}
    default = password_source(every)

    def ask(name: str) -> bytes | None:
        if name not in cache:
            path = per_secret.get(name)
            cache[name] = (
                sources.read_line_file(path, f"password of {name!r}") if path else default(name)
            )
        return cache[name]

    ask.named = set(per_secret)  # type: ignore[attr-defined]
    return ask


class Progress:
    """A progress bar on stderr, only on a terminal (the per-secret lines are -v's)."""

    def __init__(self, label: str, total: int) -> None:
        self.bar = None
        if sys.stderr.isatty() and total:
            self.bar = click.progressbar(length=total, label=label, file=sys.stderr)
            self.bar.__enter__()

    def __call__(self, name: str, action: str) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def summary(verb: str, result: Any, verbose: bool, total: int | None = None,
            todo: str = "") -> None:  # fmt: skip
    """The closing lines of a bulk command: what changed, what was skipped, what is left."""
    if verbose:
        for name, action, detail in result.changed:
            note(f"{name!r}: {action} {detail}".rstrip())
    for name, why in result.skipped:
        note(f"skipped {name!r}: {why}")
    counts: dict[str, int] = {}
    for _name, action, _detail in result.changed:
        counts[action] = counts.get(action, 0) + 1
    parts = [f"{n} {action}" for action, n in sorted(counts.items())]
    if total is not None:
        parts.append(f"{total - len(result.changed) - len(result.skipped)} unchanged")
    if result.skipped:
        parts.append(f"{len(result.skipped)} skipped")
    note(f"{verb} done: {', '.join(parts) or 'nothing to do'}")
    if result.skipped and todo:
        note(f"left to do: {todo}")
