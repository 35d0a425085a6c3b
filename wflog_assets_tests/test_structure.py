"""The package's shape: imports flow one way, Dagster stays in its layer, functions stay short."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "wflog_assets"
# Top-level rooms, highest first: a module may import only from its own room or lower ones.
FLOORS = {
    "cli": 8,
    "definitions": 7,
    "defs": 6,
    "staging": 5,
    "quality": 4,
    "tools": 4,
    "source": 3,
    "environment": 3,
    "iceberg": 2,
    "day": 1,
    "manifest": 1,
    "errors": 1,
    "phases": 1,
    "process": 1,
}
DAGSTER_ROOMS = {"cli", "definitions", "defs"}
MAX_FUNCTION_LINES = 80


def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(PACKAGE).with_suffix("").parts[0], ast.parse(path.read_text()))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py" or path.parent != PACKAGE
    ]


def _imports(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_every_room_of_the_package_has_a_floor():
    rooms = {room for room, _ in _modules()}
    assert rooms <= set(FLOORS), f"give these a floor in FLOORS: {sorted(rooms - set(FLOORS))}"


def test_imports_flow_down_the_floors():
    upward = [
        f"{room} -> {name}"
        for room, tree in _modules()
        for name in _imports(tree)
        if name.startswith("wflog_assets.") and FLOORS.get(name.split(".")[1], 0) > FLOORS.get(room, 0)
    ]
    assert upward == []


def test_only_the_dagster_layer_imports_dagster():
    outside = [
        f"{room} -> {name}"
        for room, tree in _modules()
        if room not in DAGSTER_ROOMS
        for name in _imports(tree)
        if name.split(".")[0] in ("dagster", "dagster_aws")
    ]
    assert outside == []


def test_no_function_is_longer_than_the_limit():
    long = [
        f"{room}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for room, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []
