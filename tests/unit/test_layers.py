"""The layout is the architecture: the shared core below, the three programs on it.

``csp_core`` imports none of the programs; the gateway daemon (``cspd``), the sidecar
(``csp_sidecar``) and ``cspctl`` (``csp_cli``) import the core and never each other;
and no module reaches itself through its imports, not even through an import hidden
inside a function or behind ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "csp_core": ROOT / "cspd" / "csp_core",
    "cspd": ROOT / "cspd" / "cspd",
    "csp_sidecar": ROOT / "sidecar" / "csp_sidecar",
    "csp_cli": ROOT / "cli" / "csp_cli",
}
# what each package may import of csp's own
ALLOWED = {
    "csp_core": {"csp_core"},
    "cspd": {"csp_core", "cspd"},
    "csp_sidecar": {"csp_core", "csp_sidecar"},
    "csp_cli": {"csp_core", "csp_cli"},
}


def module_name(package: str, path: Path) -> str:
    rel = path.relative_to(PACKAGES[package]).with_suffix("")
    parts = [package, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(name: str, path: Path) -> set[str]:
    """Every csp module ``path`` imports, wherever in the file the import stands."""
    package_parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[:len(package_parts) - node.level + 1]
                stem = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                stem = node.module or ""
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    modules = {module_name(pkg, path): path
               for pkg, root in PACKAGES.items() for path in root.rglob("*.py")}
    return {name: {m for m in imports_of(name, path) if m in modules and m != name}
            for name, path in modules.items()}


def test_every_package_says_what_it_holds() -> None:
    for package, root in PACKAGES.items():
        doc = ast.get_docstring(ast.parse((root / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"{package}/__init__.py needs a docstring"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_package_imports_another_program(package: str) -> None:
    wrong = {f"{name} imports {target}"
             for name, targets in graph().items() if name.split(".")[0] == package
             for target in targets if target.split(".")[0] not in ALLOWED[package]}
    assert not wrong, sorted(wrong)


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    # a package's __init__ re-exporting a name from its own module is not a cycle
    real = [c for c in cycles if not any(m.count(".") == 0 for m in c)]
    assert not real, "\n".join(" -> ".join(c) for c in real)


def test_the_graph_sees_imports() -> None:
    """The checks above would pass on an empty graph: this one shows they read code."""
    edges = graph()
    assert "csp_core.errors" in edges["csp_core.protocol"]
    assert "cspd.gateway" in edges["cspd.api"]
    assert "csp_core.paths" in edges["csp_sidecar.journal"]
