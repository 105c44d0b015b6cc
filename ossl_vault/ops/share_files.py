"""Where recovery shares go: 0600 files written exclusively, maybe CMS-encrypted to a cert.

A split writes its files under a ``.partial`` name and renames them once the
vault holds the key (docs/recovery.md), so no file outside ``.partial`` ever
holds shares of a key the vault never received.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ossl_vault.errors import OperationError, UsageError
from ossl_vault.openssl.proc import OpensslFailed, openssl

PARTIAL = ".partial"  # a share file's name until the vault holds its key


def encrypt_to_cert(text: bytes, cert: str) -> bytes:
    """A share encrypted to a certificate as PEM CMS (``openssl cms -decrypt`` opens it)."""
    if not os.path.isfile(cert):
        raise UsageError(f"no such certificate file {cert!r}")
    args = ["cms", "-encrypt", "-binary", "-aes256", "-recip", cert, "-outform", "PEM"]
    try:
        return openssl(args, stdin=text, what="openssl cms -encrypt")
    except OpensslFailed as e:
        raise UsageError(f"cannot encrypt a share to {cert!r}: {e.message}") from None


def prepare_files(directory: str, names: list[str]) -> list[Path]:
    """The paths shares will be written to; refuse any that exists (checked first)."""
    d = Path(directory)
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create directory {directory!r}: {e.strerror}") from None
    if not d.is_dir():
        raise UsageError(f"{directory!r} is not a directory")
    paths = [d / n for n in names]
    for p in [q for path in paths for q in (path, path.with_name(path.name + PARTIAL))]:
        if p.exists() or p.is_symlink():
            raise UsageError(f"{str(p)!r} already exists", hint="choose an empty --out-dir")
    return paths


def write_files(files: dict[Path, bytes]) -> None:
    """Write each file 0600, exclusively (never over an existing one), and fsync."""
    written: list[Path] = []
    try:
        for path, data in files.items():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            written.append(path)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        for d in {p.parent for p in files}:
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as e:
        remove_files(written)
        raise OperationError(f"cannot write share file: {e.strerror}") from None


def finish_files(names: dict[Path, Path]) -> None:
    """Rename share files from their .partial names into place, once the vault holds the key."""
    try:
        for partial, final in names.items():
            os.rename(partial, final)
    except OSError as e:
        raise OperationError(
            f"the vault holds the new key, but a share file could not be renamed: {e.strerror}",
            hint=f"rename the {PARTIAL} files yourself: they hold valid shares",
        ) from None


def remove_files(paths: Iterable[Path]) -> None:
    """Remove share files of a split that did not happen."""
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass
