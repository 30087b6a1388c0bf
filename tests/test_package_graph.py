"""The package graph runs one way: `omstream` (the CLI and composition root) imports the others, and
among `stream`, `control`, `masters`, `clickhouse` and `grafana` no import leads back to where it
started; none of them imports `omstream`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ("stream", "control", "masters", "clickhouse", "grafana")
PACKAGES = ("omstream", *COMPONENTS)


def imported_packages(path: Path) -> Iterator[str]:
    """Our top-level packages that a module imports (absolute imports, anywhere in the module)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        yield from (name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES)


def package_graph(root: Path) -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the modules that import it."""
    graph: dict[str, dict[str, list[str]]] = {package: {} for package in PACKAGES}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for imported in set(imported_packages(path)) - {package}:
                graph[package].setdefault(imported, []).append(str(path.relative_to(root)))
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Every elementary cycle through the components, as the packages it passes."""
    found: list[list[str]] = []

    def walk(path: list[str]) -> None:
        for imported in graph[path[-1]]:
            if imported == path[0]:
                found.append([*path, imported])
            elif imported not in path and imported > path[0]:  # each cycle once, from its least package
                walk([*path, imported])

    for package in COMPONENTS:
        walk([package])
    return found


def test_no_component_imports_omstream() -> None:
    graph = package_graph(ROOT)
    assert {package: graph[package].get("omstream") for package in COMPONENTS} == dict.fromkeys(COMPONENTS)


def test_the_components_import_each_other_one_way_only() -> None:
    assert cycles(package_graph(ROOT)) == []


def test_the_check_sees_a_cycle(tmp_path: Path) -> None:
    for package, imports in {"stream": "control", "control": "masters", "masters": "stream"}.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "a.py").write_text(f"from {imports}.b import x\n")
    assert cycles(package_graph(tmp_path)) == [["control", "masters", "stream", "control"]]
