"""Export and import (docs/transfer.md): CMS files, bundles, and storing imports.

- CMS: ``openssl cms -encrypt -aes-256-gcm`` (AuthEnvelopedData) to an RSA
  certificate (RSA-OAEP, SHA-256) or an EC one (ECDH, SHA-256 KDF); anyone
  opens it with ``openssl cms -decrypt``. OpenSSL 3.0 writes the plaintext
  before it checks the GCM tag, so decryption goes to a 0600 file in a 0700
  temporary directory that is read only when openssl exits 0 and removed in
  every case.
- Bundle: a vault directory (``vault.tsv`` and blobs) holding every kept
  version of some secrets, each data key re-wrapped for one recipient key and
  each record MAC recomputed, packed as one text file, plus the source
  vault's audit records of those secrets. It unpacks with ``base64 -d`` into a
  directory that ``scripts/ossl-vault-recover`` reads.

Imports are gathered as :class:`~ossl_vault.ops.transfer.plain.Entry` values
(or bad entries) by this module and :mod:`ossl_vault.ops.transfer.plain`, then
stored in one atomic commit by :func:`store_all`. Nothing here prints.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ossl_vault.errors import (
    AccessDenied,
    FormatError,
    IntegrityError,
    NotFoundError,
    UsageError,
    VaultError,
)
from ossl_vault.format.fields import b64
from ossl_vault.format.records import Index, Recipient, fingerprint
from ossl_vault.format.seal import VALUE_MAC, Identities, decrypt, now, record_mac, seal
from ossl_vault.format.wrapping import wrap
from ossl_vault.keys import loader, pubkeys
from ossl_vault.openssl import crypto
from ossl_vault.openssl.proc import OpensslFailed, SecretFds, openssl
from ossl_vault.ops import edits
from ossl_vault.ops.transfer.plain import Entry, PasswordSource, bad_entry, entry, unpack_values
from ossl_vault.ops.vault import Vault

BUNDLE_MAGIC = "ossl-vault-bundle"
BUNDLE_VERSION = "1"
BUNDLE_RECIPIENT = "bundle"
MAX_BUNDLE = 512 * 1024 * 1024
CMS_CIPHER = "-aes-256-gcm"
RSA_KEYOPTS = (
    "-keyopt", "rsa_padding_mode:oaep",
    "-keyopt", "rsa_oaep_md:sha256",
    "-keyopt", "rsa_mgf1_md:sha256",
)  # fmt: skip
EC_KEYOPTS = ("-keyopt", "ecdh_kdf_md:sha256")
# id-ct-authEnvelopedData, 1.2.840.113549.1.9.16.1.23, as a DER OBJECT IDENTIFIER
_AUTH_ENVELOPED = bytes.fromhex("060b2a864886f70d0109100117")
_CMS_KEY_STAGE = "Error decrypting CMS using private key"
_CMS_CONTENT_STAGE = "Error decrypting CMS structure"
_BLOB_PATH = re.compile(r"blobs/[0-9a-f]{64}\Z")


def store_all(
    vault: Vault,
    entries: list[Entry],
    to: list[str] | None,
    progress: Callable[[str, str], None] | None = None,
) -> list[tuple[str, int]]:
    """Store every good entry as a new version, in order, in one atomic commit.

    Each secret goes to ``to``, else its own recipient list, else the
    defaults (as ``put``). Encryption runs on parallel threads before the
    lock; if the recipients change meanwhile, nothing is written.
    """
    entries = [e for e in entries if e.error is None]
    if not entries:
        return []
    names = sorted({e.name for e in entries})

    def recipients(index: Index) -> dict[str, list[Recipient]]:
        return {n: edits.recipients_for(index, to, n) for n in names}

    wanted = recipients(vault.store.read_index())
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        sealed = []
        for e, s in zip(
            entries, pool.map(lambda e: seal(e.value, wanted[e.name], e.password), entries),
            strict=True,
        ):  # fmt: skip
            sealed.append(s)
            if progress is not None:
                progress(e.name, "sealed")
    with vault.store.locked():
        index = vault.store.read_index()
        if recipients(index) != wanted:
            raise VaultError("recipients changed during the import", hint="run it again")
        done = [
            (e.name, edits.add_version(index, e.name, s))
            for e, s in zip(entries, sealed, strict=True)
        ]
        if to:
            index.access.update({n: tuple(r.name for r in wanted[n]) for n in names})
        events = [
            vault.event(name, number, [w.fingerprint for w in s.wraps])
            for (name, number), s in zip(done, sealed, strict=True)
        ]  # one audit record per secret changed, as for put
        vault.store.commit(index, {s.version.blob: s.ct for s in sealed}, events)
    return done


# -- CMS ---------------------------------------------------------------------------


def cms_encrypt(data: bytes, cert_path: str, pem: bool = False) -> bytes:
    """AuthEnvelopedData (AES-256-GCM) of ``data`` for the certificate in ``cert_path``."""
    key = loader.from_file(cert_path)
    if key.cert is None:
        raise UsageError(
            f"{cert_path!r} is not a certificate",
            hint="a CMS export needs the recipient's X.509 certificate",
        )
    if key.kind == "rsa":
        opts = RSA_KEYOPTS
    elif key.kind in ("p256", "p384"):
        opts = EC_KEYOPTS
    else:
        raise UsageError(
            f"a CMS export cannot be made for a {key.kind} key",
            hint="use an RSA or EC P-256/P-384 certificate, or --bundle",
        )
    cert_pem = b"-----BEGIN CERTIFICATE-----\n"
    cert_pem += base64.encodebytes(key.cert) + b"-----END CERTIFICATE-----\n"
    with SecretFds(cert_pem) as (fd,):  # the cert we checked, not the file again
        args = ["cms", "-encrypt", "-binary", CMS_CIPHER, "-recip", f"/dev/fd/{fd}", *opts]
        args += ["-outform", "PEM" if pem else "DER"]
        return openssl(args, stdin=data, pass_fds=[fd], what="openssl cms -encrypt")


def _cms_der(data: bytes, source: str) -> tuple[str, bytes]:
    """The input form openssl needs (PEM or DER) and the DER bytes."""
    if data.lstrip().startswith(b"-----BEGIN"):
        blocks = pubkeys.pem_blocks(data)
        if not blocks or blocks[0][0] not in ("CMS", "PKCS7"):
            raise FormatError(f"{source!r} is not a PEM CMS file (-----BEGIN CMS-----)")
        return "PEM", blocks[0][1]
    return "DER", data


def _check_authenveloped(der: bytes, source: str) -> None:
    """Refuse CMS without integrity protection (EnvelopedData: CBC, no tag)."""
    if len(der) < 2 or der[0] != 0x30:
        raise FormatError(f"{source!r} is not a CMS file")
    skip = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    if der[skip : skip + len(_AUTH_ENVELOPED)] != _AUTH_ENVELOPED:
        raise UsageError(
            f"{source!r} is not CMS AuthEnvelopedData: it has no integrity protection",
            hint="have it made with 'openssl cms -encrypt -aes-256-gcm'",
        )


def cms_decrypt(data: bytes, source: str, ids: Identities) -> bytes:
    """Decrypt a CMS AuthEnvelopedData file with the first identity it is for.

    The plaintext goes to a 0600 file in a private temporary directory and is
    read only after openssl exits 0, i.e. the GCM tag matched; the directory
    is removed in every case. IntegrityError for a tag mismatch, AccessDenied
    when no identity is a recipient.
    """
    form, der = _cms_der(data, source)
    _check_authenveloped(der, source)
    usable = [i for i in ids.files if i.key is not None]
    if not usable:
        raise AccessDenied(f"no identity to decrypt {source!r}", hint="give --identity KEYFILE")
    with tempfile.TemporaryDirectory(prefix="ossl-vault-cms-") as tmp:
        os.chmod(tmp, 0o700)
        out = Path(tmp) / "plaintext"
        for identity in usable:
            os.close(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            # -debug_decrypt: report a key that is not a recipient as such, instead of
            # a random content key (a countermeasure for online oracles, not files).
            args = ["cms", "-decrypt", "-debug_decrypt", "-binary", "-inform", form]
            try:
                with crypto.key_arg(identity.key) as (name, fds):  # type: ignore[arg-type]
                    openssl([*args, "-inkey", name, "-out", str(out)], stdin=data,
                            pass_fds=fds, what="openssl cms -decrypt")  # fmt: skip
            except OpensslFailed as e:
                out.unlink(missing_ok=True)
                if _CMS_KEY_STAGE in e.stderr:
                    continue  # not a recipient (or its key share was damaged)
                if _CMS_CONTENT_STAGE in e.stderr:
                    raise IntegrityError(
                        f"{source!r} failed its integrity check (GCM tag): tampered or corrupt"
                    ) from None
                raise FormatError(f"{source!r} is not a CMS file openssl can read") from None
            return out.read_bytes()
    raise AccessDenied(
        f"{source!r} is not encrypted for any identity given",
        hint=f"tried: {', '.join(i.source for i in usable)}",
    )


def read_cms(
    data: bytes, source: str, ids: Identities, name: str | None, prefix: str
) -> list[Entry]:
    """Entries of a CMS file: one value (needs ``name``) or the JSON container."""
    plain = cms_decrypt(data, source, ids)
    if name is not None:
        return [entry(prefix, name, source, plain)]
    values = unpack_values(plain, source)
    if values is None:
        raise UsageError(
            f"{source!r} holds a single value", hint="give the secret's name with --name NAME"
        )
    return [entry(prefix, n, f"{source} [{n}]", v) for n, v in sorted(values.items())]


# -- bundles --------------------------------------------------------------------------


def bundle_recipient(cert_path: str) -> Recipient:
    """The one recipient of a bundle, from a certificate or public key file."""
    key = loader.from_file(cert_path)
    return Recipient(BUNDLE_RECIPIENT, key.kind, fingerprint(key.spki), now(), True, key.spki,
                     key.cert)  # fmt: skip


def export_bundle(
    vault: Vault, names: list[str], ids: Identities, cert_path: str
) -> tuple[bytes, list[str]]:
    """A bundle of ``names`` for the key in ``cert_path``; also notes on left-out versions.

    Every kept version the identities open is re-wrapped (same data key, same
    ciphertext) and its record MAC recomputed over the new wrap. An older
    version no identity opens is left out with a note; the newest must open.
    """
    r = bundle_recipient(cert_path)
    index = vault.store.read_index()
    out = Index(recipients={r.name: r})
    blobs: dict[str, bytes] = {}
    notes: list[str] = []
    for name in names:
        vault.version(name, None, index)  # NotFoundError for an unknown name
        versions = index.versions[name]
        for v in versions:
            try:
                dk, ct = vault.open(index, v, ids)
            except AccessDenied as e:
                if v is versions[-1]:
                    raise
                notes.append(f"left out {name!r} version {v.version}: {e.message}")
                continue
            w = wrap(r, dk, name, v.version)
            v2 = v._replace(recipients=(r.name,))
            v2 = v2._replace(tag=record_mac(crypto.hkdf(dk, VALUE_MAC), v2, [w], ct))
            out.versions.setdefault(name, []).append(v2)
            out.wraps[(name, v.version)] = [w]
            blobs[v.blob] = ct
        if index.ledger.get(name):
            out.ledger[name] = list(index.ledger[name])
    lines = [f"{BUNDLE_MAGIC}\t{BUNDLE_VERSION}\n", f"created\t{now()}\n"]
    lines.append(f"file\tvault.tsv\t{b64(out.serialize())}\n")
    lines += [f"file\tblobs/{digest}\t{b64(blobs[digest])}\n" for digest in sorted(blobs)]
    lines += [f"audit\t{line}\n" for line in audit_trail(vault.store.root, set(names))]
    body = "".join(lines).encode("ascii")
    return body + f"end\t{crypto.sha256_hex(body)}\n".encode(), notes


def audit_trail(root: str | os.PathLike[str], names: set[str]) -> list[str]:
    """The audit.log records (13 TAB-separated fields, 8th the secret) of ``names``."""
    try:
        text = (Path(root) / "audit.log").read_text("ascii")
    except (OSError, UnicodeDecodeError):
        return []
    return [
        line
        for line in text.split("\n")[1:]
        if len(fields := line.split("\t")) == 13 and fields[7] in names
    ]


def parse_bundle(data: bytes, source: str) -> tuple[dict[str, bytes], list[str]]:
    """The files and audit lines of a bundle, checked: FormatError if anything is off."""
    if len(data) > MAX_BUNDLE:
        raise FormatError(f"bundle {source!r} is larger than 512 MiB")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(f"{source!r} is not an ossl-vault bundle") from None
    lines = text.split("\n")
    if not lines or lines[0].split("\t")[0] != BUNDLE_MAGIC:
        raise FormatError(f"{source!r} is not an ossl-vault bundle")
    if lines[0] != f"{BUNDLE_MAGIC}\t{BUNDLE_VERSION}":
        raise FormatError(f"bundle {source!r} has an unsupported version")
    if len(lines) < 3 or lines[-1] != "" or not lines[-2].startswith("end\t"):
        raise IntegrityError(f"bundle {source!r} is truncated (no end line)")
    body = "".join(line + "\n" for line in lines[:-2]).encode()
    if lines[-2] != f"end\t{crypto.sha256_hex(body)}":
        raise IntegrityError(f"bundle {source!r} is damaged (its end checksum does not match)")
    files: dict[str, bytes] = {}
    trail: list[str] = []
    for number, line in enumerate(lines[1:-2], start=2):
        f = line.split("\t")
        if f[0] == "created" and len(f) == 2:
            continue
        if f[0] == "audit" and len(f) == 14:
            trail.append("\t".join(f[1:]))
            continue
        if f[0] != "file" or len(f) != 3 or f[1] in files:
            raise FormatError(f"bundle {source!r} line {number} is malformed")
        if f[1] != "vault.tsv" and not _BLOB_PATH.match(f[1]):
            raise FormatError(f"bundle {source!r} line {number} names a bad path {f[1]!r}")
        try:
            files[f[1]] = base64.b64decode(f[2], validate=True)
        except binascii.Error:
            raise FormatError(f"bundle {source!r} line {number}: broken base64") from None
    if "vault.tsv" not in files:
        raise FormatError(f"bundle {source!r} has no vault.tsv")
    return files, trail


def read_bundle(
    data: bytes,
    source: str,
    ids: Identities,
    password: PasswordSource,
    prefix: str,
) -> tuple[list[Entry], list[str]]:
    """Entries (every version, oldest first, per secret) and the audit trail of a bundle.

    The bundle is unpacked into a private temporary vault and read with the
    vault's own checks (format, blob hash, record MAC). A secret any version
    of which fails is one bad entry.
    """
    files, trail = parse_bundle(data, source)
    out: list[Entry] = []
    with tempfile.TemporaryDirectory(prefix="ossl-vault-bundle-") as tmp:
        os.chmod(tmp, 0o700)
        (Path(tmp) / "blobs").mkdir(mode=0o700)
        for path, content in files.items():
            fd = os.open(Path(tmp) / path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
        bundle = Vault(tmp)
        index = bundle.store.read_index()
        asked: dict[str, bytes | None] = {}

        def cached(name: str) -> bytes | None:
            if name not in asked:
                asked[name] = password(name)
            return asked[name]

        for name, versions in sorted(index.versions.items()):
            got: list[Entry] = []
            try:
                for v in versions:
                    dk, ct = bundle.open(index, v, ids)
                    value = decrypt(v, dk, ct, cached)
                    e = entry(prefix, name, f"{source} v{v.version}", value)
                    if e.error is not None:
                        raise e.error
                    e.password = asked.get(name) if v.password else None
                    got.append(e)
            except (AccessDenied, IntegrityError, NotFoundError, UsageError) as err:
                got = [bad_entry(prefix + name, f"{source} [{name}]", err)]
            out += got
    return out, trail
