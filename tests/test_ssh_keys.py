"""OpenSSH keys made by the real ssh-keygen: public lines become recipients, private
key files become identities, and the two halves agree through openssl."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest

from ossl_vault.errors import AccessDenied, OperationError, UsageError
from ossl_vault.keys import ssh
from ossl_vault.openssl import crypto, proc

SUPPORTED = {"rsa": "rsa", "ec256": "p256", "ec384": "p384"}
CURVES = {"p256": "P-256", "p384": "P-384"}
KEYGEN_ARGS = {
    "rsa": ["-t", "rsa", "-b", "2048"],
    "ec256": ["-t", "ecdsa", "-b", "256"],
    "ec384": ["-t", "ecdsa", "-b", "384"],
    "ec521": ["-t", "ecdsa", "-b", "521"],
    "ed25519": ["-t", "ed25519"],
}


def keygen(d: Path, name: str, *args: str, passphrase: str = "") -> Path:
    path = d / name
    subprocess.run(
        ["ssh-keygen", "-q", *args, "-N", passphrase, "-C", f"{name}@test", "-f", str(path)],
        check=True, capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def sshdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """name and name.pub for every key in KEYGEN_ARGS, plus an encrypted RSA key."""
    if not shutil.which("ssh-keygen"):
        pytest.fail("ssh-keygen is missing: run scripts/install-test-deps")
    d = tmp_path_factory.mktemp("ssh")
    for name, args in KEYGEN_ARGS.items():
        keygen(d, name, *args)
    keygen(d, "rsa-locked", "-t", "rsa", "-b", "2048", passphrase="secret")
    return d


def openssl_der(pem: bytes, *args: str) -> bytes:
    """What openssl itself makes of a PEM private key (stdin)."""
    return subprocess.run(
        ["openssl", "pkey", *args, "-outform", "DER"], input=pem, check=True, capture_output=True
    ).stdout


def unpack(path: Path) -> bytes:
    """The binary body of an OpenSSH private key file."""
    lines = path.read_bytes().splitlines()
    return base64.b64decode(b"".join(lines[1:-1]))


def repack(raw: bytes) -> bytes:
    text = base64.b64encode(raw)
    body = b"\n".join(text[i : i + 70] for i in range(0, len(text), 70))
    return (
        b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + body + b"\n-----END OPENSSH PRIVATE KEY-----\n"
    )


def sections(raw: bytes) -> list[bytes]:
    """magic+cipher+kdf+kdfopts+count (as one prefix), the public blob, the private list."""
    r = ssh._Reader(raw)
    r.take(len(b"openssh-key-v1\x00"))
    r.string(), r.string(), r.string(), r.u32()
    prefix = raw[: r.pos]
    return [prefix, r.string(), r.string()]


def ssh_string(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


# --- conversion agrees with openssl and ssh-keygen ---------------------------------------


@pytest.mark.parametrize("name", SUPPORTED)
def test_public_and_private_halves_agree(sshdir: Path, name: str) -> None:
    pub = (sshdir / f"{name}.pub").read_bytes()
    priv = (sshdir / name).read_bytes()
    assert ssh.is_openssh_public(pub) and ssh.is_openssh_private(priv)
    key = ssh.public_key(pub, f"{name}.pub")
    assert key.kind == SUPPORTED[name] and key.cert is None
    pem = ssh.private_pem(priv, name)
    label = b"RSA PRIVATE KEY" if name == "rsa" else b"EC PRIVATE KEY"
    assert pem.startswith(b"-----BEGIN " + label + b"-----\n")
    assert crypto.public_der(pem) == key.spki
    # the fingerprint the format defines, redone with the openssl command line
    assert crypto.sha256_hex(openssl_der(pem, "-pubout")) == key.fingerprint


@pytest.mark.parametrize("name", SUPPORTED)
def test_private_key_is_what_ssh_keygen_exports(sshdir: Path, name: str, tmp_path: Path) -> None:
    """ssh-keygen's own PEM export of the same key is the same key, byte for byte."""
    copy = tmp_path / name
    shutil.copy(sshdir / name, copy)
    subprocess.run(["ssh-keygen", "-q", "-p", "-m", "PEM", "-N", "", "-P", "", "-f", str(copy)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)  # fmt: skip
    ours = ssh.private_pem((sshdir / name).read_bytes(), name)
    assert openssl_der(ours) == openssl_der(copy.read_bytes())
    # and our DER is canonical: openssl re-encodes it to the same traditional bytes
    assert openssl_der(ours, "-traditional") == base64.b64decode(b"".join(ours.splitlines()[1:-1]))


def test_rsa_oaep_round_trip(sshdir: Path) -> None:
    key = ssh.public_key((sshdir / "rsa.pub").read_bytes(), "rsa.pub")
    pem = ssh.private_pem((sshdir / "rsa").read_bytes(), "rsa")
    dk = crypto.rand(32)
    ct = crypto.rsa_oaep_encrypt(key.spki, dk)
    assert len(ct) == 256
    assert crypto.rsa_oaep_decrypt(pem, ct) == dk


@pytest.mark.parametrize("name", ["ec256", "ec384"])
def test_ecdh_agreement(sshdir: Path, name: str) -> None:
    key = ssh.public_key((sshdir / f"{name}.pub").read_bytes(), f"{name}.pub")
    pem = ssh.private_pem((sshdir / name).read_bytes(), name)
    eph = crypto.genpkey(CURVES[key.kind])
    z = crypto.derive(eph, key.spki)
    assert len(z) == {"p256": 32, "p384": 48}[key.kind]
    assert crypto.derive(pem, crypto.public_der(eph)) == z


def test_line_variants_accepted(sshdir: Path) -> None:
    line = (sshdir / "ec256.pub").read_bytes().strip()
    kind, blob = line.split()[:2]
    want = ssh.public_key(line, "x").spki
    for variant in (kind + b" " + blob, line + b"\r\n", b"  " + line + b"\n", line + b" two words"):
        assert ssh.public_key(variant, "x").spki == want


def test_no_key_material_on_argv(sshdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    real = proc._run

    def spy(argv: list[str], *args: object) -> bytes:
        seen.append(list(argv))
        return real(argv, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(proc, "_run", spy)
    pub = (sshdir / "rsa.pub").read_bytes()
    ssh.public_key(pub, "rsa.pub")
    pem = ssh.private_pem((sshdir / "rsa").read_bytes(), "rsa")
    assert any(a[0].endswith("ssh-keygen") for a in seen)
    assert any("-check" in a for a in seen)
    blobs = [pub.split()[1][:40].decode(), pem.splitlines()[1][:40].decode()]
    for argv in seen:
        for arg in argv:
            assert not any(b in arg for b in blobs), argv
            assert not arg.startswith(("/tmp", str(sshdir))), argv


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pub", ""])
def test_ed25519_refused(sshdir: Path, suffix: str) -> None:
    data = (sshdir / f"ed25519{suffix}").read_bytes()
    convert = ssh.public_key if suffix else ssh.private_pem
    with pytest.raises(ssh.UnsupportedKeyType) as e:
        convert(data, "ed")
    assert isinstance(e.value, UsageError) and e.value.exit_code == 2
    assert e.value.key_type == "ssh-ed25519" and "'ssh-ed25519'" in e.value.message
    assert e.value.hint == ssh.ED25519_HINT


@pytest.mark.parametrize("suffix", [".pub", ""])
def test_p521_refused(sshdir: Path, suffix: str) -> None:
    data = (sshdir / f"ec521{suffix}").read_bytes()
    convert = ssh.public_key if suffix else ssh.private_pem
    with pytest.raises(ssh.UnsupportedKeyType, match="ecdsa-sha2-nistp521") as e:
        convert(data, "ec521")
    assert "P-521" in (e.value.hint or "")


@pytest.mark.parametrize(
    "key_type",
    ["sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-dss",
     "ssh-rsa-cert-v01@openssh.com", "ssh-foo"],
)  # fmt: skip
def test_other_types_refused(key_type: str) -> None:
    blob = base64.b64encode(ssh_string(key_type.encode()) + ssh_string(b"\x01" * 32))
    with pytest.raises(ssh.UnsupportedKeyType) as e:
        ssh.public_key(key_type.encode() + b" " + blob + b" c", "k.pub")
    assert e.value.key_type == key_type and e.value.hint


def test_encrypted_private_key_refused(sshdir: Path) -> None:
    with pytest.raises(AccessDenied) as e:
        ssh.private_pem((sshdir / "rsa-locked").read_bytes(), "id_rsa")
    assert e.value.exit_code == 4
    assert "'id_rsa' is an encrypted OpenSSH private key" in e.value.message
    assert e.value.hint == "decrypt a copy first: ssh-keygen -p -N '' -f COPY, or use a PEM key"


def test_malformed_public_lines(sshdir: Path) -> None:
    rsa = (sshdir / "rsa.pub").read_bytes().split()
    ec = (sshdir / "ec256.pub").read_bytes().split()
    raw = base64.b64decode(rsa[1])
    bad = [
        b"", b"ssh-rsa", b"ssh-rsa !!!!", b"ssh-rsa AAAA", b"ssh-rsa " + rsa[1][:-8],
        rsa[0] + b" " + rsa[1] + b"\n" + ec[0] + b" " + ec[1],  # two lines
        b"ecdsa-sha2-nistp256 " + rsa[1],  # says one type, holds another
        b"ssh-rsa " + base64.b64encode(raw + b"\x00"),  # trailing bytes
        b"ssh-rsa " + base64.b64encode(raw[:-10]),  # truncated
        b'from="*" ' + rsa[0] + b" " + rsa[1],  # authorized_keys options
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ec[0] + b" " + base64.b64encode(base64.b64decode(ec[1])[:-1] + b"\x00"),  # off the curve
    ]  # fmt: skip
    for line in bad:
        with pytest.raises(UsageError) as e:
            ssh.public_key(line, "k.pub")
        assert "'k.pub'" in e.value.message and not isinstance(e.value, ssh.UnsupportedKeyType)


def test_small_rsa_refused() -> None:
    blob = (
        ssh_string(b"ssh-rsa") + ssh_string(b"\x01\x00\x01") + ssh_string(b"\x00" + b"\xc1" * 128)
    )
    with pytest.raises(UsageError, match="malformed"):
        ssh.public_key(b"ssh-rsa " + base64.b64encode(blob), "small.pub")


def corrupt(raw: bytes, section: int, offset: int) -> bytes:
    """Flip one bit ``offset`` bytes into section 1 (public blob) or 2 (private list)."""
    parts = sections(raw)
    body = bytearray(parts[section])
    body[offset] ^= 0x01
    parts[section] = bytes(body)
    return parts[0] + b"".join(ssh_string(p) for p in parts[1:])


@pytest.mark.parametrize("name", SUPPORTED)
def test_malformed_private_keys(sshdir: Path, name: str) -> None:
    raw = unpack(sshdir / name)
    parts = sections(raw)
    other = "ec384" if name != "ec384" else "ec256"
    other_public = sections(unpack(sshdir / other))[1]
    private = parts[2]
    bad = {
        "not a key": b"hello\n",
        "pem cut short": repack(raw)[:-40],
        "bad base64": repack(raw).replace(b"\n", b"\n!", 1),
        "bad magic": repack(b"openssh-key-v2\x00" + raw[15:]),
        "truncated": repack(raw[:-20]),
        "trailing": repack(raw + b"\x00"),
        "two keys": repack(raw.replace(parts[0], parts[0][:-4] + b"\x00\x00\x00\x02", 1)),
        "check ints": repack(corrupt(raw, 2, 0)),
        "public type": repack(parts[0] + ssh_string(other_public) + ssh_string(private)),
        "private scalar": repack(corrupt(raw, 2, len(private) - 40)),
        "padding": repack(parts[0] + ssh_string(parts[1]) + ssh_string(private + b"\x00")),
    }  # fmt: skip
    for what, data in bad.items():
        with pytest.raises(UsageError) as e:
            ssh.private_pem(data, "id")
        assert "'id'" in e.value.message, what
        if what == "private scalar" and name != "rsa":  # only openssl -check can tell
            assert "corrupt OpenSSH private key (its halves do not match)" in e.value.message


def test_mismatched_halves_refused(sshdir: Path, tmp_path: Path) -> None:
    """A file whose public blob is another key of the same type is refused."""
    mine = unpack(sshdir / "ec256")
    theirs = sections(unpack(keygen(tmp_path, "other", *KEYGEN_ARGS["ec256"])))[1]
    parts = sections(mine)
    with pytest.raises(UsageError, match="does not match its public key"):
        ssh.private_pem(repack(parts[0] + ssh_string(theirs) + ssh_string(parts[2])), "id")


def test_predicates(sshdir: Path) -> None:
    assert ssh.is_openssh_public((sshdir / "ed25519.pub").read_bytes())
    assert not ssh.is_openssh_public((sshdir / "rsa").read_bytes())
    assert not ssh.is_openssh_public(
        b"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
    )
    assert not ssh.is_openssh_public(b"")
    assert ssh.is_openssh_private(b"\n" + (sshdir / "ed25519").read_bytes())
    assert not ssh.is_openssh_private((sshdir / "rsa.pub").read_bytes())


def test_ssh_keygen_missing(sshdir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OperationError) as e:
        ssh.public_key((sshdir / "rsa.pub").read_bytes(), "rsa.pub")
    assert "'ssh-keygen' not found" in e.value.message and "openssh-client" in (e.value.hint or "")
