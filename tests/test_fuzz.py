"""A seeded fuzzer over the three files a vault reader parses: vault.tsv, audit.log
and audit.checkpoint (issue 10: 45 of 12,000 fuzzed audit files used to crash).

Over 20,000 mutations of a real vault's files go through the parsers in this
process (records.parse; the audit log's readers, its writer's tail and
``verify``; the checkpoint check): each either parses or raises a typed
``VaultError``, never anything else. A sample goes through the real CLI
(``get``, ``list``, ``fsck``, ``audit verify``): a documented exit code, one
error line (and a hint) on failure, no traceback, and ``get`` prints the true
value or nothing. ``OSSL_VAULT_FUZZ_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import VaultDir, clean_env

from ossl_vault.errors import VaultError
from ossl_vault.format import records
from ossl_vault.format.seal import Identities
from ossl_vault.format.wrapping import key_file_identity
from ossl_vault.ops.vault import Vault
from ossl_vault.storage import audit
from ossl_vault.storage.audit import AuditLog, Event

SEED = int(os.environ.get("OSSL_VAULT_FUZZ_SEED", random.SystemRandom().randrange(2**32)))
COUNTS = {"vault.tsv": 9000, "audit.log": 9000, "audit.checkpoint": 3000}
LIBRARY_GETS = 40  # mutated vault.tsv files also decrypted in-process (openssl runs)
CLI_SAMPLE = 40  # mutated vaults through the real CLI, one command each
VALUE = b"the-true-value-\x00\x01\xfe\xff-5d1c"
EXIT_CODES = {0, 3, 4, 5}  # what a damaged vault may answer (never 1: an internal error)


# the files a format-2 vault's reader parses (format 1: COUNTS' vault.tsv)
V2_FILES = ["recipients.tsv", "secrets/app/secret.tsv", "audit.log"]


def make_original(d: Path, keydir: Path, fmt: str) -> VaultDir:
    """A real vault: RSA and X25519 recipients, two versions, a checkpoint, reads logged."""
    v = VaultDir(d / "vault", keydir, clean_env(d))
    v.ok("init", "--format", fmt, "--recipient", f"host={keydir / 'rsa.pem'}", "--recipient",
         f"x={keydir / 'x25519.pem'}")  # fmt: skip
    v.ok("put", "app/secret", input=b"old value")
    v.ok("put", "app/secret", input=VALUE)
    v.ok("put", "other", "--to", "host", input=b"other value")
    v.ok("get", "app/secret")
    assert (v.path / "audit.checkpoint").exists()  # init turned checkpoints on
    return v


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory, keydir: Path) -> VaultDir:
    """A format-1 vault: its vault.tsv holds every record, so one parser sees them all."""
    return make_original(tmp_path_factory.mktemp("fuzz"), keydir, "1")


@pytest.fixture(scope="module")
def original2(tmp_path_factory: pytest.TempPathFactory, keydir: Path) -> VaultDir:
    """The same vault in format 2: recipients.tsv and a file per secret."""
    return make_original(tmp_path_factory.mktemp("fuzz2"), keydir, "2")


# -- the mutator -----------------------------------------------------------------------------

JUNK = [b"\t", b"\n", b"\r", b" ", b"-", b"0", b"9" * 5000, "\u00e9".encode(), b"\xff", b"\x00",
        b"=", b"/", b"..", b"ossl-vault", b"1" * 19, b"+", b"A" * 300]  # fmt: skip


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to three random edits: bytes flipped, inserted, deleted; lines and fields moved."""
    for _ in range(rng.randint(1, 3)):
        data = rng.choice(MUTATIONS)(data, rng)
    return data


def _flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return b"\n"
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]


def _insert(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.choice(JUNK) + data[i:]


def _delete(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + data[i + rng.randint(1, 40) :]


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _lines(data: bytes, rng: random.Random) -> bytes:
    lines = data.split(b"\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    how = rng.randrange(3)
    if how == 0:
        lines[i], lines[j] = lines[j], lines[i]
    elif how == 1:
        lines.insert(i, lines[j])
    else:
        del lines[i]
    return b"\n".join(lines)


def _field(data: bytes, rng: random.Random) -> bytes:
    lines = data.split(b"\n")
    i = rng.randrange(len(lines))
    f = lines[i].split(b"\t")
    f[rng.randrange(len(f))] = rng.choice([*JUNK, b"", f[rng.randrange(len(f))]])
    lines[i] = b"\t".join(f)
    return b"\n".join(lines)


MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [
    _flip, _flip, _insert, _delete, _truncate, _lines, _field, _field]  # fmt: skip


# -- through the parsers, in process ---------------------------------------------------------


def _no_openssl_sig(signer: str, message: bytes, sig: bytes) -> bool:
    """Stands in for openssl dgst -verify (a process each): every forged signature fails."""
    import base64

    try:
        base64.b64decode(signer, validate=True)
    except ValueError:
        pass
    return False


def _audit_readers(d: Path, index_bytes: bytes, append: bool) -> None:
    log = AuditLog(d)
    for read in (log.records, log.last_change, log.head, log.auto_checkpoint):
        try:
            read()
        except VaultError:
            pass
    try:
        audit.verify(log, index_bytes, _no_openssl_sig)
        audit.landing_note(log, index_bytes)
    except VaultError:
        pass
    if append:  # the writer's tail: cuts, counts, chains
        try:
            log.append(Event("fuzz"))
        except VaultError:
            pass


def _put(path: Path, data: bytes) -> None:
    """Write a fresh file when the bytes differ: ext4 flushes a truncated-and-rewritten
    file to disk at close (auto_da_alloc), 6 ms each, a new inode it does not."""
    try:
        if path.read_bytes() == data:
            return
        path.unlink()
    except FileNotFoundError:
        pass
    path.write_bytes(data)


def test_fuzz_parsers(original: VaultDir, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"fuzz seed {SEED} (OSSL_VAULT_FUZZ_SEED)")
    d = tmp_path / "v"
    shutil.copytree(original.path, d)
    files = {name: (original.path / name).read_bytes() for name in COUNTS}
    ids = Identities([key_file_identity(str(original.keydir / "rsa.key"), True)])  # type: ignore[list-item]
    ran = {name: 0 for name in COUNTS}
    parsed, gets, released = 0, 0, 0
    for name, count in COUNTS.items():
        for n in range(count):
            data = mutate(files[name], rng)
            where = f"seed {SEED}, {name} #{n}: {data[:300]!r}"
            try:
                if name == "vault.tsv":
                    try:
                        records.parse(data)
                        parsed += 1
                    except VaultError:
                        ran[name] += 1
                        continue
                    if gets < LIBRARY_GETS:  # a parsed one: decrypting it never lies
                        gets += 1
                        _put(d / "vault.tsv", data)
                        try:
                            got = Vault(str(d)).get("app/secret", ids)
                            released += 1
                            assert got == VALUE, f"{where}: released {got!r}"
                        except VaultError:
                            pass
                else:
                    for other, content in files.items():
                        _put(d / other, data if other == name else content)
                    _audit_readers(d, files["vault.tsv"], append=n % 100 == 0)
            except VaultError:
                pass
            except Exception as e:  # the finding: anything but a typed error
                raise AssertionError(f"{where}: {type(e).__name__}: {e}") from e
            ran[name] += 1
    total = sum(ran.values())
    print(f"fuzzed {total} files through the parsers: {ran}; {parsed} vault.tsv parsed, "
          f"{gets} decrypted in process, {released} released the true value")  # fmt: skip
    assert total >= 20_000


# -- a sample through the real CLI -----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["1", "2"])
def test_fuzz_cli_sample(original: VaultDir, original2: VaultDir, tmp_path: Path, fmt: str) -> None:
    rng = random.Random(SEED + int(fmt))
    original, names = (original, list(COUNTS)) if fmt == "1" else (original2, V2_FILES)
    print(f"fuzz seed {SEED} (OSSL_VAULT_FUZZ_SEED)")
    commands = [("get", "app/secret"), ("list",), ("fsck",), ("audit", "verify")]
    seen: dict[int, int] = {}
    for n in range(CLI_SAMPLE):
        v = VaultDir(tmp_path / f"v{n}", original.keydir, original.env)
        shutil.copytree(original.path, v.path)
        name = names[n % 3]
        (v.path / name).write_bytes(mutate((original.path / name).read_bytes(), rng))
        args = commands[(n // 3) % len(commands)]
        r = v.run(*args)
        where = f"seed {SEED}, sample {n}: {name} mutated, {' '.join(args)}"
        assert r.rc in EXIT_CODES, f"{where}: exit {r.rc}: {r.err}"
        assert "Traceback" not in r.err and "internal error" not in r.err, f"{where}: {r.err}"
        if r.rc:
            lines = [ln for ln in r.err.splitlines() if not ln.startswith("ossl-vault: warning")]
            errors = [ln for ln in lines if ln.startswith("ossl-vault: error: ")]
            assert len(errors) == 1 and lines[-1] in (errors[0], *[x for x in lines if
                   x.startswith("hint: ")]), f"{where}: {r.err}"  # fmt: skip
        if args[0] == "get":
            assert r.out in (b"", VALUE), f"{where}: get printed {r.out!r}"
        else:
            assert VALUE not in r.out and b"old value" not in r.out, where
        seen[r.rc] = seen.get(r.rc, 0) + 1
    print(f"{CLI_SAMPLE} mutated vaults through the CLI: exit codes {seen}")
