"""Issue 15: a plain read loads only what it needs, and starts two openssl processes.

The light path (ossl_vault/cli/light.py) answers ``get NAME``, ``env NAME...``
and ``exec --env VAR=NAME -- CMD`` before click loads. These tests run the real
console-script code in a child and look at what it imported, and count the
openssl processes through the logging shim of tests/test_no_secret_argv.py.
The promises themselves (MAC first, audit record first, one error line) are
tested on both paths by the tests marked ``both_paths`` elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CLI, VaultDir, assert_error
from test_no_secret_argv import logging_openssl, parse_log

from ossl_vault.format.records import Ledger, Password, Recipient, Version, Wrap
from ossl_vault.format.secretinfo import State
from ossl_vault.keys.pubkeys import PublicKey
from ossl_vault.openssl import cache
from ossl_vault.ops.vault import Vault
from ossl_vault.storage.audit import Record
from ossl_vault.storage.backend import Part

# Everything of ossl_vault a plain get may load: a new import here must be a choice.
GET_MODULES = {
    "ossl_vault", "ossl_vault.errors",
    "ossl_vault.cli", "ossl_vault.cli.argv", "ossl_vault.cli.entry", "ossl_vault.cli.light",
    "ossl_vault.cli.terminal", "ossl_vault.format.secretinfo",
    "ossl_vault.ops", "ossl_vault.ops.read", "ossl_vault.ops.vault", "ossl_vault.ops.edits",
    "ossl_vault.ops.sources",
    "ossl_vault.storage", "ossl_vault.storage.store", "ossl_vault.storage.audit",
    "ossl_vault.storage.files", "ossl_vault.storage.paths", "ossl_vault.storage.backend",
    "ossl_vault.storage.directory", "ossl_vault.storage.dirlog", "ossl_vault.storage.grouplog",
    "ossl_vault.storage.journal", "ossl_vault.format.layout",
    "ossl_vault.format", "ossl_vault.format.fields", "ossl_vault.format.records",
    "ossl_vault.format.seal", "ossl_vault.format.wrapping", "ossl_vault.format.matching",
    "ossl_vault.keys", "ossl_vault.keys.pubkeys",
    "ossl_vault.openssl", "ossl_vault.openssl.proc", "ossl_vault.openssl.crypto",
    "ossl_vault.openssl.cache",
}  # fmt: skip
# Never on a plain read's path: the CLI's libraries, and what only other commands need.
HEAVY = {
    "click", "tabulate", "filelock", "gnupg", "shamir_mnemonic", "asyncio", "json", "socket",
    "typing", "shutil", "tempfile", "datetime", "concurrent.futures", "secrets", "logging",
    # the standard library's slow imports (issue 15): dataclasses (and the inspect, ast
    # and dis it loads) 13 ms, subprocess 8 ms, base64 (it loads re) 4 ms
    "dataclasses", "inspect", "ast", "subprocess", "base64", "getpass", "termios",
    # pathlib 5 ms: it loads re (through fnmatch), urllib.parse and ipaddress
    "pathlib", "re", "urllib", "fnmatch", "ipaddress",
}  # fmt: skip

PROBE = """
import atexit, sys
base, out = set(sys.modules), sys.argv[1]
def dump():
    with open(out, "w") as f:
        f.write("\\n".join(sorted(set(sys.modules) - base)))
atexit.register(dump)
import os
execvpe = os.execvpe
os.execvpe = lambda *a: (dump(), execvpe(*a))  # exec replaces us: no atexit
sys.argv = ["ossl-vault", *sys.argv[2:]]
from ossl_vault.cli.entry import main
main()
"""


def loaded(v: VaultDir, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules ``ossl-vault --vault V -i rsa.key ARGS`` imported (run as the console script)."""
    out = tmp_path / "modules.txt"
    argv = [sys.executable, "-c", PROBE, str(out), "--vault", str(v.path)]
    argv += ["-i", str(v.keydir / "rsa.key"), *args]
    p = subprocess.run(argv, capture_output=True, env={**v.env, **(env or {})}, timeout=60)
    assert p.returncode == 0, p.stderr
    return set(out.read_text().split("\n"))


def test_plain_get_imports_only_what_a_read_needs(vault: VaultDir, tmp_path: Path) -> None:
    vault.ok("put", "db/pw", input=b"s3cret")
    modules = loaded(vault, tmp_path, "get", "db/pw")
    ours = {m for m in modules if m.startswith("ossl_vault")}
    assert ours == GET_MODULES, f"new: {sorted(ours - GET_MODULES)}; gone: {GET_MODULES - ours}"
    assert not modules & HEAVY, sorted(modules & HEAVY)
    # the global options after the command name are plain too
    assert loaded(vault, tmp_path, "get", "db/pw", "--version", "1") & HEAVY == set()


@pytest.mark.parametrize("command", [("env", "db/pw"), ("exec", "--env", "X=db/pw", "--", "true")])
def test_plain_env_and_exec_skip_the_cli(vault: VaultDir, tmp_path: Path, command: tuple) -> None:
    vault.ok("put", "db/pw", input=b"s3cret")
    modules = loaded(vault, tmp_path, *command)
    assert not modules & {"click", "tabulate", "filelock", "gnupg", "asyncio", "shamir_mnemonic"}
    assert "ossl_vault.cli.light" in modules


@pytest.mark.parametrize(
    "args",
    [
        ("get", "db/pw", "--out", "x"),  # not plain: the full CLI
        ("get", "db/pw", "--version", "01"),  # the CLI says what is wrong with it
        ("list",),
    ],
)
def test_anything_else_goes_to_the_cli(vault: VaultDir, tmp_path: Path, args: tuple) -> None:
    vault.ok("put", "db/pw", input=b"s3cret")
    out = tmp_path / "modules.txt"
    argv = [sys.executable, "-c", PROBE, str(out), "--vault", str(vault.path), *args]
    subprocess.run(argv, capture_output=True, env=vault.env, timeout=60, cwd=tmp_path)
    modules = set(out.read_text().split("\n"))
    assert "click" in modules and "ossl_vault.cli.light" not in modules


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "86401", "soon"])
def test_a_bad_lock_timeout_is_the_clis_usage_error(vault: VaultDir, value: str) -> None:
    """The light path takes no lock timeout the CLI refuses (issue 10: finite, 0..86400)."""
    vault.ok("put", "db/pw", input=b"s3cret")
    for args in (("get", "db/pw", "--lock-timeout", value), (f"--lock-timeout={value}", "get",
                                                                "db/pw")):  # fmt: skip
        r = vault.run(*args)
        assert_error(r, 2, "lock-timeout")
        assert r.out == b""
    r = vault.run("get", "db/pw", env={"OSSL_VAULT_LOCK_TIMEOUT": value})
    assert r.rc == 2 and r.out == b"", r.err


@pytest.mark.parametrize(
    "args",
    [
        ("get", "db/pw", "-q"),
        ("-q", "get", "db/pw"),
        ("get", "db/pw", "-v"),
        ("get", "db/pw", "--verbose", "--lock-timeout", "86400"),
        ("get", "db/pw", "--force"),
        ("get", "db/pw", "--key-passphrase-file", "KPF"),
        ("--key-passphrase-file=KPF", "get", "db/pw"),
    ],
)
def test_options_the_light_path_leaves_to_the_cli(
    vault: VaultDir, tmp_path: Path, args: tuple
) -> None:
    """Issue 9's spellings the light path does not parse still work, through click."""
    vault.ok("put", "db/pw", input=b"s3cret")
    kpf = tmp_path / "kpf"
    kpf.write_text("unused\n")
    args = tuple(a.replace("KPF", str(kpf)) for a in args)
    assert vault.ok(*args).out == b"s3cret"
    if "86400" not in args:
        assert "click" in loaded(vault, tmp_path, *args)


@pytest.mark.parametrize(
    "cls", [Recipient, Wrap, Ledger, Password, Version, State, PublicKey, Record, Part]
)
def test_record_fields_are_the_named_tuples_own(cls: type) -> None:
    """The records are named tuples whose class bodies annotate their fields: a default
    written there (``tag: bytes = b""``) would hide the field behind a class attribute."""
    assert list(cls.__annotations__) == list(cls._fields)  # type: ignore[attr-defined]
    assert not set(cls.__dict__) & set(cls._fields)  # type: ignore[attr-defined]
    assert cls.__slots__ == ()  # type: ignore[attr-defined]


def test_fast_path_off_runs_the_full_cli(vault: VaultDir, tmp_path: Path) -> None:
    vault.ok("put", "db/pw", input=b"s3cret")
    modules = loaded(vault, tmp_path, "get", "db/pw", env={"OSSL_VAULT_FAST_PATH": "0"})
    assert "click" in modules and "ossl_vault.cli.light" not in modules


def settled(*paths: Path) -> None:
    """Wait until each file is older than the cache's racy window (it remembers no younger file)."""
    newest = max(max(p.stat().st_mtime, p.stat().st_ctime) for p in paths)
    time.sleep(max(0.0, newest + cache.RACY + 0.05 - time.time()))


def openssl_calls(log: Path) -> list[str]:
    calls = [" ".join(a.decode() for a in argv[1:3]) for argv, _env in parse_log(log.read_bytes())]
    log.write_bytes(b"")
    return calls


@pytest.mark.both_paths
def test_a_read_starts_two_openssl_processes(vault: VaultDir, tmp_path: Path) -> None:
    """The version check and the identity's public key are remembered between runs."""
    vault.ok("put", "db/pw", input=b"s3cret")
    env, log = logging_openssl(tmp_path, vault.env)
    key = tmp_path / "rsa.key"  # a key file of our own, to replace below
    shutil.copyfile(vault.keydir / "rsa.key", key)
    settled(key, tmp_path / "shim-bin" / "openssl")
    reader = VaultDir(vault.path, tmp_path, env)
    assert reader.ok("get", "db/pw").out == b"s3cret"
    first = openssl_calls(log)
    assert first[0] == "version" and "pkey -in" in first, first
    for _ in range(2):
        assert reader.ok("get", "db/pw").out == b"s3cret"
        # enc -d starts first, and waits for its key while pkeyutl unwraps it: the two
        # log their calls in either order
        assert sorted(openssl_calls(log)) == ["enc -d", "pkeyutl -decrypt"]
    cached = Path(env["HOME"]) / ".cache" / "ossl-vault" / "openssl"
    assert cached.stat().st_mode & 0o777 == 0o600
    text = cached.read_bytes()
    assert b"PRIVATE" not in text and key.read_bytes()[40:80] not in text
    # another key under the same name: its public key is looked at afresh
    shutil.copyfile(vault.keydir / "p256.key", tmp_path / "new.key")
    os.replace(tmp_path / "new.key", key)
    assert_error(reader.run("get", "db/pw"), 4, "no usable identity")
    assert "pkey -in" in openssl_calls(log)


def test_a_damaged_or_foreign_cache_is_ignored(vault: VaultDir, tmp_path: Path) -> None:
    vault.ok("put", "db/pw", input=b"s3cret")
    cached = Path(vault.env["HOME"]) / ".cache" / "ossl-vault" / "openssl"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"not a cache\n")
    cached.chmod(0o600)
    assert vault.ok("get", "db/pw").out == b"s3cret"
    # an entry naming a wrong public key for our key file, in a file others may write
    key = vault.keydir / "rsa.key"
    st = key.stat()
    fields = ["spki", cache.encode_bytes(os.fsencode(str(key))), str(st.st_dev), str(st.st_ino),
              str(st.st_size), str(st.st_mtime_ns), str(st.st_ctime_ns), "AAAA"]  # fmt: skip
    cached.write_text(cache.MAGIC + "\n" + "\t".join(fields) + "\n")
    cached.chmod(0o666)
    assert vault.ok("get", "db/pw").out == b"s3cret"


@pytest.mark.both_paths
def test_global_options_before_or_after_the_command(vault: VaultDir, read_path: str) -> None:
    vault.ok("put", "db/pw", input=b"s3cret")
    key = str(vault.keydir / "rsa.key")
    after = [*CLI, "get", "db/pw", "--vault", str(vault.path), "-i", key]
    p = subprocess.run(after, capture_output=True, env=vault.env, timeout=60)
    assert (p.returncode, p.stdout) == (0, b"s3cret"), p.stderr  # issue 9: the full CLI too
    assert vault.ok("get", "--version=1", "db/pw").out == b"s3cret"


@pytest.mark.both_paths
def test_exec_records_every_read_before_the_command_runs(vault: VaultDir) -> None:
    """exec writes its reads' records at once, all on disk before the command starts."""
    Vault(str(vault.path)).put_many({f"s/{i}": b"v%d" % i for i in range(6)})
    specs = [a for i in range(6) for a in ("--env", f"V{i}=s/{i}")]
    count = f"grep -c '\texec\ts/' {vault.path / 'audit.log'}"
    r = vault.ok("exec", *specs, "--", "sh", "-c", f'echo "$V5"; {count}')
    assert r.out == b"v5\n6\n"
    r = vault.run("exec", *specs, "--env", "X=no/such", "--", "true")
    assert_error(r, 3, "no secret 'no/such'")
    failed = [rec for rec in vault.audit() if rec[6:8] == ["exec", "no/such"]]
    assert [rec[10] for rec in failed] == ["exit=3:NotFoundError"]


def test_both_paths_answer_and_record_alike(vault: VaultDir) -> None:
    """The same exit code, output, error line and audit records, read by either path."""
    vault.ok("put", "db/pw", input=b"s3cret")
    vault.ok("put", "db/pw", input=b"newer")
    cases = [
        (("get", "db/pw"), "rsa"),
        (("get", "db/pw", "--version", "1"), "rsa"),
        (("get", "db/pw", "--version", "9"), "rsa"),
        (("get", "no/such"), "rsa"),
        (("get", "bad name"), "rsa"),
        (("get", "db/pw"), "p256"),  # not a recipient: access denied
        (("get", "db/pw"), "nonexistent"),  # no such key file: refused before the vault
        (("env", "db/pw", "X=no/such"), "rsa"),
        (("env", "db/pw"), "rsa"),
    ]
    seen: dict[str, list[object]] = {}
    for path, extra in (("light", {}), ("full", {"OSSL_VAULT_FAST_PATH": "0"})):
        seen[path] = []
        for args, identity in cases:
            before = len(vault.audit())
            r = vault.run(*args, env=extra, identity=identity)
            records = [rec[6:11] for rec in vault.audit()[before:]]
            seen[path].append((args, identity, r.rc, r.out, r.err, records))
    assert seen["light"] == seen["full"]


def test_a_head_start_for_the_wrong_key_is_ended(vault: VaultDir, tmp_path: Path) -> None:
    """The light path starts pkeyutl for a named RSA key file before it knows the key
    opens nothing here (issue 15's head start); that openssl is ended, not left waiting."""
    vault.ok("put", "db/pw", input=b"s3cret")
    other = tmp_path / "other.key"
    subprocess.run(["openssl", "genrsa", "-out", str(other), "2048"], check=True,
                   capture_output=True)  # fmt: skip
    settled(other)
    env, log = logging_openssl(tmp_path, vault.env)
    stranger = VaultDir(vault.path, tmp_path, env)  # its identity: tmp_path/other.key
    stranger.run("get", "db/pw", identity="other")  # its public key is now remembered
    openssl_calls(log)
    assert_error(stranger.run("get", "db/pw", identity="other"), 4, "no usable identity")
    assert "pkeyutl -decrypt" in openssl_calls(log)  # it did start early
    left = subprocess.run(["pgrep", "-f", f"-inkey {other}"], capture_output=True)
    assert left.stdout == b"", "a head-start openssl outlived the command"
    assert VaultDir(vault.path, vault.keydir, env).ok("get", "db/pw").out == b"s3cret"
