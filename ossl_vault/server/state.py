"""The key server's directory: OPAQUE setup, TLS pair, settings, database (docs/api.md).

```
DIR/            0700
  opaque.key    0600  the OPAQUE server setup: OPRF seed and server private key
  tls.crt       0644  the TLS certificate (generated, or a copy of --cert)
  tls.key       0600  its private key
  server.json   0600  settings: limits, backoff, session lifetime
  server.db     0600  users, vaults, audit logs (SQLite, WAL)
```
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path

from ossl_vault.errors import NotFoundError, OperationError, UsageError
from ossl_vault.openssl.proc import openssl
from ossl_vault.remote import opaque
from ossl_vault.server.db import Database
from ossl_vault.storage.files import atomic_write

SETUP = "opaque.key"
CERT = "tls.crt"
KEY = "tls.key"
SETTINGS = "server.json"
DATABASE = "server.db"


@dataclass
class Settings:
    """What a sysadmin may tune in server.json; every field documented in docs/api.md."""

    max_body: int = 8 * 1024 * 1024  # bytes of one request body
    max_ttl: int = 12 * 3600  # seconds a session may be asked to live
    login_window: int = 30  # seconds between KE2 and KE3
    backoff_max: int = 60  # seconds: the longest delay after failed logins
    address_free_failures: int = 10  # failures from one address before it is slowed
    lock_lease: int = 30  # seconds a client may hold a vault's write lock
    max_pending_logins: int = 1000  # KE2 states held at once
    max_pending_per_user: int = 4  # KE2 states held at once for one user
    open_registration: int = 1  # 0: only names given an invitation (server invite) register


def init(directory: Path, cert: str | None, key: str | None, hostname: str) -> None:
    """Create the server directory; refuse an existing one."""
    if (directory / SETUP).exists():
        raise UsageError(f"a server already exists at '{directory}'")
    if (cert is None) != (key is None):
        raise UsageError("--cert and --key go together")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        if cert and key:
            shutil.copyfile(cert, directory / CERT)
            atomic_write(directory / KEY, Path(key).read_bytes())
        else:
            snakeoil(directory, hostname)
        os.chmod(directory / CERT, 0o644)
        os.chmod(directory / KEY, 0o600)
        atomic_write(directory / SETTINGS, json.dumps(asdict(Settings()), indent=2).encode())
        atomic_write(directory / SETUP, opaque.new_setup())
        Database(directory / DATABASE).close()
    except OSError as e:
        raise OperationError(f"cannot create server '{directory}': {e.strerror}") from e
    tls_context(directory)  # a pair that does not load is refused now, not at start


def snakeoil(directory: Path, hostname: str) -> None:
    """A self-signed P-256 certificate for ``hostname``, as Debian's snakeoil pair."""
    san = f"subjectAltName=DNS:{hostname},DNS:localhost,IP:127.0.0.1"
    openssl(
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(directory / KEY), "-out", str(directory / CERT), "-days", "825",
         "-subj", f"/CN={hostname}", "-addext", san],
        what="openssl req",
    )  # fmt: skip


def load_settings(directory: Path) -> Settings:
    try:
        data = json.loads((directory / SETTINGS).read_text())
    except FileNotFoundError:
        raise NotFoundError(
            f"no server at '{directory}'", hint="create one with 'ossl-vault server init DIR'"
        ) from None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read '{directory / SETTINGS}': {e}") from None
    known = set(asdict(Settings()))
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"unknown setting {unknown[0]!r} in '{directory / SETTINGS}'")
    return Settings(**{k: int(v) for k, v in data.items()})


def load_setup(directory: Path) -> bytes:
    path = directory / SETUP
    try:
        if path.stat().st_mode & 0o077:
            raise UsageError(f"'{path}' must be readable by its owner only (chmod 600)")
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(
            f"no server at '{directory}'", hint="create one with 'ossl-vault server init DIR'"
        ) from None


def tls_context(directory: Path) -> ssl.SSLContext:
    """TLS 1.3 only, the directory's certificate and key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(str(directory / CERT), str(directory / KEY))
    except (OSError, ssl.SSLError) as e:
        raise UsageError(f"cannot load the TLS certificate and key of '{directory}': {e}") from e
    return ctx
