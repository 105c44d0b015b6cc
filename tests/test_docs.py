"""docs/format.md's recipes that issue 9 added, run as a recoverer would (bash, openssl)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from conftest import ROOT, VaultDir

RECOVER = ROOT / "scripts" / "ossl-vault-recover"


def recipient_fields(v: VaultDir, name: str) -> list[str]:
    for line in v.tsv().splitlines():
        f = line.split("\t")
        if f[0] == "recipient" and f[1] == name:
            return f
    raise AssertionError(name)


CERT_CHECK = r"""
set -euo pipefail
base64 -d <<<"$CERT" > cert.der; base64 -d <<<"$SPKI" > spki.der
line=$(openssl asn1parse -inform DER -in cert.der | grep 'd=2' | sed -n 7p)
off=${line%%:*}; off=${off// /}
hl=${line#*hl=}; hl=${hl%% *}
l=${line#* l=}; l=${l// /}; l=${l%%cons*}
dd if=cert.der bs=1 skip=$off count=$((hl + l)) 2>/dev/null | cmp - spki.der
"""


def test_cert_holds_exactly_spki_recipe(vault: VaultDir, tmp_path: Path) -> None:
    f = recipient_fields(vault, "host")
    cert, spki = f[7], f[6]  # fields 8 and 7 of section 2.1
    env = {"PATH": "/usr/bin:/bin", "CERT": cert, "SPKI": spki}
    p = subprocess.run(["bash", "-c", CERT_CHECK], cwd=tmp_path, env=env, capture_output=True)
    assert p.returncode == 0, p.stderr
    # a certificate damaged outside its key (the last signature byte): x509 may refuse
    # it, the rule (and the recipe) still hold; another key's SPKI fails the recipe
    der = bytearray(base64.b64decode(cert))
    der[-1] ^= 0xFF
    damaged = base64.b64encode(bytes(der)).decode()
    p = subprocess.run(["bash", "-c", CERT_CHECK], cwd=tmp_path,
                       env={**env, "CERT": damaged}, capture_output=True)  # fmt: skip
    assert p.returncode == 0, p.stderr
    other = subprocess.run(["openssl", "pkey", "-in", str(vault.keydir / "p256.key"), "-pubout",
                            "-outform", "DER"], capture_output=True, check=True).stdout  # fmt: skip
    p = subprocess.run(["bash", "-c", CERT_CHECK], cwd=tmp_path, capture_output=True,
                       env={**env, "SPKI": base64.b64encode(other).decode()})  # fmt: skip
    assert p.returncode != 0


def test_recovery_script_with_crlf_password_files_and_openssh_keys(
    vault: VaultDir, tmp_path: Path
) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(b"secret pw\r\n")  # written on Windows: the CLI strips the CR
    vault.ok("put", "guarded", "--password-file", str(pw), input=b"G")
    assert vault.ok("get", "guarded", "--password-file", str(pw)).out == b"G"
    key = str(vault.keydir / "rsa.key")
    p = subprocess.run(["bash", str(RECOVER), "--password-file", str(pw), str(vault.path),
                        "guarded", key], capture_output=True)  # fmt: skip
    assert (p.returncode, p.stdout) == (0, b"G"), p.stderr
    ssh_key = tmp_path / "id_ecdsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(ssh_key)], check=True)
    p = subprocess.run(["bash", str(RECOVER), str(vault.path), "guarded", str(ssh_key)],
                       capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 2 and p.stdout == "", p.stderr
    assert "is an OpenSSH private key" in p.stderr and "ssh-keygen -p -m PEM" in p.stderr
