"""Setting up a git repository holding a vault (docs/teams.md): ignores and the log's merge.

``git-setup`` writes ``.gitattributes`` (``audit.log merge=ossl-vault-audit``)
and ``.gitignore`` (locks, unfinished writes) in the vault directory, commits
them, and configures the merge driver in this clone (git keeps drivers in each
clone's own config, never in the repository: run it in every clone).
"""

from __future__ import annotations

import os
from pathlib import Path

from ossl_vault.errors import OperationError, UsageError
from ossl_vault.openssl.proc import run_tool
from ossl_vault.storage.store import IGNORED

DRIVER = "ossl-vault-audit"
ATTRIBUTES = f"audit.log merge={DRIVER}\n"


def _git(root: Path, *args: str) -> str:
    return run_tool(["git", "-C", str(root), *args], what=f"git {args[0]}").decode()


def git_setup(root: str | os.PathLike[str], merge_command: str) -> list[str]:
    """Configure the clone holding ``root``; returns what was done, for the user."""
    root = Path(root)
    try:
        _git(root, "rev-parse", "--show-toplevel")
    except OperationError:
        raise UsageError(
            f"vault '{root}' is not in a git repository", hint=f"run 'git init {root}' first"
        ) from None
    done = []
    for name, text in ((".gitattributes", ATTRIBUTES), (".gitignore", IGNORED)):
        path = root / name
        old = path.read_text() if path.exists() else ""
        missing = [line for line in text.splitlines() if line not in old.splitlines()]
        if missing:
            path.write_text(old + ("" if not old or old.endswith("\n") else "\n")
                            + "".join(f"{line}\n" for line in missing))  # fmt: skip
            done.append(f"wrote {name}")
    _git(root, "config", f"merge.{DRIVER}.name", "ossl-vault audit log: keep both chains")
    _git(root, "config", f"merge.{DRIVER}.driver", merge_command)
    done.append(f"configured the merge driver '{DRIVER}' in this clone")
    _git(root, "add", "--", ".gitattributes", ".gitignore")
    staged = _git(root, "diff", "--cached", "--name-only", "--", ".gitattributes", ".gitignore")
    if staged.strip():
        _git(root, "commit", "-q", "-m", "ossl-vault git-setup: ignores, audit-log merge driver",
             "--", ".gitattributes", ".gitignore")  # fmt: skip
        done.append("committed .gitattributes and .gitignore")
    return done
