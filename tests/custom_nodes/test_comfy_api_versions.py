"""`comfy_api` as ComfyUI versions it (latest, v0_0_3, v0_0_2, v0_0_1): facades over one implementation."""
from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest
import torch

from executor.context import NodeContext, use


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float, Any]] = []

    def report_progress(self, ctx: NodeContext, value: float, total: float, preview: Any) -> None:
        self.calls.append((ctx.node_id, value, total, preview))


def _ctx(recorder: Recorder) -> NodeContext:
    return NodeContext(prompt_id="p", node_id="7", display_node_id="7", extra_data={}, reporter=recorder)


def test_versions_are_facades_over_latest(packs: Any) -> None:
    packs.environment.install()
    latest = importlib.import_module("comfy_api.latest")
    v3, v2, v1 = (importlib.import_module(f"comfy_api.v0_0_{n}") for n in (3, 2, 1))
    listed = importlib.import_module("comfy_api.version_list").supported_versions
    assert [api.VERSION for api in listed] == ["latest", "0.0.3", "0.0.2", "0.0.1"]
    assert [v.ComfyAPI.STABLE for v in (v3, v2, v1)] == [False, False, True]
    assert issubclass(v1.ComfyAPI, v2.ComfyAPI) and issubclass(v2.ComfyAPI, latest.ComfyAPI)
    assert v3.io is v2.io is latest.io is latest.IO and v3.UI is v2.ui is latest.ui
    assert v2.ComfyExtension is latest.ComfyExtension and v1.Input is latest.Input
    assert not hasattr(v1, "io")  # as in ComfyUI, the template version re-exports no io


def test_set_progress_reaches_the_running_node_async_and_sync(packs: Any) -> None:
    packs.environment.install()
    v2 = importlib.import_module("comfy_api.v0_0_2")
    recorder = Recorder()
    with use(_ctx(recorder)):
        asyncio.run(v2.ComfyAPI().execution.set_progress(value=0.25, max_value=1.0))
        v2.ComfyAPISync().execution.set_progress(value=3, max_value=4, preview_image=torch.ones(1, 2, 3, 3))
    (node, value, total, preview), second = recorder.calls
    assert (node, value, total, preview) == ("7", 0.25, 1.0, None)
    assert second[:3] == ("7", 3, 4) and second[3].size == (3, 2)  # the IMAGE tensor became a PIL preview
    with pytest.raises(ValueError, match="node_id must be provided"):
        v2.ComfyAPISync().execution.set_progress(value=1, max_value=2)
