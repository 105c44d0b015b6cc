"""Promise 3: fail closed. One flipped bit anywhere in a secret's records or blob
is an integrity failure: exit 5, one error line, and no plaintext anywhere.

The exhaustive sweep (every byte of the secret's ``secret`` and ``wrap`` lines)
runs through the library in-process, which is what the CLI calls; a spread
sample of the same flips then runs through the real CLI, with ``get``,
``get --out`` and ``fsck``.
"""

from __future__ import annotations

import base64
import functools
import os
import random
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import KINDS, Result, VaultDir

from ossl_vault.errors import IntegrityError, VaultError
from ossl_vault.format import matching
from ossl_vault.format.seal import Identities
from ossl_vault.format.wrapping import key_file_identity, unlock_passphrase
from ossl_vault.ops.vault import Vault
from ossl_vault.storage.store import Store

NAME = "db/prod-password"
SECRET_FIELDS = (
    "type NAME VERSION CREATED CIPHER KDF DIGEST ITER SALT IV PWITER PWSALT PWCHECK BLOB "
    "RECIPIENTS MAC"
).split()
WRAP_HEAD = "type NAME VERSION RECIPIENT FPR".split()
WRAP_TAIL = {
    b"rsa-oaep": ["SCHEME", "CT"],
    b"gpg": ["SCHEME", "CT"],
    b"ecdh": "SCHEME EPH CIPHER KDF DIGEST ITER SALT IV CT MAC".split(),
}
RECIPIENT_FIELDS = "type NAME KIND FPR ADDED FLAGS SPKI CERT PRIV".split()
OTHER_FIELDS = {
    b"ledger": "type NAME VERSION ORIGIN READERS".split(),
    b"access": "type NAME RECIPIENTS".split(),
}
SEED = int(os.environ.get("OSSL_VAULT_TAMPER_SEED", random.SystemRandom().randrange(2**32)))


@dataclass(frozen=True)
class Flip:
    """One bit flip: ``mask`` XORed into byte ``offset`` of vault file ``file``."""

    file: str
    offset: int
    mask: int
    where: str

    def __str__(self) -> str:
        return f"{self.where} ^0x{self.mask:02x}"


def field_names(f: list[bytes]) -> list[str]:
    """The names of a vault.tsv line's fields (format.md section 2), for messages."""
    names: list[str] = []
    if f[0] == b"secret":
        names = SECRET_FIELDS
    elif f[0] == b"recipient":
        names = RECIPIENT_FIELDS
    elif f[0] == b"wrap":
        at = next((i for i, x in enumerate(f) if x in WRAP_TAIL), len(f))
        names = WRAP_HEAD[:at] + WRAP_TAIL.get(f[at] if at < len(f) else b"", [])
    elif f[0] in OTHER_FIELDS:
        names = OTHER_FIELDS[f[0]]
    return names if len(names) == len(f) else [f"#{i + 1}" for i in range(len(f))]


def line_bytes(line: bytes, pos: int, lineno: int) -> list[tuple[int, str, str, int]]:
    """(offset, description, field name, char index in field) for each byte of a line."""
    f = line.split(b"\t")
    names = field_names(f)
    label = f[0].decode()
    if f[0] == b"wrap":
        label += f" {f[3].decode()} " + next((x.decode() for x in f if x in WRAP_TAIL), "?")
    elif f[0] in (b"secret", b"ledger"):
        label += f" v{f[2].decode()}"
    out = []
    field, start = 0, 0
    for i, byte in enumerate(line):
        if byte == 9:
            what, char = f"TAB after field {field + 1} {names[field]}", -1
        else:
            what, char = f"field {field + 1} {names[field]} char {i - start}", i - start
        out.append((pos + i, f"vault.tsv line {lineno} ({label}) {what}", names[field], char))
        if byte == 9:
            field, start = field + 1, i + 1
    return out


def record_bytes(
    tsv: bytes,
    name: str,
    version: int | None = None,
    types: tuple[bytes, ...] = (b"secret", b"wrap"),
) -> list[tuple[int, str]]:
    """(offset, description) of every byte of NAME's lines of these types, newlines excluded
    (only those of ``version`` when given)."""
    out = []
    pos = 0
    for lineno, line in enumerate(tsv.split(b"\n")[:-1], start=1):
        f = line.split(b"\t")
        mine = f[0] in types and f[1] == name.encode()
        if mine and (version is None or f[0] == b"access" or f[2] == str(version).encode()):
            out += [(o, w) for o, w, _f, _c in line_bytes(line, pos, lineno)]
        pos += len(line) + 1
    return out


def own_file(vault_dir: Path, name: str) -> str:
    """Where a secret's lines are: vault.tsv (format 1) or its own file (format 2)."""
    return "vault.tsv" if (vault_dir / "vault.tsv").exists() else f"secrets/{name}.tsv"


def blob_offsets(size: int, spread: int = 30) -> list[int]:
    """First, last and ``spread`` evenly spaced offsets of a blob."""
    return sorted(
        {0, size - 1, *(round(i * (size - 1) / (spread + 1)) for i in range(1, spread + 1))}
    )


def all_flips(
    vault_dir: Path, name: str, masks: tuple[int, ...], version: int | None = None
) -> list[Flip]:
    """Every byte of the secret's lines and a sample of its blob, with each mask."""
    index = Store(vault_dir).read_index()
    versions = index.versions[name]
    v = versions[-1] if version is None else next(x for x in versions if x.version == version)
    rel = own_file(vault_dir, name)
    tsv = (vault_dir / rel).read_bytes()
    blob = f"blobs/{v.blob}"
    size = (vault_dir / blob).stat().st_size
    lines = record_bytes(tsv, name, version)
    assert lines, f"no lines of {name!r} in {rel}"
    flips = []
    for mask in masks:
        flips += [Flip(rel, o, mask, w) for o, w in lines]
        flips += [
            Flip(blob, o, mask, f"{blob[:22]}... byte {o} of {size}") for o in blob_offsets(size)
        ]
    return flips


def spread_sample(flips: list[Flip], n: int, rng: random.Random) -> list[Flip]:
    """``n`` flips spread over the whole list (every line, every field), jittered."""
    step = len(flips) / n
    return [flips[min(len(flips) - 1, int(i * step + rng.random() * step))] for i in range(n)]


def cli_sample(flips: list[Flip], n: int, rng: random.Random) -> list[Flip]:
    """For the CLI: mostly vault.tsv flips spread over every line, the blob's
    first, middle and last bytes, and a few high-bit flips."""
    tsv = [f for f in flips if f.file.endswith(".tsv")]
    blob = [f for f in flips if not f.file.endswith(".tsv")]
    high = [Flip(f.file, f.offset, 0x80, f.where) for f in rng.sample(flips, max(2, n // 10))]
    ends = [blob[0], blob[len(blob) // 2], blob[-1]]
    return spread_sample(tsv, n - len(high) - len(ends), rng) + ends + high


class Workbench:
    """A copy of a vault in which one flip at a time is applied, then undone."""

    def __init__(self, source: Path, work: Path) -> None:
        shutil.copytree(source, work)
        self.path = work
        self.pristine = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}

    @contextmanager
    def flipped(self, flip: Flip) -> Iterator[None]:
        """The flip in place (one byte rewritten, not the whole file), undone after."""
        path = self.path / flip.file
        byte = self.pristine[path][flip.offset]
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, bytes([byte ^ flip.mask]), flip.offset)
            yield
        finally:
            os.pwrite(fd, bytes([byte]), flip.offset)
            os.close(fd)

    def unchanged(self) -> bool:
        """Nothing but the audit log (which records the failed read) changed."""
        keep = {p: b for p, b in self.pristine.items() if not _audit_file(p)}
        now = {p: p.read_bytes() for p in self.path.rglob("*") if p.is_file()}
        return {p: b for p, b in now.items() if not _audit_file(p)} == keep


def _audit_file(p: Path) -> bool:
    return p.name in ("audit.log", "audit.checkpoint", ".audit.lock", ".lock")


def library_get(
    vault_dir: Path, ids: Identities, password: bytes | None, number: int | None = None
) -> bytes:
    source: Callable[[str], bytes] | None = (lambda _n: password) if password else None
    return Vault(str(vault_dir)).get(NAME, ids, number, source)  # type: ignore[arg-type]


def library_problem(
    vault_dir: Path, ids: Identities, password: bytes | None, number: int | None = None
) -> str | None:
    """None when the library reports an integrity failure; else what it did instead."""
    try:
        value = library_get(vault_dir, ids, password, number)
    except IntegrityError:  # FormatError is one
        return None
    except VaultError as e:
        return f"{type(e).__name__} (exit {e.exit_code}): {e.message}"
    except Exception as e:
        return f"uncaught {type(e).__name__}: {e}"
    return f"no error: released {len(value)} bytes of plaintext"


def sweep(
    bench: Workbench,
    flips: list[Flip],
    ids: Identities,
    password: bytes | None = None,
    number: int | None = None,
) -> list[str]:
    failures = []
    for flip in flips:
        with bench.flipped(flip):
            problem = library_problem(bench.path, ids, password, number)
        if problem:
            failures.append(f"{flip}: {problem}")
    return failures


def cli_problem(r: Result, out_dir: Path | None = None) -> str | None:
    """None when the CLI failed closed: exit 5, nothing on stdout, one error line."""
    problems = []
    if r.rc != 5:
        problems.append(f"exit {r.rc}")
    if r.out:
        problems.append(f"{len(r.out)} bytes on stdout")
    lines = r.err.splitlines()
    one_line = 1 <= len(lines) <= 2 and lines[0].startswith("ossl-vault: error: ")
    if not one_line or (len(lines) == 2 and not lines[1].startswith("hint: ")):
        problems.append(f"stderr {r.err!r}")
    if out_dir is not None:
        left = sorted(p.name for p in out_dir.iterdir())
        if left:
            problems.append(f"files left beside --out: {left}")
            for p in out_dir.iterdir():
                p.unlink()
    return "; ".join(problems) or None


def file_identity(keydir: Path, kind: str) -> Identities:
    identity = key_file_identity(str(keydir / f"{kind}.key"), True)
    assert identity is not None
    return Identities([identity])


def report(failures: list[str]) -> str:
    head = f"{len(failures)} case(s) did not fail closed with exit 5 (seed {SEED}):\n"
    return head + "\n".join(failures[:60])


# -- every kind of key recipient ------------------------------------------------


@pytest.fixture
def stored(all_kinds_vault: VaultDir) -> VaultDir:
    """An all-kinds vault holding NAME (several CBC blocks) between two other secrets."""
    v = all_kinds_vault
    v.ok("put", "db/a-neighbour", input=b"neighbour")
    v.ok("put", NAME, input=b"correct horse battery staple\n" * 5 + bytes(range(256)))
    v.ok("put", "db/z-neighbour", input=b"neighbour")
    return v


def reader_flips(flips: list[Flip], reader: str, stride: int = 8) -> list[Flip]:
    """Every flip of the secret line, the reader's own wrap line and the blob;
    every ``stride``-th flip of the other wrap lines (the same record-MAC path
    whoever reads, and fully swept for the RSA reader)."""
    own = ("(secret ", f"(wrap {reader} ")
    return [
        f
        for i, f in enumerate(flips)
        if not f.file.endswith(".tsv") or any(o in f.where for o in own) or i % stride == 0
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_every_byte_flip_fails_closed_library(stored: VaultDir, tmp_path: Path, kind: str) -> None:
    ids = file_identity(stored.keydir, kind)
    bench = Workbench(stored.path, tmp_path / "work")
    value = library_get(bench.path, ids, None)
    assert value.startswith(b"correct horse")
    flips = all_flips(bench.path, NAME, (0x01, 0x80))
    assert len(flips) > 1500  # four wrap lines, a secret line, a blob sample, two masks
    if kind != "rsa":
        flips = reader_flips(flips, kind)
    failures = sweep(bench, flips, ids)
    assert bench.unchanged()
    assert library_get(bench.path, ids, None) == value  # the bench was restored each time
    assert not failures, report(failures)


@pytest.mark.parametrize("kind", ["rsa", "p256"])
@pytest.mark.both_paths
def test_flips_fail_closed_through_cli(stored: VaultDir, tmp_path: Path, kind: str) -> None:
    rng = random.Random(SEED)
    print(f"tamper seed {SEED}")
    bench = Workbench(stored.path, tmp_path / "work")
    cli = VaultDir(bench.path, stored.keydir, stored.env)
    assert cli.ok("get", NAME, identity=kind).out.startswith(b"correct horse")
    flips = all_flips(bench.path, NAME, (0x01,))
    sample = cli_sample(flips, 40 if kind == "rsa" else 14, rng)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    failures = []
    for n, flip in enumerate(sample):
        with bench.flipped(flip):
            problems = {
                "get": cli_problem(cli.run("get", NAME, identity=kind)),
                "get --out": cli_problem(
                    cli.run("get", NAME, "--out", str(out_dir / "value"), identity=kind), out_dir
                ),
            }
            if n % 4 == 0:
                r = cli.run("fsck", identity=kind)
                if r.rc != 5 or r.out:
                    problems["fsck"] = f"exit {r.rc}, stdout {r.out[:40]!r}"
        failures += [f"{flip}: {cmd}: {p}" for cmd, p in problems.items() if p]
    assert bench.unchanged()
    assert not failures, report(failures)


@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_flips_in_an_older_version_fail_closed_library(
    stored: VaultDir, tmp_path: Path, kind: str
) -> None:
    """``get --version 1`` after version 2 exists: the same promise for old versions."""
    stored.ok("put", NAME, input=b"the newer value")
    ids = file_identity(stored.keydir, kind)
    bench = Workbench(stored.path, tmp_path / "work")
    assert library_get(bench.path, ids, None, 1).startswith(b"correct horse")
    flips = all_flips(bench.path, NAME, (0x01,), version=1)
    failures = sweep(bench, reader_flips(flips, kind), ids, None, 1)
    assert bench.unchanged()
    assert not failures, report(failures)


@pytest.mark.both_paths
def test_flips_in_an_older_version_fail_closed_cli(stored: VaultDir, tmp_path: Path) -> None:
    stored.ok("put", NAME, input=b"the newer value")
    rng = random.Random(SEED + 2)
    print(f"tamper seed {SEED}")
    bench = Workbench(stored.path, tmp_path / "work")
    cli = VaultDir(bench.path, stored.keydir, stored.env)
    flips = all_flips(bench.path, NAME, (0x01,), version=1)
    own = [f for f in flips if "(wrap rsa " in f.where]  # where the reader finds its wrap
    tsv = (bench.path / own_file(bench.path, NAME)).read_bytes()
    # The wrap's key fingerprint, flipped to another valid hex digit: still parses.
    fpr = [f for f in own if " FPR " in f.where and tsv[f.offset] ^ f.mask in b"0123456789abcdef"]
    sample = cli_sample(flips, 10, rng) + spread_sample(own, 6, rng) + rng.sample(fpr, 2)
    failures = []
    for flip in sample:
        with bench.flipped(flip):
            problem = cli_problem(cli.run("get", NAME, "--version", "1"))
            r = cli.run("fsck")
        if problem:
            failures.append(f"{flip}: get --version 1: {problem}")
        if r.rc != 5:
            failures.append(f"{flip}: fsck: exit {r.rc}: {r.err.strip()!r}")
    assert bench.unchanged()
    assert not failures, report(failures)


# -- a passphrase recipient and a per-secret password ---------------------------------


@pytest.fixture
def with_password(vault: VaultDir, tmp_path: Path) -> tuple[VaultDir, Path, Path]:
    """The RSA vault plus passphrase recipient 'pp'; NAME (version 2) has a password."""
    pp = tmp_path / "passphrase.txt"
    pp.write_text("tamper passphrase with some length\n")
    pw = tmp_path / "password.txt"
    pw.write_text("per-secret password, also long\n")
    vault.ok("recipient", "add", "pp", "--passphrase-file", str(pp), identity=None)
    vault.ok("put", NAME, "--password-file", str(pw), input=b"first version")
    vault.ok("put", NAME, "--password-file", str(pw), input=b"second version " * 4)
    return vault, pp, pw


def test_every_byte_flip_fails_closed_password_library(
    with_password: tuple[VaultDir, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v, pp, pw = with_password
    password = pw.read_text().rstrip("\n").encode()
    passphrase = pp.read_text().rstrip("\n").encode()
    # Unlocking runs PBKDF2 at 600000 iterations (a quarter second): remember its
    # result for the untouched recipient line instead of redoing it per flip.
    # Everything else on the passphrase path runs as it would.
    monkeypatch.setattr(matching, "unlock_passphrase", functools.cache(unlock_passphrase))
    bench = Workbench(v.path, tmp_path / "work")
    by_key = file_identity(v.keydir, "rsa")
    by_passphrase = Identities([], passphrase=lambda: passphrase)
    for ids in (by_key, by_passphrase):
        assert library_get(bench.path, ids, password) == b"second version " * 4
    flips = all_flips(bench.path, NAME, (0x01, 0x80), version=2)
    failures = sweep(bench, flips, by_key, password)
    failures += sweep(bench, reader_flips(flips, "pp"), by_passphrase, password)
    # Integrity comes before the password: without it, still an integrity failure.
    failures += sweep(bench, spread_sample(flips, 60, random.Random(SEED)), by_key, None)
    assert bench.unchanged()
    assert not failures, report(failures)


@pytest.mark.both_paths
def test_flips_fail_closed_password_cli(
    with_password: tuple[VaultDir, Path, Path], tmp_path: Path
) -> None:
    v, pp, pw = with_password
    rng = random.Random(SEED + 1)
    print(f"tamper seed {SEED}")
    bench = Workbench(v.path, tmp_path / "work")
    cli = VaultDir(bench.path, v.keydir, v.env)
    by_passphrase = ("--passphrase-file", str(pp), "--password-file", str(pw))
    assert cli.ok("get", NAME, *by_passphrase, identity=None).out == b"second version " * 4
    flips = all_flips(bench.path, NAME, (0x01,), version=2)
    sample = cli_sample(flips, 18, rng)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    failures = []
    for flip in sample:
        with bench.flipped(flip):
            problems = {
                "get (passphrase)": cli_problem(
                    cli.run("get", NAME, *by_passphrase, identity=None)
                ),
                "get --out (rsa)": cli_problem(
                    cli.run("get", NAME, "--password-file", str(pw), "--out", str(out_dir / "v")),
                    out_dir,
                ),
            }
        failures += [f"{flip}: {cmd}: {p}" for cmd, p in problems.items() if p]
    assert bench.unchanged()
    assert not failures, report(failures)


# -- recipient lines ------------------------------------------------------------


def changed_bytes(field: bytes, char: int, mask: int) -> set[int] | None:
    """Which decoded bytes a flip of base64 character ``char`` changes; None when
    the flipped text is no longer canonical base64 (a parse error for sure)."""
    bad = bytearray(field)
    bad[char] ^= mask
    try:
        before, after = base64.b64decode(field), base64.b64decode(bytes(bad), validate=True)
    except ValueError:
        return None
    if base64.b64encode(after) != bytes(bad) or len(after) != len(before):
        return None
    return {i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b}


def recipient_flips(
    vault_dir: Path, masks: tuple[int, ...], name: str = NAME
) -> tuple[list[Flip], list[Flip]]:
    """Every byte of every recipient line: (must be detected, not covered by the format).

    format.md 2.1: a reader checks FPR, KIND, SPKI, PRIV and that CERT holds
    SPKI; ADDED is informational, and the rest of a certificate (issuer,
    validity, signature) is not checked.
    """
    rel = "vault.tsv" if (vault_dir / "vault.tsv").exists() else "recipients.tsv"
    tsv = (vault_dir / rel).read_bytes()
    must, loose = [], []
    # Format 2: reading one secret reads recipients.tsv and that secret's file, so the
    # NAME of a recipient its newest version does not name is not checked (format 1
    # noticed it through other secrets' lines in the one vault.tsv).
    readers = None
    if rel == "recipients.tsv":
        newest = Store(vault_dir).read_secret(name).versions[name][-1]
        readers = {r.encode() for r in newest.recipients}
    pos = 0
    for lineno, line in enumerate(tsv.split(b"\n")[:-1], start=1):
        f = line.split(b"\t")
        if f[0] == b"recipient":
            spki = base64.b64decode(f[6])
            at = base64.b64decode(f[7]).find(spki) if f[7] != b"-" else -1
            spki_bytes = set(range(at, at + len(spki))) if at >= 0 else set()
            for off, where, field, char in line_bytes(line, pos, lineno):
                for mask in masks:
                    covered = field != "ADDED"
                    if field == "NAME" and readers is not None and f[1] not in readers:
                        covered = False
                    if field == "CERT" and char >= 0 and f[7] != b"-":
                        changed = changed_bytes(f[7], char, mask)
                        covered = changed is None or bool(changed & spki_bytes)
                    (must if covered else loose).append(Flip(rel, off, mask, where))
        pos += len(line) + 1
    return must, loose


def test_recipient_line_flips_fail_closed_library(stored: VaultDir, tmp_path: Path) -> None:
    """Every byte of every recipient line (they carry no MAC, but each is checked
    for self-consistency), and the secret's unauthenticated ledger/access lines."""
    v = stored
    pp = tmp_path / "passphrase.txt"
    pp.write_text("recipient sweep passphrase\n")
    v.ok("recipient", "add", "pp", "--passphrase-file", str(pp), identity=None)
    value = b"version with the passphrase recipient too"
    v.ok("put", NAME, "--to", "p256,pp,rsa", input=value)
    ids = file_identity(v.keydir, "rsa")
    bench = Workbench(v.path, tmp_path / "work")
    assert library_get(bench.path, ids, None) == value
    must, loose = recipient_flips(bench.path, (0x01, 0x80))
    assert len(must) > 3000
    failures = sweep(bench, must, ids)
    # What the format leaves unauthenticated may go unnoticed, but must never
    # yield anything but the true value or an integrity failure.
    rel = own_file(bench.path, NAME)
    extra = record_bytes((bench.path / rel).read_bytes(), NAME, types=(b"ledger", b"access"))
    loose = loose[::6] + [Flip(rel, o, 0x01, w) for o, w in extra]
    unnoticed: dict[str, int] = {}
    for flip in loose:
        with bench.flipped(flip):
            try:
                got = library_get(bench.path, ids, None)
            except IntegrityError:
                continue
            except Exception as e:
                failures.append(f"{flip}: {type(e).__name__}: {e}")
                continue
        if got != value:
            failures.append(f"{flip}: released a wrong value")
        kind = flip.where.split("(")[1].split(")")[0].split()[0]
        field = flip.where.split(") ")[1].split(" char")[0]
        unnoticed[f"{kind} {field}"] = unnoticed.get(f"{kind} {field}", 0) + 1
    print(f"{sum(unnoticed.values())} of {len(loose)} flips unnoticed (by design): {unnoticed}")
    assert bench.unchanged()
    assert not failures, report(failures)
