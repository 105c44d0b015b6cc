"""The directory driver: a vault directory in format 1 or 2 (docs/format.md section 1).

Format 2 keeps ``recipients.tsv`` and one file per secret,
``secrets/<NAME>.tsv`` (a name's ``/`` become directories), so a write of one
secret replaces that file alone, its blob and the audit log, and costs the
same at 10 or 10,000 secrets. Format 1 keeps every part in ``vault.tsv``; it
is read and written as before. A commit takes the lock (flock on ``.lock``),
checks the revisions it was given, writes the blobs, the new files as
temporary files, the audit records, and then renames them into place: one
rename for one file; for several, a journal (``.commit``) first, so that a
crash leaves the old state or, rolled forward by the next writer, the new.
"""

from __future__ import annotations

import errno
import os
import stat

from ossl_vault.errors import (
    PERMISSION_HINT,
    AccessDenied,
    IntegrityError,
    OperationError,
    UsageError,
)
from ossl_vault.format import layout
from ossl_vault.format.fields import is_hex, parse_name
from ossl_vault.format.records import HEADER
from ossl_vault.openssl.crypto import sha256_hex
from ossl_vault.storage import journal
from ossl_vault.storage.audit import V2_PREFIX, Event, binding
from ossl_vault.storage.backend import Change, ConflictError, Part, check_names, checked_blob
from ossl_vault.storage.dirlog import LockedLog, no_vault
from ossl_vault.storage.files import (
    NO_FOLLOW,
    TMP_PREFIX,
    atomic_write,
    atomic_write_many,
    exists,
    fsync_dir,
    install,
    is_file,
    join,
    make_dir,
    no_links,
    parent,
    read_fd,
    remove,
    write_temp,
)

INDEX = "vault.tsv"
SECRETS = "secrets"
SUFFIX = ".tsv"
BLOBS = "blobs"
EMPTY = sha256_hex(b"")  # the hash an absent file is bound with


def parse_fixed_hex(digest: str) -> str:
    """A blob's name: 64 lowercase hex digits, nothing that could climb out of blobs/."""
    if not is_hex(digest, 64):
        raise IntegrityError(f"bad blob name {digest[:70]!r}")
    return digest


def secret_path(name: str) -> str:
    """``secrets/<NAME>.tsv``, relative to the vault (names cannot climb: section 2)."""
    return f"{SECRETS}/{parse_name(name, 'secret')}{SUFFIX}"


class Directory(LockedLog):
    """A vault directory (format "1" or "2"); see :class:`~ossl_vault.storage.backend.Backend`."""

    def __init__(
        self, root: str | os.PathLike[str], lock_timeout: float | None = None, fmt: str = "2"
    ) -> None:
        super().__init__(root, lock_timeout)
        self.new_format = fmt  # what create() makes
        self._split: tuple[tuple[int, int, int], tuple[bytes, dict[str, bytes]]] | None = None

    def settle(self) -> None:
        journal.settle(self.root)  # a crashed writer's commit, rolled forward
        if is_file(join(self.root, layout.RECIPIENTS)) and exists(join(self.root, INDEX)):
            os.unlink(join(self.root, INDEX))  # a migration's last step, cut by a crash

    @property
    def format(self) -> str:
        if is_file(join(self.root, layout.RECIPIENTS)):
            return "2"
        if is_file(join(self.root, INDEX)):
            return "1"
        return self.new_format

    def exists(self) -> bool:
        """Whether the directory holds a vault; AccessDenied where we may not look."""
        for rel in (layout.RECIPIENTS, INDEX):
            try:
                if stat.S_ISREG(os.stat(join(self.root, rel)).st_mode):
                    return True
            except PermissionError:
                raise AccessDenied(f"cannot read vault '{self.root}': permission denied",
                                   hint=PERMISSION_HINT) from None  # fmt: skip
            except OSError:
                continue
        return False

    def create(self) -> None:
        from pathlib import Path  # init's alone: its mkdir(parents=True) stays as it was

        root = Path(self.root)
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(root, 0o700)
            for sub in (BLOBS, SECRETS) if self.new_format == "2" else (BLOBS,):
                (root / sub).mkdir(mode=0o700, exist_ok=True)
                os.chmod(root / sub, 0o700)
        except OSError as e:
            raise OperationError(f"cannot create vault '{self.root}': {e.strerror}") from e

    # -- reading ---------------------------------------------------------------------

    def _read(self, rel: str) -> bytes | None:
        """A file's bytes, None when absent; during a commit, the new bytes (journal.read)."""
        no_links(self.root, rel)
        try:
            return journal.read(self.root, rel)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        except OSError as e:
            raise OperationError(f"cannot read '{join(self.root, rel)}': {e.strerror}") from e

    def _v1(self) -> tuple[bytes, dict[str, bytes]]:
        """vault.tsv's parts, split again only when the file was replaced (a read of every
        secret would otherwise split the whole file once per secret)."""
        try:
            st = os.stat(join(self.root, INDEX))
        except FileNotFoundError:
            raise no_vault(self.root) from None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._split is None or self._split[0] != key:
            data = self._read(INDEX)
            if data is None:
                raise no_vault(self.root)
            self._split = (key, layout.split_v1(data))
        return self._split[1]

    def recipients(self) -> Part:
        if self.format == "1":
            data = self._v1()[0]
        else:
            raw = self._read(layout.RECIPIENTS)
            if raw is None:
                raise no_vault(self.root)
            data = layout.parse_v2_recipients(raw)
        return Part(data, sha256_hex(data))

    def secret(self, name: str) -> Part | None:
        if self.format == "1":
            data = self._v1()[1].get(parse_name(name, "secret"))
        else:
            data = self._read(secret_path(name))
        return None if data is None else Part(data, sha256_hex(data))

    def secrets(self, names: list[str]) -> dict[str, Part | None]:
        if self.format == "1":
            parts = self._v1()[1]
            found = {n: parts.get(parse_name(n, "secret")) for n in names}
        elif os.path.lexists(join(self.root, journal.JOURNAL)):  # a commit halfway: new bytes
            found = {n: self._read(secret_path(n)) for n in names}
        else:  # a whole-vault read (list, fsck): plain reads, no journal lookups
            found, folders = {}, set()
            for n in names:
                rel = secret_path(n)
                folder = rel.rpartition("/")[0]  # each folder checked once (10,000 secrets
                if folder not in folders:  # in 100 folders: 100 checks, not 30,000 lstat)
                    no_links(self.root, folder)
                    folders.add(folder)
                found[n] = self._read_plain(rel)  # O_NOFOLLOW: the file itself
        return {n: None if d is None else Part(d, sha256_hex(d)) for n, d in found.items()}

    def _read_plain(self, rel: str) -> bytes | None:
        """A file's bytes, None when absent (a secret removed since it was listed)."""
        path = join(self.root, rel)  # plain already: a plain root, a record's path
        try:  # the caller checked the folders (no_links); O_NOFOLLOW closes the race on the file
            return read_fd(os.open(path, NO_FOLLOW))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:  # the file is one: said as every reader says it
                no_links(self.root, rel)
                raise IntegrityError(f"'{path}' is a symbolic link, not a record file") from None
            raise OperationError(f"cannot read '{path}': {e.strerror}") from e

    def names(self) -> list[str]:
        if self.format == "1":
            return sorted(self._v1()[1])
        if not self.exists():
            raise no_vault(self.root)
        found = []
        top = join(self.root, SECRETS)
        for directory, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = os.path.relpath(directory, top)
            prefix = "" if rel == "." else rel + "/"
            found += [prefix + f[: -len(SUFFIX)] for f in files
                      if f.endswith(SUFFIX) and not f.startswith(TMP_PREFIX)]  # fmt: skip
        return sorted(found)

    def blob(self, digest: str) -> bytes:
        try:
            data: bytes | None = journal.read(self.root, f"{BLOBS}/{parse_fixed_hex(digest)}")
        except FileNotFoundError:
            data = None
        except OSError as e:
            raise OperationError(f"cannot read blob {digest[:16]}...: {e.strerror}") from e
        return checked_blob(digest, data)

    # -- committing --------------------------------------------------------------------

    def commit(self, change: Change) -> None:
        check_names(change)
        with self.locked(creating=True):
            try:
                make_dir(join(self.root, BLOBS), 0o700)
                if self.format == "1":
                    self._commit_v1(change)
                else:
                    self._commit_v2(change)
                self.changes += 1
            except OSError as e:
                raise OperationError(f"cannot write vault '{self.root}': {e.strerror}") from e

    def _check(
        self, change: Change, recipients: Part | None, current: dict[str, bytes | None]
    ) -> None:
        """Compare-and-swap: every part the change was computed from is unchanged."""
        if change.expect_recipients is not None:
            if recipients is None or recipients.revision != change.expect_recipients:
                raise ConflictError(
                    f"the recipients of '{self.root}' changed meanwhile", hint="retry"
                )
        for name, want in change.expect_secrets.items():
            data = current[name]
            if (None if data is None else sha256_hex(data)) != want:
                raise ConflictError(f"secret {name!r} changed meanwhile", hint="retry")

    def _commit_v1(self, change: Change) -> None:
        data = self._read(INDEX)
        recipients, parts = layout.split_v1(data) if data is not None else (b"", {})
        names = set(change.expect_secrets) | set(change.secrets)
        self._check(change, Part(recipients, sha256_hex(recipients)),
                    {n: parts.get(n) for n in names})  # fmt: skip
        if change.expect_names is not None and sorted(parts) != change.expect_names:
            raise ConflictError(f"secrets were added to '{self.root}' meanwhile", hint="retry")
        if change.recipients is not None:
            recipients = change.recipients
        for name, new in change.secrets.items():
            if new:
                parts[name] = new
            else:
                parts.pop(name, None)
        lines = recipients.decode("ascii").splitlines(keepends=True)
        for part in parts.values():
            lines += part.decode("ascii").splitlines(keepends=True)
        out = (HEADER + "".join(sorted(lines))).encode("ascii")
        atomic_write_many(join(self.root, BLOBS), change.blobs)
        events = [change.event, *change.more_events]
        # The new index is durable beside the old before its records are
        # appended: a record whose rename never happened is recognisable
        # by that temporary file (docs/format.md section 7).
        tmp = write_temp(join(self.root, INDEX), out)
        try:
            self._audit([(e, sha256_hex(out)) for e in events], self._incomplete_v1)
            install(tmp, join(self.root, INDEX))
        except BaseException:
            remove(tmp)
            raise
        wanted = set().union(*(layout.blobs_of(p) for p in parts.values()))
        for path in self._garbage(wanted):
            remove(path)

    def _commit_v2(self, change: Change) -> None:
        names = sorted(set(change.expect_secrets) | set(change.secrets))
        current = {n: self._read(secret_path(n)) for n in names}
        raw = self._read(layout.RECIPIENTS)
        recipients = None
        if raw is not None:
            old = layout.parse_v2_recipients(raw)
            recipients = Part(old, sha256_hex(old))
        self._check(change, recipients, current)
        if change.expect_names is not None and self.names() != change.expect_names:
            raise ConflictError(f"secrets were added to '{self.root}' meanwhile", hint="retry")
        writes: list[tuple[str, bytes | None]] = []
        bound: dict[str, str] = {}
        if change.recipients is not None and V2 + change.recipients != raw:
            writes.append((layout.RECIPIENTS, V2 + change.recipients))
            bound["-"] = V2_PREFIX + sha256_hex(V2 + change.recipients)
        for name, new in sorted(change.secrets.items()):
            new = new or None
            if new == current.get(name):
                continue
            writes.append((secret_path(name), new))
            bound[name] = V2_PREFIX + (sha256_hex(new) if new else EMPTY)
        for path in self._garbage(None):  # what killed writers left (we hold the lock)
            remove(path)
        # new blobs first (a file names them), blobs of dropped versions last, all one step
        blobs = [(f"{BLOBS}/{d}", b) for d, b in sorted(change.blobs.items())]
        dropped = [(f"{BLOBS}/{d}", None) for d in sorted(change.drop_blobs - set(change.blobs))]
        staged = journal.stage(self.root, blobs + writes + dropped)
        try:
            self._audit(change.records(bound), self._incomplete_v2)
        except BaseException:
            journal.discard(self.root, staged)
            raise
        journal.apply(self.root, staged)

    # -- the audit log -------------------------------------------------------------------

    def _incomplete_v1(self, last: list[list[str]]) -> list[tuple[Event, str]]:
        data = self._read(INDEX)
        if data is None or not last or last[0][11] == sha256_hex(data):
            return []
        self._as_before(last, {"*": (last[0], sha256_hex(data))})
        return [(Event("incomplete", result="last-change-did-not-land"), sha256_hex(data))]

    def _incomplete_v2(self, last: list[list[str]]) -> list[tuple[Event, str]]:
        """For each file the last change named whose bytes it did not leave: a record."""
        out, seen, differ = [], set(), {}
        for f in last:  # newest first: the newest record of each file counts
            if f[7] in seen or not f[11].startswith(V2_PREFIX):
                continue
            seen.add(f[7])
            rel = layout.RECIPIENTS if f[7] == "-" else secret_path(f[7])
            data = self._read(rel)
            real = V2_PREFIX + (sha256_hex(data) if data else EMPTY)
            if real != f[11]:
                differ[f[7]] = (f, real)
                event = Event("incomplete", f[7], result="last-change-did-not-land")
                out.append((event, real))
        self._as_before(last, differ)
        return out

    # -- garbage -------------------------------------------------------------------------

    def _garbage(self, wanted: set[str] | None) -> list[str]:
        """Blobs not in ``wanted``, and temporary files of dead writers (only those: None)."""
        found = []
        blobs = join(self.root, BLOBS)
        for directory in (self.root, blobs) if wanted is not None else (self.root,):
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                stray = entry.name.startswith(TMP_PREFIX)
                orphan = directory != self.root and entry.name not in (wanted or ())
                if stray or orphan:
                    found.append(entry.path)
        return found

    def strays(self, wanted: set[str]) -> list[str]:
        return [os.path.basename(p) for p in self._garbage(wanted)]

    def migrate(self, event: Event, dry_run: bool = False) -> list[str]:
        """Convert a format-1 directory to format 2 (docs/format.md section 1.1).

        The secrets' files are written first (format 1 never reads them), then
        one audit record per file, then ``recipients.tsv``: the instant the
        vault becomes format 2. A crash before it leaves the v1 vault as it
        was; ``vault.tsv`` is removed last (a lock holder removes a leftover).
        Returns the files written, relative to the vault.
        """
        with self.locked():
            if self.format != "1":
                raise UsageError(f"vault '{self.root}' is already format {self.format}")
            data = self._read(INDEX)
            if data is None:
                raise no_vault(self.root)
            layout.join(*layout.split_v1(data), where=join(self.root, INDEX))  # fully checked
            recipients, parts = layout.split_v1(data)
            files = [layout.RECIPIENTS, *(secret_path(n) for n in sorted(parts))]
            if dry_run:
                return files
            try:
                import shutil  # off the read path

                shutil.rmtree(join(self.root, SECRETS), ignore_errors=True)  # an earlier try's
                made: set[str] = set()
                for name, part in sorted(parts.items()):
                    path = join(self.root, secret_path(name))
                    journal.make_parents(self.root, parent(path))
                    journal.write_unsynced(path, part)
                    made.add(parent(path))
                for directory in made:
                    fsync_dir(directory)
                records = [(event.copy(secret=n, version="-"), binding(p))
                           for n, p in sorted(parts.items())]  # fmt: skip
                new = V2 + recipients
                self._audit([(event, binding(new)), *records], self._incomplete_v1)
                atomic_write(join(self.root, layout.RECIPIENTS), new)
                os.unlink(join(self.root, INDEX))
                fsync_dir(self.root)
            except OSError as e:
                raise OperationError(f"cannot migrate vault '{self.root}': {e.strerror}") from e
            return files

    def audit_state(self) -> bytes | dict[str, str]:
        """What ``audit verify`` checks the last changes against (audit.verify)."""
        if self.format == "1":
            data = self._read(INDEX)
            if data is None:
                raise no_vault(self.root)
            return data
        state = {"-": binding(self._read(layout.RECIPIENTS))}
        for name in self.names():
            state[name] = binding(self._read(secret_path(name)))
        return state


V2 = layout.V2_HEADER
