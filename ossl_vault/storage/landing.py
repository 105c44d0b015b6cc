"""Which audit records' changes never reached vault.tsv (docs/format.md section 7).

A writer appends its commit's records, then renames the new vault.tsv into
place; a kill in between leaves records of a change that did not land. This
is recognised by its evidence, never assumed: the new index is still in its
temporary file beside vault.tsv, and the change before matches vault.tsv.
Pure functions over parsed fields and hashes, so verify, fsck and ``audit``
judge it alike.
"""

from __future__ import annotations

import os
from pathlib import Path

from ossl_vault.openssl.crypto import sha256_hex
from ossl_vault.storage.files import TMP_PREFIX

FIELDS = 13
V2_PREFIX = "v2:"  # as storage.audit: the INDEX of a change of one format-2 file
EMPTY = sha256_hex(b"")  # the hash a removed file is bound with
MAX_INDEX = 256 << 20  # vault.tsv's size limit (docs/format.md section 2)


def unlanded(
    changes: list[tuple[str, str, str]], current: str | None, pending: set[str]
) -> set[str]:
    """The SEQs of change records whose change never reached vault.tsv.

    ``changes``: (SEQ, OP, INDEX) of every record with an INDEX, in log order;
    ``current``: hex(SHA-256(vault.tsv)). A writer appends its record(s) and
    then renames vault.tsv into place (section 7); killed in between, it
    leaves a commit's records whose INDEX no vault.tsv ever had. The next
    writer marks them with an ``incomplete`` record; until then they are the
    trailing records of one commit, with the change before them matching
    vault.tsv and the new index left in a temporary file (its hash in
    ``pending``: :func:`pending_indexes`). A vault.tsv merely rolled back
    has no such file: that is not this case (verify reports it).
    """
    out: set[str] = set()
    for i, (_, op, _index) in enumerate(changes):
        if op == "incomplete" and i > 0:
            out |= _commit_before(changes, i)
    last = changes[-1][2] if changes else None
    if last is not None and last != current and last in pending:
        group = _commit_before(changes, len(changes))
        before = len(changes) - len(group) - 1
        if before >= 0 and changes[before][2] == current:
            out |= group
    return out


def pending_indexes(root: str | os.PathLike[str]) -> set[str]:
    """hex(SHA-256) of each unfinished write's temporary file in the vault directory."""
    found = set()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
            try:
                if entry.stat().st_size <= MAX_INDEX:
                    found.add(sha256_hex(Path(entry.path).read_bytes()))
            except OSError:
                continue
    return found


def _commit_before(changes: list[tuple[str, str, str]], i: int) -> set[str]:
    """SEQs of the one commit (the same INDEX) that ends just before position ``i``."""
    seqs: set[str] = set()
    j = i - 1
    while j >= 0 and changes[j][2] == changes[i - 1][2] and changes[j][1] != "incomplete":
        seqs.add(changes[j][0])
        j -= 1
    return seqs


def changes_of(records: list[list[str]]) -> list[tuple[str, str, str]]:
    """(SEQ, OP, INDEX) of each well-formed record that changed vault.tsv (format 1).

    Records binding one file of format 2 (INDEX ``v2:...``) are left out: a
    v1 vault holds them only after a migration cut short (section 1.1).
    """
    return [(f[0], f[6], f[11]) for f in records
            if len(f) == FIELDS and f[11] != "-" and not f[11].startswith(V2_PREFIX)]  # fmt: skip


def last_change_state(lines: list[str], current: str, pending: set[str]) -> tuple[str, str] | None:
    """None when the newest change matches vault.tsv; ("note", text) when it
    did not land (:func:`unlanded`); ("error", text) for anything else."""
    changes = changes_of([line.split("\t") for line in lines[1:]])
    if not changes or changes[-1][2] == current:
        return None
    if changes[-1][0] in unlanded(changes, current, pending):
        first = min(_commit_before(changes, len(changes)), key=int)
        return ("note", f"record {first} ({changes[-1][1]}) did not land: its writer stopped "
                "before renaming vault.tsv (the change before is in place)")  # fmt: skip
    return ("error", f"record {changes[-1][0]} (the last change) does not match vault.tsv "
            "(records after it were removed, or vault.tsv was changed)")  # fmt: skip


def _what(name: str) -> str:
    return "recipients.tsv" if name == "-" else f"the file of {name!r}"


def newest_per_file(records: list[list[str]]) -> dict[str, tuple[str, list[str]]]:
    """Format 2: for each file (FILE "-" is recipients.tsv), the INDEX the record before
    its newest gave it (that of an absent file where there is none) and the newest."""
    newest: dict[str, tuple[str, list[str]]] = {}
    for f in records:
        if len(f) == FIELDS and f[11].startswith(V2_PREFIX):
            before = newest.get(f[7])
            newest[f[7]] = (before[1][11] if before else V2_PREFIX + EMPTY, f)
    return newest


def _did_not_land(have: str, previous: str, f: list[str], pending: set[str]) -> bool:
    """Whether a file's newest record ``f`` is a change that did not land: its new bytes
    wait in a temporary file, and the file (``have``) is as the record before left it.
    Never a removal: it leaves no temporary file, and any empty one would match it."""
    new = f[11].removeprefix(V2_PREFIX)
    return new != EMPTY and new in pending and have == previous


def file_states(
    lines: list[str], state: dict[str, str], pending: set[str]
) -> list[tuple[str, str]]:
    """Format 2's :func:`last_change_state`: for each file whose newest record does not
    carry its hash, ("note", text) when that change did not land (its new bytes
    are still in a temporary file and the file is as the record before left it:
    the writer stopped before the rename, and the next writer marks it), else
    ("error", text); then files no record binds."""
    out: list[tuple[str, str]] = []
    newest = newest_per_file([line.split("\t") for line in lines[1:]])
    for name, (previous, f) in sorted(newest.items()):
        have = state.get(name, V2_PREFIX + EMPTY)
        if have == f[11]:
            continue
        if _did_not_land(have, previous, f, pending):
            out.append(("note", f"record {f[0]} ({f[6]}) did not land: its writer stopped "
                        f"before renaming {_what(name)} into place (the change before is "
                        "in place)"))  # fmt: skip
            continue
        out.append(("error", f"record {f[0]} (the last change of {_what(name)}) does not match "
                    "it (records after it were removed, or the file was changed)"))  # fmt: skip
    for name in sorted(set(state) - set(newest)):
        out.append(("error", f"no record binds {_what(name)} (it was changed outside ossl-vault)"))
    return out


def unlanded_v2(records: list[list[str]], state: dict[str, str], pending: set[str]) -> set[str]:
    """Format 2's :func:`unlanded`: SEQs of change records whose file never held their bytes.

    Those a later ``incomplete`` record of the same file marks (the next
    writer's), and the newest record of a file still waiting in a temporary
    file (:func:`file_states`).
    """
    out: set[str] = set()
    last: dict[str, str] = {}
    for f in records:
        if len(f) != FIELDS or not f[11].startswith(V2_PREFIX):
            continue
        if f[6] == "incomplete" and f[7] in last:
            out.add(last[f[7]])
        last[f[7]] = f[0]
    for name, (previous, f) in newest_per_file(records).items():
        have = state.get(name, V2_PREFIX + EMPTY)
        if have != f[11] and _did_not_land(have, previous, f, pending):
            out.add(f[0])
    return out
