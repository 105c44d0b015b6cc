"""Bulk commands finish or change nothing (issue 9): rotate, rekey, recipient rm, unshare.

Each runs as one commit: a secret that cannot be opened (a per-secret password
not given, no usable identity) stops it before anything changes, naming every
such secret; ``--password-file NAME=FILE`` gives one password per secret and
``--skip-unreadable`` leaves them out, saying so. The audit log then shows one
record per secret changed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CLI, VaultDir, assert_error, run_pty


def records(v: VaultDir, op: str) -> list[list[str]]:
    return [r for r in v.audit() if r[6] == op]


@pytest.fixture
def mixed(vault: VaultDir, keydir: Path, tmp_path: Path) -> VaultDir:
    """host + alice read 8 secrets; two of them have their own (different) passwords."""
    vault.ok("recipient", "add", "alice", str(keydir / "p256.pem"))
    for i in range(6):
        vault.ok("put", f"plain/{i}", input=f"value {i}".encode())
    for name in ("pw/a", "pw/b"):
        (tmp_path / name.replace("/", "-")).write_text(f"password of {name}\n")
        vault.ok("put", name, "--password-file", str(tmp_path / name.replace("/", "-")),
                 input=name.encode())  # fmt: skip
    return vault


def pw(tmp_path: Path, name: str) -> str:
    return f"{name}={tmp_path / name.replace('/', '-')}"


def assert_one_commit(rows: list[list[str]]) -> None:
    """The change records of one commit (docs/format.md section 7): format 1 gives them
    one INDEX (one write of vault.tsv); format 2 one record per file, each binding its
    own file, appended together by one process."""
    assert [int(r[0]) for r in rows] == list(range(int(rows[0][0]), int(rows[0][0]) + len(rows)))
    assert len({r[5] for r in rows}) == 1  # one process
    if rows[0][11].startswith("v2:"):
        assert len({r[7] for r in rows}) == len(rows)  # each file once
    else:
        assert len({r[11] for r in rows}) == 1


@pytest.mark.parametrize("command", [("recipient", "rm", "alice"), ("rotate",)])
def test_a_secret_without_its_password_stops_the_command_before_any_change(
    mixed: VaultDir, tmp_path: Path, command: tuple[str, ...]
) -> None:
    before = mixed.snapshot()
    r = mixed.run(*command)
    err = assert_error(r, 4, "nothing changed", "'pw/a' (needs its password)", "'pw/b'")
    assert "NAME=FILE" in err
    assert mixed.snapshot() == before  # alice is still a recipient of everything, unchanged
    # one of the two given: still refused, naming the other alone
    r = mixed.run(*command, "--password-file", pw(tmp_path, "pw/a"))
    assert_error(r, 4, "1 secret(s)", "'pw/b' (needs its password)")
    assert "'pw/a'" not in r.err
    assert mixed.snapshot() == before


def test_recipient_rm_with_a_password_per_secret_is_one_commit(
    mixed: VaultDir, tmp_path: Path
) -> None:
    writes = len([r for r in mixed.audit() if r[11] != "-"])
    r = mixed.ok("recipient", "rm", "alice", "--password-file", pw(tmp_path, "pw/a"),
                 "--password-file", pw(tmp_path, "pw/b"))  # fmt: skip
    assert "recipient rm done: 8 re-encrypted" in r.err
    assert "removed recipient 'alice'; re-encrypted 8 secret(s)" in r.err
    assert_error(mixed.run("get", "plain/0", identity="p256"), 4)
    assert mixed.ok("get", "pw/a", "--password-file", str(tmp_path / "pw-a")).out == b"pw/a"
    changes = [r for r in mixed.audit() if r[11] != "-"][writes:]
    # one record per secret changed, plus the recipient's removal, all of one commit
    assert sorted(r[7] for r in changes) == sorted(
        ["-", "pw/a", "pw/b", *(f"plain/{i}" for i in range(6))]
    )
    assert_one_commit(changes)


def test_skip_unreadable_leaves_them_out_and_says_what_is_left(
    mixed: VaultDir, tmp_path: Path
) -> None:
    r = mixed.ok("recipient", "rm", "alice", "--skip-unreadable")
    assert "skipped 'pw/a': needs its password" in r.err
    assert "skipped 'pw/b': needs its password" in r.err
    assert "6 re-encrypted, 2 skipped" in r.err
    assert "left to do: 'alice' is still a recipient and can read 2 secret(s)" in r.err
    assert "alice" in mixed.ok("recipient", "list").out.decode()
    assert mixed.ok("get", "pw/a", "--password-file", str(tmp_path / "pw-a"),
                    identity="p256").out == b"pw/a"  # fmt: skip
    assert_error(mixed.run("get", "plain/0", identity="p256"), 4)
    # finishing later: only the two left are re-encrypted
    # FILE alone: the password of every secret not named
    every = str(tmp_path / "pw-b")
    r = mixed.ok("recipient", "rm", "alice", "--password-file", pw(tmp_path, "pw/a"),
                 "--password-file", every)  # fmt: skip
    assert "recipient rm done: 2 re-encrypted" in r.err
    assert "alice" not in mixed.ok("recipient", "list").out.decode()


def test_rotate_skip_unreadable_and_the_wrong_identity(mixed: VaultDir, tmp_path: Path) -> None:
    mixed.ok("put", "hostonly", "--to", "host", input=b"h")
    r = mixed.run("rotate", "--password-file", str(tmp_path / "pw-a"), identity="p256")
    # pw/b: wrong password (the FILE is pw/a's); hostonly: alice holds no wrap
    assert_error(r, 4, "'hostonly' (no usable identity)", "'pw/b' (wrong password)")
    r = mixed.ok("rotate", "--skip-unreadable", "-v", "--password-file",
                 str(tmp_path / "pw-a"), identity="p256")  # fmt: skip
    assert "7 re-encrypted, 2 skipped" in r.err
    assert "'plain/0': re-encrypted to version 2" in r.err
    assert "left to do:" in r.err
    changes = [row for row in records(mixed, "rotate") if row[11] != "-"]
    assert len(changes) == 7  # one per secret changed (the refused run changed nothing)


def test_rekey_is_one_write_and_unshare_takes_a_named_password(
    mixed: VaultDir, keydir: Path, tmp_path: Path
) -> None:
    mixed.ok("recipient", "add", "bob", str(keydir / "x25519.pem"))
    r = mixed.ok("rekey", "--password-file", pw(tmp_path, "pw/b"))  # rewraps need no password
    assert "rekey done: 8 rewrapped" in r.err
    rows = records(mixed, "rekey")
    assert len(rows) == 8
    assert_one_commit(rows)
    assert mixed.ok("get", "pw/b", "--password-file", str(tmp_path / "pw-b"),
                    identity="x25519").out == b"pw/b"  # fmt: skip
    assert_error(mixed.run("unshare", "pw/b", "bob"), 4, "'pw/b' (needs its password)")
    mixed.ok("unshare", "pw/b", "bob", "--password-file", pw(tmp_path, "pw/b"))
    assert_error(mixed.run("get", "pw/b", "--password-file", str(tmp_path / "pw-b"),
                           identity="x25519"), 4)  # fmt: skip


def test_import_writes_one_audit_record_per_secret(vault: VaultDir, tmp_path: Path) -> None:
    (tmp_path / "in.env").write_text("A=1\nB=2\n")
    vault.ok("import", "--env", str(tmp_path / "in.env"))
    r = vault.ok("audit", "A", "--json")
    assert '"op": "import"' in r.out.decode()
    assert sorted(row[7] for row in records(vault, "import") if row[11] != "-") == ["A", "B"]


def test_progress_bar_only_on_a_terminal(mixed: VaultDir, tmp_path: Path) -> None:
    argv = [*CLI, "--vault", str(mixed.path), "-i", str(mixed.keydir / "rsa.key"), "rekey"]
    mixed.ok("recipient", "add", "carol", str(mixed.keydir / "p384.pem"))
    rc, seen = run_pty(argv, mixed.env)
    assert rc == 0, seen
    assert b"rekey" in seen and b"100%" in seen, seen  # click's bar, drawn on the terminal
    mixed.ok("recipient", "add", "dan", str(mixed.keydir / "x25519.pem"))
    r = mixed.ok("rekey")
    assert "%" not in r.err  # not a terminal: only the summary


def test_export_all_refuses_naming_every_secret_then_takes_a_password_each(
    mixed: VaultDir, tmp_path: Path, keydir: Path
) -> None:
    r = mixed.run("export", "--all", "--plaintext")
    assert_error(r, 4, "'pw/a' (needs its password)", "'pw/b' (needs its password)")
    r = mixed.ok("export", "--all", "--plaintext", "--password-file", pw(tmp_path, "pw/a"),
                 "--password-file", pw(tmp_path, "pw/b"))  # fmt: skip
    assert b'"pw/b": "pw/b"' in r.out and b'"plain/5": "value 5"' in r.out
    r = mixed.ok("export", "--all", "--plaintext", "--skip-unreadable")
    assert "skipped 'pw/a': needs its password" in r.err and b"pw/a" not in r.out
    # import of a bundle: a password per secret too
    bundle = tmp_path / "b.bundle"
    r = mixed.ok("export", "--all", "--bundle", "--to", str(keydir / "p384.pem"), "--out",
                 str(bundle))  # fmt: skip
    other = VaultDir(tmp_path / "other", keydir, mixed.env)
    other.ok("init", "--recipient", f"x={keydir / 'x25519.pem'}", identity=None)
    r = other.run("import", "--bundle", str(bundle), identity="p384")
    assert r.rc == 4 and "'pw/a'" in r.err and "'pw/b'" in r.err, r.err
    other.ok("import", "--bundle", str(bundle), "--password-file", pw(tmp_path, "pw/a"),
             "--password-file", pw(tmp_path, "pw/b"), identity="p384")  # fmt: skip
    assert other.ok("get", "pw/b", "--password-file", str(tmp_path / "pw-b"),
                    identity="x25519").out == b"pw/b"  # fmt: skip


def test_recovery_split_draws_its_bar_on_a_terminal(vault: VaultDir) -> None:
    for i in range(3):
        vault.ok("put", f"s{i}", input=b"v")
    argv = [*CLI, "--vault", str(vault.path), "-i", str(vault.keydir / "rsa.key"),
            "recovery", "split", "--shares", "3", "--threshold", "2"]  # fmt: skip
    rc, seen = run_pty(argv, vault.env)
    assert rc == 0, seen
    assert b"recovery split" in seen and b"100%" in seen, seen
