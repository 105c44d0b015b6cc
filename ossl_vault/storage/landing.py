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


def pending_indexes(root: Path) -> set[str]:
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
    """(SEQ, OP, INDEX) of each well-formed record that changed vault.tsv."""
    return [(f[0], f[6], f[11]) for f in records if len(f) == FIELDS and f[11] != "-"]


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
