"""The host package's layering (docs/architecture.md) cannot rot: every import, also the lazy
ones inside functions, goes down the layers, and no two modules import each other, however
indirectly."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "host" / "cplscope"

#: What each part of the package may import besides itself (docs/architecture.md, "Layers").
#: ``ext`` are the Cython kernels (cplscope._framing, _phasebin, _estimate).
ALLOWED: dict[str, set[str]] = {
    "util": set(),
    "ext": set(),
    "protocol": {"util", "ext"},
    "demod": {"util", "ext"},
    "settings": {"util"},
    "sim": {"util", "protocol"},
    "science": {"util", "ext", "protocol", "demod", "settings"},
    "board": {"util", "ext", "protocol", "demod", "settings", "science", "sim"},
    "data": {"util", "ext", "protocol", "demod", "settings", "science"},
    "plans": {"util", "ext", "protocol", "demod", "settings", "science", "board", "data"},
    "plot": {"util", "protocol", "demod", "settings", "science", "data"},
    "live": {"util", "protocol", "demod", "settings", "science", "data"},
}
#: The package's face and the command line may import every layer.
TOP = {"face", "cli", "bluesky"}
FACE_MODULES = {"__init__", "__main__", "instrument", "connection"}
EXT_MODULES = {"_framing", "_phasebin", "_estimate"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _part(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "face"
    if parts[1] in EXT_MODULES:
        return "ext"
    if len(parts) == 2 and parts[1] in FACE_MODULES:
        return "face"
    return parts[1]


def _imports(path: Path, module: str | None = None) -> set[tuple[str, int]]:
    """Every cplscope module ``path`` (the module ``module``, by default the one at
    ``path``) imports, by absolute name, with the line."""
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(a.name, node.lineno) for a in node.names if a.name.startswith("cplscope")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("cplscope"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                # `from . import x` may name a module or an attribute
                is_module = (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() or (
                    PACKAGE.parent / sub.replace(".", "/") / "__init__.py").exists() or (
                    alias.name in EXT_MODULES)
                found.add((sub if is_module else target, node.lineno))
    return found


def _graph() -> dict[str, set[tuple[str, int]]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))
            if "firmware" not in p.relative_to(PACKAGE).parts}


def test_every_import_goes_down_the_layers() -> None:
    wrong = []
    for module, imports in _graph().items():
        part = _part(module)
        if part in TOP:
            continue
        allowed = ALLOWED[part] | {part}
        for target, line in imports:
            if target == "cplscope":
                continue          # the package itself: only its __version__ is imported
            if _part(target) not in allowed:
                wrong.append(f"{module}:{line} imports {target} ({part} → {_part(target)})")
    assert not wrong, "imports against the layering (docs/architecture.md):\n" + "\n".join(wrong)


def test_the_root_package_gives_lower_layers_only_its_version() -> None:
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if _part(module) in TOP:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (
                    (node.level and (node.module is None) and module.count(".") + 1 == node.level
                     + (path.name == "__init__.py")) or node.module == "cplscope"):
                names = {a.name for a in node.names}
                if names - {"__version__"} and not names <= {"_framing", "_phasebin",
                                                            "_estimate"}:
                    wrong.append(f"{module}:{node.lineno} imports {sorted(names)} from cplscope")
    assert not wrong, "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    graph = {m: {t for t, _ in imps if t != "cplscope"} for m, imps in _graph().items()}
    # a package's __init__ that re-exports its modules is not a cycle with them
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..plans.scan import scan\n")
    found = {t for t, _ in _imports(probe, "cplscope.science.probe")}
    assert found == {"cplscope.plans.scan"}
    assert _part("cplscope.plans.scan") not in ALLOWED["science"]


def test_the_top_level_holds_only_the_face() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules <= FACE_MODULES, sorted(modules - FACE_MODULES)


@pytest.mark.parametrize("old, new", [("scan", "plans.scan"), ("archive", "data.archive"),
                                      ("calibration", "settings.calibration")])
def test_an_old_module_path_still_imports_with_a_warning(old: str, new: str) -> None:
    import importlib
    import sys

    sys.modules.pop(f"cplscope.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"cplscope.{old} has moved to cplscope.{new}"):
        module = importlib.import_module(f"cplscope.{old}")
    assert module is importlib.import_module(f"cplscope.{new}")
    assert module.__spec__.name == f"cplscope.{new}"
