"""Daily verbs through the real CLI: mv, cp, list filters, find, show, metadata, fields,
expiry, soft delete, undelete, purge, edit, -q; each with its bad inputs and audit records."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import VaultDir, assert_error, records_text

from ossl_vault.format import records


def rows(v: VaultDir, *args: str) -> list[dict]:
    return [json.loads(line) for line in v.ok("list", "--json", *args).out.splitlines()]


def ops(v: VaultDir, since: int) -> list[tuple[str, str, str, str]]:
    """(op, secret, version, result) of the audit records after the first ``since``."""
    return [(r[6], r[7], r[8], r[10]) for r in v.audit()[since:]]


def blob_names(v: VaultDir) -> set[str]:
    return {p.name for p in (v.path / "blobs").iterdir()}


@pytest.fixture
def two(vault: VaultDir, keydir: Path) -> VaultDir:
    """host (RSA) and alice (P-256), both default."""
    vault.ok("recipient", "add", "alice", str(keydir / "p256.pem"))
    return vault


# -- mv and cp -------------------------------------------------------------------------


def test_mv_keeps_every_version_and_its_history(two: VaultDir) -> None:
    two.ok("put", "db/pw", "--meta", "owner=ops", "--expires", "30d", input=b"one")
    two.ok("put", "db/pw", input=b"two")
    before = rows(two)[0]
    n = len(two.audit())
    r = two.ok("mv", "db/pw", "db/password")
    assert "'db/password'" in r.err
    assert two.ok("get", "db/password").out == b"two"
    assert two.ok("get", "db/password", "--version", "1").out == b"one"
    assert_error(two.run("get", "db/pw"), 3, "'db/pw'")
    after = rows(two)[0]
    for key in ("versions", "recipients", "exposed", "ever", "meta", "expires"):
        assert after[key] == before[key], key
    assert [o[:3] for o in ops(two, n)][:2] == [("mv", "db/pw", "-"), ("mv", "db/password", "2")]
    two.ok("fsck")  # every record MAC was recomputed under the new name
    two.ok("audit", "verify")


def test_mv_onto_an_existing_name_refuses_unless_forced(vault: VaultDir) -> None:
    vault.ok("put", "a", input=b"A")
    vault.ok("put", "b", input=b"B")
    before = vault.snapshot()
    assert_error(vault.run("mv", "a", "b"), 2, "'b'", "--force")
    assert_error(vault.run("cp", "a", "b"), 2, "'b'", "--force")
    assert_error(vault.run("mv", "a", "a"), 2, "same name")
    assert_error(vault.run("mv", "nothing", "c"), 3, "'nothing'")
    assert_error(vault.run("mv", "a", "bad//name"), 2, "'bad//name'")
    assert vault.snapshot() == before
    n = len(vault.audit())
    vault.ok("mv", "a", "b", "--force")
    assert [o[:2] for o in ops(vault, n)][:3] == [("purge", "b"), ("mv", "a"), ("mv", "b")]
    assert vault.ok("get", "b").out == b"A"
    assert [r["name"] for r in rows(vault)] == ["b"]
    assert len(blob_names(vault)) == 1  # b's old ciphertext is gone


def test_mv_needs_an_identity_that_opens_it(vault: VaultDir) -> None:
    vault.ok("put", "a", input=b"A")
    before = vault.snapshot()
    assert_error(vault.run("mv", "a", "b", identity="p256"), 4)
    assert vault.snapshot() == before


def test_cp_gets_a_fresh_data_key_and_the_ledger_follows(two: VaultDir) -> None:
    two.ok("put", "app/key", "--meta", "url=https://example.org", input=b"v")
    two.ok("unshare", "app/key", "alice")  # alice saw the value: it needs rotation
    n = len(two.audit())
    two.ok("cp", "app/key", "app/key2")
    assert two.ok("get", "app/key2").out == b"v"
    index = records.parse(records_text(two.path).encode())
    old, new = index.versions["app/key"][-1], index.versions["app/key2"][-1]
    assert new.version == 1 and new.blob != old.blob and new.salt != old.salt
    assert index.wraps[("app/key2", 1)][0].ct != index.wraps[("app/key", 2)][0].ct
    copy = {r["name"]: r for r in rows(two)}["app/key2"]
    assert copy["needs_rotation"] == ["alice"] and copy["recipients"] == ["host"]
    assert copy["meta"] == {"url": "https://example.org"}
    assert [o[:3] for o in ops(two, n)][:2] == [("cp", "app/key", "2"), ("cp", "app/key2", "1")]


# -- list, find ------------------------------------------------------------------------


@pytest.fixture
def named(vault: VaultDir) -> VaultDir:
    for name in ("db/password", "db/replica/password", "web/Token", "dbx"):
        vault.ok("put", name, input=b"x")
    return vault


def test_list_by_folder_or_glob(named: VaultDir) -> None:
    def names(*args: str) -> list[str]:
        return named.ok("list", "--names", *args).out.decode().splitlines()

    assert names() == ["db/password", "db/replica/password", "dbx", "web/Token"]
    assert names("db") == ["db/password", "db/replica/password"]
    assert names("db/") == names("db")
    assert names("*/password") == ["db/password"]  # as in a shell, * stops at /
    assert names("db/*") == ["db/password"]
    assert names("**/password") == ["db/password", "db/replica/password"]
    assert names("db*") == ["dbx"]
    assert_error(named.run("list", "nothing*"), 3, "'nothing*'")
    assert_error(named.run("list", "--tree", "--json"), 2)


def test_list_table_layout(named: VaultDir) -> None:
    """The table users and scripts read: a header, dashes, one line per secret; columns
    left-aligned, two spaces apart, at least two wider than their header, no trailing
    spaces (the layout tabulate printed before it was dropped, kept byte for byte)."""
    out = named.ok("list", "db").out.decode()
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "RECIPIENTS", "PASSWORD", "SEEN", "BY",
                                "REMOVED", "UPDATED", "EXPIRES", "META"]  # fmt: skip
    widths = [len(d) for d in lines[1].split("  ")]
    assert widths[:4] == [len("db/replica/password"), 9, 12, 10]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].startswith("db/password          1          host")
    assert lines[3].startswith("db/replica/password  1          host")
    assert all(line == line.rstrip() for line in lines) and len(lines) == 4
    empty = named.ok("recipient", "list").out.decode().splitlines()
    assert set(empty[1]) == {"-", " "} and empty[2].startswith("host")


def test_list_tree_looks_like_pass(named: VaultDir) -> None:
    out = named.ok("list", "--tree").out.decode()
    assert out == (
        f"{named.path}\n"
        "├── db\n"
        "│   ├── password\n"
        "│   └── replica\n"
        "│       └── password\n"
        "├── dbx\n"
        "└── web\n"
        "    └── Token\n"
    )


def test_find(named: VaultDir) -> None:
    assert named.ok("find", "TOKEN").out == b"web/Token\n"
    assert named.ok("find", "pass").out.decode().splitlines() == [
        "db/password",
        "db/replica/password",
    ]
    assert named.ok("find", "*x").out == b"dbx\n"
    assert named.ok("find", "tok", "--json").out == b'"web/Token"\n'
    assert_error(named.run("find", "nothing"), 3, "'nothing'")


# -- metadata, show, fields ------------------------------------------------------------


def test_metadata_is_shown_and_never_the_value(vault: VaultDir) -> None:
    vault.ok("put", "db", "--meta", "owner=Zoë", "--meta", "rotation=90d", input=b"hunter2")
    info = json.loads(vault.ok("show", "db", "--json").out)
    assert info["meta"] == {"owner": "Zoë", "rotation": "90d"}
    assert [v["version"] for v in info["versions"]] == [1] and info["recipients"] == ["host"]
    text = vault.ok("show", "db").out.decode()
    assert "meta owner: Zoë" in text and "hunter2" not in text
    vault.ok("put", "db", "--meta", "rotation=", input=b"hunter3")  # KEY= removes KEY
    assert rows(vault)[0]["meta"] == {"owner": "Zoë"}
    assert "owner=Zoë" in vault.ok("list").out.decode()
    vault.ok("edit", "db", "--meta", "url=https://db")  # no new version
    assert json.loads(vault.ok("show", "db", "--json").out)["meta"]["url"] == "https://db"
    assert rows(vault)[0]["version"] == 2
    before = vault.snapshot()
    for bad in ("novalue", "Upper=x", "=x", "k=tab\there"):
        assert_error(vault.run("put", "db", "--meta", bad, input=b"v"), 2)
    assert_error(vault.run("show", "nothing"), 3, "'nothing'")
    assert vault.snapshot() == before


def test_get_field_of_gopass_and_json_documents(vault: VaultDir) -> None:
    vault.ok("put", "web", input=b"s3cret\nuser: bob\nurl: https://x\nnotes: call ops\n")
    vault.ok("put", "api", input=b'{"token": "t0k", "port": 5432}')
    assert vault.ok("get", "web", "--field", "user").out == b"bob"
    assert vault.ok("get", "web", "--field", "notes").out == b"call ops"
    assert vault.ok("get", "api", "--field", "token").out == b"t0k"
    assert vault.ok("get", "api", "--field", "port").out == b"5432"
    assert_error(vault.run("get", "web", "--field", "nope"), 3, "'nope'", "user")
    vault.ok("put", "bin", input=b"\xff\xfe")
    assert_error(vault.run("get", "bin", "--field", "x"), 2, "not text")


# -- expiry ----------------------------------------------------------------------------


def expire_by_hand(v: VaultDir, name: str) -> None:
    """Move an expiry into the past, as time passing would (the writer refuses a past one)."""
    path = v.secret_file(name)
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        f = line.split("\t")
        if f[:2] == ["state", name]:
            f[2] = "2001-01-01T00:00:00Z"
            lines[i] = "\t".join(f)
    path.write_text("\n".join(lines) + "\n")


def test_expiry(vault: VaultDir) -> None:
    n = len(vault.audit())
    vault.ok("put", "db", "--expires", "90d", input=b"v")
    assert [o[0] for o in ops(vault, n)] == ["put", "expire"]
    vault.ok("put", "tls", "--expires", "2099-01-31", input=b"v")
    vault.ok("put", "plain", input=b"v")
    assert rows(vault, "--expiring", "100d")[0]["name"] == "db"
    assert [r["name"] for r in rows(vault, "--expiring", "14d")] == []
    assert json.loads(vault.ok("show", "tls", "--json").out)["expires"] == "2099-01-31T00:00:00Z"
    before = vault.snapshot()
    assert_error(vault.run("put", "db", "--expires", "2001-01-01", input=b"v"), 2, "past")
    assert_error(vault.run("put", "db", "--expires", "soon", input=b"v"), 2, "'soon'")
    assert_error(vault.run("put", "db", "--expires", "2027-02-30", input=b"v"), 2)
    assert_error(vault.run("list", "--expiring", "14"), 2, "'14'")
    assert vault.snapshot() == before
    expire_by_hand(vault, "db")
    r = vault.ok("get", "db")
    assert r.out == b"v" and "warning: secret 'db' expired on 2001-01-01" in r.err
    n = len(vault.audit())
    assert_error(vault.run("get", "db", "--strict"), 3, "expired")
    assert ops(vault, n)[-1][3] == "exit=3:Expired"
    assert vault.ok("get", "plain", "--strict").out == b"v"
    assert rows(vault, "--expiring", "1d")[0]["name"] == "db"
    vault.ok("edit", "db", "--expires", "never")
    assert vault.ok("get", "db", "--strict").err == ""


# -- soft delete, undelete, purge ------------------------------------------------------


def test_rm_is_soft_and_undelete_brings_it_back(vault: VaultDir) -> None:
    vault.ok("put", "db", "--meta", "owner=ops", input=b"1")
    vault.ok("put", "db", input=b"2")
    n = len(vault.audit())
    r = vault.ok("rm", "db", "--keep", "7")
    assert "undelete" in r.err
    assert_error(vault.run("get", "db"), 3, "deleted", "undelete")
    assert rows(vault) == [] and [r["name"] for r in rows(vault, "--deleted")] == ["db"]
    assert_error(vault.run("put", "db", input=b"3"), 2, "deleted")
    assert_error(vault.run("rm", "db"), 3, "deleted")
    assert_error(vault.run("undelete", "nothing"), 3)
    vault.ok("undelete", "db")
    assert_error(vault.run("undelete", "db"), 2, "not deleted")
    assert vault.ok("get", "db").out == b"2"
    assert vault.ok("get", "db", "--version", "1").out == b"1"
    assert rows(vault)[0]["meta"] == {"owner": "ops"}
    recorded = [(o[0], o[1], o[3]) for o in ops(vault, n) if o[0] in ("rm", "undelete")]
    assert ("rm", "db", "ok") in recorded and ("undelete", "db", "ok") in recorded


def test_purge_destroys_versions_wraps_and_blobs(vault: VaultDir) -> None:
    vault.ok("put", "db", input=b"1")
    vault.ok("put", "db", input=b"2")
    vault.ok("put", "kept", input=b"k")
    assert_error(vault.run("purge", "db"), 2, "not deleted", "rm")
    assert_error(vault.run("purge"), 2)
    vault.ok("rm", "db")
    n = len(vault.audit())
    r = vault.ok("purge", "db")
    assert "2 version" in r.err
    assert ops(vault, n)[0] == ("purge", "db", "-", "ok")
    tsv = records_text(vault.path)
    assert "\tdb\t" not in tsv
    assert len(blob_names(vault)) == 1
    assert_error(vault.run("undelete", "db"), 3)
    vault.ok("put", "db", input=b"new")  # the name is free again
    assert vault.ok("get", "db").out == b"new"


def test_purge_due_honours_the_time_to_keep(vault: VaultDir) -> None:
    vault.ok("put", "now", input=b"1")
    vault.ok("put", "later", input=b"2")
    vault.ok("rm", "now", "--keep", "0")
    vault.ok("rm", "later", "--keep", "30")
    vault.ok("purge", "--due")
    assert [r["name"] for r in rows(vault, "--deleted")] == ["later"]
    assert "nothing to purge" in vault.ok("purge", "--due").err
    assert_error(vault.run("rm", "later", "--keep", "-1"), 2)


def test_a_deleted_secret_is_reencrypted_when_a_reader_goes(two: VaultDir) -> None:
    two.ok("put", "db", input=b"v")
    two.ok("rm", "db")
    two.ok("recipient", "rm", "alice")
    two.ok("undelete", "db")
    assert rows(two)[0]["recipients"] == ["host"]
    assert_error(two.run("get", "db", identity="p256"), 4)


# -- edit ------------------------------------------------------------------------------


def editor(tmp_path: Path, body: str) -> dict[str, str]:
    script = tmp_path / "editor"
    script.write_text("#!/bin/bash\n" + body)
    script.chmod(0o700)
    return {"EDITOR": str(script), "XDG_RUNTIME_DIR": str(runtime(tmp_path))}


def runtime(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def test_edit_stores_a_new_version_only_when_changed(vault: VaultDir, tmp_path: Path) -> None:
    vault.ok("put", "db", input=b"old\n")
    log = tmp_path / "seen"
    env = editor(tmp_path, f'stat -c "%a %n" "$1" "$(dirname "$1")" > {log}\n'
                 'printf "added\\n" >> "$1"\n')  # fmt: skip
    r = vault.ok("edit", "db", env=env)
    assert "version 2" in r.err
    assert vault.ok("get", "db").out == b"old\nadded\n"
    file_line, dir_line = log.read_text().splitlines()
    assert file_line.startswith("600 " + str(runtime(tmp_path)))
    assert dir_line.startswith("700 ")
    assert list(runtime(tmp_path).iterdir()) == []  # the file and its directory are gone
    r = vault.ok("edit", "db", env=editor(tmp_path, "true\n"))
    assert "unchanged" in r.err
    assert [(r[6], r[7]) for r in vault.audit()[-1:]] == [("edit", "db")]  # the read
    assert rows(vault)[0]["version"] == 2


def test_edit_with_a_failing_editor_stores_nothing(vault: VaultDir, tmp_path: Path) -> None:
    vault.ok("put", "db", input=b"old")
    before = vault.snapshot()
    env = editor(tmp_path, 'echo changed > "$1"; exit 3\n')
    assert_error(vault.run("edit", "db", env=env), 1, "status 3", "nothing was stored")
    assert_error(vault.run("edit", "db", env={"EDITOR": "no-such-editor-here"}), 1)
    assert_error(vault.run("edit", "db", env=editor(tmp_path, ': > "$1"\n')), 2, "empty")
    assert vault.snapshot() == before
    assert list(runtime(tmp_path).iterdir()) == []


def test_edit_creates_a_new_secret(vault: VaultDir, tmp_path: Path) -> None:
    vault.ok("edit", "fresh", env=editor(tmp_path, 'printf "v" > "$1"\n'))
    assert vault.ok("get", "fresh").out == b"v"


# -- -q ----------------------------------------------------------------------------------


def test_quiet_everywhere(vault: VaultDir, keydir: Path) -> None:
    assert vault.ok("-q", "put", "a", input=b"v").err == ""
    assert vault.ok("put", "b", "-q", input=b"v").err == ""
    assert vault.ok("recipient", "add", "alice", str(keydir / "p256.pem"), "-q").err == ""
    assert vault.ok("mv", "b", "c", "--quiet").err == ""
    assert_error(vault.run("get", "nothing", "-q"), 3)  # errors still print


def test_file_modes_of_a_vault_after_the_daily_verbs(vault: VaultDir) -> None:
    vault.ok("put", "a", input=b"v")
    vault.ok("cp", "a", "b")
    vault.ok("mv", "b", "c")
    for path in vault.record_files():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


# -- configuration changes and --json summaries -----------------------------------------


def test_recipient_flags_change_is_audited(two: VaultDir) -> None:
    n = len(two.audit())
    two.ok("recipient", "set", "alice", "--no-default")
    two.ok("put", "new", input=b"v")
    assert rows(two)[0]["recipients"] == ["host"]
    assert [(r[6], r[10]) for r in two.audit()[n : n + 1]] == [("recipient-set", "ok")]
    assert two.audit()[n][11] != "-"  # a change: it carries the index hash
    assert "already" in two.ok("recipient", "set", "alice", "--no-default").err
    two.ok("recipient", "set", "alice", "--default")
    two.ok("put", "new", input=b"w")
    assert rows(two)[0]["recipients"] == ["alice", "host"]
    assert_error(two.run("recipient", "set", "nobody", "--default"), 3, "'nobody'")
    assert two.run("recipient", "set", "alice").rc == 2


def test_json_summaries(vault: VaultDir, tmp_path: Path) -> None:
    vault.ok("put", "a", input=b"v")
    assert json.loads(vault.ok("fsck", "--json").out) == {"ok": True, "errors": 0, "problems": []}
    verdict = json.loads(vault.ok("audit", "verify", "--json").out)
    assert verdict["ok"] is True and verdict["records"] == len(vault.audit()) - 1  # not itself
    env_file = tmp_path / "app.env"
    env_file.write_text("A=1\nB=2\n")
    out = vault.ok("import", "--env", str(env_file), "--dry-run", "--json").out
    assert [json.loads(line) for line in out.splitlines()] == [
        {"name": "A", "source": f"{env_file} line 1", "action": "new", "bytes": 1},
        {"name": "B", "source": f"{env_file} line 2", "action": "new", "bytes": 1},
    ]
    vault.ok("recovery", "split", "--shares", "2", "--threshold", "2")
    status = json.loads(vault.ok("recovery", "status", "--json").out)
    assert (status["secrets"], status["covered"], status["not_covered"]) == (1, 1, [])
    assert status["recipient"] == "recovery" and len(status["key_check"]) == 64
    blob = next((vault.path / "blobs").iterdir())
    blob.write_bytes(b"\0" * 16)
    r = vault.run("fsck", "--json")
    assert r.rc == 5 and json.loads(r.out)["errors"] == 1
