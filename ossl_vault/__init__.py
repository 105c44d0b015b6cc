"""ossl-vault: small secrets encrypted on disk by the openssl command line.

The public API, for a library user (docs/architecture.md draws the layers)::

    from ossl_vault import Vault, Identities, VaultError

    vault = Vault("/etc/ossl-vault")
    value = vault.get("db/password", Identities(files=[...]))

``Vault`` (the operations on one vault), ``Identities`` (the private keys a
read may use), ``generate`` (a uniformly random value) and the typed errors of
:mod:`ossl_vault.errors`, each with its exit code. Nothing here prints: only
:mod:`ossl_vault.cli` does. The names load on first use, so that importing the
package costs a plain ``get`` nothing.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "Vault": "ossl_vault.ops.vault",
    "Identities": "ossl_vault.format.seal",
    "generate": "ossl_vault.ops.generate",
    "VaultError": "ossl_vault.errors",
    "OperationError": "ossl_vault.errors",
    "UsageError": "ossl_vault.errors",
    "NotFoundError": "ossl_vault.errors",
    "AccessDenied": "ossl_vault.errors",
    "PasswordRefused": "ossl_vault.errors",
    "IntegrityError": "ossl_vault.errors",
    "FormatError": "ossl_vault.errors",
    "BusyError": "ossl_vault.errors",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'ossl_vault' has no attribute {name!r}")
