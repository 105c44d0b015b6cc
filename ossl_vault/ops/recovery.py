"""The recovery quorum: a 256-bit recovery key split into SLIP-39 shares.

The recovery key RK (32 bytes of ``openssl rand``) is never stored. It names
an X25519 key pair: the private scalar is ``HKDF(RK, "ossl-vault/v1/recovery-x25519")``
and its public key is the vault's ``recovery`` recipient (kind ``recovery``,
docs/format.md section 4.5), wrapped into secrets like any X25519 recipient.
The fingerprint of that recipient is the key-check value: shares that
rebuild any other key are refused, never turned into a wrong key.

Shares are SLIP-39 mnemonics made by ``shamir-mnemonic`` (the Trezor
reference implementation); docs/recovery.md tells the whole procedure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import shamir_mnemonic
from shamir_mnemonic.share import Share

from ossl_vault.errors import AccessDenied, NotFoundError, UsageError, VaultError
from ossl_vault.format.fields import check_recipient_name
from ossl_vault.format.records import Index, Recipient
from ossl_vault.format.seal import Identities
from ossl_vault.format.wrapping import Identity, wrap
from ossl_vault.keys import pubkeys
from ossl_vault.openssl import crypto
from ossl_vault.openssl.proc import SecretFds, openssl
from ossl_vault.ops import edits
from ossl_vault.ops.vault import Vault

NAME = "recovery"  # the recipient's name
KIND = "recovery"  # its kind (format.md section 2.1)
INFO = "ossl-vault/v1/recovery-x25519"
# PKCS#8 PrivateKeyInfo of an X25519 key, up to the 32-byte scalar (RFC 8410)
PKCS8_X25519_PREFIX = bytes.fromhex("302e020100300506032b656e04220420")
KEY_LEN = 32
MAX_SHARES = 16  # SLIP-39: at most 16 members in a group
ITERATION_EXPONENT = 1  # SLIP-39 encryption: 4 rounds of PBKDF2 with 20000 iterations each
MISMATCH = "these shares do not rebuild this vault's recovery key"


@dataclass(frozen=True)
class RecoveryKey:
    """A recovery key and the X25519 key pair it names (held in memory only)."""

    key: bytes = field(repr=False)
    pem: bytes = field(repr=False)
    spki: bytes

    @property
    def fingerprint(self) -> str:
        """The key-check value: the FPR of the ``recovery`` recipient."""
        return crypto.sha256_hex(self.spki)

    def identity(self) -> Identity:
        """An identity that opens the wraps made for this key."""
        return Identity("recovery key", self.pem, spki=self.spki)

    def public(self) -> pubkeys.PublicKey:
        return pubkeys.PublicKey(KIND, self.spki)


def from_key(rk: bytes) -> RecoveryKey:
    """The X25519 key pair of a recovery key (format.md section 4.5)."""
    if len(rk) != KEY_LEN:
        raise UsageError(f"a recovery key is {KEY_LEN} bytes, not {len(rk)}")
    der = PKCS8_X25519_PREFIX + crypto.hkdf(rk, INFO)
    with SecretFds(der) as (fd,):
        args = ["pkey", "-inform", "DER", "-in", f"/dev/fd/{fd}"]
        pem = openssl(args, pass_fds=[fd], what="openssl pkey -inform DER")
    return RecoveryKey(rk, pem, crypto.public_der(pem))


def new_key() -> RecoveryKey:
    """A fresh recovery key from ``openssl rand``."""
    return from_key(crypto.rand(KEY_LEN))


def from_hex(text: str) -> RecoveryKey:
    """A recovery key as ``--print-key`` writes it: 64 hex digits."""
    text = text.strip().lower()
    if len(text) != 2 * KEY_LEN or any(c not in "0123456789abcdef" for c in text):
        raise UsageError("a recovery key is 64 hex digits")
    return from_key(bytes.fromhex(text))


# -- shares --------------------------------------------------------------------------


def check_counts(threshold: int, count: int) -> None:
    """Refuse a split SLIP-39 cannot make."""
    if not 1 <= count <= MAX_SHARES:
        raise UsageError(f"--shares {count} is out of range (1 to {MAX_SHARES})")
    if not 1 <= threshold <= count:
        raise UsageError(f"--threshold {threshold} is out of range (1 to {count}, the shares)")
    if threshold == 1 and count > 1:
        raise UsageError(
            "SLIP-39 does not allow a threshold of 1 with several shares",
            hint="use --threshold 2 or more, or --shares 1",
        )


def make_shares(rk: RecoveryKey, threshold: int, count: int) -> list[str]:
    """``count`` SLIP-39 mnemonics, any ``threshold`` of which rebuild the key."""
    check_counts(threshold, count)
    groups = shamir_mnemonic.generate_mnemonics(
        group_threshold=1,
        groups=[(threshold, count)],
        master_secret=rk.key,
        passphrase=b"",
        extendable=True,
        iteration_exponent=ITERATION_EXPONENT,
    )
    return list(groups[0])


def share_text(mnemonic: str, number: int, count: int, threshold: int, fpr: str) -> str:
    """One share as printed or written to a file: comment lines, then the words."""
    return (
        f"# ossl-vault recovery share {number} of {count}: any {threshold} of them "
        "rebuild the recovery key\n"
        f"# key-check (fingerprint of the vault's recovery recipient): {fpr}\n"
        "# keep it secret and offline; docs/recovery.md tells how to use it\n"
        f"{mnemonic}\n"
    )


def parse_shares(text: str) -> list[str]:
    """The mnemonics in a share file or prompt answer: one per line; '#' lines are comments."""
    out = []
    for line in text.splitlines():
        words = line.strip().lower().split()
        if words and not words[0].startswith("#"):
            out.append(" ".join(words))
    return out


def threshold_of(mnemonic: str, number: int = 1) -> int:
    """How many shares the split of ``mnemonic`` needs."""
    return _decode(mnemonic, number).member_threshold


def _decode(mnemonic: str, number: int) -> Share:
    try:
        return Share.from_mnemonic(mnemonic)
    except (shamir_mnemonic.MnemonicError, ValueError, KeyError) as e:
        reason = str(e).rstrip(".") or type(e).__name__
        raise UsageError(
            f"share {number} is not a valid SLIP-39 share: {reason[:1].lower()}{reason[1:]}",
            hint="check every word against the written share",
        ) from None


def combine(mnemonics: list[str]) -> bytes:
    """Rebuild a recovery key from enough shares of one split.

    A malformed share is a usage error (exit 2); too few shares, or shares
    of different splits, are access denied (exit 4).
    """
    if not mnemonics:
        raise UsageError("no recovery shares given")
    shares: list[Share] = []
    for number, text in enumerate(mnemonics, start=1):
        share = _decode(text, number)
        if shares and share.common_parameters() != shares[0].common_parameters():
            raise AccessDenied(MISMATCH, hint=f"share {number} comes from another split")
        if shares and share.group_parameters() != shares[0].group_parameters():
            raise AccessDenied(MISMATCH, hint=f"share {number} comes from another split")
        twin = next((s for s in shares if s.index == share.index), None)
        if twin is None:
            shares.append(share)
        elif twin != share:
            raise AccessDenied(MISMATCH, hint=f"share {number} comes from another split")
    need = shares[0].member_threshold
    if shares[0].group_count != 1 or shares[0].group_threshold != 1:
        raise UsageError("these shares use SLIP-39 groups, which ossl-vault does not make")
    if len(shares) < need:
        raise AccessDenied(
            f"{len(shares)} distinct share(s) given; this split needs {need}",
            hint=f"give {need - len(shares)} more share(s) of the same split",
        )
    try:
        rk = shamir_mnemonic.combine_mnemonics([s.mnemonic() for s in shares[:need]])
    except (shamir_mnemonic.MnemonicError, ValueError) as e:
        raise AccessDenied(MISMATCH, hint=f"SLIP-39 says: {e}") from None
    if len(rk) != KEY_LEN:
        raise AccessDenied(MISMATCH, hint=f"they hold {len(rk)} bytes, not {KEY_LEN}")
    return rk


# -- the vault's recovery recipient ---------------------------------------------------


def find(index: Index) -> Recipient | None:
    """The vault's recovery recipient, if it has one."""
    return next((r for r in index.recipients.values() if r.kind == KIND), None)


def uncovered(index: Index, r: Recipient) -> list[str]:
    """Secrets whose newest version has no wrap for the recovery key ``r``."""
    return sorted(
        name
        for name, versions in index.versions.items()
        if r.fingerprint not in {w.fingerprint for w in index.wraps[(name, versions[-1].version)]}
    )


def check(vault: Vault, rk: RecoveryKey) -> Recipient:
    """Refuse a key that is not this vault's recovery key (the key-check value)."""
    r = find(vault.store.read_index())
    if r is None:
        raise NotFoundError(
            "this vault has no recovery key", hint="make one with 'ossl-vault recovery split'"
        )
    if r.fingerprint != rk.fingerprint:
        raise AccessDenied(
            MISMATCH,
            hint="they may belong to another vault, or to a split replaced by 'recovery rotate'",
        )
    return r


def recover(vault: Vault, mnemonics: list[str]) -> RecoveryKey:
    """Combine shares and check the result against the vault."""
    rk = from_key(combine(mnemonics))
    check(vault, rk)
    return rk


@dataclass
class Added:
    """What adding a reader to every secret did."""

    recipient: Recipient
    secrets: list[str]  # newest versions now wrapped for it
    skipped: list[str]  # secrets the identities could not open


def _open_all(
    vault: Vault,
    index: Index,
    ids: Identities,
    names: Iterable[str],
    progress: Callable[[str, str], None] | None = None,
) -> tuple[dict[str, tuple[bytes, bytes]], list[str]]:
    """Data key and ciphertext of each secret's newest version; and those we cannot open."""

    def one(name: str) -> tuple[bytes, bytes] | None:
        try:
            return vault.open(index, index.versions[name][-1], ids)
        except AccessDenied:
            return None

    names = sorted(names)
    results = []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        for name, result in zip(names, pool.map(one, names), strict=True):
            results.append(result)
            if progress is not None:
                progress(name, "opened" if result else "skipped")
    opened = {n: r for n, r in zip(names, results, strict=True) if r is not None}
    return opened, [n for n, r in zip(names, results, strict=True) if r is None]


def add_everywhere(
    vault: Vault,
    name: str,
    key: pubkeys.PublicKey,
    ids: Identities,
    default: bool = True,
    require_all: bool = True,
    progress: Callable[[str, str], None] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> Added:
    """Add a recipient and wrap the newest version of every secret for it, in one commit.

    Secrets with their own recipient list get it added there too, so
    ``rekey`` and later versions keep it. ``require_all``: refuse when the
    identities cannot open some secret (else skip those). ``before_commit``
    runs once everything is ready, before the lock (a split prints its
    shares there: delivered before the vault depends on them).
    """
    check_recipient_name(name)
    index = vault.store.read_index()
    before = index.serialize()
    r = edits.add_key(index, name, key, default)
    opened, skipped = _open_all(vault, index, ids, index.versions, progress)
    if skipped and require_all:
        shown = ", ".join(repr(n) for n in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        raise AccessDenied(
            f"cannot open {len(skipped)} secret(s) to wrap them for {name!r}: {shown}",
            hint="give --identity for each of them, or --skip-unreadable to leave them out",
        )
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        wraps = dict(zip(opened, pool.map(lambda dk: wrap(r, dk[0]), opened.values()), strict=True))
    for secret, (dk, ct) in opened.items():
        edits.rewrap(index, secret, dk, ct, [wraps[secret]], set())
        if secret in index.access:
            index.access[secret] = tuple(sorted({*index.access[secret], name}))
    if before_commit is not None:
        before_commit()
    with vault.store.locked():
        if vault.store.read_index().serialize() != before:
            raise VaultError("the vault changed meanwhile", hint="run it again")
        events = [vault.event(s, index.versions[s][-1].version, [r.fingerprint]) for s in opened]
        vault.store.commit(index, {}, [*events, vault.event(keys=[r.fingerprint])])
    return Added(r, sorted(opened), skipped)


def attach(
    vault: Vault,
    rk: RecoveryKey,
    ids: Identities,
    require_all: bool = True,
    progress: Callable[[str, str], None] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> Added:
    """Make ``rk`` the vault's recovery key: a default recipient of every secret."""
    existing = find(vault.store.read_index())
    if existing is not None:
        raise UsageError(
            f"this vault already has a recovery key (recipient {existing.name!r})",
            hint="make new shares with 'ossl-vault recovery rotate'",
        )
    # A new recovery key after 'recipient rm recovery' takes the fixed name again:
    # older versions' wraps under it keep the old key's FPR, as after a rotate.
    return add_everywhere(vault, NAME, rk.public(), ids, True, require_all, progress, before_commit)


def replace_key(
    vault: Vault,
    rk: RecoveryKey,
    ids: Identities,
    before_commit: Callable[[], None] | None = None,
) -> list[str]:
    """Put ``rk`` in place of the current recovery key; newest versions re-wrapped in one commit.

    Older versions keep their wraps for the old key (history): old shares
    open nothing written from now on.
    """
    from ossl_vault.ops.sharing import renew

    old = find(vault.store.read_index())
    if old is None:
        raise NotFoundError(
            "this vault has no recovery key to rotate",
            hint="make one with 'ossl-vault recovery split'",
        )
    return renew(vault, old.name, rk.public(), ids, before_commit)
