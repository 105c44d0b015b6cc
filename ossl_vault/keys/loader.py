"""Reading a recipient's public key from a file of any supported kind.

The one entry point that knows every public-key format: an OpenSSH
``authorized_keys`` line goes to :mod:`ossl_vault.keys.ssh`, a PEM or DER
certificate or public key to :mod:`ossl_vault.keys.pubkeys`.
"""

from __future__ import annotations

from pathlib import Path

from ossl_vault.errors import UsageError
from ossl_vault.keys import pubkeys, ssh
from ossl_vault.keys.pubkeys import PublicKey


def from_bytes(data: bytes, source: str) -> PublicKey:
    """A public key from OpenSSH, certificate or public-key bytes (PEM or DER)."""
    if ssh.is_openssh_public(data):
        return ssh.public_key(data, source)
    if ssh.is_openssh_private(data):
        raise UsageError(f"{source!r} is a private key", hint="give the .pub file beside it")
    return pubkeys.from_pem(data, source)


def from_file(path: str) -> PublicKey:
    """A public key from a certificate or public-key file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as e:
        raise UsageError(f"no such file {path!r}") from e
    except OSError as e:
        raise UsageError(f"cannot read {path!r}: {e.strerror}") from e
    try:
        return from_bytes(data, path)
    except UsageError as e:
        if repr(path) in e.message:
            raise
        raise UsageError(f"{path!r}: {e.message}", e.hint) from None
