"""The vault of this device's account on a key server, as a ``Vault``, and its identity."""

from __future__ import annotations

from ossl_vault.ops import sources
from ossl_vault.ops.vault import Identities, Vault
from ossl_vault.remote.client import Remote, resolve
from ossl_vault.remote.store import RemoteStore


def remote_vault(spec: str | None, op: str, lock_timeout: float | None = None) -> Vault:
    """``spec`` (USER@URL, or None: the one account this device knows) as a ``Vault``."""
    user, url = resolve(spec)
    store = RemoteStore(Remote(url, user), op, lock_timeout)
    return Vault(str(store.root), lock_timeout, op, store=store)  # type: ignore[arg-type]


def remote_identities(spec: str | None) -> Identities:
    """The account key of this device's session: the remote vault's one identity."""
    user, url = resolve(spec)
    remote = Remote(url, user)
    remote.account_key()  # not logged in: exit 4 with a hint, before anything else
    return sources.identities((str(remote.key_path),), None, False)
