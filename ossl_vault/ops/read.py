"""One audited read of a secret: what ``get`` does, with nothing a read does not need.

The light path of ``ossl-vault get`` (:mod:`ossl_vault.cli.light`) runs this
before click, tabulate, filelock or gnupg load; the full CLI's ``get`` runs it
too, so both keep the same promises in the same order: the blob hash and the
record MAC are checked before anything is decrypted (``Vault.get``), and the
read's audit record is durable before the value is returned. A read that
fails leaves one record naming its error, as every command does.
"""

from __future__ import annotations

import os

from ossl_vault.format.seal import Identities, PasswordSource
from ossl_vault.ops.vault import Vault

WORKERS = 2 * (os.cpu_count() or 1)  # an openssl child per core while Python prepares the next


def open_vault(path: str, lock_timeout: float | None, op: str) -> Vault:
    """The vault at ``path``, whose audit records name ``op``; refused if its log is gone."""
    vault = Vault(path, lock_timeout, op)
    vault.store.check_audit_log()
    return vault


def read(
    vault: Vault,
    name: str,
    ids: Identities,
    number: int | None = None,
    password: PasswordSource | None = None,
    strict: bool = False,
) -> bytes:
    """The value of ``name`` (version ``number``), returned once its audit record is on disk.

    ``vault.expired`` then says when the secret expired, if it has (``strict``
    refuses an expired one).
    """
    value = vault.get(name, ids, number, password, strict)
    keys = [vault.opened_with] if vault.opened_with else []
    vault.store.log(vault.event(name, vault.opened_version, keys))
    return value


def record_failure(vault: Vault, name: str, number: int | None, code: int, kind: str) -> None:
    """The record of a read that failed with exit ``code`` (``kind``: the error's class
    name); none where there is no vault to hold it."""
    store = vault.store
    try:
        if not store.exists():
            return
        event = vault.event(name, number)
        event.result = f"exit={code}:{kind}"
        store.log(event)
    except Exception:  # noqa: S110 (already failing: the first error is the one to report)
        pass
