"""Recipients from GitHub: the public SSH keys a user publishes at ``/USER.keys``.

``$OSSL_VAULT_GITHUB_URL`` replaces ``https://github.com`` (a GitHub Enterprise
host, or a test server). Only RSA and ECDSA P-256/P-384 keys can encrypt; the
others (Ed25519 most often) are skipped, and a user with none usable is an error.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

from ossl_vault.errors import NotFoundError, OperationError, UsageError
from ossl_vault.keys import pubkeys, ssh

DEFAULT_URL = "https://github.com"
TIMEOUT = 10.0  # seconds
MAX_REPLY = 1 << 20  # a user's key list is a few KiB
# GitHub: letters, digits and single hyphens, not at either end, 1 to 39 characters.
_USER = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}\Z")
_KEY_LINE = re.compile(rb"\A[a-z][a-z0-9@.-]* [A-Za-z0-9+/]+={0,2}( .*)?\Z")


def base_url() -> str:
    """``$OSSL_VAULT_GITHUB_URL`` or ``https://github.com``, without a trailing ``/``."""
    base = os.environ.get("OSSL_VAULT_GITHUB_URL") or DEFAULT_URL
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"OSSL_VAULT_GITHUB_URL {base!r} is not an http(s) URL",
            hint="set it to a URL like https://github.example.com, or unset it",
        )
    return base.rstrip("/")


def check_user(user: str) -> str:
    """``user`` if it is a valid GitHub user name; ``UsageError`` otherwise."""
    if not _USER.match(user):
        raise UsageError(
            f"{user!r} is not a GitHub user name",
            hint="1 to 39 letters, digits and single hyphens, not starting or ending with '-'",
        )
    return user


def _why(reason: object) -> str:
    """One short line for a network failure."""
    if isinstance(reason, OSError):
        return reason.strerror or str(reason) or type(reason).__name__
    return str(reason) or type(reason).__name__


def fetch_keys(user: str) -> list[bytes]:
    """The public SSH key lines GitHub publishes for ``user`` (GET ``BASE/USER.keys``).

    Raises ``UsageError`` for a bad user name, ``NotFoundError`` for an unknown
    user or one without keys, ``OperationError`` for network and server failures.
    """
    check_user(user)
    url = f"{base_url()}/{user}.keys"
    request = urllib.request.Request(url, headers={"User-Agent": "ossl-vault"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:  # noqa: S310
            body = reply.read(MAX_REPLY + 1)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise NotFoundError(f"no GitHub user {user!r}") from None
        raise OperationError(f"cannot fetch {url!r}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise OperationError(
            f"cannot fetch {url!r}: {_why(e.reason)}",
            hint="check the network, or set OSSL_VAULT_GITHUB_URL",
        ) from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise OperationError(f"cannot fetch {url!r}: {_why(e)}") from None
    if len(body) > MAX_REPLY:
        raise OperationError(f"the reply from {url!r} is too large for a list of keys")
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if any(not _KEY_LINE.match(line) for line in lines):
        raise OperationError(f"the reply from {url!r} is not a list of SSH public keys")
    if not lines:
        raise NotFoundError(f"GitHub user {user!r} has no public keys")
    return lines


def usable_keys(lines: list[bytes], source: str) -> list[pubkeys.PublicKey]:
    """The keys among ``lines`` that can encrypt, in order; Ed25519 and the like skipped.

    Raises ``UsageError`` naming the skipped key types when none is usable.
    """
    found: list[pubkeys.PublicKey] = []
    skipped: Counter[str] = Counter()
    for i, line in enumerate(lines, 1):
        try:
            found.append(ssh.public_key(line, f"{source} key {i}"))
        except ssh.UnsupportedKeyType as e:
            skipped[e.key_type] += 1
    if not found:
        listed = ", ".join(f"{n} {t}" for t, n in sorted(skipped.items()))
        hint = ssh.ED25519_HINT if "ssh-ed25519" in skipped else None
        raise UsageError(
            f"no usable key in {source!r} (skipped {listed or 'nothing'})",
            hint=hint or "add an RSA or ECDSA P-256/P-384 key, or use a certificate",
        )
    return found
