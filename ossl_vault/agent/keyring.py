"""What the agent holds: unlocked identities, unwrapped data keys and values, in memory only.

The agent process (:mod:`ossl_vault.agent.daemon`) serves requests from a
:class:`Keyring`; ``exec``/``env`` and ``serve --stdio`` use one in-process.
Nothing here is written anywhere; :meth:`Keyring.wipe` zeroes it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from ossl_vault.errors import AccessDenied, UsageError
from ossl_vault.format.records import Index, parse
from ossl_vault.format.seal import Identities, decrypt
from ossl_vault.format.wrapping import Identity, unlock_passphrase
from ossl_vault.ops import sources
from ossl_vault.ops.sources import ENCRYPTED_PEM, decrypt_pem
from ossl_vault.ops.vault import Vault, expiry
from ossl_vault.storage.files import no_links, read_bytes

MAX_INDEXES = 8  # parsed indexes kept, one per vault
MAX_VALUE_BYTES = 32 * 1024 * 1024  # decrypted values kept, oldest forgotten first

CacheKey = tuple[str, str, int, str]  # vault, name, version, blob SHA-256
ValueKey = tuple[str, str, int, str, bytes]  # and the record MAC


class Keyring:
    """Identities with their keys in memory, and the data keys they have opened."""

    def __init__(self, files: list[Identity], gpg: bool = True) -> None:
        self.files = files
        self.gpg = gpg
        self.keys: dict[CacheKey, tuple[bytearray, str | None]] = {}  # and the wrap's FPR
        self.values: dict[ValueKey, bytearray] = {}  # decrypted, oldest first
        self.value_bytes = 0
        self.indexes: dict[str, tuple[bytes, Index]] = {}  # parsed vault.tsv, by vault
        self.lock = threading.Lock()
        self.wiped = False

    def identities(self) -> Identities:
        with self.lock:
            return Identities(list(self.files), None, "", self.gpg and not self.wiped)

    def get(self, vault: Vault, name: str, number: int | None, password: bytes | None) -> bytes:
        """Like ``Vault.get``, opening the data key once per version; the read is audited.

        As after ``Vault.get``, ``vault.expired`` then says when the secret expired,
        judged from the records this read used (no second read of the vault).
        """
        index = self.index(vault, name)
        v = vault.readable(name, number, index)
        vault.expired = expiry(index, v.name)
        key = (os.path.realpath(vault.store.root), v.name, v.version, v.blob)
        with self.lock:
            held = self.keys.get(key)
            dk = bytes(held[0]) if held is not None else None
            fpr = held[1] if held is not None else None
        if dk is None:
            dk, ct = vault.open(index, v, self.identities())
            fpr = vault.opened_with
            with self.lock:
                if not self.wiped:
                    self.keys[key] = (bytearray(dk), fpr)
        else:  # the blob hash and record MAC are checked all the same
            ct = vault.open_with_key(index, v, dk)
        value_key = (*key, v.tag)
        with self.lock:
            kept = self.values.get(value_key) if v.password is None else None
            value = bytes(kept) if kept is not None else None
        if value is None:
            given = None if password is None else (lambda _name: password)
            value = decrypt(v, dk, ct, given)
            if v.password is None:
                self.keep(value_key, value)
        vault.store.log(vault.event(v.name, v.version, [fpr] if fpr else []))
        return value

    def keep(self, key: ValueKey, value: bytes) -> None:
        """Hold a decrypted value, forgetting (and zeroing) the oldest past the limit."""
        if len(value) > MAX_VALUE_BYTES:
            return
        with self.lock:
            if self.wiped or key in self.values:
                return
            self.values[key] = bytearray(value)
            self.value_bytes += len(value)
            while self.value_bytes > MAX_VALUE_BYTES:
                old = self.values.pop(next(iter(self.values)))
                self.value_bytes -= len(old)
                old[:] = bytes(len(old))

    def index(self, vault: Vault, name: str) -> Index:
        """What a read of ``name`` needs: format 1's index, parsed again only when the
        bytes of vault.tsv change.

        Format 2 and other drivers: the recipients and the one secret ``name``,
        read each time (two small files: nothing worth caching); never every
        secret's file, which would make each read cost as much as ``list``.
        """
        if vault.store.format != "1":
            return vault.store.read_secret(name)
        try:
            no_links(vault.store.root, "vault.tsv")  # refused as a plain get refuses it
            data = read_bytes(vault.store.index_path)
        except OSError:
            return vault.store.read_records(name)  # raises what any reader would
        root = str(vault.store.root)
        with self.lock:
            held = self.indexes.get(root)
        if held is not None and held[0] == data:
            return held[1]  # read-only from here on: reads never change an Index
        index = parse(data)
        with self.lock:
            self.indexes.pop(root, None)
            self.indexes[root] = (data, index)
            while len(self.indexes) > MAX_INDEXES:
                self.indexes.pop(next(iter(self.indexes)))
        return index

    def wipe(self) -> None:
        """Zero every key held and forget them; the keyring stays empty for good."""
        with self.lock:
            self.wiped = True
            for dk, _fpr in self.keys.values():
                dk[:] = bytes(len(dk))
            self.keys.clear()
            for value in self.values.values():
                value[:] = bytes(len(value))
            self.values.clear()
            self.value_bytes = 0
            self.indexes.clear()
            for identity in self.files:
                if isinstance(identity.key, bytearray):
                    identity.key[:] = bytes(len(identity.key))
            self.files.clear()

    def status(self) -> dict[str, object]:
        with self.lock:
            return {
                "identities": [
                    {"source": i.source, "fingerprint": i.fingerprint} for i in self.files
                ],
                "data_keys": len(self.keys),
                "values": len(self.values),
            }


# -- loading identities ---------------------------------------------------------------


def in_memory(
    source: str, data: bytes, passphrase: Callable[[str], bytes | None]
) -> Identity | None:
    """An identity holding its PEM bytes, decrypted if need be, its key checked now.

    None for an encrypted key whose passphrase ``passphrase`` does not give.
    """
    if any(marker in data for marker in ENCRYPTED_PEM):
        secret = passphrase(source)
        if secret is None:
            return None
        pem = decrypt_pem(data, secret, source)
    else:
        pem = bytearray(data)
    identity = Identity(source, pem)  # type: ignore[arg-type]  (bytearray: zeroed on wipe)
    identity.fingerprint  # noqa: B018  (runs openssl pkey once, not on every request)
    return identity


def load_identities(
    given: tuple[str, ...],
    passphrase: Callable[[str], bytes | None],
    stdin_key: bytes | None = None,
) -> list[Identity]:
    """The identities the CLI would use, read into memory; plus one PEM key from stdin."""
    found, _searched = sources.identity_files(given)
    out: list[Identity | None] = []
    for identity in found:
        if isinstance(identity.key, str):
            try:
                data = read_bytes(identity.key)
            except OSError as e:
                raise AccessDenied(f"cannot read identity {identity.key!r}: {e.strerror}") from e
            out.append(in_memory(identity.source, data, passphrase))
        else:
            out.append(identity)
    if stdin_key is not None:
        out.append(in_memory("stdin", stdin_key, passphrase))
    return [i for i in out if i is not None]


def unlock_vault(vault: Vault, passphrase: bytes) -> list[Identity]:
    """The private keys of a vault's passphrase recipients that ``passphrase`` opens."""
    lockable = [r for r in vault.recipients() if r.kind == "passphrase"]
    if not lockable:
        raise UsageError(f"vault '{vault.store.root}' has no passphrase recipient")
    unlocked = [i for i in (unlock_passphrase(r, passphrase) for r in lockable) if i]
    if not unlocked:
        raise AccessDenied(f"the passphrase opens no passphrase recipient of '{vault.store.root}'")
    return [i.with_key(bytearray(i.key or b"")) for i in unlocked]
