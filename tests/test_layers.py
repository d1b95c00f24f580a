"""The code's plan: imports flow one way, with no circle, in serd/ and in tools/ (function-level imports count)."""

import ast
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
TOOLS_LAYERS = ("model", "study", "train")  # bottom to top: each may import its own folder and the folders below it
TOOLS_ALONE = ("bench",)  # the benchmark and its workers: serd and tools.model (a network to time) only


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_DIR).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(*packages: str) -> dict[str, Path]:
    return {module_name(path): path for package in packages for path in sorted((PROJECT_DIR / package).rglob("*.py"))}


def imported(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ["%s.%s" % (node.module, alias.name) for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def graph(*packages: str) -> dict[str, set[str]]:
    modules = project_modules(*packages)
    known = set(modules)
    edges = {name: imported(path, known) - {name} for name, path in modules.items()}
    for name in edges:  # `from tools.model import data` names the package too: keep the module, drop the package
        edges[name] = {target for target in edges[name]
                       if not any(other.startswith(target + ".") for other in edges[name])}
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One import circle through each module that is on one (depth-first search)."""
    found, state = [], {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges.get(name, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    return found


def folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if parts[0] == "tools" and len(parts) > 2 else ""


@pytest.mark.parametrize("packages", [("serd",), ("tools",)])
def test_no_import_circle(packages):
    assert circles(graph(*packages)) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_tools_folders_import_downwards_only():
    wrong = []
    for name, targets in graph("tools").items():
        source = folder(name)
        for target in targets:
            into = folder(target)
            if source in TOOLS_LAYERS and into and (into not in TOOLS_LAYERS or TOOLS_LAYERS.index(into) > TOOLS_LAYERS.index(source)):
                wrong.append((name, target))
            if source in TOOLS_ALONE and into not in (source, "model"):
                wrong.append((name, target))
            if not source and into:  # the demo and the mutation tool stand alone
                wrong.append((name, target))
    assert wrong == []


def test_serd_never_imports_tools():
    edges = graph("serd", "tools")
    assert [(name, target) for name, targets in edges.items() if name.startswith("serd")
            for target in targets if target.startswith("tools")] == []
