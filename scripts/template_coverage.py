"""Report how many UI-format workflows use only node types Loom serves, and which missing types block the most.

Usage::

    .venv/bin/python scripts/template_coverage.py [FOLDER] [--served object_info.json] [--open-source]
        [--models SDXL,SD1.5] [--top 30] [--json report.json]

FOLDER is searched recursively for `*.json` editor (UI-format) workflows, for example the `templates/` folder
of PyPI's `comfyui-workflow-templates-json` (`pip download --no-deps comfyui-workflow-templates-json`, unzip).
Without FOLDER, that package's folder is used when it is installed (it is one of the test extras).
Files that are not workflows (index files, schemas) are skipped. Where FOLDER has the package's `index.json`,
`--open-source` keeps the templates it marks open source (no paid API nodes) and `--models` those that name one
of the given model families.

Node types are collected from every node, including those inside subgraphs (`definitions.subgraphs`, expanded
where a node's type is a subgraph id) and legacy group nodes (`workflow>NAME`, from `extra.groupNodes`).
Muted and bypassed nodes count too: the editor needs their types to load the workflow. The editor's own
virtual nodes (notes, reroutes, primitive widgets) need no server node and are ignored.

The served types are Loom's built-in nodes, or the keys of `--served`, an `/object_info` JSON saved from a
running server (to include custom node packs).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# nodes the editor implements itself; a workflow using them needs nothing from the server
FRONTEND_ONLY = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})


@dataclass
class Coverage:
    """Per-workflow missing types and the totals over a folder."""

    missing_by_workflow: dict[str, set[str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.missing_by_workflow)

    @property
    def covered(self) -> list[str]:
        return sorted(name for name, missing in self.missing_by_workflow.items() if not missing)

    def blockers(self) -> Counter[str]:
        """Missing type -> number of workflows it appears in (each would still fail without it)."""
        return Counter(t for missing in self.missing_by_workflow.values() for t in missing)

    def sole_blockers(self) -> Counter[str]:
        """Missing type -> number of workflows where it is the only missing type (adding it makes them run)."""
        return Counter(next(iter(m)) for m in self.missing_by_workflow.values() if len(m) == 1)


def _nodes_types(nodes: Iterable[Any], subgraphs: Mapping[str, Any], group_nodes: Mapping[str, Any],
                 seen: frozenset[str]) -> set[str]:
    types: set[str] = set()
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            continue
        kind: str = node["type"]
        if kind in subgraphs:
            if kind not in seen:  # a subgraph that (indirectly) contains itself is counted once
                inner = subgraphs[kind]
                types |= _nodes_types(inner.get("nodes", []), subgraphs, group_nodes, seen | {kind})
        elif kind.startswith("workflow>") and kind.removeprefix("workflow>") in group_nodes:
            group = group_nodes[kind.removeprefix("workflow>")]
            types |= _nodes_types(group.get("nodes", []), subgraphs, group_nodes, seen)
        elif kind not in FRONTEND_ONLY:
            types.add(kind)
    return types


def workflow_node_types(workflow: Mapping[str, Any]) -> set[str]:
    """Every server node type a UI-format workflow uses (subgraphs and group nodes expanded)."""
    definitions = workflow.get("definitions") or {}
    subgraphs = {sg["id"]: sg for sg in definitions.get("subgraphs", []) if isinstance(sg, dict) and "id" in sg}
    extra = workflow.get("extra") or {}
    group_nodes = extra.get("groupNodes") or {} if isinstance(extra, dict) else {}
    return _nodes_types(workflow.get("nodes", []), subgraphs, group_nodes, frozenset())


def is_ui_workflow(data: Any) -> bool:
    """An editor workflow: a dict with a `nodes` list (API prompts and index files are not)."""
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


def load_index(folder: Path) -> dict[str, dict[str, Any]]:
    """Template name -> its entry in the package's `index.json` ({} when the folder has none)."""
    path = folder / "index.json"
    if not path.is_file():
        return {}
    groups = json.loads(path.read_text(encoding="utf-8"))
    return {t["name"]: t for g in groups if isinstance(g, dict) for t in g.get("templates", []) if "name" in t}


def select(name: str, index: Mapping[str, Mapping[str, Any]], open_source: bool, models: Sequence[str]) -> bool:
    """Whether a workflow passes the `--open-source` / `--models` filters (needs the index entry)."""
    if not open_source and not models:
        return True
    entry = index.get(name)
    if entry is None:
        return False
    if open_source and entry.get("openSource") is False:
        return False
    if models:
        wanted = {m.lower() for m in models}
        return any(str(m).lower() in wanted for m in entry.get("models", []))
    return True


def measure(folder: Path, served: set[str], *, open_source: bool = False,
            models: Sequence[str] = ()) -> Coverage:
    """Scan `folder` recursively and record, per workflow (file stem), the node types `served` lacks."""
    index = load_index(folder)
    result = Coverage()
    for path in sorted(folder.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            result.skipped.append(str(path))
            continue
        if not is_ui_workflow(data):
            result.skipped.append(str(path))
            continue
        if not select(path.stem, index, open_source, models):
            continue
        result.missing_by_workflow[path.stem] = workflow_node_types(data) - served
    return result


def installed_templates() -> Path | None:
    """The `templates/` folder of an installed `comfyui-workflow-templates-json`, or None."""
    spec = importlib.util.find_spec("comfyui_workflow_templates_json")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "templates"
    return folder if folder.is_dir() else None


def loom_node_types() -> set[str]:
    """The node ids Loom's built-in catalogue serves."""
    sys.path.insert(0, str(REPO))
    from nodes import builtin_node_classes

    return set(builtin_node_classes())


def render(cov: Coverage, top: int, label: str) -> str:
    """The text report."""
    pct = 100.0 * len(cov.covered) / cov.total if cov.total else 0.0
    lines = [f"{label}: {len(cov.covered)} of {cov.total} workflows use only served node types ({pct:.1f} %)"]
    blockers, sole = cov.blockers(), cov.sole_blockers()
    lines.append(f"{len(blockers)} missing node types; the {min(top, len(blockers))} that block the most "
                 "(workflows needing it / workflows where it is the only missing type):")
    for name, count in blockers.most_common(top):
        lines.append(f"  {count:4d} {sole.get(name, 0):4d}  {name}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", help="default: the installed template package's folder")
    parser.add_argument("--served", type=Path, help="an /object_info JSON; default: Loom's built-in nodes")
    parser.add_argument("--open-source", action="store_true", help="only templates index.json marks open source")
    parser.add_argument("--models", default="", help="comma-separated model families from index.json (e.g. SDXL)")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the per-workflow result here")
    args = parser.parse_args(argv)
    if args.folder is None:
        args.folder = installed_templates()
        if args.folder is None:
            parser.error("no FOLDER given and comfyui-workflow-templates-json is not installed")
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    served = set(json.loads(args.served.read_text(encoding="utf-8"))) if args.served else loom_node_types()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    cov = measure(args.folder, served, open_source=args.open_source, models=models)
    label = f"{args.folder}" + (" (open source)" if args.open_source else "") + (f" (models {models})" if models
                                                                               else "")
    print(f"served node types: {len(served)}; files skipped (not UI workflows): {len(cov.skipped)}")
    print(render(cov, args.top, label))
    if args.json:
        args.json.write_text(json.dumps({
            "served": len(served), "total": cov.total, "covered": cov.covered,
            "blockers": dict(cov.blockers().most_common()), "sole_blockers": dict(cov.sole_blockers().most_common()),
            "missing_by_workflow": {k: sorted(v) for k, v in sorted(cov.missing_by_workflow.items())},
        }, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
