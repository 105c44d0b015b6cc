"""Regenerate tests/vectors/*.vec (run by hand; the output is committed).

    python tests/vectors/make_vectors.py

Keys in tests/vectors/keys/ are throwaway TEST-ONLY keys made for the vectors;
they protect nothing but these files. New keys are made only when missing.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from ossl_vault.keys import loader  # noqa: E402
from ossl_vault.openssl.crypto import ENC_ITER  # noqa: E402
from ossl_vault.ops import sharing  # noqa: E402
from ossl_vault.ops.vault import Vault  # noqa: E402

KEYS = HERE / "keys"
PASSPHRASE = "correct horse battery staple"
PASSWORD = "per-secret pw"
VALUE = b"s3cret\x00value\n\twith\xffbytes"


def make_keys() -> None:
    KEYS.mkdir(exist_ok=True)
    specs = {
        "rsa": ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "p256": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "p384": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        "x25519": ["genpkey", "-algorithm", "X25519"],
        "stranger": ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    }
    for name, args in specs.items():
        key = KEYS / f"TEST-ONLY-{name}.key"
        if not key.exists():
            subprocess.run(["openssl", *args, "-out", str(key)], check=True)
        pub = KEYS / f"TEST-ONLY-{name}.pub.pem"
        subprocess.run(
            ["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True
        )


def build(root: Path, recipients: list[str], passphrase: bool, password: bool,
          value: bytes) -> None:  # fmt: skip
    v = Vault(str(root), fmt="1")  # the format-1 vectors; make_v2_vectors.py splits some
    v.init([(r, loader.from_file(str(KEYS / f"TEST-ONLY-{r}.pub.pem"))) for r in recipients])
    if passphrase:
        sharing.add_passphrase(v, "backup", PASSPHRASE.encode())
    v.put("app/token", value, None, PASSWORD.encode() if password else None)


def write_vector(name: str, root: Path, expect: str, headers: dict[str, str]) -> None:
    lines = [f"expect: {expect}", "name: app/token", *(f"{k}: {v}" for k, v in headers.items())]
    out = ("\n".join(lines) + "\n\n").encode() + (root / "vault.tsv").read_bytes()
    for blob in sorted((root / "blobs").iterdir()):
        out += f"---blob {blob.name}\n".encode() + base64.encodebytes(blob.read_bytes())
    (HERE / f"{name}.vec").write_bytes(out)


def flip_field(root: Path, kind: str, field: int) -> None:
    """Flip one base64 character of a field of the first line of ``kind``."""
    path = root / "vault.tsv"
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        f = line.split("\t")
        if f[0] == kind:
            c = f[field][0]
            f[field] = ("B" if c == "A" else "A") + f[field][1:]
            lines[i] = "\t".join(f)
            break
    path.write_text("\n".join(lines))


def flip_fpr(root: Path) -> None:
    """Change one hex digit of the first recipient's fingerprint."""
    path = root / "vault.tsv"
    lines = path.read_text().split("\n")
    i = next(i for i, line in enumerate(lines) if line.startswith("recipient\t"))
    f = lines[i].split("\t")
    f[3] = ("1" if f[3][0] == "0" else "0") + f[3][1:]
    lines[i] = "\t".join(f)
    path.write_text("\n".join(lines))


def flip_blob(root: Path) -> None:
    blob = next((root / "blobs").iterdir())
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))


def edit_text(old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / "vault.tsv"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    return edit


def add_lines(*extra: str) -> Callable[[Path], None]:
    """Insert record lines (format.md 2.6, 2.7), keeping the file sorted."""

    def edit(root: Path) -> None:
        path = root / "vault.tsv"
        head, *records = path.read_text().splitlines()
        path.write_text("\n".join([head, *sorted([*records, *extra])]) + "\n")

    return edit


META = "meta\tapp/token\towner\t" + base64.b64encode("Zoë Ops".encode()).decode()
# an expiry long past: the secret still reads (with a warning), by the CLI and the script
EXPIRED = "state\tapp/token\t2001-01-01T00:00:00Z\t-\t-"


def main() -> None:
    make_keys()
    success = {"value-b64": base64.b64encode(VALUE).decode()}
    cases: list[tuple[str, list[str], bool, bool, str, dict[str, str], Callable | None]] = [
        ("rsa-success", ["rsa"], False, False, "success", {"identity": "TEST-ONLY-rsa.key"}, None),
        ("p256-success", ["p256"], False, False, "success",
         {"identity": "TEST-ONLY-p256.key"}, None),
        ("p384-success", ["p384"], False, False, "success",
         {"identity": "TEST-ONLY-p384.key"}, None),
        ("x25519-success", ["x25519"], False, False, "success",
         {"identity": "TEST-ONLY-x25519.key"}, None),
        ("multi-success", ["p256", "rsa", "x25519"], False, False, "success",
         {"identity": "TEST-ONLY-x25519.key"}, None),
        ("passphrase-success", ["rsa"], True, False, "success", {"passphrase": PASSPHRASE}, None),
        ("password-success", ["rsa"], False, True, "success",
         {"identity": "TEST-ONLY-rsa.key", "password": PASSWORD}, None),
        ("no-match", ["rsa", "p256"], False, False, "no match",
         {"identity": "TEST-ONLY-stranger.key"}, None),
        ("wrong-password", ["rsa"], False, True, "wrong password",
         {"identity": "TEST-ONLY-rsa.key", "password": "not it"}, None),
        ("wrong-passphrase", ["rsa"], True, False, "wrong password",
         {"passphrase": "not it either"}, None),
        ("blob-flipped", ["rsa"], False, False, "integrity failure",
         {"identity": "TEST-ONLY-rsa.key"}, flip_blob),
        ("mac-flipped", ["rsa"], False, False, "integrity failure",
         {"identity": "TEST-ONLY-rsa.key"}, lambda r: flip_field(r, "secret", 15)),
        ("rsa-wrap-flipped", ["rsa"], False, False, "integrity failure",
         {"identity": "TEST-ONLY-rsa.key"}, lambda r: flip_field(r, "wrap", 6)),
        ("ecdh-wrap-mac-flipped", ["x25519"], False, False, "integrity failure",
         {"identity": "TEST-ONLY-x25519.key"}, lambda r: flip_field(r, "wrap", 14)),
        ("other-wrap-flipped", ["p256", "rsa"], False, False, "integrity failure",
         {"identity": "TEST-ONLY-rsa.key"}, lambda r: flip_field(r, "wrap", 13)),
        ("iv-flipped", ["rsa"], False, False, "integrity failure",
         {"identity": "TEST-ONLY-rsa.key"}, lambda r: flip_field(r, "secret", 9)),
        ("passphrase-key-flipped", ["rsa"], True, False, "integrity failure",
         {"passphrase": PASSPHRASE}, lambda r: flip_field(r, "recipient", 8)),
        ("recipient-fpr-flipped", ["rsa"], False, False, "integrity failure",
         {"identity": "TEST-ONLY-rsa.key"}, flip_fpr),
        ("iterations-out-of-range", ["rsa"], False, False, "format error",
         {"identity": "TEST-ONLY-rsa.key"}, edit_text(f"\t{ENC_ITER}\t", "\t10000001\t")),
        ("version-2-header", ["rsa"], False, False, "format error",
         {"identity": "TEST-ONLY-rsa.key"}, edit_text("ossl-vault\t1\n", "ossl-vault\t2\n")),
        ("broken-base64", ["rsa"], False, False, "format error",
         {"identity": "TEST-ONLY-rsa.key"}, edit_text("\trsa-oaep\t", "\trsa-oaep\t!")),
        ("extra-field", ["rsa"], False, False, "format error",
         {"identity": "TEST-ONLY-rsa.key"}, edit_text("\trsa-oaep\t", "\trsa-oaep\textra\t")),
        ("unsupported-cipher", ["rsa"], False, False, "format error",
         {"identity": "TEST-ONLY-rsa.key"}, edit_text("\taes-256-cbc\t", "\taes-128-cbc\t")),
        ("meta-state-success", ["rsa"], False, False, "success",
         {"identity": "TEST-ONLY-rsa.key"}, add_lines(META, EXPIRED)),
        ("state-empty", ["rsa"], False, False, "format error",
         {"identity": "TEST-ONLY-rsa.key"}, add_lines("state\tapp/token\t-\t-\t-")),
        ("state-deleted-without-purge", ["rsa"], False, False, "format error",
         {"identity": "TEST-ONLY-rsa.key"},
         add_lines("state\tapp/token\t-\t2001-01-01T00:00:00Z\t-")),
        ("meta-non-canonical", ["rsa"], False, False, "format error",
         {"identity": "TEST-ONLY-rsa.key"}, add_lines("meta\tapp/token\towner\tYWxpY2V=")),
        ("meta-orphan", ["rsa"], False, False, "format error",
         {"identity": "TEST-ONLY-rsa.key"}, add_lines("meta\tother\towner\tYWxpY2U=")),
    ]  # fmt: skip
    only = set(sys.argv[1:])  # regenerate only these (others keep their committed bytes)
    for name, recips, passphrase, password, expect, headers, mutate in cases:
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "v"
            build(root, recips, passphrase, password, VALUE)
            if mutate:
                mutate(root)
            write_vector(
                name, root, expect, {**headers, **(success if expect == "success" else {})}
            )
    if only:
        return
    with tempfile.TemporaryDirectory() as tmp:  # the empty value
        root = Path(tmp) / "v"
        build(root, ["rsa"], False, False, b"")
        write_vector("empty-value", root, "success",
                     {"identity": "TEST-ONLY-rsa.key", "value-b64": ""})  # fmt: skip


if __name__ == "__main__":
    main()
