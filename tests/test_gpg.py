"""GnuPG recipients against the real gpg, in throwaway GNUPGHOMEs made at test time.

Homes live directly under /tmp (``/tmp/gXXXXXXXX``): gpg-agent's socket path
must stay under 108 bytes, which deep pytest tmp paths can exceed. Every home's
agent is killed (``gpgconf --kill all``) and the home removed in teardown.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ossl_vault.errors import (
    AccessDenied,
    IntegrityError,
    NotFoundError,
    OperationError,
    UsageError,
)
from ossl_vault.keys import gpg

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = b"correct horse battery"


def _run(home: str, *args: str, stdin: bytes | None = None) -> bytes:
    argv = ["gpg", "--homedir", home, "--batch", "--no-tty", *args]
    return subprocess.run(argv, input=stdin, check=True, capture_output=True).stdout


def _gen(home: str, uid: str, algo: str, usage: str = "default", expire: str = "never",
         *extra: str, passphrase: bytes = b"") -> str:  # fmt: skip
    """Generate a key (no passphrase unless given, sent on stdin); its fingerprint."""
    _run(home, "--pinentry-mode", "loopback", "--passphrase-fd", "0", *extra,
         "--quick-gen-key", uid, algo, usage, expire, stdin=passphrase + b"\n")  # fmt: skip
    return _fpr(home, uid)


def _fpr(home: str, uid: str) -> str:
    out = _run(home, "--with-colons", "--list-keys", f"={uid}").decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")).lower()


def _subkey_fpr(home: str, fpr: str) -> str:
    out = _run(home, "--with-colons", "--list-keys", fpr).decode().splitlines()
    fprs = [line.split(":")[9] for line in out if line.startswith("fpr:")]
    return fprs[1].lower()


@dataclass
class Keys:
    """Keyrings and key fingerprints shared by the tests of this module."""

    alice: str  # alice's GNUPGHOME: all keys below except mallory's
    stranger: str  # another GNUPGHOME with only mallory's key
    fpr: dict[str, str] = field(default_factory=dict)
    homes: list[str] = field(default_factory=list)

    def new_home(self) -> str:
        home = _new_home()
        self.homes.append(home)
        return home


def _new_home() -> str:
    return tempfile.mkdtemp(prefix="g", dir="/tmp")


def _kill(home: str) -> None:
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    k = Keys(_new_home(), _new_home())
    k.homes += [k.alice, k.stranger]
    try:
        # No passphrase caching, so a wrong passphrase fails whatever ran before.
        Path(k.alice, "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\n")
        a = k.alice
        k.fpr["alice"] = _gen(a, "Alice <alice@example.org>", "future-default")
        k.fpr["rob"] = _gen(a, "Rob <rob@example.org>", "rsa2048", "cert")
        _run(a, "--passphrase", "", "--quick-add-key", k.fpr["rob"], "rsa2048", "encr", "never")
        k.fpr["pat"] = _gen(a, "Pat <pat@example.org>", "future-default", passphrase=PASSPHRASE)
        k.fpr["sig"] = _gen(a, "Sig <sig@example.org>", "rsa2048", "sign")
        k.fpr["old"] = _gen(a, "Old <old@example.org>", "future-default", "default", "1d",
                            "--faked-system-time", "20200101T000000")  # fmt: skip
        k.fpr["rev"] = _gen(a, "Rev <rev@example.org>", "future-default")
        rev = Path(a, "openpgp-revocs.d", k.fpr["rev"].upper() + ".rev").read_bytes()
        _run(a, "--import", stdin=rev.replace(b":-----BEGIN", b"-----BEGIN"))
        k.fpr["twin1"] = _gen(a, "Twin One <twin@example.org>", "future-default")
        k.fpr["twin2"] = _gen(a, "Twin Two <twin@example.org>", "future-default")
        k.fpr["mallory"] = _gen(k.stranger, "Mallory <mallory@example.org>", "future-default")
        yield k
    finally:
        for home in k.homes:
            _kill(home)


@pytest.fixture
def writer(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty GNUPGHOME for the writer, and an empty TMPDIR for the throwaway homes."""
    home = Path(keys.new_home())
    tmp = Path(keys.new_home())
    monkeypatch.setenv("GNUPGHOME", str(home))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return home


def _pkesk_header_len(ct: bytes) -> int:
    """Length of the first packet's header (the PKESK gpg writes first)."""
    ctb = ct[0]
    if ctb & 0x40:  # new format
        return 2 if ct[1] < 192 else 3 if ct[1] < 224 else 6
    return {0: 2, 1: 3, 2: 5}[ctb & 3]


def _flip(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize("who", ["alice", "rob"])  # future-default (cv25519), rsa2048
def test_round_trip_without_the_writers_keyring(keys: Keys, writer: Path, who: str) -> None:
    fpr, pub = gpg.export_public(f"{who}@example.org", keys.alice)
    assert fpr == keys.fpr[who] and len(fpr) == 40 and fpr == fpr.lower()
    assert pub[0] & 0x80 and b"BEGIN PGP" not in pub  # binary export
    assert gpg.fingerprint_of(pub) == fpr
    dk = os.urandom(32)
    ct = gpg.encrypt(fpr, pub, dk)
    assert b"BEGIN PGP" not in ct and dk not in ct
    assert list(writer.iterdir()) == []  # nothing imported into the writer's keyring
    assert os.listdir(tempfile.tempdir or "") == []  # throwaway home removed, no agent left
    assert gpg.decrypt(ct, keys.alice) == dk
    assert gpg.decrypt(ct, keys.alice, pinentry=False) == dk


@pytest.mark.parametrize("who", ["alice", "rob"])
def test_tampering(keys: Keys, writer: Path, who: str) -> None:
    fpr, pub = gpg.export_public(keys.fpr[who], keys.alice)
    ct = gpg.encrypt(fpr, pub, os.urandom(32))
    hlen = _pkesk_header_len(ct)
    # Deep in the encrypted data packet (its MDC): gpg reports BADMDC.
    with pytest.raises(IntegrityError, match="bad MDC"):
        gpg.decrypt(_flip(ct, len(ct) - 5), keys.alice)
    # Inside the encrypted session key: ECDH unwrap checksum / RSA padding fails.
    with pytest.raises(IntegrityError, match="corrupt"):
        gpg.decrypt(_flip(ct, hlen + 10 + 8), keys.alice)
    # The key id in the PKESK: gpg looks for another key and finds none. This is
    # AccessDenied (NoSecretKey), not IntegrityError, unless decrypt is told the
    # recipient's fingerprint and this keyring holds that key.
    with pytest.raises(gpg.NoSecretKey):
        gpg.decrypt(_flip(ct, hlen + 1), keys.alice)
    # Told which recipient the wrap is for, decrypt sees the damage for what it is.
    with pytest.raises(IntegrityError, match="does not name key"):
        gpg.decrypt(_flip(ct, hlen + 1), keys.alice, fingerprint=fpr)
    with pytest.raises(gpg.NoSecretKey):  # a reader without that key: plain denial
        gpg.decrypt(_flip(ct, hlen + 1), keys.stranger, fingerprint=fpr)
    for bad in (ct[:-1], ct[:20], b"", b"not openpgp at all", ct + ct):
        with pytest.raises(IntegrityError):
            gpg.decrypt(bad, keys.alice)


def test_stranger_is_denied(keys: Keys, writer: Path) -> None:
    fpr, pub = gpg.export_public("alice@example.org", keys.alice)
    ct = gpg.encrypt(fpr, pub, os.urandom(32))
    with pytest.raises(gpg.NoSecretKey, match="no GnuPG secret key"):
        gpg.decrypt(ct, keys.stranger)
    with pytest.raises(gpg.NoSecretKey):
        gpg.decrypt(ct, keys.stranger, fingerprint=fpr)
    assert gpg.decrypt(ct, keys.alice, fingerprint=fpr.upper()) == gpg.decrypt(ct, keys.alice)
    empty = keys.new_home()
    with pytest.raises(AccessDenied):
        gpg.decrypt(ct, empty)


def test_passphrase_key(keys: Keys, writer: Path) -> None:
    fpr, pub = gpg.export_public("pat@example.org", keys.alice)
    dk = os.urandom(32)
    ct = gpg.encrypt(fpr, pub, dk)
    assert gpg.decrypt(ct, keys.alice, PASSPHRASE) == dk
    with pytest.raises(AccessDenied, match="wrong passphrase"):
        gpg.decrypt(ct, keys.alice, b"wrong horse")
    with pytest.raises(AccessDenied):
        gpg.decrypt(ct, keys.alice, pinentry=False)
    with pytest.raises(AccessDenied):
        gpg.decrypt(ct, keys.alice, b"")
    with pytest.raises(UsageError, match="newline"):
        gpg.decrypt(ct, keys.alice, PASSPHRASE + b"\nmore")
    assert gpg.decrypt(ct, keys.alice, PASSPHRASE) == dk


def test_wrong_length_is_integrity(keys: Keys, writer: Path) -> None:
    fpr, pub = gpg.export_public("alice@example.org", keys.alice)
    for n in (0, 31, 33):
        ct = gpg.encrypt(fpr, pub, b"k" * n)
        with pytest.raises(IntegrityError, match=f"holds {n} bytes"):
            gpg.decrypt(ct, keys.alice)


def test_export_by_any_key_id(keys: Keys) -> None:
    fpr = keys.fpr["alice"]
    sub = _subkey_fpr(keys.alice, fpr)
    for keyid in (fpr, fpr.upper(), fpr[-16:], "0x" + fpr[-16:].upper(), sub,
                  "alice@example.org", "<alice@example.org>"):  # fmt: skip
        assert gpg.export_public(keyid, keys.alice)[0] == fpr


def test_export_errors(keys: Keys) -> None:
    with pytest.raises(NotFoundError, match=re.escape("no GnuPG key 'nobody@example.org'")):
        gpg.export_public("nobody@example.org", keys.alice)
    with pytest.raises(NotFoundError):
        gpg.export_public(keys.fpr["mallory"], keys.alice)
    with pytest.raises(UsageError, match="ambiguous") as e:
        gpg.export_public("twin@example.org", keys.alice)
    assert keys.fpr["twin1"] in e.value.message and keys.fpr["twin2"] in e.value.message
    assert e.value.hint == "give the full fingerprint"
    assert gpg.export_public(keys.fpr["twin2"], keys.alice)[0] == keys.fpr["twin2"]
    with pytest.raises(UsageError, match="no usable encryption subkey"):
        gpg.export_public("sig@example.org", keys.alice)
    with pytest.raises(UsageError, match="expired"):
        gpg.export_public("old@example.org", keys.alice)
    with pytest.raises(UsageError, match="revoked"):
        gpg.export_public("rev@example.org", keys.alice)
    for bad in ("", "-x", "--export-secret-keys", " alice", "a\nb"):
        with pytest.raises(UsageError):
            gpg.export_public(bad, keys.alice)
    with pytest.raises(UsageError, match="not a directory"):
        gpg.export_public("alice@example.org", "/nonexistent/gnupg")


def test_has_secret_key(keys: Keys) -> None:
    assert gpg.has_secret_key(keys.fpr["alice"], keys.alice)
    assert gpg.has_secret_key(keys.fpr["alice"].upper(), keys.alice)
    assert gpg.has_secret_key(_subkey_fpr(keys.alice, keys.fpr["alice"]), keys.alice)
    assert gpg.has_secret_key(keys.fpr["rob"], keys.alice)
    assert gpg.has_secret_key(keys.fpr["pat"], keys.alice)  # no passphrase needed to tell
    assert not gpg.has_secret_key(keys.fpr["sig"], keys.alice)  # cannot decrypt
    assert not gpg.has_secret_key(keys.fpr["alice"], keys.stranger)
    assert not gpg.has_secret_key(keys.fpr["mallory"], keys.alice)
    assert gpg.has_secret_key(keys.fpr["mallory"], keys.stranger)
    with pytest.raises(UsageError):
        gpg.has_secret_key("alice@example.org", keys.alice)


def test_stored_key_checks(keys: Keys, writer: Path) -> None:
    fpr, pub = gpg.export_public("alice@example.org", keys.alice)
    _, rob = gpg.export_public("rob@example.org", keys.alice)
    with pytest.raises(IntegrityError, match="not the key"):
        gpg.encrypt(fpr, rob, os.urandom(32))
    for bad in (b"", b"garbage", pub + rob, pub[:50]):
        with pytest.raises(IntegrityError):
            gpg.fingerprint_of(bad)
        with pytest.raises(IntegrityError):
            gpg.encrypt(fpr, bad, os.urandom(32))
    secret = _run(keys.alice, "--pinentry-mode", "loopback", "--passphrase", "",
                  "--export-secret-keys", fpr)  # fmt: skip
    with pytest.raises(IntegrityError, match="secret"):
        gpg.fingerprint_of(secret)
    with pytest.raises(UsageError, match="not a GnuPG fingerprint"):
        gpg.encrypt("abc", pub, os.urandom(32))
    # A key that has expired since it was stored: gpg refuses to encrypt.
    old = _run(keys.alice, "--export", keys.fpr["old"])
    with pytest.raises(OperationError, match="expired, revoked"):
        gpg.encrypt(keys.fpr["old"], old, os.urandom(32))


def test_gpg_missing(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSSL_VAULT_GPG", "/nonexistent/gpg")
    calls = [
        lambda: gpg.export_public("alice@example.org", keys.alice),
        lambda: gpg.encrypt(keys.fpr["alice"], b"x", b"k" * 32),
        lambda: gpg.decrypt(b"x", keys.alice),
        lambda: gpg.has_secret_key(keys.fpr["alice"], keys.alice),
        lambda: gpg.fingerprint_of(b"x"),
    ]
    for call in calls:
        with pytest.raises(OperationError) as e:
            call()
        assert type(e.value) is OperationError and e.value.hint == "apt-get install gnupg"


def test_no_secret_on_argv_or_environment(keys: Keys, writer: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    log = tmp_path / "gpg.log"
    shim = tmp_path / "gpg"
    real = shutil.which("gpg")
    shim.write_text(f'#!/bin/sh\n{{ printf "%s\\n" "$*"; env; }} >>"{log}"\nexec {real} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("OSSL_VAULT_GPG", str(shim))
    fpr, pub = gpg.export_public("pat@example.org", keys.alice)
    dk = os.urandom(32)
    ct = gpg.encrypt(fpr, pub, dk)
    assert gpg.decrypt(ct, keys.alice, PASSPHRASE) == dk
    with pytest.raises(AccessDenied):
        gpg.decrypt(ct, keys.alice, b"wrong horse")
    text = log.read_bytes()
    assert b"--decrypt" in text and b"--passphrase-fd 0" in text
    for secret in (PASSPHRASE, b"wrong horse", dk, dk.hex().encode(), dk.hex().upper().encode()):
        assert secret not in text


def test_library_prints_nothing(keys: Keys) -> None:
    code = (
        "import sys\n"
        "from ossl_vault.keys import gpg\n"
        "for f in (lambda: gpg.decrypt(b'junk', sys.argv[1]),\n"
        "          lambda: gpg.export_public('nobody@example.org', sys.argv[1]),\n"
        "          lambda: gpg.fingerprint_of(b'junk')):\n"
        "    try:\n"
        "        f()\n"
        "    except Exception as e:\n"
        "        assert type(e).__module__ == 'ossl_vault.errors', e\n"
    )
    done = subprocess.run([sys.executable, "-c", code, keys.alice], cwd=ROOT,
                          capture_output=True, timeout=60)  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_reader_keyring_from_environment(keys: Keys, writer: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    fpr, pub = gpg.export_public("alice@example.org", keys.alice)
    ct = gpg.encrypt(fpr, pub, b"k" * 32)
    monkeypatch.setenv("GNUPGHOME", keys.alice)  # gnupghome=None: gpg's own default
    assert gpg.export_public("alice@example.org")[0] == fpr
    assert gpg.has_secret_key(fpr)
    assert gpg.decrypt(ct) == b"k" * 32
    monkeypatch.setenv("GNUPGHOME", keys.stranger)
    assert not gpg.has_secret_key(fpr)
    with pytest.raises(AccessDenied):
        gpg.decrypt(ct)
