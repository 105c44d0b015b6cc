"""Joining two clones' audit logs: the git merge driver (docs/format.md section 7.1).

Both sides extend one common log (git's merge base). The merged log is ours,
then one ``merge`` record, then their records after the fork, copied with SEQ
and PREV rewritten so the merged log is one plain chain. The merge record
names both heads: its PREV is our last record's hash (as for any record), its
KEYS their last record's hash, and its VERSION ``FORK:COUNT``, so a verifier
can rebuild their original records (SEQ ``FORK+i``, PREV chained from record
FORK) and check that they end in that head: their records edited, dropped or
reordered after the merge break it, as ours break the chain.
"""

from __future__ import annotations

from ossl_vault.format.seal import now
from ossl_vault.openssl.crypto import sha256_hex
from ossl_vault.storage.audit import FIELDS, MERGE, actor


class MergeRefused(Exception):
    """The logs do not share their beginning, or one side's chain is broken: a conflict."""


def _hash(line: str) -> str:
    return sha256_hex((line + "\n").encode("ascii", "surrogateescape"))


def _chained(lines: list[str]) -> bool:
    return all(
        len(f := lines[n].split("\t")) == FIELDS and f[0] == str(n) and f[12] == _hash(lines[n - 1])
        for n in range(1, len(lines))
    )


def merge_logs(base: str, ours: str, theirs: str) -> str:
    """The merged text of two logs that both extend ``base`` (MergeRefused otherwise)."""
    b, o, t = (x.split("\n")[:-1] for x in (base, ours, theirs))
    if not b or o[: len(b)] != b or t[: len(b)] != b or o[0] != t[0]:
        raise MergeRefused("the two audit logs do not extend one common log")
    if not (_chained(o) and _chained(t)):
        raise MergeRefused("one side's audit log does not chain")
    fork = len(b) - 1  # the last common record (0: the header)
    tail = t[len(b) :]
    if not tail:
        return ours
    if len(o) == len(b):
        return theirs  # we added nothing: theirs as it is
    uid, user, host, pid = actor()
    record = [str(len(o)), now(), uid, user, host, pid, MERGE, "-", f"{fork}:{len(tail)}",
              _hash(t[-1]), "ok", "-", _hash(o[-1])]  # fmt: skip
    out = [*o, "\t".join(record)]
    for line in tail:
        f = line.split("\t")
        f[0], f[12] = str(len(out)), _hash(out[-1])
        out.append("\t".join(f))
    return "\n".join(out) + "\n"
