"""Which identity opens which wrap (docs/format.md section 6, step 5).

Wraps are found by the fingerprint they carry; a passphrase unlocks a
passphrase recipient's key; a gpg wrap opens when the reader's keyring holds
its secret key; and a wrap labelled with our recipient name but another
fingerprint is probed (an earlier key of ours, or a damaged fingerprint).
"""

from __future__ import annotations

from ossl_vault.errors import AccessDenied, VaultError
from ossl_vault.format.records import Index, Version, Wrap
from ossl_vault.format.seal import Identities
from ossl_vault.format.wrapping import Identity, unlock_passphrase


def match(index: Index, v: Version, wraps: list[Wrap], ids: Identities) -> tuple[Identity, Wrap]:
    """The identity and wrap to open: matched by the key fingerprint on each wrap."""
    by_fpr = {w.fingerprint: w for w in wraps}
    for identity in ids.files:
        if identity.fingerprint in by_fpr:
            return identity, by_fpr[identity.fingerprint]
    lockable = [
        index.recipients[w.recipient]
        for w in wraps
        if w.recipient in index.recipients
        and index.recipients[w.recipient].kind == "passphrase"
        and index.recipients[w.recipient].fingerprint == w.fingerprint
    ]
    if lockable and ids.passphrase is not None:
        passphrase = ids.passphrase()
        if passphrase is not None:
            for r in lockable:
                identity = unlock_passphrase(r, passphrase)
                if identity:
                    return identity, by_fpr[r.fingerprint]
            raise AccessDenied(f"wrong passphrase for {v.name!r}")
    found = _gpg_identity(wraps) if ids.gpg else None
    if found:
        return found
    found = _probe(index, wraps, ids)
    if found:
        return found
    raise AccessDenied(f"no usable identity for {v.name!r}", hint=who(index, v, ids))


def _probe(index: Index, wraps: list[Wrap], ids: Identities) -> tuple[Identity, Wrap] | None:
    """A wrap labelled with the name of the recipient whose current key we hold.

    Its FPR differs from ours: either the version was wrapped for an
    earlier key of that recipient (it will not open: access denied), or
    the FPR was damaged (it opens, and the record MAC, which covers the
    whole wrap line, reports the damage as an integrity failure).
    """
    for identity in ids.files:
        for w in wraps:
            r = index.recipients.get(w.recipient)
            if r is not None and r.fingerprint == identity.fingerprint:
                return identity, w
    return None


def _gpg_identity(wraps: list[Wrap]) -> tuple[Identity, Wrap] | None:
    """A gpg wrap whose secret key the reader's GnuPG keyring holds."""
    gpg_wraps = [w for w in wraps if w.scheme == "gpg"]
    if not gpg_wraps:
        return None
    from ossl_vault.keys import gpg

    for w in gpg_wraps:
        try:
            if gpg.has_secret_key(w.fingerprint):
                return Identity(f"gpg key {w.fingerprint}", None, w.fingerprint), w
        except VaultError:
            return None  # no gpg here: not an identity source
    return None


def who(index: Index, v: Version, ids: Identities) -> str:
    """The hint of an access denial: who can read it, and why we cannot."""
    hint = "readable by: " + ", ".join(v.recipients)
    mine = {i.fingerprint for i in ids.files if i.key is not None}
    renewed = [n for n in v.recipients if index.recipients.get(n) and
               index.recipients[n].fingerprint in mine]  # fmt: skip
    if renewed:
        hint += f"; version {v.version} was wrapped for an earlier key of {renewed[0]!r}"
    elif any(index.recipients.get(n) and index.recipients[n].kind == "passphrase"
             for n in v.recipients):  # fmt: skip
        hint += " (give --passphrase-file FILE for a passphrase recipient)"
    if not ids.files and ids.searched:
        hint += f"; no key file found at {ids.searched}"
    return hint
