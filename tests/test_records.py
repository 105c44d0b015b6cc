"""Pure-function tests of ossl_vault.format.records: one canonical encoding of vault.tsv.

parse(serialize(x)) == x for any index, and for a real vault.tsv (made by the
CLI) every single-byte mutation is either refused with FormatError (an
IntegrityError) or parses to something that serialises back to exactly the
mutated bytes: there is no second spelling of the same records.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from conftest import KINDS, VaultDir, clean_env, records_text
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ossl_vault.errors import FormatError, IntegrityError
from ossl_vault.format import fields, records
from ossl_vault.format.records import Index, Ledger, Password, Recipient, Version, Wrap
from ossl_vault.format.secretinfo import State

# -- a real vault.tsv, made once per module through the CLI -----------------------


@pytest.fixture(scope="module")
def real_tsv(tmp_path_factory: pytest.TempPathFactory, keydir: Path, otherkeys: Path) -> bytes:
    """Every record shape: all key kinds, a passphrase recipient, a per-secret
    password, rsa-oaep and ecdh wraps, and versions 2..11 (so '10' sorts before '2')."""
    tmp = tmp_path_factory.mktemp("records")
    v = VaultDir(tmp / "vault", keydir, clean_env(tmp))
    args = [a for k in KINDS for a in ("--recipient", f"{k}={keydir / (k + '.pem')}")]
    v.ok("init", *args, identity=None)
    (tmp / "pass").write_bytes(b"correct horse\n")
    v.ok("recipient", "add", "backup", "--passphrase-file", str(tmp / "pass"), identity=None)
    v.ok("recipient", "add", "nodefault", str(otherkeys / "p256.pem"), "--no-default")
    v.ok("put", "app/token", input=b"every kind")
    v.ok("put", "db/password", "--to", "rsa", "--password-file", str(tmp / "pass"), input=b"pw")
    for i in range(11):
        v.ok("put", "many", "--to", "rsa", input=str(i).encode())
    return records_text(v.path).encode()


def test_real_vault_round_trips(real_tsv: bytes) -> None:
    index = records.parse(real_tsv)
    assert index.serialize() == real_tsv
    assert records.parse(index.serialize()) == index
    # the fixture covers what it claims to
    assert {r.kind for r in index.recipients.values()} == {*KINDS, "passphrase"}
    assert [v.version for v in index.versions["many"]] == list(range(2, 12))
    assert index.versions["db/password"][-1].password is not None
    schemes = {w.scheme for ws in index.wraps.values() for w in ws}
    assert schemes == {"rsa-oaep", "ecdh"}


def test_real_vault_is_sorted_and_canonical(real_tsv: bytes) -> None:
    lines = real_tsv.decode("ascii").split("\n")
    assert lines[0] == "ossl-vault\t1"
    assert lines[-1] == ""
    body = lines[1:-1]
    assert body == sorted(set(body))
    for line in body:
        assert "" not in line.split("\t"), f"empty field in {line[:40]!r}"


# -- parse(serialize(x)) == x for generated indexes -------------------------------

_recipient_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._@+-]{0,12}", fullmatch=True)
_components = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._@+=:,-]{0,8}", fullmatch=True)
_secret_names = st.lists(_components, min_size=1, max_size=3).map("/".join)
_times = st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z", fullmatch=True)
_hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
_some = st.binary(min_size=1, max_size=80)
_meta_keys = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,31}", fullmatch=True)


ITER_MAX = 10_000_000  # format.md 2: iteration counts are bounded
_iters = st.integers(1, ITER_MAX)


@st.composite
def _recipient(draw: st.DrawFn, real: Recipient, name: str) -> Recipient:
    """A real recipient (its key, cert and fingerprint must agree) under a new name;
    the informational fields and the presence of the cert vary."""
    return real._replace(
        name=name,
        added=draw(_times),
        default=draw(st.booleans()),
        cert=draw(st.sampled_from([real.cert, None])),
    )


@st.composite
def _wrap(draw: st.DrawFn, name: str, version: int, recipient: str, fpr: str) -> Wrap:
    if draw(st.booleans()):
        return Wrap(name, version, recipient, fpr, "rsa-oaep", draw(_some))
    return Wrap(
        name,
        version,
        recipient,
        fpr,
        "ecdh",
        ct=draw(st.binary(min_size=48, max_size=48)),
        eph=draw(_some),
        iterations=draw(_iters),
        salt=draw(st.binary(min_size=8, max_size=8)),
        iv=draw(st.binary(min_size=16, max_size=16)),
        tag=draw(st.binary(min_size=32, max_size=32)),
    )


@st.composite
def indexes(draw: st.DrawFn, pool: list[Recipient]) -> Index:
    index = Index()
    reals = draw(st.lists(st.sampled_from(pool), min_size=1, unique_by=lambda r: r.fingerprint))
    names = draw(st.lists(_recipient_names, min_size=len(reals), max_size=len(reals), unique=True))
    for real, name in zip(reals, names, strict=True):
        index.recipients[name] = draw(_recipient(real, name))
    for secret in draw(st.lists(_secret_names, max_size=4, unique=True)):
        numbers = sorted(draw(st.sets(st.integers(1, 10**9), min_size=1, max_size=3)))
        for number in numbers:
            readers = tuple(sorted(draw(st.sets(st.sampled_from(names), min_size=1))))
            password = draw(
                st.none()
                | st.builds(
                    Password,
                    st.integers(600_000, ITER_MAX),
                    st.binary(min_size=8, max_size=8),
                    st.binary(min_size=16, max_size=16),
                )
            )
            v = Version(
                name=secret,
                version=number,
                created=draw(_times),
                iterations=draw(_iters),
                salt=draw(st.binary(min_size=8, max_size=8)),
                iv=draw(st.binary(min_size=16, max_size=16)),
                password=password,
                blob=draw(_hex64),
                recipients=readers,
                tag=draw(st.binary(min_size=32, max_size=32)),
            )
            index.versions.setdefault(secret, []).append(v)
            index.wraps[(secret, number)] = [
                draw(_wrap(secret, number, r, index.recipients[r].fingerprint)) for r in readers
            ]
            index.ledger.setdefault(secret, []).append(Ledger(secret, number, "new", readers))
        # format.md 2.6, 2.7: metadata (any UTF-8 text) and state, per secret
        keys = draw(st.lists(_meta_keys, max_size=3, unique=True))
        texts = st.text(min_size=1, max_size=40).filter(lambda t: len(t.encode()) <= 1024)
        if keys:
            index.meta[secret] = {k: draw(texts) for k in keys}
        expires, deleted = draw(st.none() | _times), draw(st.none() | _times)
        if expires or deleted:
            purge = draw(_times) if deleted else None
            index.state[secret] = State(secret, expires, deleted, purge)
    return index


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_parse_serialize_identity(real_tsv: bytes, data: st.DataObject) -> None:
    pool = list(records.parse(real_tsv).recipients.values())
    index = data.draw(indexes(pool))
    serialized = index.serialize()
    parsed = records.parse(serialized)
    assert parsed == index
    assert parsed.serialize() == serialized


def test_empty_index_round_trips() -> None:
    assert Index().serialize() == b"ossl-vault\t1\n"
    assert records.parse(b"ossl-vault\t1\n") == Index()


# -- single-byte mutations of a real file -----------------------------------------


def _check_mutation(mutated: bytes) -> None:
    """Refused as a format error, or canonical: serialising gives the same bytes."""
    try:
        index = records.parse(mutated)
    except IntegrityError as e:  # FormatError is one
        assert e.message and "\n" not in e.message
        return
    assert index.serialize() == mutated


@settings(
    max_examples=4000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_single_byte_mutation_is_refused_or_canonical(real_tsv: bytes, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(real_tsv) - 1), label="pos")
    op = data.draw(st.sampled_from(["replace", "insert", "delete"]), label="op")
    byte = bytes([data.draw(st.integers(0, 255), label="byte")])
    if op == "replace":
        mutated = real_tsv[:pos] + byte + real_tsv[pos + 1 :]
    elif op == "insert":
        mutated = real_tsv[:pos] + byte + real_tsv[pos:]
    else:
        mutated = real_tsv[:pos] + real_tsv[pos + 1 :]
    _check_mutation(mutated)


def test_every_single_byte_deletion_is_refused_or_canonical(real_tsv: bytes) -> None:
    for pos in range(len(real_tsv)):
        _check_mutation(real_tsv[:pos] + real_tsv[pos + 1 :])


def test_base64_last_char_flips_are_refused(real_tsv: bytes) -> None:
    """Changing the unused low bits of a padded base64 field is a second spelling."""
    text = real_tsv.decode("ascii")
    lines = text.split("\n")
    tried = 0
    for n, line in enumerate(lines[1:-1], start=1):
        fields = line.split("\t")
        for i, f in enumerate(fields):
            if not f.endswith("=") or f.endswith("=="):
                continue
            # one '=': the last data char carries 2 unused bits
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            last = alphabet.index(f[-2])
            alt = alphabet[last | 1]  # set an unused bit
            if alt == f[-2]:
                continue
            bad = [*fields]
            bad[i] = f[:-2] + alt + "="
            mutated = "\n".join([*lines[:n], "\t".join(bad), *lines[n + 1 :]])
            with pytest.raises(FormatError, match="non-canonical base64"):
                records.parse(mutated.encode("ascii"))
            tried += 1
    assert tried >= 5


# -- strict base64 ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "QQ",
        "QQ=",
        "QR==",
        "QUI",
        "QUJ=",
        "QQ==\n",
        " QQ==",
        "QQ==QQ==",
        "Q===",
        "QQ-=",
        "QQ_=",
        "*",
    ],
)
def test_non_canonical_base64_refused(text: str) -> None:
    with pytest.raises(FormatError):
        fields.unb64(text, "field")


@pytest.mark.parametrize("data", [b"A", b"AB", b"ABC", bytes(range(256))])
def test_canonical_base64_accepted(data: bytes) -> None:
    text = base64.b64encode(data).decode()
    assert fields.unb64(text, "field") == data


def test_base64_length_checked() -> None:
    with pytest.raises(FormatError, match="not 8"):
        fields.unb64(fields.b64(b"1234567"), "salt", 8)


@pytest.mark.parametrize(
    ("prefix", "field"),
    [
        ("recipient\trsa\t", 6),  # SPKI
        ("recipient\trsa\t", 7),  # CERT
        ("recipient\tbackup\t", 8),  # PRIV
        ("wrap\tapp/token\t1\trsa\t", 6),  # rsa-oaep CT
        ("wrap\tapp/token\t1\tx25519\t", 6),  # ecdh EPH
    ],
)
def test_empty_base64_field_refused(real_tsv: bytes, prefix: str, field: int) -> None:
    lines = real_tsv.decode("ascii").split("\n")
    n = next(i for i, line in enumerate(lines) if line.startswith(prefix))
    fields = lines[n].split("\t")
    fields[field] = ""
    mutated = "\n".join([*lines[:n], "\t".join(fields), *lines[n + 1 :]]).encode()
    with pytest.raises(IntegrityError):  # FormatError or another integrity failure
        records.parse(mutated)


def test_non_canonical_base64_in_vault_refused(real_tsv: bytes) -> None:
    lines = real_tsv.decode("ascii").split("\n")
    n = next(i for i, line in enumerate(lines) if line.startswith("secret\t"))
    fields = lines[n].split("\t")
    fields[8] = fields[8].rstrip("=")  # SALT without its padding
    mutated = "\n".join([*lines[:n], "\t".join(fields), *lines[n + 1 :]]).encode()
    with pytest.raises(FormatError, match="base64"):
        records.parse(mutated)


# -- whole-file rules ---------------------------------------------------------------


def _lines(tsv: bytes) -> list[str]:
    return tsv.decode("ascii").split("\n")


def test_header_rules(real_tsv: bytes) -> None:
    body = real_tsv.split(b"\n", 1)[1]
    for header, match in [
        (b"ossl-vault\t2\n", "unsupported vault format version '2'"),
        (b"ossl-vault\t01\n", "unsupported vault format version"),
        (b"ossl-vault 1\n", "bad header"),
        (b"ossl-vault\t1\t\n", "bad header"),
        (b"OSSL-VAULT\t1\n", "bad header"),
    ]:
        with pytest.raises(FormatError, match=match):
            records.parse(header + body)


def test_whole_file_rules(real_tsv: bytes) -> None:
    lines = _lines(real_tsv)
    swapped = [lines[0], lines[2], lines[1], *lines[3:]]
    bad = {
        "no final newline": real_tsv[:-1],
        "blank line at end": real_tsv + b"\n",
        "blank line inside": "\n".join([*lines[:2], "", *lines[2:]]).encode(),
        "duplicate line": real_tsv + lines[-2].encode() + b"\n",
        "unsorted": "\n".join(swapped).encode(),
        "CRLF": real_tsv.replace(b"\n", b"\r\n"),
        "non-ASCII": real_tsv.replace(b"app/token", b"app/t\xc3\xb6ken"),
        "unknown type": real_tsv + b"zzz\tx\n",
        "empty": b"",
    }
    for what, data in bad.items():
        with pytest.raises(FormatError):
            records.parse(data)
            pytest.fail(what)


@pytest.mark.parametrize("kind", ["recipient\t", "secret\t", "wrap\tapp/token\t1\trsa\t"])
@pytest.mark.parametrize("change", ["extra", "missing"])
def test_field_count_checked(real_tsv: bytes, kind: str, change: str) -> None:
    lines = _lines(real_tsv)
    n = next(i for i, line in enumerate(lines) if line.startswith(kind))
    fields = lines[n].split("\t")
    fields = [*fields, "x"] if change == "extra" else fields[:-1]
    mutated = "\n".join([*lines[:n], "\t".join(fields), *lines[n + 1 :]]).encode()
    with pytest.raises(FormatError, match="fields"):
        records.parse(mutated)


def test_missing_or_extra_wrap_refused(real_tsv: bytes) -> None:
    lines = _lines(real_tsv)
    n = next(i for i, line in enumerate(lines) if line.startswith("wrap\tapp/token\t1\tx25519\t"))
    without = "\n".join([*lines[:n], *lines[n + 1 :]]).encode()
    with pytest.raises(FormatError, match="wraps"):
        records.parse(without)
    orphan = real_tsv + b"wrap\tzzz\t1\trsa\t" + b"0" * 64 + b"\trsa-oaep\tQQ==\n"
    with pytest.raises(FormatError, match="no secret line"):
        records.parse(orphan)


@pytest.mark.parametrize(
    "name",
    ["", "/a", "a/", "a//b", ".", "..", "a/../b", "a/./b", "a b", "a\tb", "a\nb", "é", "x" * 129],
)
def test_check_name_refuses(name: str) -> None:
    from ossl_vault.errors import UsageError

    with pytest.raises(UsageError):
        fields.check_name(name)


@pytest.mark.parametrize("name", ["a", "db/password", "a.b/c-d_e@f+g=h:i,j", "x" * 128, "_/a.."])
def test_check_name_accepts(name: str) -> None:
    assert fields.check_name(name) == name


@example(name="a" * 64)
@given(_recipient_names)
def test_check_recipient_name_accepts(name: str) -> None:
    assert fields.check_recipient_name(name) == name


@pytest.mark.parametrize("name", ["", "a" * 65, "-a", ".a", "a,b", "a b", "a/b", "a=b", "a:b"])
def test_check_recipient_name_refuses(name: str) -> None:
    from ossl_vault.errors import UsageError

    with pytest.raises(UsageError):
        fields.check_recipient_name(name)


def test_the_collector_is_back_on_after_a_parse_good_or_bad(real_tsv: bytes) -> None:
    """parse and parse_parts pause the cyclic collector (records.gc_paused) and
    turn it back on whether the parse succeeds or refuses; one already off stays off."""
    import gc

    assert gc.isenabled()
    records.parse(real_tsv)
    assert gc.isenabled()
    with pytest.raises(FormatError):
        records.parse(real_tsv + b"garbage\n")
    assert gc.isenabled()
    with pytest.raises(FormatError):
        records.parse_parts(b"", {"a": b"secret\ta\n"})
    assert gc.isenabled()
    gc.disable()
    try:
        records.parse(real_tsv)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_format_2_parts_over_the_size_limit_are_refused(
    real_tsv: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Section 2.8: section 2's rules, the 256 MiB limit among them, apply to the union
    of a format-2 vault's files (and to a v1 vault.tsv read through its parts)."""
    from ossl_vault.format import layout

    recipients, secrets = layout.split_v1(real_tsv)
    layout.join(recipients, secrets)  # fits
    monkeypatch.setattr(records, "MAX_INDEX", len(recipients) + sum(map(len, secrets.values())) - 1)
    with pytest.raises(FormatError, match="larger than 256 MiB"):
        layout.join(recipients, secrets)


def test_a_v1_file_sorted_per_secret_but_not_as_a_whole_is_refused(real_tsv: bytes) -> None:
    """The v1 read path (split_v1, then join) checks the whole file's order, as parse
    does: one secret's lines moved as a block stay sorted within that secret only."""
    from ossl_vault.format import layout

    header, *lines = real_tsv.decode().splitlines(keepends=True)
    first = next(line.split("\t")[1] for line in lines if line.startswith("secret\t"))
    block = [line for line in lines if line.startswith(f"secret\t{first}\t")]
    rest = [line for line in lines if line not in block]
    last = max(i for i, line in enumerate(rest) if line.startswith("secret\t"))
    moved = (header + "".join(rest[: last + 1] + block + rest[last + 1 :])).encode()
    assert moved != real_tsv
    with pytest.raises(FormatError):
        records.parse(moved)
    with pytest.raises(FormatError, match="out of order"):
        layout.join(*layout.split_v1(moved))
