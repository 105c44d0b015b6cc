"""Bad input gets one clear error line, the documented exit code, and changes nothing.

Every case checks stderr is exactly ``ossl-vault: error: ...`` (lowercase, no
trailing period) plus at most one ``hint: ...`` line, nothing on stdout, and
an unchanged vault (every file, byte for byte).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import KINDS, VaultDir, assert_error, records_text

VALUE = b"the value"


@pytest.fixture
def filled(vault: VaultDir) -> VaultDir:
    """The host vault holding 'app/token' (two versions) and 'db/password'."""
    vault.ok("put", "app/token", input=b"old")
    vault.ok("put", "app/token", input=VALUE)
    vault.ok("put", "db/password", input=b"pw")
    return vault


def unchanged(v: VaultDir, *args: str, code: int, words: tuple[str, ...] = (), **kw: object) -> str:
    """Run, check the error, and check that no file of the vault changed."""
    before = v.snapshot()
    err = assert_error(v.run(*args, **kw), code, *words)  # type: ignore[arg-type]
    assert v.snapshot() == before, f"{args} changed the vault"
    return err


# -- tampered or foreign vault.tsv: exit 5 ----------------------------------------------

Edit = Callable[[list[list[str]]], None]  # edits the lines (as field lists) in place


def _line(lines: list[list[str]], kind: str) -> list[str]:
    return next(f for f in lines if f[0] == kind)


def _set(kind: str, index: int, value: str) -> Edit:
    def edit(lines: list[list[str]]) -> None:
        _line(lines, kind)[index] = value

    return edit


def _append(kind: str) -> Edit:
    return lambda lines: _line(lines, kind).append("x")


def _drop_last(kind: str) -> Edit:
    return lambda lines: _line(lines, kind).pop()


def _swap(lines: list[list[str]]) -> None:
    lines[1], lines[2] = lines[2], lines[1]


def _duplicate(lines: list[list[str]]) -> None:
    lines.insert(2, list(lines[1]))


def _strip_padding(lines: list[list[str]]) -> None:
    f = _line(lines, "secret")
    assert f[8].endswith("=")
    f[8] = f[8].rstrip("=")


TAMPER: dict[str, Edit] = {
    "format version 3": _set("ossl-vault", 1, "3"),
    "format version 10": _set("ossl-vault", 1, "10"),
    "not a vault header": _set("ossl-vault", 0, "other-tool"),
    "broken base64 in salt": _set("secret", 8, "!!!!!!!!!!!="),
    "broken base64 in wrap": _set("wrap", 5, "not*base64=="),
    "broken base64 in spki": _set("recipient", 6, "####"),
    "non-canonical base64": _strip_padding,
    "extra field in secret": _append("secret"),
    "missing field in secret": _drop_last("secret"),
    "extra field in wrap": _append("wrap"),
    "missing field in recipient": _drop_last("recipient"),
    "unsorted lines": _swap,
    "duplicate line": _duplicate,
    "unknown cipher": _set("secret", 4, "aes-128-cbc"),
    "bad version number": _set("secret", 2, "01"),
}


def tamper(v: VaultDir, edit: Edit) -> None:
    """Edit the records as one sorted list under the header (format.md 2.6), and write
    each line back to the file it belongs to."""
    head = (v.path / "recipients.tsv").read_text().split("\n")[0]
    lines = [head.split("\t")] + [x.split("\t") for x in records_text(v.path).split("\n")[1:-1]]
    edit(lines)
    files: dict[Path, list[str]] = {v.path / "recipients.tsv": []}
    for f in lines:
        if f[0] in ("recipient", "ossl-vault", "other-tool"):
            files[v.path / "recipients.tsv"].append("\t".join(f) + "\n")
        else:
            files.setdefault(v.secret_file(f[1]), []).append("\t".join(f) + "\n")
    for path, text in files.items():
        path.write_text("".join(text))


@pytest.mark.parametrize("case", list(TAMPER))
@pytest.mark.both_paths
def test_corrupt_index_exit_5(filled: VaultDir, case: str) -> None:
    tamper(filled, TAMPER[case])
    # format 2: a write reads the recipients and its own secret's file, so it is the
    # damaged secret's put that must refuse; a put of another secret does not read it
    for args in (["get", "app/token"], ["list"], ["put", "app/token"], ["list", "--json"]):
        err = unchanged(filled, *args, code=5, input=b"x")
        assert "vault.tsv" in err or "vault" in err
    if case.startswith("format version"):
        assert "unsupported vault format version" in err


@pytest.mark.both_paths
def test_every_command_refuses_a_future_format(filled: VaultDir, keydir: Path) -> None:
    tamper(filled, TAMPER["format version 3"])
    commands = [
        ["get", "app/token", "--version", "1"],
        ["put", "app/token"],
        ["generate", "gen"],
        ["rm", "app/token"],
        ["rotate"],
        ["rotate", "app/token"],
        ["fsck"],
        ["recipient", "list"],
        ["recipient", "add", "new", str(keydir / "p256.pem")],
        ["recipient", "rm", "host"],
    ]
    for args in commands:
        unchanged(filled, *args, code=5, words=("format version '3'",), input=b"x")


@pytest.mark.both_paths
def test_crlf_and_trailing_garbage_exit_5(filled: VaultDir) -> None:
    path = filled.secret_file("app/token")
    good = path.read_bytes()
    for bad in (good.replace(b"\n", b"\r\n"), good + b"\n", good[:-1], good + b"garbage"):
        path.write_bytes(bad)
        unchanged(filled, "get", "app/token", code=5)
        unchanged(filled, "list", code=5)


# -- secret names -------------------------------------------------------------------

BAD_NAMES = {
    "leading slash": "/a",
    "trailing slash": "a/",
    "double slash": "a//b",
    "dot-dot component": "a/../b",
    "dot component": "a/./b",
    "dot-dot": "..",
    "dot": ".",
    "tab": "a\tb",
    "newline": "a\nb",
    "trailing newline": "ab\n",
    "empty": "",
    "129 bytes": "x" * 129,
    "space": "a b",
    "non-ASCII": "caf\u00e9",
    "not UTF-8": "x\udcff",  # the byte 0xff on the command line
    "leading dot": ".hidden",
    "control char": "a\x01b",
}


@pytest.mark.parametrize("case", list(BAD_NAMES))
@pytest.mark.both_paths
def test_bad_secret_name_exit_2(filled: VaultDir, case: str) -> None:
    name = BAD_NAMES[case]
    for args in (["put", name], ["get", name], ["rm", name]):
        err = unchanged(filled, *args, code=2, input=b"v")
        if name:
            assert repr(name) in err, err  # the bad value, quoted


@pytest.mark.parametrize("name", ["db/password", "a.b/c-d_e@f+g=h:i,j", "x" * 128, "_", "a/b/c/d"])
@pytest.mark.both_paths
def test_good_secret_names(vault: VaultDir, name: str) -> None:
    vault.ok("put", name, input=name.encode())
    assert vault.ok("get", name).out == name.encode()


# -- identities and the vault itself ------------------------------------------------


@pytest.mark.both_paths
def test_wrong_key_exit_4(filled: VaultDir, otherkeys: Path) -> None:
    stranger = VaultDir(filled.path, otherkeys, filled.env)
    for kind in KINDS:
        err = unchanged(stranger, "get", "app/token", code=4, identity=kind)
        assert "no usable identity" in err and "'app/token'" in err
    # a stranger cannot rotate either
    unchanged(stranger, "rotate", "app/token", code=4)
    unchanged(stranger, "rotate", code=4)


@pytest.mark.both_paths
def test_bad_identity_files(filled: VaultDir, tmp_path: Path, keydir: Path) -> None:
    missing = str(tmp_path / "missing.key")
    unchanged(filled, "--identity", missing, "get", "app/token", code=2, words=(repr(missing),))
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"not a key\n")
    unchanged(filled, "--identity", str(garbage), "get", "app/token", code=4, identity=None)
    # a certificate is not a private key
    cert = str(keydir / "rsa.pem")
    unchanged(filled, "--identity", cert, "get", "app/token", code=4, identity=None)


@pytest.mark.parametrize(
    "args",
    [
        ["get", "a"],
        ["list"],
        ["put", "a"],
        ["generate", "a"],
        ["fsck"],
        ["rotate"],
        ["recipient", "list"],
        ["recipient", "rm", "host"],
        ["rm", "a"],
        ["recipient", "add", "x", "KEYDIR/p256.pem"],
    ],
)
@pytest.mark.both_paths
def test_missing_vault_exit_3(tmp_path: Path, keydir: Path, env: dict[str, str], args: list[str]):
    v = VaultDir(tmp_path / "nowhere" / "vault", keydir, env)
    args = [a.replace("KEYDIR", str(keydir)) for a in args]
    assert_error(v.run(*args, input=b"x"), 3, "no vault", str(v.path))
    assert not (tmp_path / "nowhere").exists(), "a failed command created the vault directory"


# -- usage errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["frobnicate"], ("'frobnicate'",)),
        (["get", "app/token", "--frob"], ("'--frob'",)),
        (["--frob", "list"], ("'--frob'",)),
        (["get"], ("'NAME'",)),
        (["get", "app/token", "--version", "0"], ("--version",)),
        (["get", "app/token", "--version", "-1"], ("--version",)),
        (["get", "app/token", "--version", "one"], ("--version",)),
        (["list", "--json", "app", "extra"], ("extra",)),
        (["--lock-timeout", "soon", "list"], ("--lock-timeout",)),
        (["generate", "g", "--format", "octal"], ("'octal'",)),
        (["recipient", "frob"], ("'frob'",)),
        (["recipient", "add", "x"], ("--passphrase",)),
        (["put", "x", "--from-file", "/nonexistent/value"], ("'/nonexistent/value'",)),
        (["put", "x", "--from-file", "/"], ("'/'",)),
        (["put", "x", "--password-file", "/nonexistent/pw"], ("'/nonexistent/pw'",)),
        (["get", "app/token", "--out", "/"], ("'/'",)),
    ],
)
def test_usage_errors_exit_2(filled: VaultDir, args: list[str], words: tuple[str, ...]) -> None:
    unchanged(filled, *args, code=2, words=words, input=b"x")


@pytest.mark.both_paths
def test_unknown_version_and_secret_exit_3(filled: VaultDir) -> None:
    unchanged(filled, "get", "app/token", "--version", "3", code=3, words=("version 3",))
    unchanged(filled, "get", "app/nothing", code=3, words=("'app/nothing'",))
    unchanged(filled, "rm", "app/nothing", code=3, words=("'app/nothing'",))
    unchanged(filled, "rotate", "app/nothing", code=3, words=("'app/nothing'",))
    unchanged(filled, "recipient", "rm", "nobody", code=3, words=("'nobody'",))
    unchanged(filled, "put", "x", "--to", "nobody", code=3, words=("'nobody'",), input=b"v")


def test_bad_password_files(filled: VaultDir, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"\n")
    two_lines = tmp_path / "two"
    two_lines.write_bytes(b"one\ntwo\n")
    for f in (empty, two_lines):
        unchanged(filled, "put", "p", "--password-file", str(f), code=2, input=b"v")
        unchanged(filled, "recipient", "add", "pp", "--passphrase-file", str(f), code=2)


# -- recipients -------------------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def test_recipient_add_private_key_exit_2(filled: VaultDir, keydir: Path) -> None:
    for kind in KINDS:
        key = str(keydir / f"{kind}.key")
        err = unchanged(filled, "recipient", "add", "priv", key, code=2, words=(repr(key),))
        assert "private key" in err and "\nhint: " in err


def test_recipient_add_refused_key_types(filled: VaultDir, tmp_path: Path) -> None:
    specs = {
        "Ed25519": ["-algorithm", "ED25519"],
        "X448": ["-algorithm", "X448"],
        "P-521": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
        "RSA-1024": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    }
    for label, spec in specs.items():
        key, pub = tmp_path / f"{label}.key", tmp_path / f"{label}.pub"
        _openssl("genpkey", *spec, "-out", str(key))
        _openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub))
        word = label.split("-")[0]
        unchanged(filled, "recipient", "add", "r", str(pub), code=2, words=(word,))


def test_recipient_add_garbage_exit_2(filled: VaultDir, tmp_path: Path) -> None:
    cases = {
        "text": b"hello, this is not a key\n",
        "random": bytes(range(7, 200)),
        "der-ish": b"\x30\x03\x02\x01\x00",
        "empty": b"",
        "broken pem": b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        unchanged(filled, "recipient", "add", "r", str(path), code=2, words=(repr(str(path)),))
    missing = str(tmp_path / "missing.pem")
    unchanged(filled, "recipient", "add", "r", missing, code=2, words=(repr(missing),))


def test_recipient_add_duplicates_exit_2(filled: VaultDir, keydir: Path) -> None:
    # the same name with another key, and the same key under another name
    unchanged(
        filled, "recipient", "add", "host", str(keydir / "p256.pem"), code=2, words=("'host'",)
    )
    unchanged(
        filled, "recipient", "add", "again", str(keydir / "rsa.pem"), code=2, words=("'host'",)
    )


@pytest.mark.parametrize("name", ["", "a b", "-x", ".x", "a/b", "a" * 65, "a,b"])
def test_recipient_add_bad_name_exit_2(filled: VaultDir, keydir: Path, name: str) -> None:
    unchanged(filled, "recipient", "add", "--", name, str(keydir / "p256.pem"), code=2)


def test_init_on_existing_vault_exit_2(filled: VaultDir, keydir: Path) -> None:
    unchanged(filled, "init", code=2, words=("already exists",), identity=None)
    unchanged(
        filled, "init", "-r", f"host={keydir / 'p256.pem'}", code=2, words=("already exists",)
    )


def test_init_bad_recipient_creates_nothing(tmp_path: Path, keydir: Path, env: dict[str, str]):
    v = VaultDir(tmp_path / "vault", keydir, env)
    for spec in (f"bad name={keydir / 'rsa.pem'}", f"host={keydir / 'rsa.key'}", "host=/nope"):
        assert_error(v.run("init", "-r", spec, identity=None), 2)
        assert not v.path.exists()
