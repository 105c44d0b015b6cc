"""Every test vector, run by the CLI and by the openssl-only recovery script.

Both must reach the vector's verdict: success (the exact value), no match,
wrong password, integrity failure or format error (format.md section 7).
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CLI, ROOT

VECTORS = Path(__file__).resolve().parent / "vectors"
RECOVER = ROOT / "scripts" / "ossl-vault-recover"
EXIT = {"success": 0, "no match": 4, "wrong password": 4, "integrity failure": 5,
        "format error": 5}  # fmt: skip


@dataclass
class Vector:
    headers: dict[str, str]
    vault: bytes
    blobs: dict[str, bytes]
    files: dict[str, bytes] | None = None  # a format-2 vault's record files, by path

    @property
    def expect(self) -> str:
        return self.headers["expect"]


def load(path: Path) -> Vector:
    head, _, body = path.read_bytes().partition(b"\n\n")
    headers = dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
                   for line in head.decode().splitlines())  # fmt: skip
    parts = body.split(b"---blob ")
    blobs = {}
    for part in parts[1:]:
        name, _, data = part.partition(b"\n")
        blobs[name.decode()] = base64.b64decode(data)
    files = None
    if parts[0].startswith(b"---file "):  # format 2: the record files, one section each
        files = {}
        for section in parts[0].split(b"---file ")[1:]:
            name, _, data = section.partition(b"\n")
            files[name.decode()] = data
    return Vector(headers, parts[0], blobs, files)


def materialize(v: Vector, tmp: Path) -> tuple[Path, list[str], list[str]]:
    """Write the vault; return it, the CLI's extra args and the recovery script's."""
    root = tmp / "vault"
    (root / "blobs").mkdir(parents=True)
    if v.files is None:
        (root / "vault.tsv").write_bytes(v.vault)
    for rel, data in (v.files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    # vectors are about records and blobs; the CLI also wants an audit log to append to
    (root / "audit.log").write_text("ossl-vault-audit\t1\trequired\t-\n")
    for name, data in v.blobs.items():
        (root / "blobs" / name).write_bytes(data)
    cli: list[str] = []
    rec: list[str] = []
    if "password" in v.headers:
        (tmp / "password").write_text(v.headers["password"] + "\n")
        cli += ["--password-file", str(tmp / "password")]
        rec += ["--password-file", str(tmp / "password")]
    if "passphrase" in v.headers:
        (tmp / "passphrase").write_text(v.headers["passphrase"] + "\n")
        cli += ["--passphrase-file", str(tmp / "passphrase")]
        rec += ["--passphrase-file", str(tmp / "passphrase")]
    return root, cli, rec


ALL = sorted(VECTORS.glob("*.vec"))


def test_there_are_vectors_of_every_verdict() -> None:
    assert {load(p).expect for p in ALL} == set(EXIT)
    assert {load(p).expect for p in ALL if load(p).files} == set(EXIT)  # format 2 too


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_cli_reaches_the_verdict(path: Path, tmp_path: Path, env: dict[str, str]) -> None:
    v = load(path)
    root, extra, _ = materialize(v, tmp_path)
    identity = []
    if "identity" in v.headers:
        identity = ["--identity", str(VECTORS / "keys" / v.headers["identity"])]
    p = subprocess.run([*CLI, "--vault", str(root), *identity, "get", v.headers["name"], *extra],
                       capture_output=True, env=env)  # fmt: skip
    assert p.returncode == EXIT[v.expect], p.stderr
    if v.expect == "success":
        assert p.stdout == base64.b64decode(v.headers["value-b64"])
    else:
        assert p.stdout == b""
        assert p.stderr.decode().startswith("ossl-vault: error: ")


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_recovery_script_reaches_the_verdict(path: Path, tmp_path: Path,
                                             no_python_path: str) -> None:  # fmt: skip
    v = load(path)
    root, _, extra = materialize(v, tmp_path)
    args = [str(RECOVER), *extra, str(root), v.headers["name"]]
    if "identity" in v.headers:
        args.append(str(VECTORS / "keys" / v.headers["identity"]))
    p = subprocess.run(["bash", *args], capture_output=True,
                       env={"PATH": no_python_path, "LC_ALL": "C"})  # fmt: skip
    assert p.returncode == EXIT[v.expect], p.stderr
    if v.expect == "success":
        assert p.stdout == base64.b64decode(v.headers["value-b64"])
    else:
        assert p.stdout == b""
