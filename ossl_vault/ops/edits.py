"""Changes to a parsed vault index, as pure functions: no files, no lock, no openssl children.

The operations (:mod:`ossl_vault.ops.vault`, sharing, recovery, import)
compute a change with these under the vault lock, then commit the index once.
"""

from __future__ import annotations

from ossl_vault.errors import NotFoundError, UsageError
from ossl_vault.format.fields import check_recipient_name
from ossl_vault.format.records import Index, Ledger, Recipient, Wrap, fingerprint, line_of
from ossl_vault.format.seal import KEEP_VERSIONS, VALUE_MAC, Sealed, now, record_mac
from ossl_vault.format.secretinfo import State
from ossl_vault.keys import pubkeys
from ossl_vault.openssl import crypto


def add_key(
    index: Index,
    name: str,
    key: pubkeys.PublicKey,
    default: bool,
    private: bytes | None = None,
) -> Recipient:
    """A new recipient in ``index``; a name older versions still label is taken too
    (their wraps keep the old key's FPR, as after a renewal)."""
    check_recipient_name(name)
    if name in index.recipients:
        raise UsageError(f"recipient {name!r} already exists")
    # A removed recipient's name may label wraps of older versions: it can be
    # reused, since every wrap carries its key's fingerprint (format.md section 4).
    for other in index.recipients.values():
        if other.fingerprint == key.fingerprint:
            raise UsageError(f"that key is already recipient {other.name!r}")
    kind = "passphrase" if private is not None else key.kind
    fpr = key.fpr or fingerprint(key.spki, private)
    r = Recipient(name, kind, fpr, now(), default, key.spki, key.cert, private)
    index.recipients[name] = r
    return r


def recipients_for(index: Index, to: list[str] | None, name: str | None = None) -> list[Recipient]:
    """Who a value is for: ``to``, else the secret's own list, else the defaults.

    A recovery-key recipient is always added: the quorum opens every secret.
    """
    if not to and name in index.access:
        to = [n for n in index.access[name] if n in index.recipients]
    if to:
        missing = [n for n in to if n not in index.recipients]
        if missing:
            raise NotFoundError(f"no recipient {missing[0]!r}")
        quorum = [r.name for r in index.recipients.values() if r.kind == "recovery"]
        return sorted({index.recipients[n] for n in [*to, *quorum]}, key=lambda r: r.name)
    chosen = sorted((r for r in index.recipients.values() if r.default), key=lambda r: r.name)
    if not chosen:
        raise UsageError(
            "the vault has no default recipients",
            hint="add one with 'ossl-vault recipient add NAME CERT', or use --to",
        )
    return chosen


def add_version(index: Index, name: str, sealed: Sealed, origin: str = "new") -> int:
    """Append a sealed value as the next version of ``name``; keep the last ten.

    ``origin`` is "new" for a value a user gave, "same" for the previous
    value re-encrypted; the ledger keeps it, and the readers, for good.
    """
    versions = index.versions.setdefault(name, [])
    number = versions[-1].version + 1 if versions else 1
    v = sealed.version._replace(name=name, version=number)
    wraps = [w._replace(name=name, version=number) for w in sealed.wraps]
    v = v._replace(tag=record_mac(sealed.mac_key, v, wraps, sealed.ct))
    versions.append(v)
    index.wraps[(name, number)] = wraps
    index.ledger.setdefault(name, []).append(Ledger(name, number, origin, v.recipients))
    for old in versions[:-KEEP_VERSIONS]:
        index.wraps.pop((name, old.version), None)
    del versions[:-KEEP_VERSIONS]
    return number


def rewrap(index: Index, name: str, dk: bytes, ct: bytes, add: list[Wrap], drop: set[str]) -> None:
    """Change the wraps of the newest version in place (same data key), re-MAC it."""
    v = index.versions[name][-1]
    old = index.wraps[(name, v.version)]
    wraps = [w for w in old if w.recipient not in drop and
             w.recipient not in {a.recipient for a in add}]  # fmt: skip
    wraps += [w._replace(name=name, version=v.version) for w in add]
    wraps.sort(key=lambda w: line_of(w.fields()))
    v2 = v._replace(recipients=tuple(sorted(w.recipient for w in wraps)))
    v2 = v2._replace(tag=record_mac(crypto.hkdf(dk, VALUE_MAC), v2, wraps, ct))
    index.versions[name][-1] = v2
    index.wraps[(name, v.version)] = wraps
    entries = index.ledger.setdefault(name, [])
    if entries and entries[-1].version == v.version:
        readers = tuple(sorted(set(entries[-1].readers) | set(v2.recipients)))
        entries[-1] = entries[-1]._replace(readers=readers)
    else:  # a version older than the ledger (cannot happen for vaults we wrote)
        entries.append(Ledger(name, v.version, "new", v2.recipients))


def drop(index: Index, name: str) -> int:
    versions = index.versions.pop(name, [])
    for v in versions:
        index.wraps.pop((name, v.version), None)
    index.access.pop(name, None)
    index.ledger.pop(name, None)
    index.meta.pop(name, None)
    index.state.pop(name, None)
    return len(versions)


def set_info(
    index: Index, name: str, meta: dict[str, str | None], expires: str | bool | None = False
) -> bool:
    """Change a secret's metadata (a None value removes a key) and its expiry.

    ``expires`` False leaves the expiry alone; None clears it. Returns whether
    the expiry changed (its own audit record).
    """
    pairs = index.meta.setdefault(name, {})
    for key, text in meta.items():
        if text is None:
            pairs.pop(key, None)
        else:
            pairs[key] = text
    if not pairs:
        index.meta.pop(name, None)
    if expires is False:
        return False
    old = index.state.get(name, State(name))
    if old.expires == expires:
        return False
    new = old._replace(expires=expires or None)
    if new.empty:
        index.state.pop(name, None)
    else:
        index.state[name] = new
    return True


def set_deleted(index: Index, name: str, when: str | None, purge_after: str | None) -> None:
    """Mark a secret deleted (soft) at ``when``, or bring it back (None)."""
    old = index.state.get(name, State(name))
    new = old._replace(deleted=when, purge_after=purge_after)
    if new.empty:
        index.state.pop(name, None)
    else:
        index.state[name] = new
