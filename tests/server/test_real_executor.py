"""The server on the real `executor` package: fixture nodes, and the tiny checkpoint's txt2img end to end."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import pytest
from server_helpers import wait_history, ws_until

from app.config import Config
from app.engine_factory import Engine
from app.loom import Loom
from server import create_app

executor = pytest.importorskip("executor")


class Number:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {"default": 1, "min": 0, "max": 100})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value: int) -> tuple[int]:
        return (value,)


class SlowShow:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",), "seconds": ("FLOAT", {"default": 0.0, "min": 0, "max": 60})}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"

    def run(self, value: int, seconds: float) -> dict[str, Any]:
        from executor.context import current

        ctx = current()
        end = time.monotonic() + seconds
        step = 0
        while time.monotonic() < end:
            time.sleep(0.01)
            step += 1
            if ctx is not None:
                ctx.check_interrupt()
        return {"ui": {"text": [str(value)]}}


class Stepper:
    """Reports two progress steps, each with a small preview image."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"

    def run(self, value: int) -> dict[str, Any]:
        from PIL import Image

        from executor.context import current

        ctx = current()
        assert ctx is not None
        for step in range(2):
            ctx.progress(step + 1, 2, preview=Image.new("RGB", (32, 16), (0, 255, 0)))
        return {"ui": {"text": [str(value)]}}


def real_loom(tmp_path: Path, **changes: Any) -> Loom:
    reg = executor.NodeRegistry()
    reg.register("Number", Number, source="tests")
    reg.register("SlowShow", SlowShow, source="tests")
    reg.register("Stepper", Stepper, source="tests")
    cfg = Config(base_directory=tmp_path, custom_node_dirs=(tmp_path / "custom_nodes",)).with_changes(**changes)
    return Loom(config=cfg, engine=Engine(reg, executor.PromptExecutor(reg)), validate_fn=executor.validate_prompt,
                interrupt_flag=executor.InterruptFlag())


def prompt(value: int = 3, seconds: float = 0.0) -> dict[str, Any]:
    return {"1": {"class_type": "Number", "inputs": {"value": value}},
            "2": {"class_type": "SlowShow", "inputs": {"value": ["1", 0], "seconds": seconds}}}


async def test_real_executor_roundtrip(aiohttp_client: Any, tmp_path: Path) -> None:
    loom = real_loom(tmp_path)
    try:
        c = await aiohttp_client(create_app(loom, web_root=None))
        info = await (await c.get("/object_info/SlowShow")).json()
        assert info["SlowShow"]["output_node"] is True
        bad = await c.post("/prompt", json={"prompt": {"2": {"class_type": "SlowShow", "inputs": {}}}})
        assert bad.status == 400
        body = await bad.json()
        assert body["error"]["type"] == "prompt_outputs_failed_validation" and "2" in body["node_errors"]
        ws = await c.ws_connect("/ws?clientId=r")
        await ws.receive_json()
        resp = await c.post("/prompt", json={"prompt": prompt(4), "client_id": "r"})
        assert resp.status == 200, await resp.text()
        pid = (await resp.json())["prompt_id"]
        frames = await ws_until(ws, lambda f: f.get("type") == "executing" and f["data"]["node"] is None)
        types = [f["type"] for f in frames]
        assert types.index("execution_start") < types.index("executed") < types.index("execution_success")
        assert types[-2:] == ["status", "executing"]
        entry = await wait_history(c, pid)
        assert entry["outputs"] == {"2": {"text": ["4"]}} and entry["status"]["completed"] is True
        # same prompt again: cached nodes are reported
        resp = await c.post("/prompt", json={"prompt": prompt(4), "client_id": "r"})
        entry2 = await wait_history(c, (await resp.json())["prompt_id"])
        cached = [m for m in entry2["status"]["messages"] if m[0] == "execution_cached"][0][1]["nodes"]
        assert "1" in cached
        await ws.close()
    finally:
        loom.close()


async def test_real_executor_interrupt(aiohttp_client: Any, tmp_path: Path) -> None:
    loom = real_loom(tmp_path)
    try:
        c = await aiohttp_client(create_app(loom, web_root=None))
        pid = (await (await c.post("/prompt", json={"prompt": prompt(1, 10.0)})).json())["prompt_id"]
        for _ in range(300):
            if (await (await c.get("/queue")).json())["queue_running"]:
                break
            time.sleep(0.01)
        await c.post("/interrupt", json={"prompt_id": pid})
        entry = await wait_history(c, pid, timeout=5)
        assert entry["status"]["status_str"] == "error"
        assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    finally:
        loom.close()


async def test_real_executor_progress_and_previews(aiohttp_client: Any, tmp_path: Path) -> None:
    import json
    import struct

    loom = real_loom(tmp_path, preview_method="auto")
    try:
        c = await aiohttp_client(create_app(loom, web_root=None))
        ws = await c.ws_connect("/ws?clientId=pv")
        await ws.receive_json()
        await ws.send_str(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        await ws.receive_json()
        g = {"1": {"class_type": "Number", "inputs": {"value": 2}},
             "2": {"class_type": "Stepper", "inputs": {"value": ["1", 0]}}}
        await c.post("/prompt", json={"prompt": g, "client_id": "pv"})
        frames = await ws_until(ws, lambda f: f.get("type") == "executing" and f["data"]["node"] is None)
        progress = [f["data"] for f in frames if f.get("type") == "progress"]
        assert [(p["value"], p["max"], p["node"]) for p in progress] == [(1, 2, "2"), (2, 2, "2")]
        assert any(f.get("type") == "progress_state" for f in frames)
        previews = [f["binary"] for f in frames if "binary" in f]
        assert len(previews) == 2
        event, n = struct.unpack(">II", previews[0][:8])
        meta = json.loads(previews[0][8:8 + n])
        assert event == 4 and meta["node_id"] == "2" and meta["display_node_id"] == "2"
        await ws.close()
    finally:
        loom.close()


@pytest.mark.slow
async def test_tiny_checkpoint_txt2img_through_http(aiohttp_client: Any, tmp_path: Path,
                                                     fixtures_dir: Path) -> None:
    """POST /prompt -> /history -> /view with the tiny SD1.5 checkpoint (real nodes, real engine)."""
    from PIL import Image

    from app.loom import build_loom

    ckpt_dir = tmp_path / "models" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    os.symlink(fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors", ckpt_dir / "tiny-sd15.safetensors")
    loom = build_loom(Config(base_directory=tmp_path, cpu=True, custom_node_dirs=(tmp_path / "none",)))
    try:
        c = await aiohttp_client(create_app(loom, web_root=None, load_custom_nodes=False))
        ckpts = (await (await c.get("/object_info/CheckpointLoaderSimple")).json())[
            "CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
        assert ckpts == ["tiny-sd15.safetensors"]
        graph = {
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
            "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 2, "cfg": 7.5, "sampler_name": "euler",
                                                       "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                       "positive": ["6", 0], "negative": ["7", 0],
                                                       "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "loomtest", "images": ["8", 0]}},
        }
        resp = await c.post("/prompt", json={"prompt": graph, "extra_data": {"extra_pnginfo": {"workflow": {"n": 1}}}})
        assert resp.status == 200, await resp.text()
        entry = await wait_history(c, (await resp.json())["prompt_id"], timeout=240)
        assert entry["status"]["status_str"] == "success", entry["status"]
        image = entry["outputs"]["9"]["images"][0]
        assert image["filename"] == "loomtest_00001_.png" and image["type"] == "output"
        view = await c.get("/view", params=image)
        assert view.status == 200
        png = Image.open(io.BytesIO(await view.read()))
        assert png.size == (64, 64) and "prompt" in png.text and png.text["workflow"] == '{"n": 1}'
    finally:
        loom.close()
