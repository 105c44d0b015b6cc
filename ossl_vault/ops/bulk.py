"""Changes to many secrets as one atomic commit: all of them, or none.

``rotate``, ``rekey``, ``recipient rm`` and ``unshare`` plan a :class:`Job` per
secret from the index, then :func:`run`:

1. asks for every per-secret password it needs (in order, on this thread, so
   a terminal prompt stays readable), and finds every secret that cannot be
   opened: a missing or wrong password, or no usable identity;
2. refuses, naming each of them, before anything changes (or, with
   ``skip_unreadable``, leaves them out and says so);
3. does the openssl work on parallel threads, outside the lock;
4. under the lock re-reads the index: a secret changed meanwhile is redone
   (outside the lock again), then every edit goes into one index, committed
   once, with one audit record per secret changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

from ossl_vault.errors import AccessDenied, PasswordRefused, UsageError, VaultError
from ossl_vault.format.records import Index, Version, Wrap
from ossl_vault.format.seal import RANDOM_LEN, Identities, PasswordSource, Sealed, decrypt, seal
from ossl_vault.format.wrapping import wrap
from ossl_vault.openssl import crypto
from ossl_vault.ops import edits
from ossl_vault.ops.vault import Vault, deleted_names
from ossl_vault.storage.audit import Event

ATTEMPTS = 3  # how often a secret changed underneath is redone before giving up


@dataclass(frozen=True)
class Job:
    """What to do to the newest version of one secret."""

    name: str
    to: tuple[str, ...]  # its readers afterwards
    fresh: bool  # True: re-encrypt under a fresh data key; False: re-wrap the same key
    set_access: bool = False  # make ``to`` the secret's own recipient list
    detail: str = ""  # for the per-secret line, e.g. "-alice"


@dataclass
class Result:
    """What a bulk operation did: changed (name, action, detail), skipped (name, why)."""

    changed: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    numbers: dict[str, int] = field(default_factory=dict)  # new version numbers


@dataclass
class _Done:
    job: Job
    basis: tuple[int, bytes]  # (version, tag) of the version it was computed from
    sealed: Sealed | None = None  # fresh
    dk: bytes = b""  # re-wrap
    ct: bytes = b""
    wraps: list[Wrap] = field(default_factory=list)


Planner = Callable[[Index], tuple[list[Job], list[tuple[str, str]]]]
Finisher = Callable[[Index], list[Event]]
Progress = Callable[[str, str], None]  # (secret, action) as each one is done


def workers() -> int:
    """openssl children per bulk operation: they wait on pipes, so two per core."""
    return min(8, 2 * (os.cpu_count() or 1))


def run(
    vault: Vault,
    plan: Planner,
    ids: Identities,
    passwords: PasswordSource | None,
    skip_unreadable: bool = False,
    progress: Progress | None = None,
    finish: Finisher | None = None,
) -> Result:
    """Apply ``plan``'s jobs in one commit; ``finish`` makes the last edits under the lock.

    ``plan(index)`` returns the jobs and the secrets it leaves out (with why);
    it is called again under the lock, and a different answer means redo.
    ``finish(index)``, given the index with every job applied, may change it
    further (drop a recipient) and returns audit events for that.
    """
    given: dict[str, bytes | None] = {}
    done: dict[str, _Done] = {}
    refused: dict[str, str] = {}
    for attempt in range(ATTEMPTS):
        # The last attempt holds the lock from the first read to the commit, so
        # that concurrent writers serialise (promise 4) instead of failing here.
        last = attempt == ATTEMPTS - 1
        with vault.store.locked() if last else nullcontext():
            index = vault.store.read_index()
            jobs, left_out = plan(index)
            todo = [j for j in jobs if not _still_good(done.get(j.name), j, index)]
            _ask_passwords(index, todo, passwords, given, refused)
            todo = [j for j in todo if j.name not in refused]
            for name, error in _compute(vault, index, ids, todo, given, progress, done).items():
                refused[name] = error
            blocked = sorted((n, refused[n]) for n in {j.name for j in jobs} & refused.keys())
            if blocked and not skip_unreadable:
                raise blocking(blocked)
            with nullcontext() if last else vault.store.locked():
                index = vault.store.read_index()
                now, left_now = plan(index)
                if now != jobs or left_now != left_out:
                    continue
                if any(not _still_good(done.get(j.name), j, index) for j in jobs if j.name in done):
                    continue
                result = Result(skipped=[*left_out, *blocked])
                applied = [done[j.name] for j in jobs if j.name in done]
                events = _apply(vault, index, applied, result)
                if finish is not None and not blocked:
                    events += finish(index)
                if events:
                    blobs = {d.sealed.version.blob: d.sealed.ct for d in applied if d.sealed}
                    vault.store.commit(index, blobs, events)
                return result
    raise VaultError("the vault kept changing during the operation", hint="run it again")


def _still_good(d: _Done | None, job: Job, index: Index) -> bool:
    if d is None or d.job != job:
        return False
    versions = index.versions.get(job.name)
    return bool(versions) and (versions[-1].version, versions[-1].tag) == d.basis


def _ask_passwords(
    index: Index,
    jobs: list[Job],
    passwords: PasswordSource | None,
    given: dict[str, bytes | None],
    refused: dict[str, str],
) -> None:
    """Every password the jobs need, asked once each; a secret without one is refused."""
    for job in jobs:
        v = index.versions[job.name][-1]
        if not job.fresh or v.password is None or job.name in given:  # a re-wrap needs none
            continue
        given[job.name] = passwords(job.name) if passwords else None
        if given[job.name] is None:
            refused[job.name] = "needs its password"


def _compute(
    vault: Vault,
    index: Index,
    ids: Identities,
    jobs: list[Job],
    given: dict[str, bytes | None],
    progress: Progress | None,
    done: dict[str, _Done],
) -> dict[str, str]:
    """The openssl work of ``jobs`` on threads; returns the secrets that could not be opened."""

    fresh = [j.name for j in jobs if j.fresh]
    # one openssl rand for every fresh data key, salt and IV: a child per secret less
    pool_bytes = crypto.rand(RANDOM_LEN * len(fresh)) if fresh else b""
    random = {n: pool_bytes[i * RANDOM_LEN : (i + 1) * RANDOM_LEN] for i, n in enumerate(fresh)}

    def one(job: Job) -> _Done | str:
        v = index.versions[job.name][-1]
        try:
            return _work(vault, index, v, ids, job, given.get(job.name), random.get(job.name))
        except PasswordRefused:
            return "wrong password"
        except AccessDenied:
            return "no usable identity"

    failed: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=workers()) as pool:
        for job, out in zip(jobs, pool.map(one, jobs), strict=True):
            if isinstance(out, str):
                failed[job.name] = out
            else:
                done[job.name] = out
            if progress is not None:  # here, not on the threads: one writer for the bar
                progress(job.name, "skipped" if isinstance(out, str) else "done")
    return failed


def _work(
    vault: Vault,
    index: Index,
    v: Version,
    ids: Identities,
    job: Job,
    password: bytes | None,
    random: bytes | None,
) -> _Done:
    dk, ct = vault.open(index, v, ids)
    basis = (v.version, v.tag)
    readers = [index.recipients[n] for n in job.to]
    if job.fresh:
        value = decrypt(v, dk, ct, lambda _n: password)
        return _Done(job, basis, sealed=seal(value, readers, password, random))
    new = [wrap(r, dk) for r in readers if r.name not in v.recipients]
    return _Done(job, basis, dk=dk, ct=ct, wraps=new)


def _apply(vault: Vault, index: Index, done: list[_Done], result: Result) -> list[Event]:
    events = []
    for d in done:
        job = d.job
        if d.sealed is not None:
            number = edits.add_version(index, job.name, d.sealed, "same")
            keys = [w.fingerprint for w in d.sealed.wraps]
            action = "re-encrypted"
        else:
            have = set(index.versions[job.name][-1].recipients)
            edits.rewrap(index, job.name, d.dk, d.ct, d.wraps, have - set(job.to))
            number = index.versions[job.name][-1].version
            keys = [w.fingerprint for w in d.wraps]
            action = "rewrapped"
        if job.set_access:
            index.access[job.name] = tuple(sorted(job.to))
        result.numbers[job.name] = number
        result.changed.append((job.name, action, job.detail or f"to version {number}"))
        events.append(vault.event(job.name, number, keys))
    return events


def blocking(blocked: list[tuple[str, str]]) -> VaultError:
    """The refusal naming every secret (with why) that stops a bulk operation."""
    shown = ", ".join(f"{n!r} ({why})" for n, why in blocked[:10])
    more = f" and {len(blocked) - 10} more" if len(blocked) > 10 else ""
    return AccessDenied(
        f"nothing changed: {len(blocked)} secret(s) cannot be opened: {shown}{more}",
        hint="give --password-file NAME=FILE for each, --identity, or --skip-unreadable",
    )


def rotate(
    vault: Vault,
    names: list[str] | None,
    ids: Identities,
    passwords: PasswordSource | None = None,
    skip_unreadable: bool = False,
    progress: Progress | None = None,
) -> Result:
    """Re-encrypt the current value of each secret (all by default) under a fresh data key."""

    def plan(index: Index) -> tuple[list[Job], list[tuple[str, str]]]:
        jobs = []
        gone = deleted_names(index)  # soft-deleted secrets rest as they are
        for name in names or sorted(n for n in index.versions if n not in gone):
            v = vault.version(name, None, index)
            to = tuple(n for n in v.recipients if n in index.recipients)
            if not to:
                raise UsageError(f"secret {name!r} would have no reader left")
            jobs.append(Job(name, to, fresh=True))
        return jobs, []

    return run(vault, plan, ids, passwords, skip_unreadable, progress)
