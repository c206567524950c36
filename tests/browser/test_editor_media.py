"""Audio and video in the editor against Loom's real server.py: LoadAudio / LoadVideo upload widgets (file chooser
and drop), their players, and the players of SaveAudio / PreviewAudio / SaveVideo / SaveWEBM outputs."""
from __future__ import annotations

import io
import math
import struct
import wave
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from editor_helpers import drop_file, open_editor

pytestmark = pytest.mark.browser


def _open(page: Any, server: Any) -> None:
    open_editor(page, f"{server.url}?token={server.token}")


def _wav(seconds: float = 0.25, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        n = int(seconds * rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(n)))
    return buf.getvalue()


def _mp4(frames: int = 4, size: int = 32) -> bytes:
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            rgb = np.full((size, size, 3), (40 * i, 120, 200), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return buf.getvalue()


def _add(page: Any, node_type: str, node_id: int, pos: list[int]) -> list[float]:
    """Adds a node; returns a page point inside it, under its title."""
    point: list[float] = page.evaluate("""([type, id, pos]) => { const n = window.loomLiteGraph.createNode(type); n.id = id;
        n.pos = pos; loom.graph.add(n);
        const ds = loom.canvas.ds, r = loom.canvasEl.getBoundingClientRect();
        return [r.left + (n.pos[0] + 60 + ds.offset[0]) * ds.scale, r.top + (n.pos[1] + 20 + ds.offset[1]) * ds.scale]; }""",
                         [node_type, node_id, pos])
    return point


def _media_src(page: Any, node_id: int, tag: str) -> str:
    """The src of the <audio> / <video> player overlaid on node `node_id`, once it has one."""
    page.wait_for_function("([id, tag]) => !!document.querySelector(`${tag}.loom-media[data-node='${id}']`)?.src",
                           arg=[node_id, tag], timeout=20000)
    return str(page.evaluate("([id, tag]) => document.querySelector(`${tag}.loom-media[data-node='${id}']`).src",
                             [node_id, tag]))


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query, keep_blank_values=True).items()}


def test_audio_and_video_upload_widgets(page: Any, real_server: Any) -> None:
    _open(page, real_server)
    _add(page, "LoadAudio", 50, [100, 650])
    point = _add(page, "LoadVideo", 51, [500, 650])
    names = page.evaluate("ids => ids.map(id => loom.graph.getNodeById(id).widgets.map(w => w.name))", [50, 51])
    assert names == [["audio", "audioUI", "upload"], ["file", "upload"]]
    # LoadAudio: the button opens an audio file chooser; the upload is selected and played from input/.
    with page.expect_file_chooser() as chooser:
        page.evaluate("() => { loom.graph.getNodeById(50).widgets.find(w => w.name === 'upload').callback(); }")
    assert chooser.value.element.get_attribute("accept") == "audio/*"
    chooser.value.set_files(files=[{"name": "tone.wav", "mimeType": "audio/wav", "buffer": _wav()}])
    page.wait_for_function("() => loom.graph.getNodeById(50).widgets[0].value === 'tone.wav'", timeout=20000)
    assert (real_server.root / "input" / "tone.wav").is_file()
    src = _media_src(page, 50, "audio")
    assert _query(src) == {"filename": "tone.wav", "subfolder": "", "type": "input"}
    assert page.evaluate("document.querySelector(\"audio.loom-media[data-node='50']\").controls")
    # the browser reads the file through /view: the player knows the clip's length
    page.wait_for_function("() => document.querySelector(\"audio.loom-media[data-node='50']\").duration > 0.2",
                           timeout=20000)
    assert page.evaluate("loom.graph.getNodeById(50).serialize().widgets_values") == ["tone.wav", None, None]
    # LoadVideo: dropping a video file onto the node uploads and selects it; a muted looping <video> plays it.
    nodes_before = page.evaluate("loom.graph._nodes.length")
    drop_file(page, _mp4(), "clip.mp4", "video/mp4", int(point[0]), int(point[1]))
    page.wait_for_function("() => loom.graph.getNodeById(51).widgets[0].value === 'clip.mp4'", timeout=20000)
    assert page.evaluate("loom.graph._nodes.length") == nodes_before  # not opened as a workflow
    assert (real_server.root / "input" / "clip.mp4").is_file()
    src = _media_src(page, 51, "video")
    assert _query(src) == {"filename": "clip.mp4", "subfolder": "", "type": "input"}
    flags = page.evaluate("(() => { const v = document.querySelector(\"video.loom-media[data-node='51']\");"
                          " return [v.muted, v.loop, v.controls]; })()")
    assert flags == [True, True, True]
    served = page.request.get(src)
    assert served.status == 200 and served.headers["content-type"] == "video/mp4"
    assert page.evaluate("loom.graph.getNodeById(51).serialize().widgets_values") == ["clip.mp4", "image"]
    # An audio file dropped on LoadVideo is refused with a message, not uploaded nor opened as a workflow.
    drop_file(page, _wav(), "other.wav", "audio/wav", int(point[0]), int(point[1]))
    page.wait_for_selector(".loom-toast.error:has-text('Load Video takes video files, not other.wav')")
    assert page.locator("#loom-error-dialog").count() == 0
    assert page.evaluate("loom.graph.getNodeById(51).widgets[0].value") == "clip.mp4"
    assert not (real_server.root / "input" / "other.wav").exists()
    # A saved LoadAudio node reopens with its file in the player; so does one saved by ComfyUI's frontend,
    # which lists the player and the button as widget inputs.
    wf = page.evaluate("loom.graph.serialize()")
    wf["nodes"].append({"id": 52, "type": "LoadAudio", "pos": [100, 900], "size": [300, 140], "flags": {},
                        "order": 9, "mode": 0, "properties": {"Node name for S&R": "LoadAudio"},
                        "inputs": [{"name": "audio", "type": "COMBO", "widget": {"name": "audio"}, "link": None},
                                   {"name": "audioUI", "type": "AUDIO_UI", "widget": {"name": "audioUI"}, "link": None},
                                   {"name": "upload", "type": "AUDIOUPLOAD", "widget": {"name": "upload"}, "link": None}],
                        "outputs": [{"name": "AUDIO", "type": "AUDIO", "links": None}],
                        "widgets_values": ["tone.wav", None, None]})
    wf["last_node_id"] = 52
    page.evaluate("wf => loom.loadWorkflow(wf, { quiet: true })", wf)
    assert _query(_media_src(page, 50, "audio"))["filename"] == "tone.wav"
    assert _query(_media_src(page, 51, "video"))["filename"] == "clip.mp4"
    assert _query(_media_src(page, 52, "audio"))["filename"] == "tone.wav"
    prompt = page.evaluate("loom.buildPrompt()")
    prompt = prompt.get("output", prompt)
    assert prompt["50"]["inputs"] == {"audio": "tone.wav"} and prompt["52"]["inputs"] == {"audio": "tone.wav"}
    assert prompt["51"]["inputs"] == {"file": "clip.mp4"}


AUDIO_VIDEO_PROMPT = {
    "1": {"class_type": "EmptyAudio", "inputs": {"duration": 0.5, "sample_rate": 8000, "channels": 1}},
    "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/editor"}},
    "3": {"class_type": "PreviewAudio", "inputs": {"audio": ["1", 0]}},
    "4": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 3, "color": 255}},
    "5": {"class_type": "CreateVideo", "inputs": {"images": ["4", 0], "fps": 8.0}},
    "6": {"class_type": "SaveVideo", "inputs": {"video": ["5", 0], "filename_prefix": "video/editor",
                                                 "format": "auto", "codec": "auto"}},
    "7": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["4", 0], "filename_prefix": "anim",
                                                        "fps": 6.0, "lossless": False, "quality": 80,
                                                        "method": "default"}},
}


def test_audio_and_video_outputs_get_players(page: Any, real_server: Any) -> None:
    _open(page, real_server)
    page.evaluate("p => loom.loadWorkflow(p, { api: true, quiet: true })", AUDIO_VIDEO_PROMPT)
    page.click("#loom-queue")
    saved = _query(_media_src(page, 2, "audio"))
    assert saved["type"] == "output" and saved["subfolder"] == "audio" and saved["filename"].endswith(".flac")
    assert (real_server.root / "output" / "audio" / saved["filename"]).is_file()
    preview = _query(_media_src(page, 3, "audio"))
    assert preview["type"] == "temp" and preview["filename"].endswith(".flac")
    video_src = _media_src(page, 6, "video")
    video = _query(video_src)
    assert video["type"] == "output" and video["subfolder"] == "video" and video["filename"].endswith(".mp4")
    assert page.request.get(video_src).headers["content-type"] == "video/mp4"
    # an animated WEBP stays a picture on its node
    page.wait_for_function("() => loom.graph.getNodeById(7).loom.imageElements?.[0]?.naturalWidth > 0",
                           timeout=20000)
    assert page.evaluate("!document.querySelector(\"video.loom-media[data-node='7']\")")
    assert page.evaluate("loom.graph.getNodeById(7).loom.imageElements[0].src").find(".webp") > 0
    # output players are not saved with the workflow
    values = page.evaluate("loom.graph.serialize().nodes.find(n => n.id === 2).widgets_values")
    assert values == ["audio/editor"]
