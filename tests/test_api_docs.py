"""docs/openapi.json and docs/api.md describe exactly the routes the server serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import ROOT


def served(tmp_path: Path) -> set[tuple[str, str]]:
    from ossl_vault.server import state
    from ossl_vault.server.app import KeyServer

    state.init(tmp_path / "srv", None, None, "localhost")
    server = KeyServer(tmp_path / "srv")
    try:
        return {
            (method.lower(), re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))
            for route in server.routes()
            for method in (route.methods or ())
            if method != "HEAD"
        }
    finally:
        server.db.close()


def test_openapi_lists_every_route_and_no_other(tmp_path: Path) -> None:
    doc = json.loads((ROOT / "docs" / "openapi.json").read_text())
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == served(tmp_path)


def test_api_md_lists_every_route(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    table = set(re.findall(r"^\| `(GET|POST) (/v1/[^`]*)` \|", text, re.M))
    assert {(m.lower(), p) for m, p in table} == served(tmp_path)
