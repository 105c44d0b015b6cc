"""A secret's life: metadata, expiry, soft deletion and final destruction.

Vault KV v2 is the model: ``rm`` marks a secret deleted (kept ``keep_days``,
``undelete`` brings it back), ``purge`` destroys its versions, wraps and
blobs. A deleted secret is still protected like the rest (``recipient rm``
and ``rekey`` re-encrypt it), but it is not listed and does not read. Each
mark, expiry and destruction is an audit record (format.md 2.6, 2.7, 7).
"""

from __future__ import annotations

import re
import time

from ossl_vault.errors import UsageError
from ossl_vault.format.fields import check_name, is_time
from ossl_vault.format.records import Index
from ossl_vault.format.seal import exposure, now
from ossl_vault.format.secretinfo import MAX_META, State, meta_key, seconds_of
from ossl_vault.ops import edits
from ossl_vault.ops.vault import Vault, deleted_names
from ossl_vault.storage.audit import Event

DEFAULT_KEEP_DAYS = 30
_SPAN = re.compile(r"([1-9][0-9]{0,5})([hdw])\Z")
_DATE = re.compile(r"\d{4}-\d\d-\d\d\Z")
_UNIT = {"h": 3600, "d": 86400, "w": 7 * 86400}
WHEN_HINT = "give a span (90d, 12h, 2w), a date (2027-01-31) or a UTC time (2027-01-31T12:00:00Z)"


def stamp(seconds: float) -> str:
    """A Unix time as format.md spells times."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def span_seconds(text: str, what: str) -> int:
    """``90d``, ``12h`` or ``2w`` in seconds; UsageError otherwise."""
    m = _SPAN.match(text)
    if not m:
        raise UsageError(f"invalid {what} {text!r}", hint="give a span: 90d, 12h or 2w")
    return int(m.group(1)) * _UNIT[m.group(2)]


def parse_expiry(text: str, clock: float | None = None) -> str | None:
    """``--expires``: a span from now, a date, a UTC time, or ``never`` (None).

    An expiry in the past is refused: it would make the value unreadable
    with ``--strict`` the moment it is stored.
    """
    if text == "never":
        return None
    current = time.time() if clock is None else clock
    if _SPAN.match(text):
        return stamp(current + span_seconds(text, "expiry"))
    when = text + "T00:00:00Z" if _DATE.match(text) else text
    try:
        if not is_time(when):
            raise ValueError
        moment = seconds_of(when)
    except ValueError:
        raise UsageError(f"invalid expiry {text!r}", hint=WHEN_HINT) from None
    if moment <= current:
        raise UsageError(f"expiry {text!r} is in the past", hint=WHEN_HINT)
    return when


def parse_meta(pairs: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    """``--meta KEY=VALUE`` (``KEY=`` removes KEY): unencrypted, shown by list and show."""
    out: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not meta_key(key):
            raise UsageError(
                f"invalid metadata {pair!r}",
                hint="use KEY=VALUE with a key of 1 to 32 of a-z 0-9 _.- (KEY= removes it)",
            )
        if len(text.encode()) > MAX_META:
            raise UsageError(f"metadata {key!r} is longer than {MAX_META} bytes")
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise UsageError(f"metadata {key!r} holds a control character")
        out[key] = text or None
    return out


def expiring(rows: list[dict[str, object]], within: str) -> list[dict[str, object]]:
    """``list --expiring 14d``: rows whose expiry is within the span (or past)."""
    limit = time.time() + span_seconds(within, "span")
    return [r for r in rows if r["expires"] and seconds_of(str(r["expires"])) <= limit]


def change_info(
    vault: Vault, name: str, meta: dict[str, str | None], expires: str | bool | None
) -> None:
    """Change metadata and expiry without a new version (``edit --meta/--expires``)."""
    check_name(name)
    with vault.store.locked():
        index = vault.store.read_index()
        _live(vault, index, name)
        events = [vault.event(name)]
        if edits.set_info(index, name, meta, expires):
            events.append(Event("expire", name))
        vault.store.commit(index, {}, events)


def _live(vault: Vault, index: Index, name: str) -> None:
    vault.readable(name, None, index)


def soft_delete(vault: Vault, name: str, keep_days: int = DEFAULT_KEEP_DAYS) -> str:
    """Mark ``name`` deleted; ``purge --due`` destroys it after ``keep_days``. Returns that time."""
    check_name(name)
    if not 0 <= keep_days <= 36500:
        raise UsageError(f"--keep {keep_days} is out of range (0 to 36500 days)")
    with vault.store.locked():
        index = vault.store.read_index()
        _live(vault, index, name)
        when = now()
        after = stamp(seconds_of(when) + keep_days * 86400)
        edits.set_deleted(index, name, when, after)
        vault.store.commit(index, {}, vault.event(name))
    return after


def undelete(vault: Vault, name: str) -> int:
    """Bring back a secret marked deleted; returns its newest version."""
    check_name(name)
    with vault.store.locked():
        index = vault.store.read_index()
        v = vault.version(name, None, index)
        if name not in deleted_names(index):
            raise UsageError(f"secret {name!r} is not deleted")
        edits.set_deleted(index, name, None, None)
        vault.store.commit(index, {}, vault.event(name, v.version))
    return v.version


def purge(vault: Vault, names: list[str], due: bool = False) -> list[tuple[str, int]]:
    """Destroy deleted secrets for good: versions, wraps, blobs; one commit, a record each.

    ``due`` adds every deleted secret whose time to keep has passed.
    """
    for name in names:
        check_name(name)
    with vault.store.locked():
        index = vault.store.read_index()
        gone = deleted_names(index)
        targets = list(dict.fromkeys(names))
        for name in targets:
            vault.version(name, None, index)
            if name not in gone:
                raise UsageError(
                    f"secret {name!r} is not deleted",
                    hint=f"'ossl-vault rm {name}' first: purge destroys only deleted secrets",
                )
        if due:
            clock = time.time()
            targets += sorted(n for n in gone if n not in targets and
                              seconds_of(str(index.state[n].purge_after)) <= clock)  # fmt: skip
        if not targets:
            return []
        done = [(name, edits.drop(index, name)) for name in targets]
        vault.store.commit(index, {}, [vault.event(name) for name, _ in done])
    return done


def show(vault: Vault, name: str) -> dict[str, object]:
    """Everything about a secret but its value: metadata, versions, readers, expiry, state."""
    index = vault.store.read_index()
    vault.version(name, None, index)
    versions = index.versions[name]
    state = index.state.get(name, State(name))
    seen = exposure(index.ledger.get(name, []))
    newest = versions[-1]
    return {
        "name": name,
        "meta": index.meta.get(name, {}),
        "expires": state.expires,
        "expired": state.expired(),
        "deleted": state.deleted,
        "purge_after": state.purge_after,
        "recipients": list(newest.recipients),
        "wanted": list(index.access[name]) if name in index.access else None,
        "exposed": sorted(seen),
        "needs_rotation": sorted(seen - set(newest.recipients)),
        "versions": [
            {
                "version": v.version,
                "created": v.created,
                "recipients": list(v.recipients),
                "password": v.password is not None,
            }
            for v in versions
        ],
    }
