"""Acly/krita-ai-diffusion (the Krita AI Diffusion plugin) against Loom's real server, in-process on 127.0.0.1.

The client needs Qt / Krita to run, so what it checks and sends is reproduced from its source at a pinned commit in
tests/fixtures/krita_client/requirements.json (`test_fixture_matches_the_pinned_client` compares the two where the
client's git mirror is on the machine). The server packs it requires are the pack suite's pins (bench/pack_suite), staged
from their mirrors; a pack whose source or Python requirements are missing here is reported as not checked.
"""
from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import time
import types
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import real_packs
import torch
from PIL import Image

from app.config import Config
from app.loom import build_loom
from server import create_app

ROOT = Path(__file__).resolve().parents[2]
REQUIRED: dict[str, Any] = json.loads((ROOT / "tests/fixtures/krita_client/requirements.json").read_text())
DEMO = ROOT / "engine" / "demo" / "loom-demo-shapes.safetensors"


sources = real_packs.sources
PINS = {pin.name: pin for pin in sources.load_manifest()}
TOOLING = "comfyui-tooling-nodes"

# Workflow nodes Loom does not serve (checked: the test fails when one appears or another goes missing): nodes of
# families Loom does not load (Flux 2, Qwen-Image, Z-Image, Hunyuan video), the AliMama inpaint
# ControlNet, EasyCache, the model-patch loader.
LOOM_GAPS = {"ControlNetInpaintingAliMamaApply", "EasyCache", "EmptyFlux2LatentImage", "EmptyHunyuanLatentVideo",
             "Flux2Scheduler", "ModelPatchLoader", "T5TokenizerOptions",
             "TextEncodeQwenImageEdit", "TextEncodeQwenImageEditPlus", "ZImageFunControlnet"}
# workflow nodes a pack registers only when a module beyond its pinned `requires` is installed
NODE_MODULES = {"ETN_NSFWFilter": ("kornia",), "DWPreprocessor": ("matplotlib", "skimage")}
# the workflow nodes of each server pack the client uses (beyond resources.py's short lists)
PACK_NODES = {
    "comfyui_controlnet_aux": {"InpaintPreprocessor", "DWPreprocessor", "HintImageEnchance",
                               "DepthAnythingV2Preprocessor"},
    "ComfyUI-GGUF": {"UnetLoaderGGUF", "DualCLIPLoaderGGUF"},
}


# IPAdapter_plus imports torchvision's transforms at import but uses them only in nodes the client does not run;
# without torchvision the IP-Adapter pack test's stub stands in for them (tests/adapters/ipadapter_pack.py)
STUBBED = {"ComfyUI_IPAdapter_plus": {"torchvision"}}


def _unavailable(folder: str) -> str | None:
    """Why the client's pack `folder` cannot be served here (None: it can)."""
    pin = PINS.get(folder)
    if pin is None:
        return f"{folder} is not pinned in the pack suite"
    return real_packs.unavailable(pin, frozenset(STUBBED.get(folder, ())))


def _nodes_of(folder: str, names: set[str]) -> set[str]:
    if folder == TOOLING:
        return {n for n in names if n.startswith("ETN_")}
    if folder == "comfyui-inpaint-nodes":
        return {n for n in names if n.startswith("INPAINT_")}
    if folder == "ComfyUI_IPAdapter_plus":
        return {n for n in names if n.startswith("IPAdapter")}
    return names & PACK_NODES.get(folder, set())


STAGED = [f for f in (*REQUIRED["required_custom_nodes"], "ComfyUI-GGUF") if _unavailable(f) is None]
pytestmark = pytest.mark.skipif(TOOLING not in STAGED, reason=f"{TOOLING}: {_unavailable(TOOLING)}")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _picture() -> Image.Image:
    pixels = np.zeros((24, 40, 3), dtype=np.uint8)
    pixels[..., 0] = np.arange(40, dtype=np.uint8)[None, :] * 6
    pixels[..., 1] = np.arange(24, dtype=np.uint8)[:, None] * 10
    pixels[4:12, 8:20, 2] = 255
    return Image.fromarray(pixels, "RGB")


def _client_png_frame(frame: bytes) -> Image.Image | None:
    """The client's `_extract_message_png_image`: `[u32 1 (PREVIEW_IMAGE)][u32 2 (PNG)][PNG bytes]`, else None."""
    if len(frame) <= 8:
        return None
    event, image_format = struct.unpack_from(">II", frame)
    if event == 1 and image_format == 2:
        return Image.open(io.BytesIO(frame[8:]))
    return None


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[Any]:
    root = tmp_path / "custom_nodes"
    root.mkdir()
    for folder in STAGED:
        sources.stage(PINS[folder], sources.source_of(PINS[folder]), root)
    checkpoints = tmp_path / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(DEMO, checkpoints / DEMO.name)
    loom = build_loom(Config(base_directory=tmp_path, cpu=True, custom_node_dirs=(root,)))
    stub = real_packs.torchvision_stub()
    next(stub)
    try:
        yield await aiohttp_client(create_app(loom, web_root=None))
    finally:
        stub.close()
        loom.close()
        real_packs.unload_server_packs()


async def _until(ws: Any, prompt_id: str, timeout: float = 120) -> tuple[list[dict[str, Any]], list[bytes]]:
    """JSON messages and binary frames up to the client's end-of-job message (`executing` with node None)."""
    messages: list[dict[str, Any]] = []
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(msg.data, bytes):
            frames.append(msg.data)
            continue
        message = json.loads(msg.data)
        messages.append(message)
        data = message.get("data") or {}
        if message["type"] == "execution_error" and data.get("prompt_id") == prompt_id:
            raise AssertionError(f"prompt failed: {data.get('exception_message')}")
        if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
            return messages, frames


async def _queue(client: Any, sid: str, graph: dict[str, Any]) -> str:
    """POST /prompt as the client does (its own prompt_id, which the server must echo)."""
    prompt_id = str(uuid.uuid4())
    response = await client.post("/prompt", json={"prompt": graph, "client_id": sid, "prompt_id": prompt_id})
    assert response.status == 200, await response.text()
    assert (await response.json())["prompt_id"] == prompt_id
    return prompt_id


@pytest.mark.parametrize("folder", list(REQUIRED["required_custom_nodes"]))
async def test_connect_time_node_check(client: Any, folder: str) -> None:
    """`_check_for_missing_nodes`: every node resources.py lists for a pack is in /object_info."""
    reason = _unavailable(folder)
    if reason is not None:
        pytest.skip(f"not checked: {reason}")
    info = await (await client.get("/object_info")).json()
    missing = [n for n in REQUIRED["required_custom_nodes"][folder] if n not in info]
    assert missing == [], f"{folder}: the client would refuse this server, missing {missing}"


async def test_connect_sequence_and_model_discovery(client: Any) -> None:
    """ComfyClient.connect + discover_models: system stats, websocket, model lists, languages, model inspection."""
    stats = await (await client.get("/system_stats")).json()
    device = stats["devices"][0]
    assert isinstance(device["name"], str) and isinstance(device["type"], str) and device["vram_total"] >= 0
    sid = str(uuid.uuid4())
    ws = await client.ws_connect(f"/ws?clientId={sid}")
    assert json.loads((await ws.receive(timeout=10)).data)["type"] == "status"

    info = await (await client.get("/object_info")).json()
    absent = set()
    for node, name in REQUIRED["options_read_at_connect"]:
        if node not in info:
            absent.add(node)
            continue
        spec = info[node]["input"]["required"][name]  # the client reads it from "required"
        assert isinstance(spec[0], list) or (spec[0] == "COMBO" and isinstance(spec[1]["options"], list)), (node, spec)
    unstaged = {n for f in (*REQUIRED["required_custom_nodes"], "ComfyUI-GGUF") if f not in STAGED
                for n in _nodes_of(f, {node for node, _ in REQUIRED["options_read_at_connect"]})}
    assert absent == (LOOM_GAPS | unstaged) & {n for n, _ in REQUIRED["options_read_at_connect"]}
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == [DEMO.name]

    languages = await client.get("/api/etn/languages")
    assert languages.status == 200 and isinstance(await languages.json(), list)
    page = await (await client.get("/api/etn/model_info/checkpoints?offset=0&limit=8")).json()
    assert page.pop("_meta")["total"] == 1
    assert page[DEMO.name]["base_model"] == "sd15", page  # the client's Arch.from_string("sd15"): an SD 1.5 workload
    assert page[DEMO.name]["is_inpaint"] is False
    empty = await (await client.get("/api/etn/model_info/diffusion_models?offset=0&limit=8")).json()
    assert empty.pop("_meta")["total"] == 0 and empty == {}
    subscribed = await client.post("/api/etn/workflow/subscribe", json={"client_id": sid})
    assert subscribed.status == 200
    assert (await client.post("/api/etn/workflow/unsubscribe", json={"client_id": sid})).status == 200
    await ws.close()


async def test_image_upload_cache_and_http_result(client: Any) -> None:
    """upload_images (PUT /api/etn/image/<id>) -> ETN_LoadImageCache ... ETN_SaveImageCache -> `executed` names the
    result {source: http, id} -> GET /api/etn/image/<id> gives the same pixels."""
    sid = str(uuid.uuid4())
    ws = await client.ws_connect(f"/ws?clientId={sid}")
    picture = _picture()
    image_id = uuid.uuid4().hex
    put = await client.put(f"/api/etn/image/{image_id}", data=_png(picture), headers={"Content-Type": "image/png"})
    assert put.status == 201, await put.text()
    graph = {"load": {"class_type": "ETN_LoadImageCache", "inputs": {"id": image_id}},
             "save": {"class_type": "ETN_SaveImageCache", "inputs": {"images": ["load", 0], "format": "PNG"}}}
    prompt_id = await _queue(client, sid, graph)
    messages, _ = await _until(ws, prompt_id)
    executed = [m["data"] for m in messages if m["type"] == "executed"]
    assert [e["node"] for e in executed] == ["save"] and executed[0]["prompt_id"] == prompt_id
    (result,) = executed[0]["output"]["images"]
    assert result["source"] == "http"
    got = await client.get(f"/api/etn/image/{result['id']}")
    assert got.status == 200
    back = np.asarray(Image.open(io.BytesIO(await got.read())).convert("RGB"))
    assert np.array_equal(back, np.asarray(picture))
    await ws.close()


async def test_websocket_image_frame_is_what_the_client_parses(client: Any) -> None:
    """ETN_LoadImageBase64 -> ETN_SendImageWebSocket: one binary frame per image, `[1][2][PNG]`, pixels unchanged,
    then `executed` with {source: websocket}; the JPEG variant is `[1][1][JPEG]` (which the client ignores)."""
    sid = str(uuid.uuid4())
    ws = await client.ws_connect(f"/ws?clientId={sid}")
    picture = _picture()
    encoded = base64.b64encode(_png(picture)).decode()
    for image_format, format_id in (("PNG", 2), ("JPEG", 1)):
        graph = {"load": {"class_type": "ETN_LoadImageBase64", "inputs": {"image": encoded}},
                 "send": {"class_type": "ETN_SendImageWebSocket",
                          "inputs": {"images": ["load", 0], "format": image_format}}}
        prompt_id = await _queue(client, sid, graph)
        messages, frames = await _until(ws, prompt_id)
        images = [f for f in frames if struct.unpack_from(">I", f)[0] == 1]
        assert len(images) == 1 and struct.unpack_from(">I", images[0], 4)[0] == format_id
        parsed = _client_png_frame(images[0])
        if image_format == "PNG":
            assert parsed is not None and np.array_equal(np.asarray(parsed.convert("RGB")), np.asarray(picture))
        else:
            assert parsed is None
            jpeg = np.asarray(Image.open(io.BytesIO(images[0][8:])).convert("RGB")).astype(int)
            assert np.abs(jpeg - np.asarray(picture).astype(int)).mean() < 4
        (executed,) = [m["data"] for m in messages if m["type"] == "executed"]
        assert executed["output"]["images"] == [
            {"source": "websocket", "content-type": f"image/{image_format.lower()}", "type": "output"}]
    await ws.close()


async def test_workflow_nodes_served(client: Any) -> None:
    """Every node type comfy_workflow.py puts in prompts is served, except Loom's known gaps (LOOM_GAPS) and the
    nodes of packs not staged here."""
    info = await (await client.get("/object_info")).json()
    wanted = set(REQUIRED["workflow_nodes"])
    missing = wanted - set(info)
    unstaged = {n for f in (*REQUIRED["required_custom_nodes"], "ComfyUI-GGUF") if f not in STAGED
                for n in _nodes_of(f, wanted)}
    # nodes a staged pack leaves out when a module it imports for them alone is missing
    unstaged |= {node for node, modules in NODE_MODULES.items()
                 if any(importlib.util.find_spec(module) is None for module in modules)}
    assert missing == (LOOM_GAPS & wanted) | unstaged, sorted(missing ^ ((LOOM_GAPS & wanted) | unstaged))


def test_fixture_matches_the_pinned_client(tmp_path: Path) -> None:
    """The reproduced lists equal what the client's source says at the pinned commit."""
    git_dir = sources.mirror_root() / REQUIRED["client"].replace("/", "+") / "repo"
    commit = REQUIRED["commit"]

    def show(path: str) -> str | None:
        done = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:ai_diffusion/{path}"],
                              capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else None

    resources = show("backend/resources.py")
    if resources is None:
        pytest.skip(f"no git mirror of {REQUIRED['client']} at {commit[:12]} on this machine")
    # resources.py (stdlib only) reads ../presets/models.json beside itself at import
    (tmp_path / "backend").mkdir()
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "models.json").write_text(show("presets/models.json") or "")
    module = types.ModuleType("krita_resources")
    module.__file__ = str(tmp_path / "backend" / "resources.py")
    sys.modules[module.__name__] = module  # its NamedTuples resolve their module while the class is built
    try:
        exec(compile(resources, module.__file__, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    assert {n.folder: list(n.nodes) for n in module.required_custom_nodes} == REQUIRED["required_custom_nodes"]
    client_source, workflow_source = show("backend/comfy_client.py"), show("backend/comfy_workflow.py")
    assert client_source is not None and workflow_source is not None
    options = re.findall(r'nodes\.options\("(\w+)", "(\w+)"\)', client_source)
    assert sorted(map(list, set(options))) == sorted(REQUIRED["options_read_at_connect"])
    nodes = set(re.findall(r'\badd(?:_cached)?\(\s*"(\w+)"', workflow_source))
    assert nodes - {"ETN_InjectImage", "ETN_InjectMask", "ETN_ReturnImage"} == set(REQUIRED["workflow_nodes"])
    for path in re.findall(r'"(api/etn/[\w/]+)', client_source):
        assert any(route.lstrip("/").startswith(path.rstrip("/")) for _, route in REQUIRED["routes"]), path


async def test_routes_the_client_calls_are_served(client: Any) -> None:
    """Each route of the fixture answers (not 404 / 405) for the method the client uses."""
    for method, route in REQUIRED["routes"]:
        path = route.replace("{folder_name}", "checkpoints").replace("{id}", "none").replace(
            "{filename}", "x.safetensors").replace("{lang}", "en").replace("{text}", "a%20cat")
        if path == "/ws":
            ws = await client.ws_connect("/ws?clientId=routes")
            await ws.close()
            continue
        body: dict[str, Any] = {"client_id": "routes"} if "workflow" in path else (
            {"delete": []} if path == "/queue" else {})
        if method == "POST":
            response = await client.post(path, json=body)
        elif method == "PUT":
            response = await client.put(path, data=b"" if "upload" in path else _png(_picture()))
        else:
            response = await client.get(path)
        assert response.status not in (404, 405) or path.startswith("/api/etn/image/"), (method, path)
        if path.startswith("/api/etn/image/") and method == "GET":
            assert response.status in (200, 404)  # id "none": 404 from the pack's own handler, not the router
    await asyncio.sleep(0)


def _region_graph(region_prompt: str | None) -> dict[str, Any]:
    """The demo checkpoint sampled with the client's region attention (None: the plain model), decoded and sent back
    through the image cache. The region covers the left half; the background region has the plain prompt."""
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    graph: dict[str, Any] = {
        "ck": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": DEMO.name}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["ck", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ck", 1]}},
        "lat": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "ks": {"class_type": "KSampler", "inputs": {
            "model": ["ck", 0], "seed": 3, "steps": 3, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["lat", 0], "denoise": 1.0}},
        "dec": {"class_type": "VAEDecode", "inputs": {"samples": ["ks", 0], "vae": ["ck", 2]}},
        "out": {"class_type": "ETN_SaveImageCache", "inputs": {"images": ["dec", 0], "format": "PNG"}},
    }
    if region_prompt is not None:
        graph |= {
            "rc": {"class_type": "CLIPTextEncode", "inputs": {"text": region_prompt, "clip": ["ck", 1]}},
            "mask": {"class_type": "ETN_LoadMaskBase64", "inputs": {"mask": base64.b64encode(_png(mask)).decode()}},
            "bg": {"class_type": "ETN_BackgroundRegion", "inputs": {"conditioning": ["pos", 0]}},
            "reg": {"class_type": "ETN_DefineRegion",
                    "inputs": {"regions": ["bg", 0], "mask": ["mask", 0], "conditioning": ["rc", 0]}},
            "am": {"class_type": "ETN_AttentionMask", "inputs": {"model": ["ck", 0], "regions": ["reg", 0]}},
        }
        graph["ks"]["inputs"]["model"] = ["am", 0]
    return graph


async def test_region_attention_runs_through_loom_attention_patches(client: Any) -> None:
    """ETN_AttentionMask's attn2 patches widen the cross-attention batch (one query copy per region) and fold it back
    masked: with every region on the plain prompt the picture is the plain one; another region prompt changes it."""
    sid = str(uuid.uuid4())
    ws = await client.ws_connect(f"/ws?clientId={sid}")
    pictures = []
    for region_prompt in (None, "a red circle", "a blue square"):
        prompt_id = await _queue(client, sid, _region_graph(region_prompt))
        messages, _ = await _until(ws, prompt_id)
        (executed,) = [m["data"] for m in messages if m["type"] == "executed"]
        got = await client.get(f"/api/etn/image/{executed['output']['images'][0]['id']}")
        pictures.append(np.asarray(Image.open(io.BytesIO(await got.read())).convert("RGB")).astype(int))
    plain, same, other = pictures
    # the events the client's job tracking reads (ComfyClient._listen_websocket, Progress.handle)
    kinds = [m["type"] for m in messages]
    start = next(m["data"] for m in messages if m["type"] == "execution_start")
    assert start["prompt_id"] == prompt_id and kinds.index("execution_start") < kinds.index("executed")
    cached = [m["data"] for m in messages if m["type"] == "execution_cached"]
    assert cached and isinstance(cached[0]["nodes"], list) and "ck" in cached[0]["nodes"]  # the loader ran before
    steps = [m["data"] for m in messages if m["type"] == "progress"]
    assert [(d["value"], d["max"]) for d in steps] == [(1, 3), (2, 3), (3, 3)]
    assert all(d["prompt_id"] == prompt_id for d in steps)
    assert np.abs(same - plain).max() <= 1
    assert np.abs(other - plain).mean() > 1.0
    await ws.close()


async def test_lora_upload_is_listed_without_a_restart(client: Any, tmp_path: Path) -> None:
    """upload_loras: PUT /api/etn/upload/loras/<file> writes into the first loras folder, then the client's refresh
    (GET /object_info) must list it in LoraLoader's choices; a second upload answers "cached". The pack writes into
    an existing folder only: Loom creates models/loras/ (each model folder's default) at start, as ComfyUI's
    repository ships it."""
    from safetensors.torch import save

    data = save({"lora_unet_x.lora_down.weight": torch.zeros(1, 4)})
    assert (tmp_path / "models" / "loras").is_dir()
    put = await client.put("/api/etn/upload/loras/uploaded.safetensors", data=data)
    assert put.status == 201, await put.text()
    info = await (await client.get("/object_info/LoraLoader")).json()
    assert info["LoraLoader"]["input"]["required"]["lora_name"][0] == ["uploaded.safetensors"]
    again = await client.put("/api/etn/upload/loras/uploaded.safetensors", data=data)
    assert again.status == 200 and (await again.json())["status"] == "cached"
