"""Shared fixtures: real keys made at test time, and the real CLI in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "ossl_vault"]
KINDS = ("rsa", "p256", "p384", "x25519")
NOT_DATA = (".lock", ".audit.lock", "audit.log", "audit.checkpoint")  # change on every command


# -- no command ever prints a Python traceback ------------------------------------
# Every test's ossl-vault subprocesses whose stderr the test reads (subprocess.run,
# Popen.communicate) are watched: a traceback fails the test that saw it.
TRACEBACK = b"Traceback (most recent call last)"
_TRACEBACKS: list[str] = []
_communicate = subprocess.Popen.communicate


def _is_ossl_vault(args: object) -> bool:
    words = [args] if isinstance(args, str | bytes | os.PathLike) else list(args or [])  # type: ignore[call-overload]
    text = " ".join(os.fsdecode(w) for w in words)
    return "ossl_vault" in text or "ossl-vault" in text


def _watched_communicate(self: subprocess.Popen, *a: object, **kw: object) -> tuple:  # type: ignore[type-arg]
    out, err = _communicate(self, *a, **kw)  # type: ignore[arg-type]
    text = err if isinstance(err, bytes) else (err or "").encode()
    if TRACEBACK in text and _is_ossl_vault(self.args):
        _TRACEBACKS.append(f"{self.args!r}:\n{text.decode('utf-8', 'replace')}")
    return out, err


subprocess.Popen.communicate = _watched_communicate  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def no_traceback() -> Iterator[None]:
    """Fail any test during which an ossl-vault command printed a traceback."""
    _TRACEBACKS.clear()
    yield
    if _TRACEBACKS:
        found = _TRACEBACKS[:]
        _TRACEBACKS.clear()
        pytest.fail("an ossl-vault command printed a Python traceback:\n" + found[0])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_keys(d: Path) -> None:
    """One key (and cert where the type can sign) per recipient kind."""
    d.mkdir(parents=True, exist_ok=True)
    subj = "/CN=ossl-vault-test"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "rsa.key"),
             "-out", str(d / "rsa.pem"), "-subj", subj, "-days", "365")  # fmt: skip
    for kind, curve in (("p256", "P-256"), ("p384", "P-384")):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{curve}",
                 "-nodes", "-keyout", str(d / f"{kind}.key"), "-out", str(d / f"{kind}.pem"),
                 "-subj", subj, "-days", "365")  # fmt: skip
    _openssl("genpkey", "-algorithm", "X25519", "-out", str(d / "x25519.key"))
    _openssl("pkey", "-in", str(d / "x25519.key"), "-pubout", "-out", str(d / "x25519.pem"))


@pytest.fixture(scope="session")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rsa/p256/p384 .key + .pem (cert), x25519.key + x25519.pem (public key)."""
    d = tmp_path_factory.mktemp("keys")
    make_keys(d)
    return d


@pytest.fixture(scope="session")
def otherkeys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, unrelated set of keys (a stranger's)."""
    d = tmp_path_factory.mktemp("otherkeys")
    make_keys(d)
    return d


@dataclass
class Result:
    rc: int
    out: bytes
    err: str


@dataclass
class VaultDir:
    """A vault directory and a way to run the real CLI against it."""

    path: Path
    keydir: Path
    env: dict[str, str]

    def run(self, *args: str, input: bytes = b"", env: dict[str, str] | None = None,
            identity: str | None = "rsa") -> Result:  # fmt: skip
        """``ossl-vault --vault PATH [-i KEY] ARGS``; stdin is ``input`` (never a tty)."""
        full = [*CLI, "--vault", str(self.path)]
        if identity:
            full += ["--identity", str(self.keydir / f"{identity}.key")]
        return run_cli([*full, *args], input, {**self.env, **(env or {})})

    def ok(self, *args: str, **kw: object) -> Result:
        return ok(self.run(*args, **kw), args)  # type: ignore[arg-type]

    def snapshot(self) -> dict[str, bytes]:
        """Every file of the vault but the lock and the audit log: to prove nothing
        changed (a failed operation still appends its audit record, by design)."""
        return {
            str(p.relative_to(self.path)): p.read_bytes()
            for p in sorted(self.path.rglob("*"))
            if p.is_file() and p.name not in NOT_DATA
        }

    def record_files(self) -> list[Path]:
        return record_files(self.path)

    def secret_file(self, name: str) -> Path:
        """Where a secret's records are: its own file (format 2) or vault.tsv."""
        if (self.path / "vault.tsv").exists():
            return self.path / "vault.tsv"
        return self.path / "secrets" / f"{name}.tsv"

    def tsv(self) -> str:
        """Every record as one format-1 vault.tsv text (header, sorted lines), any format."""
        return records_text(self.path)

    def audit(self) -> list[list[str]]:
        """The audit records, as field lists."""
        lines = (self.path / "audit.log").read_text().splitlines()[1:]
        return [line.split("\t") for line in lines]


def run_cli(argv: list[str], input: bytes, env: dict[str, str]) -> Result:
    """Run the CLI with stdin ``input``, in a new session: no controlling tty, never a prompt."""
    p = subprocess.run(argv, input=input, capture_output=True, env=env, timeout=300,
                       start_new_session=True)  # fmt: skip
    return Result(p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"))


def ok(r: Result, args: tuple[str, ...]) -> Result:
    """``r``, asserting it exited 0."""
    assert r.rc == 0, f"{args}: rc={r.rc} {r.err}"
    return r


def record_files(vault: Path) -> list[Path]:
    """The files holding a vault's records: vault.tsv (format 1), or recipients.tsv and
    each secret's file (format 2)."""
    if (vault / "vault.tsv").exists():
        return [vault / "vault.tsv"]
    return [vault / "recipients.tsv", *sorted((vault / "secrets").rglob("*.tsv"))]


def records_text(vault: Path) -> str:
    """Every record of a vault as one format-1 vault.tsv text (format.md 2.8), any format."""
    if (vault / "vault.tsv").exists():
        return (vault / "vault.tsv").read_text()
    lines = []
    for f in record_files(vault):
        lines += [x for x in f.read_text().splitlines() if not x.startswith("ossl-vault\t")]
    return "ossl-vault\t1\n" + "".join(x + "\n" for x in sorted(lines))


def clean_env(tmp: Path) -> dict[str, str]:
    """An environment with no stray identity, vault or home of the developer's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSSL_VAULT_")}
    env["HOME"] = str(tmp / "home")
    env["XDG_CONFIG_HOME"] = str(tmp / "home" / ".config")
    env["XDG_DATA_HOME"] = str(tmp / "home" / ".local" / "share")
    env["PYTHONPATH"] = str(ROOT)
    return env


READ_PATHS = ("light", "full")  # cli/light.py before click loads, or the click CLI


@pytest.fixture
def read_path(request: pytest.FixtureRequest) -> str:
    """Which path plain reads take: "light" (the default, as users run it) or "full"."""
    return getattr(request, "param", "light")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_paths`` run twice: plain reads on the light path, then on click's."""
    if metafunc.definition.get_closest_marker("both_paths") and "read_path" in (
        metafunc.fixturenames
    ):
        metafunc.parametrize("read_path", READ_PATHS, indirect=True)


@pytest.fixture
def env(tmp_path: Path, read_path: str) -> dict[str, str]:
    e = clean_env(tmp_path)
    if read_path == "full":
        e["OSSL_VAULT_FAST_PATH"] = "0"
    return e


@pytest.fixture
def vault(tmp_path: Path, keydir: Path, env: dict[str, str]) -> VaultDir:
    """A fresh vault with the RSA cert as its one recipient, named 'host'."""
    v = VaultDir(tmp_path / "vault", keydir, env)
    v.ok("init", "--recipient", f"host={keydir / 'rsa.pem'}", identity=None)
    return v


@pytest.fixture
def all_kinds_vault(tmp_path: Path, keydir: Path, env: dict[str, str]) -> VaultDir:
    """A vault with one recipient of every key kind, named after the kind."""
    v = VaultDir(tmp_path / "vault", keydir, env)
    args = [a for k in KINDS for a in ("--recipient", f"{k}={keydir / (k + '.pem')}")]
    v.ok("init", *args, identity=None)
    return v


@pytest.fixture
def no_python_path(tmp_path: Path) -> Iterator[str]:
    """A PATH holding bash, openssl and coreutils only: no python, awk or xxd."""
    d = tmp_path / "bin"
    d.mkdir()
    tools = ("bash openssl base64 basenc cat chmod cut cp date dd env head ls mkdir mktemp mv "
             "od printf rm sha256sum sort tail tee tr wc stat test true false "
             "dirname basename readlink").split()  # fmt: skip
    for tool in tools:
        found = shutil.which(tool)
        if found:
            (d / tool).symlink_to(found)
    yield str(d)


def read_until_closed(fd: int, seen: bytes = b"") -> bytes:
    """Everything a child writes to the terminal ``fd`` (a pty) until it closes it."""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen


def assert_error(r: Result, code: int, *words: str) -> str:
    """DESIGN.md promise 6: exit ``code``, one ``ossl-vault: error: ...`` line
    (lowercase, no trailing period), maybe one ``hint:`` line, nothing on stdout."""
    assert r.rc == code, f"rc={r.rc}, want {code}: {r.err}"
    lines = r.err.splitlines()
    assert 1 <= len(lines) <= 2, r.err
    assert lines[0].startswith("ossl-vault: error: "), r.err
    message = lines[0].removeprefix("ossl-vault: error: ")
    assert message and not message.endswith("."), message
    first = message.split()[0]
    # lowercase, unless it starts with a proper name such as RSA or Ed25519
    assert first.islower() or first.isupper() or any(c.isdigit() for c in first), message
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), r.err
    for word in words:
        assert word in r.err, f"{word!r} not in {r.err!r}"
    assert r.out == b""
    return r.err


@contextmanager
def key_pages(
    pages: dict[str, tuple[int, bytes]], requests: list[tuple[str, str]] | None = None
) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 (ephemeral port) serving ``pages`` (path ->
    (status, body)) like GitHub's /USER.keys; 404 for others. Records each request's
    (path, User-Agent) in ``requests``. Yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if requests is not None:
                requests.append((self.path, self.headers.get("User-Agent", "")))
            code, body = pages.get(self.path, (404, b"Not Found"))
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def need(ok: bool, what: str) -> None:
    """Skip a test whose system tool is missing on a developer's machine, but fail
    it in CI, where scripts/install-test-deps must have installed the tool."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must have it: scripts/install-test-deps)")
    pytest.skip(what)


def run_pty(
    argv: list[str], env: dict[str, str], answers: tuple[tuple[bytes, bytes], ...] = ()
) -> tuple[int, bytes]:
    """Run ``argv`` with a pty as its terminal (stdin, stdout, stderr): (exit code, all it
    wrote). Each (prompt, reply) of ``answers`` is typed once ``prompt`` has appeared."""
    import pty
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal
        os.execve(argv[0], argv, env)
    seen = b""
    deadline = time.monotonic() + 60
    for prompt, reply in answers:
        while prompt not in seen:
            assert time.monotonic() < deadline, seen
            seen += os.read(fd, 4096)
        os.write(fd, reply)
    import select

    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:  # waiting on a prompt nobody answers: end it, and say so
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(fd)
            raise AssertionError(f"no exit within the deadline: {seen!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen
