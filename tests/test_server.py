"""The key server end to end: a real server process, real TLS 1.3 on 127.0.0.1, the real CLI."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, ROOT, assert_error, clean_env
from server_helpers import KeyServer, device, init_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyServer]:
    tmp = tmp_path_factory.mktemp("keyserver")
    srv = init_server(tmp / "srv", clean_env(tmp)).start()
    yield srv
    assert srv.stop() == 0
    assert any("stopped" in line for line in srv.log)


def test_server_state_is_private(server: KeyServer) -> None:
    d = server.directory
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in ("opaque.key", "tls.key", "server.json", "server.db"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name


def test_tls_1_2_is_refused_and_1_3_accepted(server: KeyServer) -> None:
    def s_client(version: str) -> int:
        p = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", version],
            input=b"", capture_output=True, timeout=30,
        )  # fmt: skip
        return p.returncode

    assert s_client("-tls1_2") != 0
    assert s_client("-tls1_3") == 0


def test_every_workflow_and_a_second_device(server: KeyServer, tmp_path: Path) -> None:
    first = device(tmp_path / "laptop", server, "alice")
    first.register()
    first.ok("put", "db/password", input=b"pg-pass-Q9")
    first.ok("generate", "app/key")
    first.ok("put", "tls/key", input=b"\x00binary\xff")
    names = [json.loads(line)["name"] for line in first.ok("list", "--json").out.splitlines()]
    assert names == ["app/key", "db/password", "tls/key"]

    second = device(tmp_path / "phone", server, "alice")  # a fresh config dir: a new device
    assert second.login().rc == 0
    assert second.ok("get", "db/password").out == b"pg-pass-Q9"
    assert second.ok("get", "tls/key").out == b"\x00binary\xff"
    generated = second.ok("get", "app/key").out
    assert generated == first.ok("get", "app/key").out and len(generated) == 44
    out = tmp_path / "value"
    second.ok("get", "db/password", "--out", str(out))
    assert out.read_bytes() == b"pg-pass-Q9" and stat.S_IMODE(out.stat().st_mode) == 0o600

    second.ok("rotate", "db/password")
    assert first.ok("get", "db/password").out == b"pg-pass-Q9"
    assert first.ok("get", "db/password", "--version", "1").out == b"pg-pass-Q9"
    second.ok("rm", "tls/key")
    assert_error(first.run("get", "tls/key"), 3, "tls/key")
    first.ok("undelete", "tls/key")
    assert second.ok("get", "tls/key").out == b"\x00binary\xff"
    first.ok("put", "svc/token", "--meta", "owner=ops", "--expires", "90d", input=b"tok")
    first.ok("mv", "svc/token", "svc/api-token")
    shown = second.ok("show", "svc/api-token").out.decode()
    assert "owner" in shown and "ops" in shown
    assert second.ok("get", "svc/api-token").out == b"tok"
    assert_error(second.run("get", "svc/token"), 3)
    assert_error(first.run("get", "nope/never"), 3)


def test_wrong_password_is_exit_4_with_a_backoff(server: KeyServer, tmp_path: Path) -> None:
    d = device(tmp_path / "a", server, "bruno")
    d.register()
    wrong = device(tmp_path / "b", server, "bruno", password="not the password")
    err = assert_error(wrong.login(), 4, "login failed")
    assert "delays the next login by 1 s" in err
    # the right password at once is held back too: the delay is per user
    err = assert_error(d.login(), 4, "too many failed logins")
    assert "retry" in err or "delays" in err
    time.sleep(2)
    assert d.login().rc == 0


def test_unknown_and_known_users_get_answers_of_one_shape(
    server: KeyServer, tmp_path: Path
) -> None:
    from ossl_vault.remote import opaque
    from ossl_vault.remote.client import Remote

    device(tmp_path / "k", server, "karl").register()
    answers = []
    for user in ("karl", "nobody-here"):
        remote = Remote(server.url, user, home=tmp_path / "probe" / user)
        remote.info(pin=True)
        doc = remote.start_login(opaque.Login(b"guess").ke1_bytes())
        answers.append(doc)
        remote.public("POST", "/login/abort", {"login": doc["login"]})
    assert sorted(answers[0]) == sorted(answers[1]) == ["ke2", "login"]
    assert len(answers[0]["ke2"]) == len(answers[1]["ke2"])
    assert len(answers[0]["login"]) == len(answers[1]["login"])


def test_replayed_altered_and_ended_sessions_are_refused(server: KeyServer, tmp_path: Path) -> None:
    import http.client
    import ssl

    from ossl_vault.remote import protocol
    from ossl_vault.remote.client import Remote

    d = device(tmp_path / "r", server, "rita")
    d.register()
    remote = Remote(server.url, "rita", home=d.home / "config" / "ossl-vault" / "remote")
    session = remote.config["session"]
    req_key, _ = protocol.session_keys(protocol.unb64(session["key"], "key"))

    def send(counter: int, body: bytes, mac_body: bytes | None = None) -> int:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx)
        path = "/v1/vault/log"
        mac = protocol.request_mac(req_key, session["id"], counter, "POST", path,
                                   body if mac_body is None else mac_body)  # fmt: skip
        conn.request("POST", path, body, {protocol.SESSION_HEADER: session["id"],
                     protocol.COUNTER_HEADER: str(counter), protocol.MAC_HEADER: mac})  # fmt: skip
        status = conn.getresponse().status
        conn.close()
        return status

    body = json.dumps({"events": [{"op": "probe"}]}).encode()
    n = session["counter"]
    assert send(n + 10, body) == 200
    assert send(n + 10, body) == 401  # replayed
    assert send(n + 5, body) == 401  # reordered: older than one already seen
    altered = json.dumps({"events": [{"op": "probf"}]}).encode()
    assert send(n + 11, altered, mac_body=body) == 401  # altered body, MAC of the original
    assert send(n + 12, body) == 200  # the session itself is still good

    d.ok("remote", "logout", remote=False)
    assert send(n + 10**12, body) == 401
    assert_error(d.run("list"), 4, "not logged in")


def test_expired_session_is_exit_4(server: KeyServer, tmp_path: Path) -> None:
    d = device(tmp_path / "e", server, "emil")
    d.register()
    assert d.login("--ttl", "1s").rc == 0
    time.sleep(2)
    assert_error(d.run("list"), 4, "expired")


def test_a_changed_certificate_is_refused(server: KeyServer, tmp_path: Path) -> None:
    d = device(tmp_path / "c", server, "carla")
    d.register()
    config = next((d.home / "config" / "ossl-vault" / "remote").glob("*.json"))
    doc = json.loads(config.read_text())
    doc["tls_sha256"] = "00" * 32  # as if another certificate had been seen first
    config.write_text(json.dumps(doc))
    assert_error(d.run("list"), 5, "TLS certificate", "changed")
    assert d.login("--repin").rc == 0
    assert d.run("list").rc == 0


def test_the_server_never_holds_a_value_or_a_name(server: KeyServer, tmp_path: Path) -> None:
    d = device(tmp_path / "g", server, "greta")
    d.register()
    d.ok("put", "payroll/db-password", input=b"Sup3r-Secret-Value-7731")
    assert d.ok("get", "payroll/db-password").out == b"Sup3r-Secret-Value-7731"
    files = [p for p in server.directory.iterdir() if p.name.startswith("server.db")]
    stored = b"".join(p.read_bytes() for p in files)
    logged = "".join(server.log).encode()
    for needle in (b"Sup3r-Secret-Value-7731", b"payroll", b"db-password", b"correct horse"):
        assert needle not in stored, needle
        assert needle not in logged, needle
    assert b"POST /v1/vault/commit 200" in logged  # the log is there, one line a request


def test_passwd_keeps_the_secrets(server: KeyServer, tmp_path: Path) -> None:
    d = device(tmp_path / "p", server, "paul")
    d.register()
    d.ok("put", "k", input=b"value-p")
    d.password_file.write_text("a new password\n")
    d.ok("remote", "passwd", "--password-file", str(d.password_file))
    old = device(tmp_path / "p-old", server, "paul")
    assert_error(old.login(), 4, "login failed")
    time.sleep(2)  # the backoff the failure earned
    new = device(tmp_path / "p-new", server, "paul", password="a new password")
    assert new.login().rc == 0
    assert new.ok("get", "k").out == b"value-p"


def test_push_pull_clone_export_key_and_recover(
    server: KeyServer, tmp_path: Path, keydir: Path, no_python_path: str
) -> None:
    d = device(tmp_path / "x", server, "xena")
    d.vault = tmp_path / "local"
    d.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", remote=False)
    key = ["--identity", str(keydir / "rsa.key")]
    d.ok("put", "local/one", input=b"from-local", remote=False)
    d.register()
    d.ok(*key, "remote", "push", "local/one")  # with --remote too: the local key reads
    assert d.ok("get", "local/one").out == b"from-local"
    d.ok("put", "remote/two", input=b"from-server")
    d.ok("remote", "pull", "remote/two", remote=False)
    assert d.ok(*key, "get", "remote/two", remote=False).out == b"from-server"

    d.ok("remote", "clone", str(tmp_path / "copy"))
    d.ok("remote", "export-key", "--out", str(tmp_path / "account.pem"))
    p = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ossl-vault-recover"), str(tmp_path / "copy"),
         "remote/two", str(tmp_path / "account.pem")],
        capture_output=True, env={"PATH": no_python_path}, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"from-server"


def test_remote_audit_names_operations_and_catches_an_edit(
    server: KeyServer, tmp_path: Path
) -> None:
    d = device(tmp_path / "au", server, "audra")
    d.register()
    d.ok("put", "audited/name", input=b"v")
    d.ok("get", "audited/name")
    assert_error(device(tmp_path / "au2", server, "audra", password="wrong!").login(), 4)
    rows = [json.loads(x) for x in d.ok("remote", "audit", "--json").out.splitlines()]
    ops = [(r["op"], r["name"]) for r in rows]
    assert ops[:3] == [("register", "-"), ("login", "-"), ("init", "-")]
    assert ("put", "audited/name") in ops and ("get", "audited/name") in ops
    assert any(r["op"] == "login" and r["result"].startswith("exit=4") for r in rows)
    only = d.ok("remote", "audit", "audited/name", "--json").out.splitlines()
    assert {json.loads(x)["name"] for x in only} == {"audited/name"}

    db = sqlite3.connect(server.directory / "server.db")
    with db:
        db.execute("UPDATE audit SET line = replace(line, 'put', 'pot') "
                   "WHERE user = 'audra' AND line LIKE '%\tput\t%'")  # fmt: skip
    db.close()
    assert_error(d.run("remote", "audit"), 5, "does not chain")


def test_sigterm_stops_a_server_cleanly(tmp_path: Path) -> None:
    srv = init_server(tmp_path / "srv", clean_env(tmp_path)).start()
    assert srv.stop() == 0
    assert any("stopped" in line for line in srv.log)


def test_no_secret_reaches_an_openssl_command_line(server: KeyServer, tmp_path: Path) -> None:
    """Promise 2 on the client: values, the password and the account key stay off argv/env."""
    from test_no_secret_argv import distinctive, logging_openssl, spellings

    from ossl_vault.openssl import crypto

    password = distinctive("pw").decode()
    value = distinctive("value")
    d = device(tmp_path / "shim", server, "shimmy", password=password)
    shimmed, log = logging_openssl(tmp_path, d.env)
    d.ok("remote", "register", server.url, d.user, "--password-file", str(d.password_file),
         remote=False, env=shimmed)  # fmt: skip
    d.ok("put", "shim/secret", input=value, env=shimmed)
    assert d.ok("get", "shim/secret", env=shimmed).out == value
    d.ok("remote", "passwd", "--password-file", str(d.password_file), env=shimmed)
    d.ok("remote", "clone", str(tmp_path / "copy"), env=shimmed)
    key = d.ok("remote", "export-key").out
    der = subprocess.run(["openssl", "pkey", "-outform", "DER"], input=key,
                         capture_output=True, check=True).stdout  # fmt: skip
    logged = log.read_bytes()
    assert b"enc" in logged and b"pkey" in logged  # the shim saw the calls
    for secret in (
        value,
        password.encode(),
        der[-32:],
        crypto.hkdf(der, "ossl-vault/v1/remote-id"),
    ):
        for spelling in spellings(secret):
            assert spelling not in logged, secret


def test_export_import_and_the_remote_from_the_environment(
    server: KeyServer, tmp_path: Path, keydir: Path
) -> None:
    d = device(tmp_path / "ie", server, "ines")
    d.register()
    env = {"OSSL_VAULT_REMOTE": d.remote}
    (tmp_path / "app.env").write_text("DB_PASS=from-env-file\nTOKEN=t0k3n\n")
    d.ok("import", "--env", str(tmp_path / "app.env"), remote=False, env=env)
    assert d.ok("get", "DB_PASS", remote=False, env=env).out == b"from-env-file"
    cms = d.ok("export", "TOKEN", "--to", str(keydir / "rsa.pem"), remote=False, env=env).out
    p = subprocess.run(["openssl", "cms", "-decrypt", "-inform", "DER", "-inkey",
                        str(keydir / "rsa.key")], input=cms, capture_output=True)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith(b"t0k3n")
    assert_error(d.run("init", remote=False, env=env), 2, "remote register")


def test_a_ca_issued_certificate_with_ca(tmp_path: Path) -> None:
    """server init --cert/--key serves the host's pair; the client verifies it with --ca."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test CA",
            "-days", "2")  # fmt: skip
    openssl("req", *ec, "-keyout", "host.key", "-out", "host.csr", "-subj", "/CN=127.0.0.1")
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "host.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "host.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    env = clean_env(tmp_path)
    p = subprocess.run(
        [*CLI, "server", "init", str(tmp_path / "srv"), "--cert", str(tmp_path / "host.pem"),
         "--key", str(tmp_path / "host.key")], capture_output=True, env=env, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    srv = KeyServer(tmp_path / "srv", env).start()
    try:
        d = device(tmp_path / "d", srv, "cara")
        r = d.run("remote", "register", srv.url, "cara", "--password-file",
                  str(d.password_file), "--ca", str(tmp_path / "ca.pem"), remote=False)  # fmt: skip
        assert r.rc == 0, r.err
        d.ok("put", "x", input=b"with-a-ca")
        assert d.ok("get", "x").out == b"with-a-ca"
        other = device(tmp_path / "o", srv, "cara")  # another CA: refused before any byte
        wrong_ca = ["--ca", str(tmp_path / "host.pem")]
        r = other.run("remote", "login", srv.url, "cara", "--password-file",
                      str(other.password_file), *wrong_ca, remote=False)  # fmt: skip
        assert_error(r, 5, "does not verify")
    finally:
        assert srv.stop() == 0


def test_a_body_over_the_limit_is_refused(server: KeyServer) -> None:
    import http.client
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    limit = json.loads((server.directory / "server.json").read_text())["max_body"]
    for declared in (True, False):  # a Content-Length over the limit, and a body that runs over
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=60)
        body = b"x" * (limit + 1)
        headers = {} if declared else {"Transfer-Encoding": "chunked"}
        conn.request("POST", "/v1/login/start", body=body if declared else iter([body]),
                     headers=headers, encode_chunked=not declared)  # fmt: skip
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["exit"] == 2
        conn.close()


def test_closed_registration_needs_an_invitation(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    srv = init_server(tmp_path / "srv", env)
    settings = json.loads((srv.directory / "server.json").read_text())
    (srv.directory / "server.json").write_text(json.dumps({**settings, "open_registration": 0}))
    srv.start()
    try:
        d = device(tmp_path / "d", srv, "ivan")
        r = d.run("remote", "register", srv.url, "ivan", "--password-file",
                  str(d.password_file), remote=False)  # fmt: skip
        assert_error(r, 4, "needs an invitation")
        p = subprocess.run([*CLI, "server", "invite", str(srv.directory), "ivan"],
                           capture_output=True, env=env, timeout=60)  # fmt: skip
        assert p.returncode == 0, p.stderr
        token = tmp_path / "invite"
        token.write_bytes(p.stdout)
        (tmp_path / "wrong").write_text("not-the-token\n")
        register = ["remote", "register", srv.url, "ivan", "--password-file", str(d.password_file)]
        assert_error(d.run(*register, "--invite-file", str(tmp_path / "wrong"), remote=False), 4)
        assert d.run(*register, "--invite-file", str(token), remote=False).rc == 0
        d.ok("put", "k", input=b"invited")
        other = device(tmp_path / "o", srv, "olga")  # an invitation names one user
        pw = ["--password-file", str(other.password_file)]
        r = other.run("remote", "register", srv.url, "olga", *pw, "--invite-file", str(token),
                      remote=False)  # fmt: skip
        assert_error(r, 4, "invitation")
    finally:
        assert srv.stop() == 0
