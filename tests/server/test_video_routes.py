"""Video through the server with the real nodes: upload into input/, LoadVideo's list, POST /prompt, /view."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import torch
from server_helpers import wait_history

from app.config import Config
from server import create_app

WORKFLOW = {"nodes": [{"id": 4, "type": "LoadVideo"}], "links": [], "version": 0.4}


def _mp4(frames: int = 6) -> bytes:
    from engine.video import codec

    ramp = torch.linspace(0, 1, frames)[:, None, None, None].expand(frames, 32, 48, 3).contiguous()
    buffer = io.BytesIO()
    codec.encode(buffer, ramp, 6)
    return buffer.getvalue()


def _form(name: str, data: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name, content_type="application/octet-stream")
    return form


async def test_upload_load_split_save_and_view(aiohttp_client: Any, tmp_path: Path) -> None:
    from app.loom import build_loom
    from engine.video import codec

    loom = build_loom(Config(base_directory=tmp_path, cpu=True, custom_node_dirs=(tmp_path / "none",)))
    try:
        c = await aiohttp_client(create_app(loom, web_root=None, load_custom_nodes=False))
        resp = await c.post("/upload/image", data=_form("clip.mp4", _mp4()))
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"name": "clip.mp4", "subfolder": "", "type": "input"}
        assert (tmp_path / "input" / "clip.mp4").read_bytes() == _mp4()

        bad = await c.post("/upload/image", data=_form("fake.mp4", b"not a video" * 30))
        body = await bad.json()
        assert bad.status == 400 and body["error"]["type"] == "invalid_video"
        assert "fake.mp4" in body["error"]["message"] and not (tmp_path / "input" / "fake.mp4").exists()

        info = await (await c.get("/object_info/LoadVideo")).json()
        assert info["LoadVideo"]["input"]["required"]["file"] == [["clip.mp4"], {"video_upload": True}]

        graph = {
            "4": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
            "5": {"class_type": "GetVideoComponents", "inputs": {"video": ["4", 0]}},
            "6": {"class_type": "CreateVideo", "inputs": {"images": ["5", 0], "fps": ["5", 2]}},
            "7": {"class_type": "SaveVideo", "inputs": {"video": ["6", 0], "filename_prefix": "video/loom",
                                                        "format": "auto", "codec": "auto"}},
        }
        resp = await c.post("/prompt", json={"prompt": graph, "extra_data": {"extra_pnginfo": {"workflow": WORKFLOW}}})
        assert resp.status == 200, await resp.text()
        entry = await wait_history(c, (await resp.json())["prompt_id"], timeout=60)
        assert entry["status"]["status_str"] == "success", entry["status"]
        ui = entry["outputs"]["7"]
        assert ui == {"images": [{"filename": "loom_00001_.mp4", "subfolder": "video", "type": "output"}],
                      "animated": [True]}
        view = await c.get("/view", params=ui["images"][0])
        assert view.status == 200 and view.headers["Content-Type"] == "video/mp4"
        data = await view.read()
        info2 = codec.probe(io.BytesIO(data))
        assert info2.frame_count == 6 and info2.frame_rate == 6 and (info2.width, info2.height) == (48, 32)
        assert json.loads(info2.metadata["workflow"]) == WORKFLOW and json.loads(info2.metadata["prompt"]) == graph

        graph["4"]["inputs"]["file"] = "missing.mp4"
        resp = await c.post("/prompt", json={"prompt": graph})
        body = await resp.json()
        assert resp.status == 400 and "4" in body["node_errors"]
        details = [e["details"] for e in body["node_errors"]["4"]["errors"]]
        assert any("Invalid video file: missing.mp4" in d for d in details), details
    finally:
        loom.close()
