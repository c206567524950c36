"""The loader: discovery, isolation, per-pack reports (issue 7)."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from app.compat.prompt_server import PromptServer
from app.custom_nodes import custom_node_folders, extension_urls, format_import_times, web_directories

PACKS = Path(__file__).parent / "packs"


def test_good_pack_registers_its_node_with_display_name_and_source(packs) -> None:
    reports = packs.load("good_pack")
    report = reports["good_pack"]
    assert report.status == "loaded", report.error
    assert report.nodes == ["GoodAdd"]
    assert report.module == "custom_nodes.good_pack"
    assert packs.registry.source_of("GoodAdd") == "custom_nodes.good_pack"
    assert packs.registry.display_name_of("GoodAdd") == "Good: add two ints"
    cls = packs.registry.get("GoodAdd")
    assert cls().add(2, 3) == (5,)
    assert cls.RELATIVE_PYTHON_MODULE == "custom_nodes.good_pack"
    assert packs.registry.object_info()["GoodAdd"]["python_module"] == "custom_nodes.good_pack"
    assert "good_pack" not in sys.modules, "packs must not be importable under bare top-level names"


def test_broken_packs_are_skipped_with_a_clear_error_and_the_rest_loads(packs) -> None:
    reports = packs.load("good_pack", "syntax_error_pack", "raising_pack", "no_mappings_pack", "exit_pack")
    assert reports["exit_pack"].status == "failed" and "SystemExit" in reports["exit_pack"].error
    assert reports["good_pack"].status == "loaded"
    syntax = reports["syntax_error_pack"]
    assert syntax.status == "failed"
    assert "SyntaxError" in syntax.error and "syntax_error_pack" in syntax.error
    assert "Traceback" in syntax.traceback
    raising = reports["raising_pack"]
    assert raising.status == "failed"
    assert "needs a GPU driver" in raising.error
    assert "custom_nodes.raising_pack" not in sys.modules
    assert "NODE_CLASS_MAPPINGS" in reports["no_mappings_pack"].error
    assert packs.registry.names() == ["CoreNode", "GoodAdd"]


def test_colliding_ids_are_refused_naming_both_sources_and_builtins_win(packs) -> None:
    # Packs load in name order: colliding_pack takes GoodAdd first, good_pack's GoodAdd is refused.
    reports = packs.load("good_pack", "colliding_pack")
    colliding = reports["colliding_pack"]
    assert colliding.status == "partial"
    assert colliding.nodes == ["GoodAdd", "CollidingUnique"]
    assert [r["node"] for r in colliding.refused] == ["CoreNode"]
    reason = colliding.refused[0]["reason"]
    assert "'builtin'" in reason and "custom_nodes.colliding_pack" in reason
    assert packs.registry.source_of("CoreNode") == "builtin"
    assert packs.registry.get("CoreNode")().run(3) == (3,)
    good = reports["good_pack"]
    assert good.status == "refused" and good.nodes == []
    assert "custom_nodes.good_pack" in good.refused[0]["reason"]
    assert "custom_nodes.colliding_pack" in good.refused[0]["reason"]
    assert packs.registry.source_of("GoodAdd") == "custom_nodes.colliding_pack"


def test_invalid_node_declarations_are_refused_one_by_one(packs) -> None:
    report = packs.load("bad_input_types_pack")["bad_input_types_pack"]
    assert report.status == "partial"
    assert report.nodes == ["FineNode"]
    refused = {r["node"]: r["reason"] for r in report.refused}
    assert "INPUT_TYPES() raised KeyError" in refused["RaisingInputs"]
    assert "'text'" in refused["MalformedInputs"]
    assert "FUNCTION" in refused["NoFunction"]
    for reason in refused.values():
        assert "bad_input_types_pack" in reason


def test_same_named_helper_modules_stay_separate(packs) -> None:
    reports = packs.load("helper_a", "helper_b")
    assert reports["helper_a"].status == reports["helper_b"].status == "loaded"
    assert packs.registry.get("HelperA")().run() == ("utils of helper_a/deep-a",)
    assert packs.registry.get("HelperB")().run() == ("utils of helper_b/deep-b",)
    assert sys.modules["custom_nodes.helper_a.utils"].VALUE == "a"
    assert sys.modules["custom_nodes.helper_b.utils"].VALUE == "b"
    assert "utils" not in sys.modules or not hasattr(sys.modules["utils"], "describe")


def test_pack_loading_does_not_touch_sys_path(packs) -> None:
    before = list(sys.path)
    packs.load("good_pack", "helper_a", "single_file_node.py")
    assert sys.path == before


def test_single_file_pack_and_disabled_pack(packs) -> None:
    reports = packs.load("single_file_node.py", "disabled_pack.disabled")
    assert reports["single_file_node"].status == "loaded"
    assert reports["single_file_node"].module == "custom_nodes.single_file_node"
    assert packs.registry.get("SingleFileNode")().run(1.5) == (3.0,)
    assert reports["disabled_pack"].status == "disabled"


def test_whitelist_with_disable_all(packs) -> None:
    reports = packs.load("good_pack", "single_file_node.py", disable_all=True, whitelist=["good_pack"])
    assert reports["good_pack"].status == "loaded"
    assert reports["single_file_node"].status == "disabled"
    assert "SingleFileNode" not in packs.registry


def test_pip_install_at_import_is_blocked_and_reported(packs) -> None:
    report = packs.load("pip_pack")["pip_pack"]
    assert report.status == "loaded"
    assert len(report.pip_attempts) == 2
    assert "loom-fixture-nonexistent==1.0" in report.pip_attempts[0]
    assert "pip install -r requirements.txt" in report.pip_attempts[1]
    assert any("blocked" in w and "requirements.txt" in w for w in report.warnings)
    module = sys.modules["custom_nodes.pip_pack"]
    assert module.PIP_RESULT == "failed with 1"
    assert module.OS_SYSTEM_RESULT == 1
    assert module.ECHO.strip() == "not an install", "other subprocesses must still run"
    import subprocess

    assert subprocess.Popen.__name__ == "Popen", "the guard must be removed after loading"


def test_web_directory_is_reported_and_listed(packs) -> None:
    reports = packs.load("good_pack", "single_file_node.py")
    dirs = web_directories(reports.values())
    assert dirs == {"good_pack": packs.root / "good_pack" / "js"}
    assert extension_urls(reports.values()) == ["/extensions/good_pack/good.js", "/extensions/good_pack/sub/helper.js"]


def test_reports_are_json_and_import_times_are_logged(packs, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="loom.custom_nodes"):
        reports = packs.load("good_pack", "raising_pack")
    payload = json.loads(json.dumps([r.to_json() for r in reports.values()]))
    assert {p["name"] for p in payload} == {"good_pack", "raising_pack"}
    assert "Import times for custom nodes:" in caplog.text
    assert "(IMPORT FAILED)" in caplog.text and "raising_pack" in caplog.text
    table = format_import_times(reports.values())
    assert table.splitlines()[0] == "Import times for custom nodes:"
    assert len(table.splitlines()) == 3


def test_reloading_in_a_new_registry_gives_fresh_classes(packs) -> None:
    first = packs.load("good_pack")["good_pack"]
    old_cls = packs.registry.get("GoodAdd")
    from executor.registry import NodeRegistry

    fresh = NodeRegistry()
    from app.custom_nodes import load_custom_nodes

    again = load_custom_nodes(fresh, [packs.root], PromptServer(None, None, None), environment=packs.environment)
    assert first.status == "loaded" and again[0].status == "loaded"
    assert fresh.get("GoodAdd") is not old_cls


def test_folders_from_extra_model_paths_yaml(tmp_path) -> None:
    extra = tmp_path / "elsewhere" / "my_nodes"
    extra.mkdir(parents=True)
    yaml_file = tmp_path / "extra_model_paths.yaml"
    yaml_file.write_text("comfy:\n  base_path: elsewhere\n  custom_nodes: |\n    my_nodes\n    other\n")
    folders = custom_node_folders(tmp_path, [yaml_file], [tmp_path / "cli_dir"])
    assert folders == [tmp_path / "custom_nodes", tmp_path / "elsewhere" / "my_nodes",
                       tmp_path / "elsewhere" / "other", tmp_path / "cli_dir"]


def test_same_pack_name_in_two_folders_gets_unique_module_names(packs, tmp_path) -> None:
    other_root = tmp_path / "more_nodes"
    other_root.mkdir()
    packs.add("good_pack")
    import shutil

    shutil.copytree(PACKS / "helper_a", other_root / "good_pack")
    from app.custom_nodes import load_custom_nodes

    reports = load_custom_nodes(packs.registry, [packs.root, other_root], PromptServer(None, None, None),
                                environment=packs.environment)
    modules = [r.module for r in reports]
    assert modules == ["custom_nodes.good_pack", "custom_nodes.good_pack_2"]
    assert all(r.status == "loaded" for r in reports)
    assert "HelperA" in packs.registry and "GoodAdd" in packs.registry


@pytest.mark.parametrize("pack", ["routes_pack"])
def test_pack_routes_are_collected_on_the_prompt_server(packs, pack) -> None:
    report = packs.load(pack)[pack]
    assert report.status == "loaded", report.error
    assert report.routes_added == 3


def test_custom_nodes_roots_from_model_paths_yaml_are_searched(packs, tmp_path) -> None:
    from engine.paths import ModelPaths

    elsewhere = tmp_path / "shared_nodes"
    elsewhere.mkdir()
    import shutil

    shutil.copy(PACKS / "single_file_node.py", elsewhere / "single_file_node.py")
    yaml_file = tmp_path / "extra_model_paths.yaml"
    yaml_file.write_text(f"mine:\n  custom_nodes: {elsewhere}\n")
    paths = ModelPaths(tmp_path)
    paths.load_extra_model_paths(yaml_file)
    packs.environment.handles.paths = paths
    reports = packs.load("good_pack")
    assert reports["good_pack"].status == "loaded"
    assert reports["single_file_node"].status == "loaded"
    assert reports["single_file_node"].path == str(elsewhere / "single_file_node.py")


def test_failed_imports_carry_a_hint(packs) -> None:
    reports = packs.load("missing_dep_pack", "comfy_missing_pack", "syntax_error_pack", "nodes_missing_pack")
    assert "no built-in node or helper of that name" in reports["nodes_missing_pack"].error
    missing = reports["missing_dep_pack"].error
    assert "loom_fixture_missing_dependency" in missing and "pip install -r" in missing
    assert "requirements.txt" in missing
    comfy = reports["comfy_missing_pack"].error
    assert "comfy.ldm" in comfy and "compatibility layer does not provide" in comfy
    assert "line 2" in reports["syntax_error_pack"].error


def test_sys_path_edits_by_a_pack_are_reported(packs) -> None:
    before = list(sys.path)
    try:
        report = packs.load("sys_path_pack")["sys_path_pack"]
        assert report.status == "loaded"
        assert packs.registry.get("SysPathAnswer")().run() == (42,)
        assert any("sys.path" in w and "relative imports" in w for w in report.warnings)
    finally:
        sys.path[:] = before
        sys.modules.pop("sys_path_pack_helpers", None)


def test_prestartup_script_runs_before_the_import(packs) -> None:
    report = packs.load("prestartup_pack")["prestartup_pack"]
    assert report.prestartup == "ok"
    assert sys.modules["custom_nodes.prestartup_pack"].RAN_BEFORE_IMPORT is True


def test_display_names_may_retitle_other_nodes_and_it_is_reported(packs) -> None:
    report = packs.load("good_pack")["good_pack"]
    assert packs.registry.display_name_of("CoreNode") == "Core Node (retitled by good_pack)"
    assert packs.registry.source_of("CoreNode") == "builtin"
    assert any("renamed node 'CoreNode'" in w for w in report.warnings)


def test_nodes_added_through_nodes_node_class_mappings_are_checked_and_reported(packs) -> None:
    report = packs.load("legacy_mappings_pack")["legacy_mappings_pack"]
    assert report.status == "partial", report.error
    assert report.nodes == ["LegacyNode"]
    assert report.refused[0]["node"] == "CoreNode" and "'builtin'" in report.refused[0]["reason"]
    assert packs.registry.source_of("LegacyNode") == "custom_nodes.legacy_mappings_pack"
    assert packs.registry.display_name_of("LegacyNode") == "Legacy"
    assert packs.registry.source_of("CoreNode") == "builtin"
    assert report.web_directory == str((Path(report.path) / "js").resolve())  # its EXTENSION_WEB_DIRS entry


def test_packs_installed_with_pip_are_found_through_entry_points(packs, tmp_path, monkeypatch) -> None:
    import shutil

    site = tmp_path / "site"
    shutil.copytree(PACKS / "good_pack", site / "installed_good_pack")
    dist = site / "installed_good_pack-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: installed-good-pack\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[comfyui_legacy.custom_nodes]\nInstalledGood = installed_good_pack\n")
    monkeypatch.syspath_prepend(str(site))
    reports = packs.load("single_file_node.py")
    installed = reports["InstalledGood"]
    assert installed.status == "loaded", installed.error
    assert installed.module == "custom_nodes.InstalledGood"
    assert installed.path == str(site / "installed_good_pack")
    assert packs.registry.source_of("GoodAdd") == "custom_nodes.InstalledGood"
    assert "installed_good_pack" not in sys.modules, "located, not imported under its own top-level name"
    off = __import__("app.custom_nodes", fromlist=["load_custom_nodes"]).load_custom_nodes(
        type(packs.registry)(), [packs.root], PromptServer(None, None, None), environment=packs.environment,
        installed_packs=False)
    assert [r.name for r in off] == ["single_file_node"]
