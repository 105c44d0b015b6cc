"""``get --clip`` under a real X server (Xvfb) with real xclip: the value arrives on
the clipboard, never on a command line, and the old content comes back later."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import VaultDir, need

VALUE = b"clip-me-4f1d9c0b7e2a\nsecond line"


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """A private Xvfb server (it picks a free display number itself)."""
    need(bool(shutil.which("Xvfb") and shutil.which("xclip")), "Xvfb and xclip are needed")
    r, w = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(w), "-nolisten", "tcp", "-screen", "0", "320x240x16"],
        pass_fds=[w], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(w)
    number = b""
    with os.fdopen(r, "rb") as f:
        while not number.endswith(b"\n"):
            chunk = f.read(1)
            if not chunk:
                break
            number += chunk
    try:
        assert number.strip().isdigit(), "Xvfb did not report its display"
        yield f":{number.strip().decode()}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def xenv(env: dict[str, str], display: str) -> dict[str, str]:
    out = {k: v for k, v in env.items() if k != "WAYLAND_DISPLAY"}
    out["DISPLAY"] = display
    return out


def set_clipboard(xenv: dict[str, str], data: bytes) -> None:
    # xclip stays behind to serve the selection: it must not hold our pipes
    subprocess.run(["xclip", "-selection", "clipboard", "-in"], input=data, env=xenv,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)  # fmt: skip


def clipboard(xenv: dict[str, str]) -> bytes | None:
    p = subprocess.run(["xclip", "-selection", "clipboard", "-out"], env=xenv,
                       capture_output=True, timeout=10)  # fmt: skip
    return p.stdout if p.returncode == 0 else None


def wait_for(xenv: dict[str, str], want: bytes | None, seconds: float) -> bytes | None:
    deadline = time.monotonic() + seconds
    got = clipboard(xenv)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.1)
        got = clipboard(xenv)
    return got


def test_clip_copies_and_restores_previous_content(vault: VaultDir, xenv: dict[str, str]) -> None:
    vault.ok("put", "web/pw", input=VALUE)
    set_clipboard(xenv, b"what was there before")
    started = time.monotonic()
    r = vault.ok("get", "web/pw", "--clip", "--clip-seconds", "2", env=xenv)
    assert r.out == b""  # nothing on stdout
    assert "copied 'web/pw' to the clipboard (xclip)" in r.err
    assert time.monotonic() - started < 2  # the restorer runs detached
    assert clipboard(xenv) == VALUE
    assert wait_for(xenv, b"what was there before", 6) == b"what was there before"
    assert time.monotonic() - started >= 2


def test_clip_leaves_newer_content_alone(vault: VaultDir, xenv: dict[str, str]) -> None:
    vault.ok("put", "k", input=VALUE)
    set_clipboard(xenv, b"old")
    vault.ok("get", "k", "--clip", "--clip-seconds", "1", env=xenv)
    assert clipboard(xenv) == VALUE
    set_clipboard(xenv, b"copied by the user since")
    time.sleep(2.5)
    assert clipboard(xenv) == b"copied by the user since"


def test_clip_clears_when_clipboard_was_empty(
    vault: VaultDir, xenv: dict[str, str], tmp_path: Path
) -> None:
    vault.ok("put", "k", input=VALUE)
    set_clipboard(xenv, b"")
    vault.ok("get", "k", "--clip", "--clip-seconds", "1", env=xenv)
    assert clipboard(xenv) == VALUE
    assert wait_for(xenv, b"", 5) in (b"", None)


def test_value_is_never_on_a_command_line(vault: VaultDir, xenv: dict[str, str]) -> None:
    vault.ok("put", "k", input=VALUE)
    set_clipboard(xenv, b"before")
    vault.ok("get", "k", "--clip", "--clip-seconds", "2", env=xenv)
    seen = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        for what in ("cmdline", "environ"):
            try:
                data = (proc / what).read_bytes()
            except OSError:
                continue
            if VALUE.split(b"\n")[0] in data:
                seen.append((proc.name, what))
    assert seen == []
    wait_for(xenv, b"before", 6)


def test_no_display_or_no_tool_is_a_clear_error(
    vault: VaultDir, xenv: dict[str, str], tmp_path: Path
) -> None:
    vault.ok("put", "k", input=VALUE)
    no_display = {k: v for k, v in xenv.items() if k != "DISPLAY"}
    r = vault.run("get", "k", "--clip", env=no_display)
    assert r.rc == 1 and r.out == b""
    assert r.err.startswith("ossl-vault: error: no display for the clipboard")
    assert "hint: install xclip or wl-clipboard; a display is needed" in r.err
    bindir = tmp_path / "bin"  # python and sh only: no clipboard tool at all
    bindir.mkdir()
    for tool in ("sh", "openssl"):
        (bindir / tool).symlink_to(shutil.which(tool) or tool)
    r = vault.run("get", "k", "--clip", env={**xenv, "PATH": str(bindir)})
    assert r.rc == 1 and "no clipboard tool found" in r.err and "hint: install xclip" in r.err
    r = vault.run("get", "k", "--clip", "--out", str(tmp_path / "f"), env=xenv)
    assert r.rc == 2 and "--clip and --out" in r.err
