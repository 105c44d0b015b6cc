"""A real key server process on 127.0.0.1 (real TLS 1.3), and devices running the real CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from conftest import CLI, Result, clean_env, ok, run_cli


@dataclass
class KeyServer:
    """``ossl-vault server start DIR --listen 127.0.0.1:0``, its stderr collected."""

    directory: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    log: list[str] = field(default_factory=list)

    def start(self) -> KeyServer:
        self.proc = subprocess.Popen(
            [*CLI, "server", "start", str(self.directory), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=self.env, start_new_session=True,
        )  # fmt: skip
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode()
            self.log.append(line)
            found = re.search(r"listening on (https://127\.0\.0\.1:\d+)", line)
            if found:
                self.url = found.group(1)
                break
        else:
            raise AssertionError("the server did not start: " + "".join(self.log))
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.log.append(raw.decode())

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> int:
        """SIGTERM, as systemd sends; the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def init_server(directory: Path, env: dict[str, str]) -> KeyServer:
    p = subprocess.run(
        [*CLI, "server", "init", str(directory), "--hostname", "localhost"],
        capture_output=True, env=env, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return KeyServer(directory, env)


@dataclass
class Device:
    """A client machine: its own config directory (so its own pins, session, account key)."""

    home: Path
    server: KeyServer
    user: str
    password_file: Path
    vault: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        env = clean_env(self.home)
        env["XDG_CONFIG_HOME"] = str(self.home / "config")
        return env

    @property
    def remote(self) -> str:
        return f"{self.user}@{self.server.url}"

    def run(self, *args: str, input: bytes = b"", remote: bool = True,
            env: dict[str, str] | None = None) -> Result:  # fmt: skip
        full = [*CLI]
        if self.vault is not None:
            full += ["--vault", str(self.vault)]
        if remote:
            full += ["--remote", self.remote]
        return run_cli([*full, *args], input, {**self.env, **(env or {})})

    def ok(self, *args: str, **kw: object) -> Result:
        return ok(self.run(*args, **kw), args)  # type: ignore[arg-type]

    def register(self) -> Result:
        return self.ok("remote", "register", self.server.url, self.user,
                       "--password-file", str(self.password_file), remote=False)  # fmt: skip

    def login(self, *extra: str) -> Result:
        pw = ["--password-file", str(self.password_file)]
        return self.run("remote", "login", self.server.url, self.user, *pw, *extra, remote=False)


def device(tmp: Path, server: KeyServer, user: str, password: str = "correct horse 1") -> Device:
    tmp.mkdir(parents=True, exist_ok=True)
    pw = tmp / "password"
    pw.write_text(password + "\n")
    os.chmod(pw, 0o600)
    return Device(tmp, server, user, pw)
