"""Who can read what: recipients, sharing, rekeying, renewal and the exposure ledger.

Every function takes a :class:`~ossl_vault.ops.vault.Vault`. Changing the readers
of a secret needs its data key, so the caller's identities must open it.
Adding readers re-wraps the same data key; removing readers re-encrypts the
value under a fresh one, because the removed reader may have kept the old key.
"""

from __future__ import annotations

from collections.abc import Callable

from ossl_vault.errors import NotFoundError, UsageError, VaultError
from ossl_vault.format.fields import check_recipient_name
from ossl_vault.format.records import Index, Recipient
from ossl_vault.format.seal import Identities, PasswordSource, check_password
from ossl_vault.format.wrapping import wrap
from ossl_vault.keys import pubkeys
from ossl_vault.openssl import crypto
from ossl_vault.ops import bulk, edits
from ossl_vault.ops.vault import Vault
from ossl_vault.storage.audit import Event


def add_recipient(
    vault: Vault, name: str, key: pubkeys.PublicKey, default: bool = True
) -> Recipient:
    """Add a key recipient; it is wrapped into secrets written from now on."""
    with vault.store.locked():
        index = vault.store.read_index()
        r = edits.add_key(index, name, key, default)
        vault.store.commit(index, {}, vault.event(keys=[r.fingerprint]))
    return r


def set_default(vault: Vault, name: str, default: bool) -> bool:
    """Flag a recipient ``default`` (new secrets are shared with it) or not; a config change.

    Returns whether anything changed; the change is an audit record either way.
    """
    with vault.store.locked():
        index = vault.store.read_index()
        r = index.recipients.get(name)
        if r is None:
            raise NotFoundError(f"no recipient {name!r}")
        if r.kind == "recovery" and not default:
            raise UsageError("the recovery key opens every secret: it stays default")
        index.recipients[name] = r._replace(default=default)
        vault.store.commit(index, {}, vault.event(keys=[r.fingerprint]))
    return r.default != default


def add_passphrase(vault: Vault, name: str, passphrase: bytes, default: bool = True) -> Recipient:
    """Add a passphrase recipient: an X25519 key kept encrypted by the passphrase."""
    check_recipient_name(name)
    check_password(passphrase, "passphrase")
    pem = crypto.genpkey("X25519")
    private = crypto.pkcs8_encrypt(pem, passphrase)
    key = pubkeys.PublicKey("x25519", crypto.public_der(pem))
    with vault.store.locked():
        index = vault.store.read_index()
        r = edits.add_key(index, name, key, default, private)
        vault.store.commit(index, {}, vault.event(keys=[r.fingerprint]))
    return r


def add_gpg(vault: Vault, name: str, keyid: str, default: bool = True) -> Recipient:
    """Add a GnuPG key from the caller's keyring (kept in the vault as its export)."""
    from ossl_vault.keys import gpg

    fpr, public = gpg.export_public(keyid)
    return add_recipient(vault, name, pubkeys.PublicKey("gpg", public, fpr=fpr), default)


def add_github(vault: Vault, name: str, user: str, default: bool = True) -> list[Recipient]:
    """Add each usable SSH key of a GitHub user: NAME, NAME-2, NAME-3, ..."""
    from ossl_vault.keys import github

    found = github.usable_keys(github.fetch_keys(user), f"github:{user}")
    names = [name] + [f"{name}-{i}" for i in range(2, len(found) + 1)]
    for n in names:
        check_recipient_name(n)
    with vault.store.locked():
        index = vault.store.read_index()
        added = [edits.add_key(index, n, key, default) for n, key in zip(names, found, strict=True)]
        vault.store.commit(index, {}, vault.event(keys=[r.fingerprint for r in added]))
    return added


def _newest_with(index: Index, who: str) -> list[str]:
    return sorted(n for n, vs in index.versions.items() if who in vs[-1].recipients)


def remove_recipient(
    vault: Vault,
    name: str,
    ids: Identities,
    force: bool = False,
    keep_keys: bool = False,
    password: PasswordSource | None = None,
    skip_unreadable: bool = False,
    progress: bulk.Progress | None = None,
) -> bulk.Result:
    """Drop a recipient from every secret, then from the vault, in one commit.

    Each secret it could read is re-encrypted under a fresh data key for the
    others (``keep_keys``: its wrap is only dropped). Refuses to leave a
    secret with no reader unless ``force``, which deletes such secrets. With
    ``skip_unreadable``, the secrets that cannot be opened keep their wrap
    for it, and so does the recipient: run it again to finish.
    """

    def plan(index: Index) -> tuple[list[bulk.Job], list[tuple[str, str]]]:
        if name not in index.recipients:
            raise NotFoundError(f"no recipient {name!r}")
        affected = _newest_with(index, name)
        orphans = [n for n in affected if index.versions[n][-1].recipients == (name,)]
        if orphans and not force:
            raise UsageError(
                f"removing {name!r} would leave {len(orphans)} secret(s) with no reader: "
                + ", ".join(repr(o) for o in orphans),
                hint="share them with someone else first, or use --force to delete them",
            )
        jobs = [
            bulk.Job(s, tuple(r for r in index.versions[s][-1].recipients if r != name),
                     fresh=not keep_keys, set_access=s in index.access, detail=f"-{name}")
            for s in affected if s not in orphans
        ]  # fmt: skip
        return jobs, []

    def finish(index: Index) -> list[Event]:
        gone = index.recipients.pop(name)
        orphans = _newest_with(index, name)
        for orphan in orphans:
            edits.drop(index, orphan)
        for secret, who in list(index.access.items()):
            index.access[secret] = tuple(r for r in who if r != name)
        return [vault.event(o) for o in orphans] + [vault.event(keys=[gone.fingerprint])]

    return bulk.run(vault, plan, ids, password, skip_unreadable, progress, finish)


def _recipients(index: Index, names: list[str]) -> list[Recipient]:
    missing = [n for n in names if n not in index.recipients]
    if missing:
        raise NotFoundError(f"no recipient {missing[0]!r}", hint="'ossl-vault recipient list'")
    return [index.recipients[n] for n in sorted(set(names))]


def share(vault: Vault, name: str, users: list[str], ids: Identities) -> list[str]:
    """Give ``users`` a wrap of the current version; returns who was added."""
    index = vault.store.read_secret(name)
    v = vault.version(name, None, index)
    new = [r for r in _recipients(index, users) if r.name not in v.recipients]
    dk, ct = vault.open(index, v, ids)  # only a reader may share, even with nobody new
    wraps = [wrap(r, dk) for r in new]
    with vault.store.locked():
        index = vault.store.read_secret(name)
        now = vault.version(name, None, index)
        if (now.version, now.tag) != (v.version, v.tag):
            # Another writer came first: redo it on their version, under the lock
            # this time, so concurrent writers serialise instead of failing.
            v = now
            new = [r for r in _recipients(index, users) if r.name not in v.recipients]
            dk, ct = vault.open(index, v, ids)
            wraps = [wrap(r, dk) for r in new]
        edits.rewrap(index, name, dk, ct, wraps, set())
        index.access[name] = vault.version(name, None, index).recipients
        event = vault.event(name, v.version, [w.fingerprint for w in wraps])
        vault.store.commit(index, {}, event)
    return [r.name for r in new]


def unshare(
    vault: Vault, name: str, users: list[str], ids: Identities, password: PasswordSource | None
) -> list[str]:
    """Re-encrypt the value under a fresh key without ``users``; returns who lost access.

    The removed users may have read the current value: it should be changed
    at its source (:func:`exposure` keeps the record).
    """
    index = vault.store.read_index()
    v = vault.version(name, None, index)
    _recipients(index, users)
    gone = sorted(set(users) & set(v.recipients))

    def plan(index: Index) -> tuple[list[bulk.Job], list[tuple[str, str]]]:
        v = vault.version(name, None, index)
        rest = tuple(r for r in v.recipients if r not in users)
        if not rest:
            raise UsageError(
                f"unsharing would leave {name!r} with no reader", hint="use 'ossl-vault rm' instead"
            )
        if rest == v.recipients:
            return [], []
        return [bulk.Job(name, rest, fresh=True, set_access=True)], []

    if gone:
        bulk.run(vault, plan, ids, password)
    elif not [r for r in v.recipients if r not in users]:
        plan(index)  # says why
    return gone


def wanted(index: Index, name: str) -> tuple[str, ...]:
    """The recipients a secret should have: its own list, else the vault's defaults."""
    if name in index.access:
        return tuple(n for n in index.access[name] if n in index.recipients)
    return tuple(sorted(r.name for r in index.recipients.values() if r.default))


def rekey(
    vault: Vault,
    ids: Identities,
    password: PasswordSource | None = None,
    skip_unreadable: bool = False,
    progress: bulk.Progress | None = None,
) -> bulk.Result:
    """Bring every secret to its wanted recipients, in one commit.

    Only secrets whose recipients differ are touched (as pass does): a
    missing reader gets a wrap of the same data key, a removed one costs a
    fresh data key.
    """

    def plan(index: Index) -> tuple[list[bulk.Job], list[tuple[str, str]]]:
        jobs, left = [], []
        for name in sorted(index.versions):
            have = set(index.versions[name][-1].recipients)
            want = set(wanted(index, name))
            if have == want:
                continue
            if not want:
                left.append((name, "no wanted recipient left"))
            elif have <= want:
                jobs.append(bulk.Job(name, tuple(sorted(want)), fresh=False,
                                     detail="+" + ",".join(sorted(want - have))))  # fmt: skip
            else:
                jobs.append(bulk.Job(name, tuple(sorted(want)), fresh=True,
                                     detail="-" + ",".join(sorted(have - want))))  # fmt: skip
        return jobs, left

    return bulk.run(vault, plan, ids, password, skip_unreadable, progress)


def renew(
    vault: Vault,
    name: str,
    key: pubkeys.PublicKey,
    ids: Identities,
    before_commit: Callable[[], None] | None = None,
) -> list[str]:
    """Replace a recipient's key and re-wrap every secret it reads, in one commit.

    Older versions keep their wraps for the old key (their FPR says which).
    ``before_commit`` runs when all is ready, before the lock (recovery
    rotate prints its new shares there).
    """
    index = vault.store.read_index()
    old = index.recipients.get(name)
    if old is None:
        raise NotFoundError(f"no recipient {name!r}")
    if old.kind == "recovery" and key.kind != "recovery":
        raise UsageError(
            "the recovery recipient is renewed by its quorum", hint="ossl-vault recovery rotate"
        )
    if old.kind in ("passphrase", "gpg") or key.kind == "recovery" != old.kind:
        raise UsageError(f"recipient {name!r} is a {old.kind} recipient, not a certificate or key")
    if key.fingerprint == old.fingerprint:  # a renewal that kept the key: new cert only
        with vault.store.locked():
            index = vault.store.read_index()
            index.recipients[name] = index.recipients[name]._replace(cert=key.cert)
            vault.store.commit(index, {}, vault.event(keys=[key.fingerprint]))
        return []
    if any(r.fingerprint == key.fingerprint for r in index.recipients.values()):
        raise UsageError("that key is already a recipient")
    new = old._replace(kind=key.kind, fingerprint=key.fingerprint, spki=key.spki, cert=key.cert)
    before = index.serialize()
    secrets = _newest_with(index, name)
    opened = {s: vault.open(index, vault.version(s, None, index), ids) for s in secrets}
    index.recipients[name] = new
    for secret, (dk, ct) in opened.items():
        edits.rewrap(index, secret, dk, ct, [wrap(new, dk)], set())
    if before_commit is not None:
        before_commit()
    with vault.store.locked():
        if vault.store.read_index().serialize() != before:
            raise VaultError("the vault changed during the renewal", hint="run it again")
        events = [vault.event(s, index.versions[s][-1].version, [key.fingerprint]) for s in secrets]
        events.append(vault.event(keys=[old.fingerprint, key.fingerprint]))
        vault.store.commit(index, {}, events)
    return secrets


EXPIRY_WARNING_DAYS = 30


def expiry(r: Recipient) -> str | None:
    """The date a recipient's certificate ends, if it came from one."""
    if r.cert is None:
        return None
    try:
        return pubkeys.cert_not_after(r.cert).date().isoformat()
    except ValueError:
        return None


def expiring(index: Index, days: int = EXPIRY_WARNING_DAYS) -> list[tuple[str, int, str]]:
    """(name, days left, date) of certificates expired or ending within ``days``."""
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    out = []
    for r in sorted(index.recipients.values(), key=lambda r: r.name):
        if r.cert is None:
            continue
        try:
            end = pubkeys.cert_not_after(r.cert)
        except ValueError:
            continue
        left = (end - now).days if end >= now else -1 - (now - end).days
        if left < days:
            out.append((r.name, left, end.date().isoformat()))
    return out
