"""The hash-chained audit log of a vault (docs/format.md section 9).

One TSV line per operation: who, what, which secret, the keys involved, the
result, the SHA-256 of vault.tsv, and the SHA-256 of the line before. Never a
value or key. Writers append under the vault lock, before the index is
renamed into place, so a crash never leaves a change without its record.
Signed checkpoints (``audit.checkpoint``) pin a count and head hash with a
recipient's RSA or EC key, so truncation below them is caught.
"""

from __future__ import annotations

import os
from collections import namedtuple

from ossl_vault.errors import FormatError, IntegrityError, OperationError, VaultError
from ossl_vault.format.fields import is_hex, is_number
from ossl_vault.format.seal import now
from ossl_vault.openssl.crypto import sha256_hex
from ossl_vault.storage.files import exists, join, parent, plain, read_bytes

LOG = "audit.log"
CHECKPOINT = "audit.checkpoint"
MAGIC = "ossl-vault-audit"
VERSION = "1"
MODES = ("required", "best-effort")
FIELDS = 13  # the same in storage.landing
ZERO = "0" * 64
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@+:/=,-")
AUTO = ("checkpoint", "-")
CHECKPOINT_LABEL = "ossl-vault-audit checkpoint"
TAIL = 1 << 20  # how far back a writer looks for the last change
MERGE = "merge"  # the OP of a record joining two clones' logs (auditmerge)
V2_PREFIX = "v2:"  # INDEX of a format-2 change: the hash of one file (format.md section 7)


def safe(text: str) -> str:
    """A field value with anything outside a safe set replaced by '?'."""
    return _safe_chars(text[:200]) or "-"


def _safe_chars(text: str) -> str:
    return "".join(c if c in _SAFE else "?" for c in text)


def _printable(line: str) -> bool:
    """Only TAB and the printable ASCII characters (0x20 to 0x7e)."""
    return line.isascii() and line.replace("\t", " ").isprintable()


def _seq(number: bytes) -> bool:
    """A sequence number: 1 to 18 ASCII digits (int() of 5,000 digits would raise)."""
    return 0 < len(number) <= 18 and number.isdigit()


def _span(text: str) -> tuple[int, int] | None:
    """A merge record's VERSION field ``FORK:COUNT`` (format.md 7.1), or None."""
    fork, sep, count = text.partition(":")
    if sep and (fork == "0" or is_number(fork, 18)) and is_number(count, 18):
        return int(fork), int(count)
    return None


class Event:
    """What happened: filled by the library and the CLI, stamped when appended."""

    __slots__ = ("keys", "op", "result", "secret", "version")

    def __init__(
        self,
        op: str,
        secret: str = "-",  # noqa: S107 (a secret's name, not a secret)
        version: str = "-",
        keys: tuple[str, ...] = (),
        result: str = "ok",
    ) -> None:
        self.op, self.secret, self.version, self.keys, self.result = (
            op, secret, version, keys, result,
        )  # fmt: skip

    def copy(self, **changes: object) -> Event:
        """This event with some fields changed."""
        fields = {k: getattr(self, k) for k in self.__slots__}
        for k, value in changes.items():
            if k not in fields:
                raise TypeError(f"Event has no field {k!r}")
            fields[k] = value
        return Event(**fields)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        return type(other) is Event and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"Event({inner})"


class Record(
    namedtuple(
        "Record",
        "seq time uid user host pid op secret version keys result index prev line",
        defaults=("",),
    )
):
    """One line of audit.log; ``line`` is the line itself, as read."""

    __slots__ = ()
    seq: int
    time: str
    uid: str
    user: str
    host: str
    pid: str
    op: str
    secret: str
    version: str
    keys: str
    result: str
    index: str
    prev: str
    line: str

    def as_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq, "time": self.time, "uid": self.uid, "user": self.user,
            "host": self.host, "pid": self.pid, "op": self.op, "secret": self.secret,
            "version": self.version, "keys": self.keys, "result": self.result,
            "index": self.index, "prev": self.prev,
        }  # fmt: skip


def header(mode: str, auto_checkpoint: bool) -> str:
    return f"{MAGIC}\t{VERSION}\t{mode}\t{'checkpoint' if auto_checkpoint else '-'}\n"


def actor() -> tuple[str, str, str, str]:
    return str(os.getuid()), safe(user_name()), safe(os.uname().nodename), str(os.getpid())


def user_name() -> str:
    """The login name, as ``getpass.getuser`` finds it (whose import loads termios):
    ``$LOGNAME``, ``$USER``, ``$LNAME``, ``$USERNAME``, else the password database."""
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        user = os.environ.get(var)
        if user:
            return user
    import pwd

    try:
        return pwd.getpwuid(os.getuid())[0]
    except KeyError:
        return "-"


def write_all(fd: int, data: bytes, size: int) -> None:
    """Append all of ``data`` or none: a short write (disk full) is cut back to ``size``."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        os.ftruncate(fd, size)
        raise


class AuditLog:
    """audit.log of one vault directory; every method but reads needs the vault lock."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        root = plain(root)
        self.path = join(root, LOG)
        self.checkpoint_path = join(root, CHECKPOINT)

    def exists(self) -> bool:
        return exists(self.path)

    def create(self, mode: str, auto_checkpoint: bool) -> None:
        from ossl_vault.storage.files import atomic_write

        atomic_write(self.path, header(mode, auto_checkpoint).encode())

    def read(self) -> tuple[list[str], str]:
        """The header fields and the whole text; FormatError if it is not a log."""
        try:
            text = read_bytes(self.path).decode("ascii", "surrogateescape")
        except OSError as e:
            raise self._unreadable(e) from e
        return self._header(text.split("\n", 1)[0]), text

    def head(self) -> list[str]:
        """The header fields, from the first line alone (appends need no more)."""
        try:
            with open(self.path, "rb") as f:
                first = f.readline(4096)
        except OSError as e:
            raise self._unreadable(e) from e
        return self._header(first.decode("ascii", "surrogateescape").rstrip("\n"))

    def _unreadable(self, e: OSError) -> VaultError:
        if isinstance(e, FileNotFoundError):
            return IntegrityError(
                f"the audit log '{self.path}' is missing", hint="restore it from a backup"
            )
        return OperationError(f"cannot read the audit log '{self.path}': {e.strerror}")

    @staticmethod
    def _header(first_line: str) -> list[str]:
        first = first_line.split("\t")
        if len(first) != 4 or first[0] != MAGIC or first[2] not in MODES or first[3] not in AUTO:
            raise FormatError("the audit log has a bad header")
        if first[1] != VERSION:
            raise FormatError(f"unsupported audit log version {first[1]!r}")
        return first

    def mode(self) -> str:
        return self.head()[2]

    def auto_checkpoint(self) -> bool:
        return self.head()[3] == "checkpoint"

    def last_change(self) -> list[list[str]]:
        """The records of the newest change (fields; newest first), from the log's tail.

        The records of one change are consecutive and share UID, USER, HOST,
        PID and OP. Only the last ``TAIL`` bytes are read, so a write costs the
        same however long the log has grown; a change further back than that
        is not looked for (format.md section 7).
        """
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                start = max(0, size - TAIL)
                f.seek(start)
                data = f.read()
        except OSError as e:
            raise self._unreadable(e) from e
        # the first piece is the header, or a line cut by ``start``; the last is after the LF
        lines = data.decode("ascii", "surrogateescape").split("\n")[1:-1]
        found: list[list[str]] = []
        for line in reversed(lines):
            f = line.split("\t")
            if len(f) != FIELDS:
                continue
            if found and (f[11] == "-" or f[2:7] != found[0][2:7]):
                break
            if f[11] != "-":
                found.append(f)
        return found

    def bindings_before(self, before: dict[str, int]) -> dict[str, str]:
        """For each file of ``before`` (format 2's FILE, "-" for recipients.tsv; "*" for a
        format-1 change), the INDEX of the newest record binding it whose SEQ is below
        the one given; absent where none does. Read back from the end in ``TAIL``
        pieces, as far as it takes: only a writer that found a change which did not
        land asks."""
        out: dict[str, str] = {}
        try:
            with open(self.path, "rb") as fh:
                end, rest = fh.seek(0, os.SEEK_END), b""
                while end > 0 and len(out) < len(before):
                    start = max(0, end - TAIL)
                    fh.seek(start)
                    lines = (fh.read(end - start) + rest).split(b"\n")
                    rest, lines = (lines[0], lines[1:]) if start > 0 else (b"", lines[1:])
                    for raw in reversed(lines):
                        f = raw.decode("ascii", "surrogateescape").split("\t")
                        if len(f) != FIELDS or f[11] == "-" or not _seq(f[0].encode()):
                            continue
                        key = f[7] if f[11].startswith(V2_PREFIX) else "*"
                        if key in before and key not in out and int(f[0]) < before[key]:
                            out[key] = f[11]
                    end = start
        except OSError as e:
            raise self._unreadable(e) from e
        return out

    def append(self, event: Event, index_hash: str = "-") -> None:
        """Append one record (caller holds the lock): see :meth:`append_many`."""
        self.append_many([(event, index_hash)])

    def append_many(self, entries: list[tuple[Event, str]]) -> None:
        """Append records with one write and one fsync (caller holds the lock).

        ``index_hash`` of each is the SHA-256 of vault.tsv as the change
        leaves it, or "-" for an operation that changed nothing (a read, a
        failure). Only the log's tail is read, so an append costs the same
        however long the log has grown; a torn tail is cut first.
        """
        uid, user, host, pid = actor()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError as e:
            raise self._unreadable(e) from e
        except OSError as e:
            raise OperationError(f"cannot write the audit log: {e.strerror}") from e
        try:
            seq, last = self._tail(fd)
            size = os.fstat(fd).st_size
            out = []
            for event, index_hash in entries:
                keys = _safe_chars(",".join(k[:16] for k in event.keys)) or "-"
                fields = [
                    str(seq), now(), uid, user, host, pid, safe(event.op), safe(event.secret),
                    safe(event.version), keys, safe(event.result), index_hash, sha256_hex(last),
                ]  # fmt: skip
                last = ("\t".join(fields) + "\n").encode("ascii")
                out.append(last)
                seq += 1
            write_all(fd, b"".join(out), size)
            os.fsync(fd)
        except OSError as e:
            raise OperationError(f"cannot write the audit log: {e.strerror}") from e
        finally:
            os.close(fd)

    def _tail(self, fd: int) -> tuple[int, bytes]:
        """(sequence number of the next record, the last whole line); cuts a torn tail."""
        size = os.fstat(fd).st_size
        start, data = size, b""
        while True:  # read backwards until the last whole line is in ``data``
            start = max(0, start - max(4096, len(data)))
            data = os.pread(fd, size - start - len(data), start) + data
            end = data.rfind(b"\n")
            begin = data.rfind(b"\n", 0, max(end, 0)) + 1 if end >= 0 else -1
            if start == 0 or begin > 0:
                break
        if end < 0:
            raise FormatError("the audit log has a bad header")
        if start + end + 1 < size:  # a write cut by a crash: it never took effect
            os.ftruncate(fd, start + end + 1)
        last = data[begin : end + 1]
        if start == 0 and begin == 0:
            return 1, last  # the header alone
        number = last.split(b"\t", 1)[0]
        if _seq(number):
            return int(number) + 1, last
        whole = os.pread(fd, start + end + 1, 0)  # a damaged record: count lines, as before
        return whole.count(b"\n"), last

    def records(self) -> list[Record]:
        """Every record, parsed (verify checks the chain)."""
        _, text = self.read()
        out = []
        for n, line in enumerate(text.split("\n")[1:-1], start=1):
            f = line.split("\t")
            if len(f) != FIELDS or not _seq(f[0].encode("ascii", "surrogateescape")):
                raise FormatError(f"audit record {n} is malformed")
            out.append(Record(int(f[0]), *f[1:], line=line))  # type: ignore[arg-type]
        return out


def line_hash(line: str) -> str:
    """hex(SHA-256) of one log line with its LF, exactly the bytes on disk."""
    return sha256_hex((line + "\n").encode("ascii", "surrogateescape"))


class Verdict:
    """What ``audit verify`` found: ``problems`` empty means the log holds."""

    __slots__ = ("checkpoint", "notes", "problems", "records", "unsigned")

    def __init__(
        self,
        records: int,
        checkpoint: int | None,
        problems: list[str],
        notes: list[str] | None = None,
        unsigned: int = 0,
    ) -> None:
        self.records, self.checkpoint, self.problems = records, checkpoint, problems
        self.notes = [] if notes is None else notes  # documented states that are not damage
        self.unsigned = unsigned  # records after the last signed checkpoint (unkeyed chain)


def verify(log: AuditLog, state: bytes | dict[str, str], verify_sig: object = None) -> Verdict:
    """Check the chain, sequence, the last changes' hashes and the checkpoint.

    ``state`` is the bytes of a v1 vault.tsv, or for format 2 the INDEX each
    file's newest record must carry: ``{"-": recipients.tsv's, NAME: its
    file's}`` (:func:`binding`). ``verify_sig(signer_fpr, message, signature)
    -> bool`` checks a checkpoint signature.
    """
    _, text = log.read()
    lines = text.split("\n")
    if not text.endswith("\n"):
        return Verdict(0, None, ["the audit log ends in a torn line"])
    lines = lines[:-1]
    problems: list[str] = []
    for n in range(1, len(lines)):
        f = lines[n].split("\t")
        if len(f) != FIELDS or "" in f or not _printable(lines[n]):
            problems.append(f"record {n} is malformed")
            break
        if f[0] != str(n):
            problems.append(f"record {n} has sequence number {f[0]!r} (inserted, deleted or moved)")
            break
        if f[12] != line_hash(lines[n - 1]):
            problems.append(f"record {n} does not chain to record {n - 1} (one was edited, "
                            "inserted, deleted or moved)")  # fmt: skip
            break
    if not problems:
        problems += check_merges(lines)
    count = len(lines) - 1
    notes: list[str] = []
    if not problems:
        from ossl_vault.storage.landing import pending_indexes  # not on a read's path

        pending = pending_indexes(parent(log.path))
        if isinstance(state, dict):
            _check_files(lines, state, pending, problems, notes)
        else:
            _check_last_change(lines, sha256_hex(state), pending, problems, notes)
    checked = None
    if exists(log.checkpoint_path):
        checked = _check_checkpoint(log, lines, problems, verify_sig)
    return Verdict(count, checked, problems, notes, count - (checked or 0))


def _check_last_change(lines: list[str], current: str, pending: set[str],
                       problems: list[str], notes: list[str]) -> None:  # fmt: skip
    from ossl_vault.storage.landing import last_change_state

    found = last_change_state(lines, current, pending)
    if found is not None:
        (notes if found[0] == "note" else problems).append(found[1])


def landing_note(log: AuditLog, state: bytes | dict[str, str]) -> str | None:
    """fsck's note on an unfinished write's record, or None (verify judges the rest)."""
    try:
        _, text = log.read()
    except VaultError:
        return None
    lines = text.split("\n")[:-1]  # a torn tail left out: the next writer cuts it
    from ossl_vault.storage.landing import file_states, last_change_state, pending_indexes

    pending = pending_indexes(parent(log.path))
    if isinstance(state, dict):
        found = [f for f in file_states(lines, state, pending) if f[0] == "note"]
        return f"audit {found[0][1]}" if found else None
    one = last_change_state(lines, sha256_hex(state), pending)
    return f"audit {one[1]}" if one is not None and one[0] == "note" else None


def check_merges(lines: list[str]) -> list[str]:
    """Each merge record's copies rebuild the other side's records up to its head (7.1)."""
    for n in range(1, len(lines)):
        f = lines[n].split("\t")
        if len(f) != FIELDS or f[6] != MERGE:
            continue
        span = _span(f[8])
        if not span or span[0] >= n or not is_hex(f[9], 64):
            return [f"merge record {n} is malformed"]
        fork, count = span
        if n + count > len(lines) - 1:
            return [f"merge record {n} names {count} records, but the log ends before them"]
        prev = sha256_hex((lines[fork] + "\n").encode())
        for i in range(1, count + 1):
            g = lines[n + i].split("\t")
            g[0], g[12] = str(fork + i), prev
            prev = sha256_hex(("\t".join(g) + "\n").encode())
        if prev != f[9]:
            return [f"the records merged at record {n} are not the other side's (one was "
                    "edited, dropped or moved)"]  # fmt: skip
    return []


def binding(data: bytes | None) -> str:
    """The INDEX a format-2 change carries for a file it leaves holding ``data`` (None: gone)."""
    return V2_PREFIX + sha256_hex(data or b"")


def _check_files(lines: list[str], state: dict[str, str], pending: set[str],
                 problems: list[str], notes: list[str]) -> None:  # fmt: skip
    """Format 2: each file's newest record carries the file's hash (section 7)."""
    from ossl_vault.storage.landing import file_states

    for level, text in file_states(lines, state, pending):
        (notes if level == "note" else problems).append(text)
        if level == "error":
            return


def _check_checkpoint(log: AuditLog, lines: list[str], problems: list[str],
                      verify_sig: object) -> int | None:  # fmt: skip
    try:
        with open(log.checkpoint_path, encoding="ascii") as fh:  # text mode, as Path.read_text
            f = fh.read().rstrip("\n").split("\t")
        if len(f) != 4 or not is_number(f[0], 18) or not is_hex(f[1], 64):
            raise ValueError("fields")
        count, head_hash, signer = int(f[0]), f[1], f[2]
        sig = _unb64(f[3])
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        problems.append("audit.checkpoint is malformed")
        return None
    if count > len(lines) - 1:
        problems.append(f"the log has {len(lines) - 1} records but checkpoint covers {count}: "
                        "it was truncated")  # fmt: skip
        return count
    if line_hash(lines[count]) != head_hash:
        problems.append(f"record {count} is not the one checkpoint {count} signed")
    message = checkpoint_message(count, head_hash)
    if verify_sig is not None and not verify_sig(signer, message, sig):  # type: ignore[operator]
        problems.append("the checkpoint signature does not verify")
    return count


def _unb64(text: str) -> bytes:
    import base64  # verify's alone: base64 loads re

    return base64.b64decode(text, validate=True)


def checkpoint_message(count: int, head_hash: str) -> bytes:
    """What a checkpoint signs: label, count and head hash, one line."""
    return f"{CHECKPOINT_LABEL}\t{count}\t{head_hash}\n".encode()


def signing_identity(index: object, identities: list) -> tuple[object, object] | None:
    """The first identity that is an RSA or EC recipient of the vault: (identity, recipient)."""
    signable = {r.fingerprint: r for r in index.recipients.values()  # type: ignore[attr-defined]
                if r.kind in ("rsa", "p256", "p384")}  # fmt: skip
    for identity in identities:
        if identity.key is None:
            continue
        try:
            fpr = identity.fingerprint
        except VaultError:  # an unusable key is simply not a signer
            continue
        if fpr in signable:
            return identity, signable[fpr]
    return None


def write_checkpoint(log: AuditLog, identity: object, recipient: object) -> int:
    """Sign (count, head hash) of the log with a recipient's key; caller holds the lock."""
    from ossl_vault.format.fields import b64
    from ossl_vault.openssl import crypto
    from ossl_vault.storage.files import atomic_write

    _, text = log.read()
    lines = text.split("\n")[:-1]
    count = len(lines) - 1
    head = line_hash(lines[count])
    sig = crypto.sign(identity.key, checkpoint_message(count, head))  # type: ignore[attr-defined]
    spki = recipient.spki  # type: ignore[attr-defined]
    line = f"{count}\t{head}\t{b64(spki)}\t{b64(sig)}\n"
    atomic_write(log.checkpoint_path, line.encode("ascii"))
    return count


def signature_checker(index: object) -> object:
    """verify_sig for :func:`verify`: the signer must be a key this vault knows."""

    from ossl_vault.openssl import crypto

    known = {r.fingerprint for r in index.recipients.values()}  # type: ignore[attr-defined]
    known |= {w.fingerprint for ws in index.wraps.values() for w in ws}  # type: ignore[attr-defined]

    def check(signer: str, message: bytes, signature: bytes) -> bool:
        try:
            spki = _unb64(signer)
        except ValueError:
            return False
        return sha256_hex(spki) in known and crypto.verify(spki, message, signature)

    return check
