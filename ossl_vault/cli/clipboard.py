"""The system clipboard for ``get --clip``: copy a value, restore the old content later.

Whichever of ``wl-copy``/``wl-paste`` (Wayland), ``xclip`` or ``xsel`` (X11)
is present and has a display is used. The value always travels on the
tool's stdin, never on argv. Before copying, the clipboard's content is
read; a detached restorer (``python -c`` running :func:`restorer_main`,
started through :func:`ossl_vault.openssl.proc.run_tool`, which gets the old
content and the value on its stdin) sleeps, then puts the old content back,
or clears the clipboard if it was empty, but only if the clipboard still
holds our value: anything copied since is left alone.

The copying tools fork a process that serves the selection and keeps their
stdout and stderr open; they run under ``sh -c 'exec "$@" >/dev/null 2>&1'``
so that :mod:`ossl_vault.openssl.proc` does not wait for that process to end.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ossl_vault.errors import OperationError
from ossl_vault.openssl.proc import OpensslFailed, run_tool

DEFAULT_SECONDS = 45
HINT = "install xclip or wl-clipboard; a display is needed (X11 or Wayland)"
_DETACH = 'exec "$@" >/dev/null 2>&1'
_SETTLE = 2.0  # seconds to wait for the clipboard to show a value just copied


@dataclass(frozen=True)
class Tool:
    """A clipboard program: how to write (stdin), read (stdout) and clear it."""

    name: str
    copy: tuple[str, ...]
    paste: tuple[str, ...]
    clear: tuple[str, ...] | None  # None: copy an empty value instead
    display: str  # the environment variable it needs


TOOLS = (
    Tool("wl-copy", ("wl-copy",), ("wl-paste", "--no-newline"), ("wl-copy", "--clear"),
         "WAYLAND_DISPLAY"),
    Tool("xclip", ("xclip", "-selection", "clipboard", "-in"),
         ("xclip", "-selection", "clipboard", "-out"), None, "DISPLAY"),
    Tool("xsel", ("xsel", "--clipboard", "--input"), ("xsel", "--clipboard", "--output"),
         ("xsel", "--clipboard", "--clear"), "DISPLAY"),
)  # fmt: skip


def find_tool() -> Tool:
    """The first clipboard tool that is installed and has its display.

    OperationError (exit 1) with a hint when none is installed or no
    display is set.
    """
    installed = [t for t in TOOLS if all(shutil.which(p[0]) for p in (t.copy, t.paste))]
    for tool in installed:
        if os.environ.get(tool.display):
            return tool
    if not installed:
        raise OperationError("no clipboard tool found (wl-copy, xclip or xsel)", hint=HINT)
    raise OperationError(
        "no display for the clipboard: $DISPLAY and $WAYLAND_DISPLAY are not set", hint=HINT
    )


def read(tool: Tool) -> bytes | None:
    """The clipboard's content, or None when it is empty or holds no text."""
    try:
        return run_tool(tool.paste, what=tool.paste[0])
    except OpensslFailed as e:
        text = e.stderr.lower()
        if "display" in text or "wayland" in text or "connect" in text:
            raise OperationError(
                f"{tool.name} cannot reach the display: {e.message}", hint=HINT
            ) from None
        return None  # empty, or only non-text content


def write(tool: Tool, data: bytes) -> None:
    """Put ``data`` in the clipboard (on the tool's stdin)."""
    run_tool(["sh", "-c", _DETACH, "sh", *tool.copy], stdin=data, what=tool.name)


def clear(tool: Tool) -> None:
    """Empty the clipboard."""
    if tool.clear is None:
        write(tool, b"")
    else:
        run_tool(["sh", "-c", _DETACH, "sh", *tool.clear], what=tool.name)


def holds(tool: Tool, data: bytes, wait: float = 0.0) -> bool:
    """Whether the clipboard holds ``data`` (polling up to ``wait`` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        if read(tool) == data:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def copy(value: bytes, seconds: int = DEFAULT_SECONDS) -> str:
    """Copy ``value`` to the clipboard; restore the old content after ``seconds`` (0: never).

    Returns the name of the tool used. OperationError when there is no
    clipboard or it did not take the value.
    """
    tool = find_tool()
    previous = read(tool)
    write(tool, value)
    if not holds(tool, value, _SETTLE):
        raise OperationError(f"the clipboard did not take the value ({tool.name})")
    if seconds > 0:
        payload = {
            "tool": tool.name,
            "seconds": seconds,
            "value": base64.b64encode(value).decode(),
            "previous": None if previous is None else base64.b64encode(previous).decode(),
        }
        package_parent = str(Path(__file__).resolve().parent.parent)
        code = (
            f"import sys; sys.path.insert(0, {package_parent!r}); "
            "from ossl_vault.cli.clipboard import restorer_main; restorer_main()"
        )
        run_tool(
            [sys.executable, "-I", "-c", code],
            stdin=json.dumps(payload).encode(),
            what="the clipboard restorer",
        )
    return tool.name


def restore(tool: Tool, value: bytes, previous: bytes | None) -> bool:
    """Put ``previous`` back (or clear) if the clipboard still holds ``value``."""
    if not holds(tool, value):
        return False
    if previous is None:
        clear(tool)
    else:
        write(tool, previous)
    return True


def restorer_main() -> None:
    """The detached restorer: read the payload, detach, sleep, restore.

    Runs as its own process: the first one exits as soon as it has read
    stdin and forked, so the caller does not wait; the second leaves the
    session, points stdin, stdout and stderr at /dev/null, and does the work.
    """
    payload = json.loads(sys.stdin.buffer.read())
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    try:
        tool = next(t for t in TOOLS if t.name == payload["tool"])
        value = base64.b64decode(payload["value"])
        previous = payload["previous"]
        time.sleep(float(payload["seconds"]))
        restore(tool, value, None if previous is None else base64.b64decode(previous))
    finally:
        os._exit(0)
