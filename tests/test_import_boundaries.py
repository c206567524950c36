"""Loom's layer boundaries, read from the source with `ast`: every import (module level, inside functions,
`importlib.import_module("...")` / `__import__("...")` with a literal name) is an arrow from one package to
another, and some arrows must never exist (docs/architecture.md, "Boundaries"):

    executor -> engine / nodes / app / server     (the graph engine knows nodes only by their contract)
    engine   -> executor / nodes / app / server   (the ML library knows nothing of graphs or HTTP)
    nodes    -> app / server                      (built-in nodes are adapters over engine)
    custom_nodes -> app internals                 (packs see the ComfyUI shims and the pack-test loader only)

Import cycles inside app/ are reported as information (a warning), not failed on.
Run `python tests/test_import_boundaries.py` from the repository root to print every arrow found and the cycles.
"""
from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Top-level code that is checked; tests/, bench/, scripts/ and web/ may import anything.
LAYERS = ("executor", "engine", "nodes", "app", "server", "custom_nodes")

# importer layer -> layers it must never import (a package prefix: "app" covers "app.x.y").
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "executor": ("engine", "nodes", "app", "server", "custom_nodes"),
    "engine": ("executor", "nodes", "app", "server", "custom_nodes"),
    "nodes": ("app", "server", "custom_nodes"),
    "custom_nodes": ("app",),
}

# What a pack (and its tests) may import from app/: the public pack loader. Helper "app" is adding a public
# pack-test loader; when it lands, this names that module and KNOWN_VIOLATIONS below is emptied.
PACK_ALLOWED_APP_MODULES = ("app.custom_nodes",)

# Arrows that exist today and are scheduled to go (issue 20); each one listed must still exist, so the list
# shrinks as the code is fixed. (importer file, imported module)
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Arrow:
    """One import: `source` (a repo-relative file) imports `target` (an absolute module name) at `line`."""

    source: str
    module: str  # the importing module's dotted name
    target: str
    line: int
    lazy: bool  # inside a function / class body rather than at module level
    type_only: bool = False  # inside `if TYPE_CHECKING:`: never runs, so it cannot close an import cycle


def module_name(rel: Path) -> str:
    """Dotted module name of a repo-relative .py path (`app/compat/__init__.py` -> `app.compat`)."""
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """Absolute module of `from <level dots><name> import ...` written in `module`."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _literal_import_call(node: ast.Call) -> str | None:
    """The module string of `importlib.import_module("x")`, `import_module("x")` or `__import__("x")`."""
    func = node.func
    fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if fname not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def imports_of(path: Path, root: Path) -> Iterator[Arrow]:
    """Every import in one file, eager and lazy, with relative imports made absolute."""
    rel = path.relative_to(root)
    module = module_name(rel)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    eager = {id(n) for n in tree.body}
    # Module-level `if` / `try` bodies are still eager: walk them too.
    stack = list(tree.body)
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.If, ast.Try)):
            for child in ast.iter_child_nodes(n):
                if isinstance(child, ast.stmt):
                    eager.add(id(child))
                    stack.append(child)
                elif isinstance(child, ast.ExceptHandler):
                    for s in child.body:
                        eager.add(id(s))
                        stack.append(s)
    typing_only = {id(n) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        lazy = id(node) not in eager
        typed = id(node) in typing_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Arrow(str(rel), module, alias.name, node.lineno, lazy, typed)
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, is_package, node.level, node.module) if node.level
                    else node.module or "")
            for alias in node.names:
                # `from app.compat import prompt_server` imports app.compat.prompt_server when that is a module.
                sub = f"{base}.{alias.name}"
                yield Arrow(str(rel), module, sub if _is_repo_module(root, sub) else base, node.lineno, lazy,
                            typed)
        elif isinstance(node, ast.Call):
            target = _literal_import_call(node)
            if target is not None:
                if target.startswith("."):
                    level = len(target) - len(target.lstrip("."))
                    target = _resolve_relative(module, is_package, level, target.lstrip(".") or None)
                yield Arrow(str(rel), module, target, node.lineno, True)


def _is_repo_module(root: Path, dotted: str) -> bool:
    p = root.joinpath(*dotted.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def source_files(root: Path, layers: Iterable[str] = LAYERS) -> Iterator[Path]:
    """The .py files of the checked layers (skipping web assets and caches)."""
    for layer in layers:
        single = root / f"{layer}.py"
        if single.is_file():
            yield single
        folder = root / layer
        if folder.is_dir():
            for p in sorted(folder.rglob("*.py")):
                if not {"node_modules", "__pycache__", "web"} & set(p.relative_to(root).parts):
                    yield p


def all_arrows(root: Path) -> list[Arrow]:
    """Every import arrow of the checked layers under `root`."""
    return [a for p in source_files(root) for a in imports_of(p, root)]


def _within(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def violations(arrows: Iterable[Arrow]) -> list[Arrow]:
    """The arrows that cross a forbidden boundary."""
    bad = []
    for a in arrows:
        layer = a.module.split(".")[0]
        for forbidden in FORBIDDEN.get(layer, ()):
            if not _within(a.target, forbidden):
                continue
            if layer == "custom_nodes" and any(_within(a.target, ok) for ok in PACK_ALLOWED_APP_MODULES):
                continue
            bad.append(a)
    return bad


def cycles(arrows: Iterable[Arrow], package: str, *, eager_only: bool = False) -> list[list[str]]:
    """Import cycles among the modules of `package` (strongly connected components of two or more)."""
    graph: dict[str, set[str]] = {}
    for a in arrows:
        if _within(a.module, package) and _within(a.target, package) and a.module != a.target:
            if a.type_only or (eager_only and a.lazy):
                continue
            graph.setdefault(a.module, set()).add(a.target)
            graph.setdefault(a.target, set())
    # Tarjan's algorithm, iterative (app/ is deep enough to make recursion fragile).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            advanced = False
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def _describe(a: Arrow) -> str:
    return f"{a.source}:{a.line}: {a.module} imports {a.target}{' (lazy)' if a.lazy else ''}"


# --- the checks on this repository ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def repo_arrows() -> list[Arrow]:
    return all_arrows(ROOT)


def test_scanner_sees_every_layer(repo_arrows: list[Arrow]) -> None:
    """The scan is not vacuous: it reads each layer and finds its known imports of the layer below."""
    modules = {a.module.split(".")[0] for a in repo_arrows}
    assert {"executor", "engine", "nodes", "app", "server", "custom_nodes"} <= modules
    assert any(a.module.startswith("nodes") and _within(a.target, "engine") for a in repo_arrows)
    assert any(a.module.startswith("app") and _within(a.target, "executor") for a in repo_arrows)
    # server.py's lazy `from app.custom_nodes import load_custom_nodes` (inside a function) is read as an arrow.
    assert any(a.source == "server.py" and a.target == "app.custom_nodes" and a.lazy for a in repo_arrows)


def test_no_forbidden_import(repo_arrows: list[Arrow]) -> None:
    """No arrow crosses a boundary that must never be crossed (beyond the listed ones being removed)."""
    found = violations(repo_arrows)
    new = [a for a in found if (a.source, a.target) not in KNOWN_VIOLATIONS]
    assert not new, "imports that cross a layer boundary:\n" + "\n".join(map(_describe, new))


def test_known_violations_still_exist(repo_arrows: list[Arrow]) -> None:
    """A fixed violation must leave KNOWN_VIOLATIONS, so the list stays true and only shrinks."""
    present = {(a.source, a.target) for a in violations(repo_arrows)}
    gone = sorted(KNOWN_VIOLATIONS - present)
    assert not gone, f"no longer imported, remove from KNOWN_VIOLATIONS: {gone}"


@pytest.mark.parametrize("package", ["app", "engine", "nodes", "executor"])
def test_no_import_cycle(repo_arrows: list[Arrow], package: str) -> None:
    """No import cycle inside a package, counting eager and lazy imports (`if TYPE_CHECKING:` ones never run).

    Each cycle is shown as the set of modules that import each other (a strongly connected component)."""
    found = cycles(repo_arrows, package)
    assert not found, (f"import cycles in {package}/:\n"
                       + "\n".join("{" + ", ".join(c) + "}" for c in found))


# --- the checker itself can fail ----------------------------------------------------------------------------

def _tree(tmp: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return tmp


@pytest.mark.parametrize(("rel", "text", "target"), [
    ("executor/bad.py", "import engine.loading\n", "engine.loading"),
    ("executor/bad.py", "def f():\n    from nodes import sampling\n", "nodes.sampling"),
    ("engine/bad.py", "import importlib\nm = importlib.import_module('app.loom')\n", "app.loom"),
    ("engine/pkg/bad.py", "def f():\n    return __import__('executor')\n", "executor"),
    ("nodes/bad.py", "try:\n    from app import errors\nexcept Exception:\n    pass\n", "app.errors"),
    ("nodes/bad.py", "import server\n", "server"),
    ("custom_nodes/pack/__init__.py", "from app.compat.prompt_server import PromptServer\n",
     "app.compat.prompt_server"),
    ("engine/bad.py", "from ..executor import graph\n", "executor.graph"),
])
def test_checker_flags_forbidden_arrow(tmp_path: Path, rel: str, text: str, target: str) -> None:
    root = _tree(tmp_path, {"executor/__init__.py": "", "executor/graph.py": "", "engine/__init__.py": "",
                            "engine/pkg/__init__.py": "", "nodes/__init__.py": "", "nodes/sampling.py": "",
                            "app/__init__.py": "", "app/loom.py": "", "app/errors.py": "",
                            "app/compat/__init__.py": "", "app/compat/prompt_server.py": "",
                            "custom_nodes/pack/__init__.py": "", rel: text})
    bad = violations(all_arrows(root))
    assert [(a.source, a.target) for a in bad] == [(rel, target)]


def test_checker_allows_the_layering(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "executor/__init__.py": "import json\n",
        "engine/__init__.py": "import torch\nfrom . import paths\n", "engine/paths.py": "",
        "nodes/__init__.py": "import engine.paths\nfrom executor import x\n",
        "app/__init__.py": "import nodes, engine, executor\n",
        "server.py": "import app\n",
        "custom_nodes/pack/__init__.py": "import server, folder_paths, nodes\nfrom app.custom_nodes import load\n",
    })
    assert violations(all_arrows(root)) == []


def test_checker_finds_cycles(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "app/__init__.py": "",
        "app/a.py": "from app import b\n",
        "app/b.py": "def f():\n    import app.c\n",
        "app/c.py": "from .a import x\n",
        "app/d.py": "import app.a\n",
        "app/e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import app.f\n",
        "app/f.py": "import app.e\n",
    })
    arrows = all_arrows(root)
    assert cycles(arrows, "app") == [["app.a", "app.b", "app.c"]]
    assert cycles(arrows, "app", eager_only=True) == []


if __name__ == "__main__":
    arrows = all_arrows(ROOT)
    for a in violations(arrows):
        known = " [known]" if (a.source, a.target) in KNOWN_VIOLATIONS else ""
        print("VIOLATION", _describe(a) + known)
    for eager_only in (False, True):
        for c in cycles(arrows, "app", eager_only=eager_only):  # `python tests/test_import_boundaries.py`
            print("CYCLE" + (" (eager)" if eager_only else ""), "{" + ", ".join(c) + "}")
    sys.exit(0)
