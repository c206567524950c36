"""scripts/template_coverage.py: node types from UI workflows (subgraphs, group nodes), coverage and blockers."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("template_coverage", REPO / "scripts" / "template_coverage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


SUB = "5f0c1a2e-0000-4000-8000-000000000001"
INNER = "5f0c1a2e-0000-4000-8000-000000000002"


def _workflow(*types: str, subgraphs: list[dict[str, Any]] | None = None,
              groups: dict[str, Any] | None = None) -> dict[str, Any]:
    wf: dict[str, Any] = {"nodes": [{"id": i, "type": t} for i, t in enumerate(types)], "links": []}
    if subgraphs:
        wf["definitions"] = {"subgraphs": subgraphs}
    if groups:
        wf["extra"] = {"groupNodes": groups}
    return wf


def test_node_types_expand_subgraphs_and_group_nodes() -> None:
    tc = _script()
    wf = _workflow("KSampler", SUB, "Note", "Reroute", "workflow>grp", subgraphs=[
        {"id": SUB, "nodes": [{"type": "VAEDecode"}, {"type": INNER}, {"type": "MarkdownNote"}]},
        {"id": INNER, "nodes": [{"type": "SaveVideo"}, {"type": SUB}]},  # a cycle is expanded once
    ], groups={"grp": {"nodes": [{"type": "CLIPTextEncode"}]}})
    assert tc.workflow_node_types(wf) == {"KSampler", "VAEDecode", "SaveVideo", "CLIPTextEncode"}
    assert tc.is_ui_workflow(wf) and not tc.is_ui_workflow([{"templates": []}])
    assert not tc.is_ui_workflow({"1": {"class_type": "KSampler", "inputs": {}}})  # an API prompt


def test_measure_and_report(tmp_path: Path, capsys: Any) -> None:
    tc = _script()
    (tmp_path / "a.json").write_text(json.dumps(_workflow("KSampler", "VAEDecode")))
    (tmp_path / "b.json").write_text(json.dumps(_workflow("KSampler", "SaveVideo")))
    (tmp_path / "c.json").write_text(json.dumps(_workflow("SaveVideo", "LoadVideo", "PrimitiveNode")))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.json").write_text(json.dumps(_workflow("LoadVideo")))
    (tmp_path / "index.json").write_text(json.dumps([{"templates": [
        {"name": "a", "openSource": True, "models": ["SD1.5"]}, {"name": "b", "openSource": False, "models": []},
        {"name": "c", "models": ["Wan"]}]}]))
    (tmp_path / "broken.json").write_text("{not json")
    served = {"KSampler", "VAEDecode"}
    cov = tc.measure(tmp_path, served)
    assert cov.total == 4 and cov.covered == ["a"] and len(cov.skipped) == 2  # index.json and broken.json
    assert cov.blockers() == {"SaveVideo": 2, "LoadVideo": 2}
    assert cov.sole_blockers() == {"SaveVideo": 1, "LoadVideo": 1}
    assert tc.measure(tmp_path, served, open_source=True).missing_by_workflow.keys() == {"a", "c"}
    assert list(tc.measure(tmp_path, served, models=["sd1.5"]).missing_by_workflow) == ["a"]

    served_file = tmp_path / "object_info.out"
    served_file.write_text(json.dumps({"KSampler": {}, "VAEDecode": {}, "SaveVideo": {}}))
    report = tmp_path / "report.out"
    assert tc.main([str(tmp_path), "--served", str(served_file), "--json", str(report)]) == 0
    text = capsys.readouterr().out
    assert "2 of 4 workflows use only served node types (50.0 %)" in text
    assert "   2    2  LoadVideo" in text  # c and d now miss only LoadVideo
    data = json.loads(report.read_text())
    assert data["covered"] == ["a", "b"] and data["missing_by_workflow"]["c"] == ["LoadVideo"]


def test_loom_catalogue_is_the_default_served_set() -> None:
    from nodes import builtin_node_classes

    assert _script().loom_node_types() == set(builtin_node_classes())


def test_installed_template_package_is_read_whole() -> None:
    import pytest

    pytest.importorskip("comfyui_workflow_templates_json")
    tc = _script()
    folder = tc.installed_templates()
    assert folder is not None
    served = tc.loom_node_types()
    cov = tc.measure(folder, served)
    files = sorted(folder.rglob("*.json"))
    assert cov.total + len(cov.skipped) == len(files) and cov.total > 100
    # only the package's index / search-option files are not workflows
    assert all(Path(p).name.startswith("index") or Path(p).name == "fuse_options.json" for p in cov.skipped)
    for name in cov.covered:  # a covered template really uses served types only
        data = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        assert tc.workflow_node_types(data) <= served
