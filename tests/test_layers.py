"""The package's layers (docs/architecture.md): imports only go down, and never in a circle.

Read from the source with ``ast``, so a lazy import inside a function counts as
much as one at the top. Imports under ``if TYPE_CHECKING:`` are left out: they
never run, and only name a type for the checker.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ossl_vault"

# Top to bottom. A module may import its own layer and those below it.
LAYERS = [
    "cli",
    "server",
    "agent",
    "remote",
    "ops",
    "storage",
    "format",
    "keys",
    "openssl",
    "errors",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    """A module's rank: 0 is the top; the package root and __main__ rank with errors."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return len(LAYERS) - 1 if len(parts) == 1 else 0
    return LAYERS.index(parts[1])


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str) -> set[str]:
    """The package's modules that ``module`` imports, wherever in the file."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ossl_vault"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            if base == "ossl_vault" or base.startswith("ossl_vault."):
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(module)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_belongs_to_a_layer() -> None:
    for module in MODULES:
        parts = module.split(".")
        assert len(parts) == 1 or parts[1] in LAYERS or parts[1] == "__main__", module


def test_no_import_runs_up_a_layer() -> None:
    upward = [
        f"{m} ({LAYERS[layer(m)]}) imports {t} ({LAYERS[layer(t)]})"
        for m, targets in GRAPH.items()
        for t in sorted(targets)
        if layer(t) < layer(m)
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1 on the path, 2 done
    cycles: list[list[str]] = []

    def walk(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(GRAPH[m]):
            if state.get(t) == 1:
                cycles.append([*path[path.index(t) :], t])
            elif t not in state:
                walk(t, [*path, t])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            walk(m, [m])
    assert cycles == []


def test_the_checker_sees_a_lazy_upward_import(tmp_path: Path) -> None:
    """The rule is not vacuous: an import inside a function is found and resolved."""
    source = "def f():\n    from ossl_vault.cli import main\n    from ..ops import vault\n"
    tree = ast.parse(source)
    names = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert len(names) == 2
    assert layer("ossl_vault.cli.main") < layer("ossl_vault.format.records")
    assert "ossl_vault.ops.vault" in GRAPH["ossl_vault.agent.serve"]
    assert "ossl_vault.cli.common" in GRAPH["ossl_vault.cli.main"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_each_module_imports_alone(module: str) -> None:
    """Every module imports on its own in a fresh interpreter (no order dependence)."""
    p = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
