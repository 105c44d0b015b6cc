"""Names: choose secrets by folder or glob, find them, draw them as a tree, move and copy them.

``mv`` keeps each version's data key, ciphertext and wraps and re-computes
the record MACs under the new name (the MAC covers the name), so every
kept version must open with the caller's identities. ``cp`` reads the
newest value and seals it under a fresh data key; the copy's ledger names
everyone who could read the original value, since they have seen the copy's.
"""

from __future__ import annotations

import fnmatch

from ossl_vault.errors import AccessDenied, NotFoundError, UsageError, VaultError
from ossl_vault.format.fields import check_name
from ossl_vault.format.records import Index, Ledger
from ossl_vault.format.seal import (
    VALUE_MAC,
    Identities,
    PasswordSource,
    decrypt,
    exposure,
    record_mac,
    seal,
)
from ossl_vault.openssl import crypto
from ossl_vault.ops import edits
from ossl_vault.ops.vault import Vault, deleted_names, refuse_deleted
from ossl_vault.storage.audit import Event

GLOB = set("*?[")


def matches(name: str, pattern: str) -> bool:
    """A folder (``db`` or ``db/``: the name itself and everything under it) or a glob.

    As in a shell, ``*`` and ``?`` stay within one component; a ``**``
    component matches any number of them.
    """
    if GLOB & set(pattern):
        return _glob(name.split("/"), pattern.split("/"))
    folder = pattern.rstrip("/")
    return name == folder or name.startswith(folder + "/") or not folder


def _glob(parts: list[str], pats: list[str]) -> bool:
    if not pats:
        return not parts
    if pats[0] == "**":
        return any(_glob(parts[i:], pats[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pats[0]) and _glob(parts[1:], pats[1:])


def select(names: list[str], pattern: str | None) -> list[str]:
    """The names ``list PATTERN`` shows; NotFoundError when a pattern matches none."""
    if pattern is None:
        return names
    chosen = [n for n in names if matches(n, pattern)]
    if not chosen:
        raise NotFoundError(
            f"no secret matches {pattern!r}", hint="'ossl-vault list' shows the names"
        )
    return chosen


def find(names: list[str], pattern: str) -> list[str]:
    """``find``: names holding PATTERN (any case), or matching it when it is a glob."""
    if not pattern:
        raise UsageError("the pattern is empty")
    if GLOB & set(pattern):
        found = [n for n in names if fnmatch.fnmatchcase(n.lower(), pattern.lower())]
    else:
        found = [n for n in names if pattern.lower() in n.lower()]
    if not found:
        raise NotFoundError(f"no secret name matches {pattern!r}")
    return found


def tree(names: list[str]) -> list[tuple[str, str, bool]]:
    """pass's ``ls`` look: (prefix drawing, component, is a folder) per line."""
    root: dict[str, dict] = {}
    for name in names:
        node = root
        for part in name.split("/"):
            node = node.setdefault(part, {})
    lines: list[tuple[str, str, bool]] = []

    def walk(node: dict[str, dict], indent: str) -> None:
        items = sorted(node.items())
        for i, (part, child) in enumerate(items):
            last = i == len(items) - 1
            lines.append((indent + ("└── " if last else "├── "), part, bool(child)))
            walk(child, indent + ("    " if last else "│   "))

    walk(root, "")
    return lines


def _check_target(index: Index, old: str, new: str, force: bool) -> None:
    check_name(new)
    if new == old:
        raise UsageError(f"{old!r} and {new!r} are the same name")
    if new in index.versions and not force:
        what = "a deleted secret" if new in deleted_names(index) else "a secret"
        raise UsageError(f"{what} {new!r} already exists", hint="--force replaces it")


def move(vault: Vault, old: str, new: str, ids: Identities, force: bool = False) -> int:
    """Rename ``old`` to ``new`` with all its versions, ledger, metadata and state.

    Returns the newest version number (unchanged). ``force`` destroys an
    existing ``new`` first; otherwise moving onto it is a usage error.
    """
    index = vault.store.read_index()
    vault.readable(old, None, index)
    _check_target(index, old, new, force)
    keys = {}
    for v in index.versions[old]:
        try:
            keys[v.version] = vault.open(index, v, ids)
        except AccessDenied:
            raise AccessDenied(
                f"cannot open version {v.version} of {old!r} to move it",
                hint=f"'ossl-vault cp {old} {new}' copies the newest value under a fresh key",
            ) from None
    with vault.store.locked():
        index2 = vault.store.read_index()
        if index2.versions.get(old) != index.versions[old]:
            raise VaultError(f"secret {old!r} changed while it was moved", hint="retry")
        refuse_deleted(index2, old)
        _check_target(index2, old, new, force)
        replaced = _replace(index2, new)
        _rename(index2, old, new, keys)
        newest = index2.versions[new][-1]
        fprs = [w.fingerprint for w in index2.wraps[(new, newest.version)]]
        events = [*replaced, vault.event(old), vault.event(new, newest.version, fprs)]
        vault.store.commit(index2, {}, events)
    return newest.version


def _replace(index: Index, name: str) -> list[Event]:
    """``--force``: destroy what stood at ``name``; its own ``purge`` record, if anything."""
    return [Event("purge", name)] if edits.drop(index, name) else []


def _rename(index: Index, old: str, new: str, keys: dict[int, tuple[bytes, bytes]]) -> None:
    """Move every line of ``old`` to ``new``, re-MACing each version with its data key."""
    versions = []
    for v in index.versions.pop(old):
        dk, ct = keys[v.version]
        wraps = [w._replace(name=new) for w in index.wraps.pop((old, v.version))]
        v2 = v._replace(name=new)
        versions.append(v2._replace(tag=record_mac(crypto.hkdf(dk, VALUE_MAC), v2, wraps, ct)))
        index.wraps[(new, v.version)] = wraps
    index.versions[new] = versions
    for table in (index.access, index.meta):
        if old in table:
            table[new] = table.pop(old)
    if old in index.ledger:
        index.ledger[new] = [e._replace(name=new) for e in index.ledger.pop(old)]
    if old in index.state:
        index.state[new] = index.state.pop(old)._replace(name=new)


def copy(
    vault: Vault,
    old: str,
    new: str,
    ids: Identities,
    password: PasswordSource | None = None,
    force: bool = False,
) -> int:
    """Copy the newest value of ``old`` to ``new`` under a fresh data key; version 1.

    The copy keeps the original's readers, own recipient list, per-secret
    password, metadata and expiry; its ledger names everyone who could read
    the original value.
    """
    index = vault.store.read_index()
    v = vault.readable(old, None, index)
    _check_target(index, old, new, force)
    given = password(old) if password and v.password is not None else None
    value = decrypt(v, *vault.open(index, v, ids), lambda _n: given)
    readers = [index.recipients[n] for n in v.recipients if n in index.recipients]
    if not readers:
        raise UsageError(f"secret {old!r} has no reader left to copy it for")
    sealed = seal(value, readers, given)
    with vault.store.locked():
        index = vault.store.read_index()
        if vault.version(old, None, index) != v:
            raise VaultError(f"secret {old!r} changed while it was copied", hint="retry")
        _check_target(index, old, new, force)
        replaced = _replace(index, new)
        number = edits.add_version(index, new, sealed)
        seen = exposure(index.ledger.get(old, [])) | set(v.recipients)
        index.ledger[new] = [Ledger(new, number, "new", tuple(sorted(seen)))]
        if old in index.access:
            index.access[new] = index.access[old]
        if old in index.meta:
            index.meta[new] = dict(index.meta[old])
        if old in index.state and index.state[old].expires:
            index.state[new] = index.state[old]._replace(name=new, deleted=None, purge_after=None)
        fprs = [w.fingerprint for w in sealed.wraps]
        events = [*replaced, vault.event(old, v.version), vault.event(new, number, fprs)]
        vault.store.commit(index, {sealed.version.blob: sealed.ct}, events)
    return number
