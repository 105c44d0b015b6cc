"""GitHub recipients against a real HTTP server on 127.0.0.1 serving ``/USER.keys``."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import key_pages

from ossl_vault.errors import NotFoundError, OperationError, UsageError
from ossl_vault.keys import github, ssh


def keygen(d: Path, name: str, *args: str) -> bytes:
    path = d / name
    subprocess.run(["ssh-keygen", "-q", *args, "-N", "", "-C", name, "-f", str(path)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)  # fmt: skip
    return (d / f"{name}.pub").read_bytes().strip()


class Server:
    """The pages served, and the paths requested (with their User-Agent)."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.url = ""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("gh")
    rsa = keygen(d, "rsa", "-t", "rsa", "-b", "2048")
    ed = keygen(d, "ed", "-t", "ed25519")
    ed2 = keygen(d, "ed2", "-t", "ed25519")
    state = Server()
    # GitHub serves type and base64 only, one key a line, with a final newline
    plain = [b" ".join(k.split()[:2]) for k in (rsa, ed, ed2)]
    state.pages = {
        "/alice.keys": (200, plain[0] + b"\n" + plain[1] + b"\n"),
        "/bob.keys": (200, b""),
        "/carol.keys": (200, plain[1] + b"\n" + plain[2] + b"\n"),
        "/dave.keys": (200, b"<html><body>sign in</body></html>\n"),
        "/erin.keys": (500, b"oops"),
    }

    with key_pages(state.pages, state.requests) as url:
        state.url = url
        yield state


@pytest.fixture
def gh(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("OSSL_VAULT_GITHUB_URL", server.url)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    server.requests.clear()
    return server


def test_fetch_and_use_alice(gh: Server) -> None:
    lines = github.fetch_keys("alice")
    assert lines == gh.pages["/alice.keys"][1].splitlines()
    assert gh.requests == [("/alice.keys", "ossl-vault")]
    found = github.usable_keys(lines, "github:alice")
    assert [k.kind for k in found] == ["rsa"]
    assert found[0].spki == ssh.public_key(lines[0], "rsa").spki


def test_trailing_slash_in_base(gh: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSSL_VAULT_GITHUB_URL", gh.url + "/")
    assert len(github.fetch_keys("alice")) == 2
    assert gh.requests[-1][0] == "/alice.keys"


def test_user_without_keys(gh: Server) -> None:
    with pytest.raises(NotFoundError) as e:
        github.fetch_keys("bob")
    assert e.value.message == "GitHub user 'bob' has no public keys" and e.value.exit_code == 3


def test_unknown_user(gh: Server) -> None:
    with pytest.raises(NotFoundError) as e:
        github.fetch_keys("nobody-here")
    assert e.value.message == "no GitHub user 'nobody-here'"


def test_only_ed25519_keys(gh: Server) -> None:
    lines = github.fetch_keys("carol")
    with pytest.raises(UsageError) as e:
        github.usable_keys(lines, "github:carol")
    assert e.value.message == "no usable key in 'github:carol' (skipped 2 ssh-ed25519)"
    assert e.value.hint == ssh.ED25519_HINT


def test_not_a_key_list(gh: Server) -> None:
    with pytest.raises(OperationError, match="not a list of SSH public keys"):
        github.fetch_keys("dave")


def test_server_error(gh: Server) -> None:
    with pytest.raises(OperationError) as e:
        github.fetch_keys("erin")
    assert e.value.message.endswith("HTTP 500 Internal Server Error")
    assert e.value.exit_code == 1


@pytest.mark.parametrize(
    "user",
    ["", "-alice", "alice-", "al--ice", "a" * 40, "al ice", "a/b", "../x", "a.b", "al_ice",
     "alicé", "alice\n", "alice?x=1"],
)  # fmt: skip
def test_bad_user_names_never_reach_the_network(gh: Server, user: str) -> None:
    with pytest.raises(UsageError, match="is not a GitHub user name"):
        github.fetch_keys(user)
    assert gh.requests == []


@pytest.mark.parametrize("user", ["a", "A-b-C", "x" * 39, "0"])
def test_good_user_names(user: str) -> None:
    assert github.check_user(user) == user


@pytest.mark.parametrize("base", ["ftp://example.com", "example.com", "file:///etc", "http://"])
def test_bad_base_url(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSSL_VAULT_GITHUB_URL", base)
    with pytest.raises(UsageError, match="OSSL_VAULT_GITHUB_URL"):
        github.fetch_keys("alice")


def test_connection_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OSSL_VAULT_GITHUB_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("no_proxy", "*")
    with pytest.raises(OperationError) as e:
        github.fetch_keys("alice")
    assert "\n" not in e.value.message
    assert e.value.message.lower().endswith("connection refused"), e.value.message


def test_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts the connection and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        monkeypatch.setenv("OSSL_VAULT_GITHUB_URL", f"http://127.0.0.1:{s.getsockname()[1]}")
        monkeypatch.setenv("no_proxy", "*")
        monkeypatch.setattr(github, "TIMEOUT", 0.3)
        with pytest.raises(OperationError, match="timed out"):
            github.fetch_keys("alice")


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OSSL_VAULT_GITHUB_URL", raising=False)
    assert github.base_url() == "https://github.com"
