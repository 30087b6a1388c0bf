"""The package graph runs one way.

- `omstream` (the composition root: CLI, settings, each component's configuration, the embedded runtime
  and the benchmarks) imports the others, and nothing imports `omstream`;
- among the components (`stream`, `control`, `masters`, `clickhouse`, `report`, `grafana`) no import
  leads back to where it started;
- inside `omstream`, the floors run down: `cli` may import everything, `bench` the embedded runtime,
  `embedded` only the root modules (`settings`, `services`), and those none of the three.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ("stream", "control", "masters", "clickhouse", "report", "grafana")
PACKAGES = ("omstream", *COMPONENTS)
# omstream's own floors, top down: what each part of it may import of the others ("" = its root modules)
OMSTREAM_FLOORS = {
    "cli": {"", "embedded", "bench"},
    "bench": {"", "embedded"},
    "embedded": {""},
    "": set(),
}


def imported_modules(path: Path) -> Iterator[str]:
    """The modules a module imports (absolute imports, anywhere in the module)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def imported_packages(path: Path) -> Iterator[str]:
    """Our top-level packages that a module imports."""
    yield from (name.split(".")[0] for name in imported_modules(path) if name.split(".")[0] in PACKAGES)


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


def omstream_part(root: Path, module: str) -> str | None:
    """The part of `omstream` (a subpackage, or "" for its root modules) that a module name lies in."""
    parts = module.split(".")
    if parts[0] != "omstream" or len(parts) < 2:
        return None
    return parts[1] if (root / "omstream" / parts[1]).is_dir() else ""


def floors_broken(root: Path) -> list[str]:
    """`module -> imported module` for each import inside `omstream` that runs up a floor."""
    broken = []
    for path in sorted((root / "omstream").rglob("*.py")):
        if path == root / "omstream" / "__main__.py":  # `python -m omstream`: the command line, above all
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        part = omstream_part(root, module)
        for imported in set(imported_modules(path)):
            target = omstream_part(root, imported)
            if target is not None and target != part and target not in OMSTREAM_FLOORS[part or ""]:
                broken.append(f"{module} -> {imported}")
    return sorted(set(broken))


def test_nothing_imports_omstream() -> None:
    graph = package_graph(ROOT)
    assert {package: graph[package].get("omstream") for package in COMPONENTS} == dict.fromkeys(COMPONENTS)


def test_the_components_import_each_other_one_way_only() -> None:
    assert cycles(package_graph(ROOT)) == []


def test_the_report_reads_clickhouse_and_the_event_model_only() -> None:
    assert set(package_graph(ROOT)["report"]) <= {"clickhouse", "stream"}


def test_omstream_s_parts_import_down_their_floors_only() -> None:
    assert set(OMSTREAM_FLOORS) - {""} == {
        path.name for path in (ROOT / "omstream").iterdir() if path.is_dir()
    } - {"__pycache__"}
    assert floors_broken(ROOT) == []


def test_the_check_sees_a_cycle(tmp_path: Path) -> None:
    for package, imports in {"stream": "control", "control": "masters", "masters": "stream"}.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "a.py").write_text(f"from {imports}.b import x\n")
    assert cycles(package_graph(tmp_path)) == [["control", "masters", "stream", "control"]]


def test_the_check_sees_an_import_up_a_floor(tmp_path: Path) -> None:
    for part in ("cli", "embedded", "bench"):
        (tmp_path / "omstream" / part).mkdir(parents=True)
    (tmp_path / "omstream" / "settings.py").write_text("from omstream.embedded.up import run_up\n")
    (tmp_path / "omstream" / "embedded" / "up.py").write_text("from omstream.cli import main\n")
    (tmp_path / "omstream" / "bench" / "a.py").write_text("from omstream.embedded import up\n")
    assert floors_broken(tmp_path) == [
        "omstream.embedded.up -> omstream.cli",
        "omstream.embedded.up -> omstream.cli.main",
        "omstream.settings -> omstream.embedded.up",
        "omstream.settings -> omstream.embedded.up.run_up",
    ]
