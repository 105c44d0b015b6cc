"""Where a vault lives when the command line does not say (docs/format.md section 1)."""

from __future__ import annotations

import os


def default_vault() -> str:
    """``$XDG_DATA_HOME/ossl-vault`` (``~/.local/share/ossl-vault``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "ossl-vault")
