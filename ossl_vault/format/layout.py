"""How the records of an index are split into parts (docs/format.md section 2.8).

A part is a sorted run of record lines: the ``recipient`` lines, or every
``secret``, ``wrap``, ``access`` and ``ledger`` line of one secret name. Format
v1 keeps all parts in one file (``vault.tsv``); format v2 keeps
``recipients.tsv`` and one file per secret. Storage drivers store parts as
opaque bytes; this module turns them into an :class:`Index` and back, with
the same strict checks as the v1 parser (each part sorted, unique, and holding
only its own lines).
"""

from __future__ import annotations

from ossl_vault.errors import FormatError
from ossl_vault.format.records import HEADER, MAGIC, Index, parse, parse_parts

V2 = "2"
V2_HEADER = f"{MAGIC}\t{V2}\n".encode("ascii")
RECIPIENTS = "recipients.tsv"


def _lines(index: Index) -> list[str]:
    """Every record line of ``index``, sorted, with its newline."""
    return index.serialize().decode("ascii").split("\n", 1)[1].splitlines(keepends=True)


def split(index: Index) -> tuple[bytes, dict[str, bytes]]:
    """(the recipient lines, {secret name: its lines}), each sorted as in vault.tsv."""
    recipients: list[str] = []
    secrets: dict[str, list[str]] = {}
    for line in _lines(index):
        kind, name, _ = line.split("\t", 2)
        if kind == "recipient":
            recipients.append(line)
        else:
            secrets.setdefault(name, []).append(line)
    return "".join(recipients).encode("ascii"), {
        name: "".join(lines).encode("ascii") for name, lines in secrets.items()
    }


def split_v1(data: bytes) -> tuple[bytes, dict[str, bytes]]:
    """The parts of a v1 vault.tsv, by their lines alone (parsing is :func:`join`'s)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        parse(data)  # raises the v1 parser's own error for the line that is not ASCII
        raise FormatError("vault.tsv is not ASCII") from None
    first, _, rest = text.partition("\n")
    if first + "\n" != HEADER:
        parse(data)  # raises the v1 parser's own error for a bad header or version
    recipients: list[str] = []
    secrets: dict[str, list[str]] = {}
    previous = ""
    for number, line in enumerate(rest.splitlines(keepends=True), start=2):
        if line.rstrip("\n") <= previous:  # the whole file's order, as parse checks it
            raise FormatError(f"vault.tsv line {number} is out of order or repeated")
        previous = line.rstrip("\n")
        f = line.split("\t", 2)
        if f[0] == "recipient":
            recipients.append(line)
        else:
            secrets.setdefault(f[1] if len(f) > 1 else "", []).append(line)
    return "".join(recipients).encode("ascii"), {
        name: "".join(lines).encode("ascii") for name, lines in secrets.items()
    }


def join(recipients: bytes, secrets: dict[str, bytes], where: str = "vault") -> Index:
    """Parse parts into an Index, each line and link checked as the v1 parser does."""
    return parse_parts(recipients, secrets, where)


def parse_v2_recipients(data: bytes) -> bytes:
    """The recipient lines of a v2 recipients.tsv, after its header."""
    if not data.startswith(V2_HEADER):
        first = data.split(b"\n", 1)[0].split(b"\t")
        if len(first) == 2 and first[0] == MAGIC.encode():
            raise FormatError(
                f"unsupported vault format version {first[1].decode('ascii', 'replace')!r}",
                hint="it was written by another version of ossl-vault",
            )
        raise FormatError(f"not an ossl-vault {RECIPIENTS} (bad header)")
    return data[len(V2_HEADER) :]


def blobs_of(part: bytes) -> set[str]:
    """The BLOB field of every ``secret`` line of a part (no full parse)."""
    out = set()
    for line in part.decode("ascii", "replace").splitlines():
        f = line.split("\t")
        if f[0] == "secret" and len(f) == 16:
            out.add(f[13])
    return out
