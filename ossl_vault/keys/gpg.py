"""GnuPG recipients: wrap a data key for an OpenPGP key, unwrap it with the reader's keyring.

A GPG recipient is kept as its fingerprint (lowercase hex) and its binary public
key export. Wrapping never touches the writer's own keyring: the stored key is
imported into a throwaway GNUPGHOME (0700, no gpg.conf, no agent) and the data
key is encrypted there with ``--trust-model always``, binary, uncompressed.
Unwrapping runs gpg in the reader's keyring (``gnupghome`` or ``$GNUPGHOME``
or ``~/.gnupg``); gpg-agent supplies the secret key and asks for its
passphrase, unless one is given: then it travels on gpg's stdin
(``--pinentry-mode loopback --passphrase-fd 0``), never on argv.

Every gpg run goes through python-gnupg, which reads gpg's machine-readable
``[GNUPG:]`` status lines from stderr; the verdicts here rest on those lines
and on gpg's exit code, never on its translated human messages. Nothing is
printed: python-gnupg's logger gets a NullHandler.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import gnupg

from ossl_vault.errors import (
    AccessDenied,
    IntegrityError,
    NotFoundError,
    OperationError,
    UsageError,
)

logging.getLogger("gnupg").addHandler(logging.NullHandler())

KEY_LEN = 32
MIN_GPG = (2, 1)
INSTALL_HINT = "apt-get install gnupg"
_FPR = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# The user's keyring: keep their gpg.conf, skip the slow trustdb check.
_USER_OPTS = ["--no-auto-check-trustdb"]
# A throwaway keyring: no config files, never start gpg-agent or dirmngr.
_THROWAWAY_OPTS = ["--no-options", "--no-autostart", "--no-auto-check-trustdb"]

# libgpg-error codes (the low 16 bits of an ``ERROR`` status value).
_DENIED = {
    11: "bad passphrase",  # GPG_ERR_BAD_PASSPHRASE
    17: "no secret key",  # GPG_ERR_NO_SECKEY
    31: "invalid passphrase",  # GPG_ERR_INV_PASSPHRASE
    54: "unusable secret key",  # GPG_ERR_UNUSABLE_SECKEY
    62: "timeout",  # GPG_ERR_TIMEOUT
    85: "no pinentry to ask for the passphrase",  # GPG_ERR_NO_PIN_ENTRY
    86: "pinentry failed",  # GPG_ERR_PIN_ENTRY
    87: "bad PIN",  # GPG_ERR_BAD_PIN
    91: "wrong card",  # GPG_ERR_WRONG_CARD
    99: "canceled",  # GPG_ERR_CANCELED
    110: "card removed",  # GPG_ERR_CARD_REMOVED
    114: "not confirmed",  # GPG_ERR_NOT_CONFIRMED
    130: "PIN blocked",  # GPG_ERR_PIN_BLOCKED
    177: "no passphrase given",  # GPG_ERR_NO_PASSPHRASE
    178: "no PIN given",  # GPG_ERR_NO_PIN
    198: "canceled",  # GPG_ERR_FULLY_CANCELED
}
_CORRUPT = {
    2: "unknown packet",  # GPG_ERR_UNKNOWN_PACKET
    3: "unknown version",  # GPG_ERR_UNKNOWN_VERSION
    4: "bad public key algorithm",  # GPG_ERR_PUBKEY_ALGO
    8: "bad signature",  # GPG_ERR_BAD_SIGNATURE
    10: "checksum error",  # GPG_ERR_CHECKSUM (ECDH session key unwrap)
    12: "bad cipher algorithm",  # GPG_ERR_CIPHER_ALGO
    14: "invalid packet",  # GPG_ERR_INV_PACKET
    18: "session key does not decode",  # GPG_ERR_WRONG_SECKEY (RSA PKCS#1 padding)
    20: "bad compression algorithm",  # GPG_ERR_COMPR_ALGO
    30: "bad MPI",  # GPG_ERR_BAD_MPI
    38: "unexpected data",  # GPG_ERR_UNEXPECTED
    58: "no data",  # GPG_ERR_NO_DATA
    65: "invalid object",  # GPG_ERR_INV_OBJ
    66: "too short",  # GPG_ERR_TOO_SHORT
    67: "too large",  # GPG_ERR_TOO_LARGE
    74: "truncated",  # GPG_ERR_TRUNCATED
    79: "invalid data",  # GPG_ERR_INV_DATA
    82: "invalid session key",  # GPG_ERR_INV_SESSION_KEY
    83: "invalid S-expression",  # GPG_ERR_INV_SEXP
    89: "bad data",  # GPG_ERR_BAD_DATA
}
# Status keywords that mean gpg read the input as OpenPGP and found it wrong.
_BAD_INPUT = {"NODATA", "UNEXPECTED", "DECRYPTION_FAILED", "ENC_TO", "BEGIN_DECRYPTION"}

Status = list[tuple[str, str]]


class NoSecretKey(AccessDenied):
    """gpg found no secret key in the reader's keyring for any key id the wrap names."""


def _gpg(gnupghome: str | None, options: list[str]) -> gnupg.GPG:
    """A python-gnupg handle on ``$OSSL_VAULT_GPG`` (default ``gpg``) and one keyring."""
    binary = os.environ.get("OSSL_VAULT_GPG") or "gpg"
    if shutil.which(binary) is None:
        raise OperationError(f"gnupg not found: no {binary!r} on PATH", hint=INSTALL_HINT)
    if gnupghome is not None and not os.path.isdir(gnupghome):
        raise UsageError(f"GnuPG home {gnupghome!r} is not a directory")
    try:
        g = gnupg.GPG(gpgbinary=binary, gnupghome=gnupghome, options=list(options))
    except (OSError, ValueError) as e:
        raise OperationError(f"cannot run {binary!r}: {e}", hint=INSTALL_HINT) from None
    if not g.version or g.version[:2] < MIN_GPG:
        raise OperationError(f"gpg {binary!r} is too old (need GnuPG 2.1 or later)")
    return g


@contextmanager
def _throwaway() -> Iterator[gnupg.GPG]:
    """A gpg on a fresh, empty GNUPGHOME (0700) that is removed afterwards."""
    home = tempfile.mkdtemp(prefix="ossl-vault-gpg-")
    try:
        os.chmod(home, 0o700)
        yield _gpg(home, _THROWAWAY_OPTS)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _status(result: object) -> Status:
    """The ``[GNUPG:] KEYWORD VALUE`` lines gpg wrote, in order."""
    lines = (getattr(result, "stderr", "") or "").splitlines()
    out: Status = []
    for line in lines:
        if line.startswith("[GNUPG:] "):
            keyword, _, value = line[9:].partition(" ")
            out.append((keyword, value.strip()))
    return out


def _said(result: object) -> str:
    """gpg's last human-readable complaint, for an OperationError message."""
    lines = (getattr(result, "stderr", "") or "").splitlines()
    said = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("[GNUPG:]")]
    return said[-1].removeprefix("gpg: ") if said else "no message"


def _codes(status: Status) -> list[int]:
    """libgpg-error codes from ``ERROR`` and ``FAILURE`` lines (source bits dropped)."""
    codes = []
    for keyword, value in status:
        if keyword in ("ERROR", "FAILURE"):
            m = re.match(r"\d+", value.split()[-1] if value.split() else "")
            if m:
                codes.append(int(m.group()) & 0xFFFF)
    return codes


def _check_fpr(fingerprint: str) -> str:
    """A v4 (40 hex) or v5 (64 hex) fingerprint, lowercased; UsageError otherwise."""
    fpr = fingerprint.strip().lower() if isinstance(fingerprint, str) else ""
    if not _FPR.fullmatch(fpr):
        raise UsageError(f"not a GnuPG fingerprint: {fingerprint!r}", hint="give 40 hex digits")
    return fpr


def _import_one(g: gnupg.GPG, public_key: bytes) -> str:
    """Import ``public_key`` into a throwaway keyring; its one fingerprint, lowercase."""
    if not public_key:
        raise IntegrityError("the GnuPG public key is empty")
    result = g.import_keys(public_key)
    fprs = {
        value.split()[1].lower()
        for keyword, value in _status(result)
        if keyword == "IMPORT_OK" and len(value.split()) == 2
    }
    if result.sec_read:
        raise IntegrityError("the GnuPG public key holds secret key material")
    if result.count != 1 or len(fprs) != 1:
        raise IntegrityError(
            f"not exactly one OpenPGP public key (found {max(result.count, len(fprs))})"
        )
    return fprs.pop()


def fingerprint_of(public_key: bytes) -> str:
    """The fingerprint (lowercase hex) of one binary or armored OpenPGP public key.

    The key is imported into a throwaway keyring. IntegrityError if the bytes are
    not exactly one public key (nothing, garbage, several keys, secret keys).
    """
    with _throwaway() as g:
        return _import_one(g, public_key)


def export_public(keyid: str, gnupghome: str | None = None) -> tuple[str, bytes]:
    """Find KEYID in the user's keyring; return (fingerprint lowercase, binary export).

    KEYID is anything gpg accepts (fingerprint, long key id, email, user-id part)
    and must name exactly one key that can encrypt now: NotFoundError when none
    matches, UsageError when several do or the key is expired, revoked or has no
    usable encryption subkey.
    """
    if not keyid or keyid != keyid.strip() or keyid.startswith("-") or not keyid.isprintable():
        raise UsageError(f"not a GnuPG key id: {keyid!r}", hint="give a fingerprint or an email")
    g = _gpg(gnupghome, _USER_OPTS)
    keys = g.list_keys(keys=[keyid])
    if not keys:
        raise NotFoundError(f"no GnuPG key {keyid!r}", hint="gpg --list-keys shows your keys")
    if len(keys) > 1:
        fprs = ", ".join(k["fingerprint"].lower() for k in keys[:5])
        fprs += f" and {len(keys) - 5} more" if len(keys) > 5 else ""
        raise UsageError(
            f"GnuPG key id {keyid!r} is ambiguous: it matches {fprs}",
            hint="give the full fingerprint",
        )
    key = keys[0]
    fpr = key["fingerprint"].lower()
    validity = key.get("trust") or ""
    if validity == "r":
        raise UsageError(f"GnuPG key {fpr!r} is revoked")
    if validity == "e":
        raise UsageError(
            f"GnuPG key {fpr!r} has expired", hint="extend it with gpg --quick-set-expire"
        )
    if validity == "i" or "E" not in (key.get("cap") or ""):
        raise UsageError(
            f"GnuPG key {fpr!r} has no usable encryption subkey",
            hint=f"gpg --quick-add-key {fpr} default encr",
        )
    data = g.export_keys(fpr, armor=False, minimal=True)
    if not data:
        raise OperationError(f"gpg could not export key {fpr!r}")
    try:
        if fingerprint_of(data) != fpr:
            raise OperationError(f"gpg exported another key than {fpr!r}")
    except IntegrityError as e:
        raise OperationError(f"gpg export of {fpr!r} is unusable: {e.message}") from None
    return fpr, data


def encrypt(fingerprint: str, public_key: bytes, data: bytes) -> bytes:
    """Encrypt ``data`` (binary OpenPGP, no armor) for the stored key ``fingerprint``.

    Works in a throwaway keyring holding only ``public_key``, trusting it
    unconditionally; the writer's own keyring is never read. IntegrityError if
    the key bytes are not the key of that fingerprint; OperationError if gpg
    refuses (expired or revoked key, no encryption subkey) or fails.
    """
    fpr = _check_fpr(fingerprint)
    with _throwaway() as g:
        if _import_one(g, public_key) != fpr:
            raise IntegrityError(f"the stored GnuPG key is not the key {fpr!r}")
        result = g.encrypt(
            data,
            fpr.upper(),
            always_trust=True,
            armor=False,
            extra_args=["--compress-algo", "none", "--no-encrypt-to"],
        )
    status = _status(result)
    keywords = {keyword for keyword, _ in status}
    if result.returncode == 0 and "END_ENCRYPTION" in keywords and result.data:
        return bytes(result.data)
    if keywords & {"INV_RECP", "KEYEXPIRED", "KEYREVOKED"}:
        raise OperationError(
            f"gpg cannot encrypt to {fpr!r}: the key is expired, revoked or cannot encrypt",
            hint="add the recipient again with a current key",
        )
    raise OperationError(f"gpg could not encrypt to {fpr!r}: {_said(result)}")


def has_secret_key(fingerprint: str, gnupghome: str | None = None) -> bool:
    """Whether the reader's keyring can decrypt for key ``fingerprint``.

    True when gpg lists the key (matched by its primary or a subkey fingerprint)
    among the secret keys and holds the secret part of an encryption-capable
    (sub)key: a stub (``#``, e.g. an offline primary) does not count, a smart
    card does. Validity is ignored: gpg decrypts with expired keys too.
    """
    fpr = _check_fpr(fingerprint)
    g = _gpg(gnupghome, _USER_OPTS)
    for key in g.list_keys(secret=True, keys=[fpr]):
        parts = [(key.get("fingerprint") or "", key.get("cap") or "", key.get("token") or "")]
        info = key.get("subkey_info") or {}
        for keyid, _, sub_fpr, _ in key.get("subkeys", []):
            sub = info.get(keyid, {})
            parts.append((sub_fpr or "", sub.get("cap") or "", sub.get("token") or ""))
        if fpr not in {p[0].lower() for p in parts}:
            continue
        # A primary's cap field is its own usages in lowercase, then the whole key's in uppercase.
        if any("e" in cap and card != "#" for _, cap, card in parts):
            return True
    return False


def decrypt(
    ciphertext: bytes,
    gnupghome: str | None = None,
    passphrase: bytes | None = None,
    *,
    pinentry: bool = True,
    fingerprint: str | None = None,
) -> bytes:
    """Decrypt a key wrap made by :func:`encrypt` with the reader's keyring: the 32 bytes.

    ``passphrase`` (if given) goes to gpg on stdin with loopback pinentry; else
    gpg-agent uses its cache or its pinentry, or, with ``pinentry=False``,
    fails rather than ask. AccessDenied: no secret key for the wrap (also when
    the key id inside the wrap was damaged), wrong or missing passphrase.
    IntegrityError: a damaged or forged wrap (bad MDC, session key that does
    not decode, not OpenPGP, not 32 bytes). OperationError: gpg itself failed.

    ``fingerprint``, the recipient the vault says the wrap is for, sharpens one
    case: when gpg finds no secret key for the wrap although this keyring holds
    that recipient's secret key, the key id inside the wrap was damaged, and
    that is an IntegrityError rather than AccessDenied.
    """
    expected = _check_fpr(fingerprint) if fingerprint is not None else None
    options = list(_USER_OPTS)
    text: str | None = None
    if passphrase:
        if any(c in passphrase for c in b"\n\r\0"):
            raise UsageError("a GnuPG passphrase cannot contain a newline or NUL byte")
        text = passphrase.decode("latin-1")  # python-gnupg re-encodes as latin-1: same bytes
    elif passphrase is not None or not pinentry:
        options += ["--pinentry-mode", "error"]
    g = _gpg(gnupghome, options)
    result = g.decrypt(ciphertext, passphrase=text)
    status = _status(result)
    try:
        _verdict(result, status)
    except NoSecretKey:
        if expected and has_secret_key(expected, gnupghome):
            raise IntegrityError(f"the GnuPG key wrap does not name key {expected!r}") from None
        raise
    data = bytes(result.data)
    if len(data) != KEY_LEN:
        raise IntegrityError(f"the GnuPG key wrap holds {len(data)} bytes, not {KEY_LEN}")
    return data


def _verdict(result: object, status: Status) -> None:
    """Return if gpg decrypted one integrity-protected message; raise the right error else."""
    count = {k: sum(1 for kw, _ in status if kw == k) for k in {kw for kw, _ in status}}
    failed = {"BADMDC", "DECRYPTION_FAILED", "NEED_PASSPHRASE_SYM"} & count.keys()
    good = count.get("DECRYPTION_OKAY") == 1 and count.get("GOODMDC") == 1 and not failed
    returncode = getattr(result, "returncode", None)
    if good and returncode == 0:
        return
    if good:
        raise OperationError(f"gpg failed after decrypting: {_said(result)}")
    what = "the GnuPG key wrap"
    if "BADMDC" in count:
        raise IntegrityError(f"{what} was tampered with (bad MDC)")
    if "NEED_PASSPHRASE_SYM" in count:
        raise IntegrityError(f"{what} is not a public-key encrypted message")
    codes = _codes(status)
    for code in codes:
        if code == 11:
            raise AccessDenied("wrong passphrase for the GnuPG key", hint="check the passphrase")
        if code in _DENIED:
            raise AccessDenied(f"cannot use the GnuPG secret key: {_DENIED[code]}")
    for code in codes:
        if code in _CORRUPT:
            raise IntegrityError(f"{what} is corrupt: {_CORRUPT[code]}")
    if "NO_SECKEY" in count:
        raise NoSecretKey(
            f"no GnuPG secret key in this keyring opens {what}",
            hint="gpg --list-secret-keys shows your keys; GNUPGHOME selects the keyring",
        )
    if "DECRYPTION_OKAY" in count or _BAD_INPUT & count.keys():
        raise IntegrityError(f"{what} is not a valid OpenPGP message")
    hint = None
    if 77 in codes:  # GPG_ERR_NO_AGENT
        hint = "gpg-agent did not start; a GNUPGHOME path over about 80 characters is too long"
    raise OperationError(f"gpg could not decrypt: {_said(result)}", hint=hint)
