"""The ComfyUI module shims packs import (issue 13), exercised through fixture packs."""
from __future__ import annotations

import sys
from typing import Any

import pytest

from executor.context import NodeContext, use
from executor.errors import ExecutionInterrupted
from executor.events import InterruptFlag


class Recorder:
    """A ProgressReporter that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float, Any]] = []

    def report_progress(self, ctx: NodeContext, value: float, total: float, preview: Any) -> None:
        self.calls.append((ctx.node_id, value, total, preview))


def _ctx(reporter: Recorder | None = None, interrupt: InterruptFlag | None = None, node_id: str = "5") -> NodeContext:
    return NodeContext(prompt_id="p1", node_id=node_id, display_node_id=node_id, extra_data={"client_id": "c1"},
                       reporter=reporter, interrupt=interrupt)


def test_progress_bar_reports_to_the_running_node(packs) -> None:
    assert packs.load("progress_pack")["progress_pack"].status == "loaded"
    node = packs.registry.get("SlowCounter")()
    recorder = Recorder()
    with use(_ctx(recorder)):
        assert node.run(3) == (3,)
    assert recorder.calls == [("5", 1, 3, None), ("5", 2, 3, None), ("5", 3, 3, None)]
    assert node.run(2) == (2,), "outside execution a ProgressBar is a no-op"


def test_interrupt_reaches_pack_code(packs) -> None:
    packs.load("progress_pack")
    flag = InterruptFlag()
    flag.set()
    node = packs.registry.get("SlowCounter")()
    with use(_ctx(Recorder(), flag)), pytest.raises(ExecutionInterrupted):
        node.run(3)
    assert not flag.is_set(), "raising clears the request"
    import comfy.model_management as mm

    assert mm.InterruptProcessingException is ExecutionInterrupted


def test_interrupt_current_processing_sets_loom_flag(packs) -> None:
    flag = InterruptFlag()
    packs.environment.handles.interrupt = flag
    packs.load("progress_pack")
    import comfy.model_management as mm

    mm.interrupt_current_processing()
    assert flag.is_set() and mm.processing_interrupted()
    with pytest.raises(mm.InterruptProcessingException):
        mm.throw_exception_if_processing_interrupted()
    assert not flag.is_set()


def test_subclassing_a_core_node_and_lazy_nodes_import(packs) -> None:
    reports = packs.load("subclass_pack")
    assert reports["subclass_pack"].status == "loaded", reports["subclass_pack"].refused
    assert packs.registry.get("DoubledCore")().run(4) == (8,)
    assert packs.registry.get("LazyNodesUser")().run(4) == (5,)
    nodes_module = sys.modules["nodes"]
    assert nodes_module.MAX_RESOLUTION == 16384
    assert "DoubledCore" in nodes_module.NODE_CLASS_MAPPINGS
    assert nodes_module.NODE_DISPLAY_NAME_MAPPINGS["CoreNode"] == "Core Node"
    import nodes.services  # Loom's own package keeps working behind the proxy

    assert nodes.services.MAX_RESOLUTION == 16384


def test_nodes_proxy_is_removed_on_uninstall(packs) -> None:
    packs.load("subclass_pack")
    assert hasattr(sys.modules["nodes"], "NODE_CLASS_MAPPINGS")
    packs.environment.uninstall()
    assert not hasattr(sys.modules["nodes"], "NODE_CLASS_MAPPINGS")
    assert "folder_paths" not in sys.modules
    with pytest.raises(ImportError):
        import folder_paths  # noqa: F401


def test_folder_paths_additions_reach_loom_model_paths(packs) -> None:
    models = packs.base / "models"
    (models / "fixture_models" / "sub").mkdir(parents=True)
    (models / "fixture_models" / "a.safetensors").write_bytes(b"x")
    (models / "fixture_models" / "sub" / "b.ckpt").write_bytes(b"x")
    (models / "fixture_models" / "notes.txt").write_text("not a model")
    (models / "onnx").mkdir()
    (models / "onnx" / "det.onnx").write_bytes(b"x")
    report = packs.load("folder_paths_pack")["folder_paths_pack"]
    assert report.status == "loaded", report.error or report.refused
    import os

    import folder_paths

    assert folder_paths.get_filename_list("fixture_models") == ["a.safetensors", os.path.join("sub", "b.ckpt")]
    assert folder_paths.get_filename_list("onnx_models") == ["det.onnx"]
    paths = packs.environment.handles.paths
    assert paths.get_folder_paths("fixture_models") == [str(models / "fixture_models")]
    info = packs.registry.object_info()["PickFixtureModel"]
    assert info["input"]["required"]["name"][0] == ["a.safetensors", os.path.join("sub", "b.ckpt")]
    node = packs.registry.get("PickFixtureModel")()
    assert node.run("a.safetensors") == (str(models / "fixture_models" / "a.safetensors"),)
    assert folder_paths.get_full_path("fixture_models", "../onnx/det.onnx") is None
    assert folder_paths.base_path == str(packs.base)
    assert folder_paths.get_output_directory() == str(packs.base / "output")
    full, name, counter, sub, _ = folder_paths.get_save_image_path("ComfyUI", folder_paths.get_output_directory())
    assert (name, counter, sub) == ("ComfyUI", 1, "")
    with pytest.raises(KeyError):
        folder_paths.get_filename_list("no_such_folder")


def test_web_extensions_write_at_import_is_contained_and_reported(packs) -> None:
    reports = packs.load("web_writer_pack", "good_pack")
    report = reports["web_writer_pack"]
    assert report.status == "loaded", report.error
    assert report.legacy_web_files == ["web_writer_pack/legacy.js"]
    legacy_dir = packs.base / "web" / "extensions" / "web_writer_pack"
    assert (legacy_dir / "legacy.js").is_file()
    assert reports["good_pack"].legacy_web_files == []
    assert report.web_directory == str(legacy_dir.resolve()), "served as the pack's web directory"
    from app.custom_nodes import extension_urls

    assert "/extensions/web_writer_pack/legacy.js" in extension_urls(reports.values())


def test_web_extensions_write_failure_does_not_stop_other_packs(packs) -> None:
    (packs.base / "web").write_text("a file where the pack expects a directory")
    reports = packs.load("web_writer_pack", "good_pack")
    assert reports["web_writer_pack"].status == "failed"
    assert reports["good_pack"].status == "loaded"


def test_common_comfy_imports_and_core_helpers(packs) -> None:
    import torch

    report = packs.load("comfy_imports_pack")["comfy_imports_pack"]
    assert report.status == "loaded", report.error
    text, size = packs.registry.get("SamplerChoice")().run("euler", "normal", 32)
    assert text == "euler/normal/cpu" and size == 32
    info = packs.registry.object_info()["SamplerChoice"]["input"]["required"]
    assert "euler" in info["sampler_name"][0] and "karras" in info["scheduler"][0]
    image = torch.rand(2, 6, 12, 3)
    (out,) = packs.registry.get("Resize")().run(image, 8, 4)
    assert out.shape == (2, 4, 8, 3) and out.device.type == "cpu"
    from comfy.comfy_types import IO

    # ComfyUI overrides only `!=`: "*" and "FLOAT,INT" match by `!=`, while `==` stays string equality
    assert not (IO.ANY != "IMAGE") and not (IO.NUMBER != "INT") and IO.IMAGE != "MASK"
    assert not (IO.ANY == "INT") and IO.INT == "INT"
    assert IO.NUMBER != "INT,STRING"  # neither a subset nor a superset


def test_graph_builder_expansion_ids_come_from_the_context(packs) -> None:
    packs.load("comfy_imports_pack")
    with use(_ctx(node_id="9")):
        result = packs.registry.get("AddTwice")().run(3)
    graph = result["expand"]
    assert list(graph) == ["9.0.0.1", "9.0.0.2"]
    assert graph["9.0.0.2"]["inputs"]["value"] == ["9.0.0.1", 0]
    assert result["result"] == (["9.0.0.2", 0],)


def test_prompt_server_send_sync_goes_to_the_hub(packs) -> None:
    from app.compat.prompt_server import PromptServer

    class Hub:
        def __init__(self) -> None:
            self.sent: list[tuple[str, Any, Any]] = []
            self.binary: list[tuple[int, bytes, Any]] = []

        def send(self, event: str, data: Any, sid: Any = None) -> None:
            self.sent.append((event, data, sid))

        def send_bytes(self, event_type: int, payload: bytes, sid: Any = None) -> None:
            self.binary.append((event_type, payload, sid))

    hub = Hub()
    packs.prompt_server = PromptServer(None, None, hub)
    report = packs.load("routes_pack")["routes_pack"]
    assert report.routes_added == 3
    packs.registry.get("Shout")().run("hey", unique_id="3")
    assert hub.sent == [("routes_pack.shout", {"text": "hey", "node": "3"}, None)]
    with use(_ctx(node_id="12")):
        import server

        assert server.PromptServer.instance is packs.prompt_server
        assert server.PromptServer.instance.client_id == "c1"
        assert server.PromptServer.instance.last_node_id == "12"
        server.PromptServer.instance.send_progress_text("half way", "12")
    assert hub.binary == [(3, b"\x00\x00\x00\x0212half way", "c1")]


def test_on_prompt_handlers_rewrite_and_survive_failures(packs) -> None:
    from app.compat.prompt_server import PromptServer

    ps = PromptServer(None, None, None)

    def add_marker(body: dict) -> dict:
        return {**body, "marker": True}

    def broken(body: dict) -> dict:
        raise RuntimeError("handler bug")

    ps.add_on_prompt_handler(broken)
    ps.add_on_prompt_handler(add_marker)
    assert ps.trigger_on_prompt({"prompt": {}}) == {"prompt": {}, "marker": True}


def test_latent_preview_callback_reports_progress_with_a_preview(packs) -> None:
    from types import SimpleNamespace

    import torch
    from PIL import Image

    packs.environment.handles.config = SimpleNamespace(preview_method="latent2rgb")
    packs.load("progress_pack")
    import latent_preview

    fmt = SimpleNamespace(latent_rgb_factors=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]],
                          latent_rgb_bias=(0.0, 0.0, 0.0))
    model = SimpleNamespace(latent_format=fmt)
    recorder = Recorder()
    with use(_ctx(recorder)):
        callback = latent_preview.prepare_callback(model, 2)
        x0 = torch.zeros(1, 4, 8, 6)
        callback(0, x0, x0, 2)
        callback(1, x0, x0, 2)
    assert [(v, t) for _, v, t, _ in recorder.calls] == [(1, 2), (2, 2)]
    preview = recorder.calls[-1][3]
    assert isinstance(preview, Image.Image) and preview.size == (6, 8)
    assert preview.getpixel((0, 0)) == (128, 128, 128)
