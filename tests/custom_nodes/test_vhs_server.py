"""The real Kosinkadink/ComfyUI-VideoHelperSuite (pinned commit, staged from its git mirror) on Loom's server: its
routes (/vhs/getpath, /vhs/queryvideo, /vhs/viewvideo, /vhs/viewaudio, also under /api), a VHS_VideoCombine prompt
whose history carries the `gifs` ui entry, and VHS_BatchManager, which requeues the running prompt through
`PromptServer.instance.prompt_queue` once per batch of frames until the whole video is written."""
from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
import real_packs
import torch

from app.config import Config
from app.loom import Loom, build_loom
from server import create_app

PIN = real_packs.pin("ComfyUI-VideoHelperSuite")
pytestmark = real_packs.skip_unless_staged(PIN)

T, H, W = 8, 32, 48


@pytest.fixture
def loom(tmp_path: Path) -> Iterator[Loom]:
    from engine.video import codec

    real_packs.stage(PIN, tmp_path / "custom_nodes")
    (tmp_path / "input").mkdir()
    ramp = torch.linspace(0.1, 0.9, T).view(T, 1, 1, 1).expand(T, H, W, 3).contiguous()
    codec.encode(tmp_path / "input" / "ramp.mp4", ramp, 8)
    torch.set_num_threads(1)
    loom = build_loom(Config(base_directory=tmp_path, cpu=True, custom_node_dirs=(tmp_path / "custom_nodes",)))
    yield loom
    loom.close()
    real_packs.unload_server_packs()


@pytest.fixture
async def client(aiohttp_client: Any, loom: Loom) -> Any:
    return await aiohttp_client(create_app(loom, web_root=None))


async def _history(client: Any, prompt_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        data = await (await client.get(f"/history/{prompt_id}")).json()
        if prompt_id in data:
            return dict(data[prompt_id])
        await asyncio.sleep(0.1)
    raise AssertionError(f"prompt {prompt_id} did not finish")


async def _idle(client: Any) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        queue = await (await client.get("/queue")).json()
        if not queue["queue_running"] and not queue["queue_pending"]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the queue did not empty")


def _graph(video: str, batch: int | None = None) -> dict[str, Any]:
    graph: dict[str, Any] = {
        "lv": {"class_type": "VHS_LoadVideoPath",
               "inputs": {"video": video, "force_rate": 0, "custom_width": 0, "custom_height": 0,
                          "frame_load_cap": 0, "skip_first_frames": 0, "select_every_nth": 1}},
        "vc": {"class_type": "VHS_VideoCombine",
               "inputs": {"images": ["lv", 0], "frame_rate": 8, "loop_count": 0, "filename_prefix": "served",
                          "format": "video/h264-mp4", "pingpong": False, "save_output": True, "pix_fmt": "yuv420p",
                          "crf": 19, "save_metadata": True, "trim_to_audio": False}}}
    if batch is not None:
        graph["bm"] = {"class_type": "VHS_BatchManager", "inputs": {"frames_per_batch": batch}}
        graph["lv"]["inputs"]["meta_batch"] = ["bm", 0]
        graph["vc"]["inputs"]["meta_batch"] = ["bm", 0]
    return graph


def _levels(data: bytes | Path) -> list[float]:
    """The mean level of each decoded frame (the test video is a ramp of flat grey frames)."""
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    with av.open(source, mode="r") as container:
        return [round(float(f.to_ndarray(format="rgb24").mean()) / 255, 2) for f in container.decode(video=0)]


async def test_combine_prompt_history_and_vhs_routes(client: Any, tmp_path: Path) -> None:
    video = str(tmp_path / "input" / "ramp.mp4")
    resp = await client.post("/prompt", json={"prompt": _graph(video), "client_id": "c1",
                                              "extra_data": {"extra_pnginfo": {"workflow": {"nodes": []}}}})
    assert resp.status == 200, await resp.text()
    entry = await _history(client, (await resp.json())["prompt_id"])
    assert entry["status"]["status_str"] == "success", entry["status"]
    (gif,) = entry["outputs"]["vc"]["gifs"]
    assert gif["filename"] == "served_00001.mp4" and gif["type"] == "output" and gif["format"] == "video/h264-mp4"
    assert gif["workflow"] == "served_00001.png"
    out = tmp_path / "output"
    assert len(_levels(out / "served_00001.mp4")) == T

    for prefix in ("", "/api"):
        listing = await client.get(f"{prefix}/vhs/getpath", params={"path": str(out) + "/"})
        assert listing.status == 200 and set(await listing.json()) >= {"served_00001.mp4", "served_00001.png"}
        query = await client.get(f"{prefix}/vhs/queryvideo", params={"filename": "served_00001.mp4",
                                                                      "type": "output"})
        assert query.status == 200
        body = await query.json()
        assert body["source"]["size"] == [W, H] and body["source"]["fps"] == 8.0
        assert body["loaded"]["frames"] == T
    # the preview stream: VHS re-encodes the file as webm (vp9) through ffmpeg, here capped at 4 frames
    view = await client.get("/vhs/viewvideo", params={"filename": "served_00001.mp4", "type": "output",
                                                      "frame_load_cap": "4"})
    assert view.status == 200 and view.headers["Content-Type"] == "video/webm"
    levels = _levels(await view.read())
    assert len(levels) == 4
    assert levels == pytest.approx([0.1 + 0.8 * i / (T - 1) for i in range(4)], abs=0.03)
    missing = await client.get("/vhs/queryvideo", params={"filename": "nope.mp4", "type": "output"})
    assert missing.status == 204


async def test_view_audio_streams_opus(client: Any, tmp_path: Path) -> None:
    rate = 16000
    tone = (0.5 * torch.sin(2 * torch.pi * 440 * torch.arange(rate) / rate) * 32767).to(torch.int16)
    with wave.open(str(tmp_path / "input" / "tone.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(tone.numpy().tobytes())
    resp = await client.get("/api/vhs/viewaudio", params={"filename": "tone.wav", "type": "input",
                                                          "start_time": "0.5"})
    assert resp.status == 200 and resp.headers["Content-Type"] == "audio/webm"
    with av.open(io.BytesIO(await resp.read()), mode="r") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        samples = sum(frame.samples for frame in container.decode(stream))
        seconds = samples / stream.codec_context.sample_rate
    assert seconds == pytest.approx(0.5, abs=0.03)  # from 0.5 s of a 1 s file


async def test_batch_manager_requeues_until_the_video_is_whole(client: Any, tmp_path: Path) -> None:
    video = str(tmp_path / "input" / "ramp.mp4")
    resp = await client.post("/prompt", json={"prompt": _graph(video, batch=3)})
    assert resp.status == 200, await resp.text()
    first = await _history(client, (await resp.json())["prompt_id"])
    assert first["status"]["status_str"] == "success", first["status"]
    await _idle(client)
    history = await (await client.get("/history")).json()
    # 8 frames in batches of 3: the first prompt and two requeued ones, each numbered ahead of the queue
    assert len(history) == 3 and all(h["status"]["status_str"] == "success" for h in history.values())
    requeues = sorted(h["prompt"][2]["bm"]["inputs"].get("requeue", 0) for h in history.values())
    assert requeues == [0, 1, 2]
    finished = [h for h in history.values() if "gifs" in h["outputs"].get("vc", {})]
    assert len(finished) == 1
    (gif,) = finished[0]["outputs"]["vc"]["gifs"]
    levels = _levels(tmp_path / "output" / gif["filename"])
    assert levels == pytest.approx([0.1 + 0.8 * i / (T - 1) for i in range(T)], abs=0.03)
