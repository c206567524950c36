"""The core video nodes (CreateVideo, SaveVideo, LoadVideo, GetVideoComponents, SaveWEBM): ComfyUI's specs, real
files written and read back, and a graph through the real executor."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.video import VideoFromFile, VideoInput, codec

PROMPT = {"1": {"class_type": "CreateVideo", "inputs": {"fps": 12.0}}}
EXTRA = {"workflow": {"nodes": [{"id": 1, "type": "CreateVideo"}], "links": []}}


def _frames(t: int = 8, h: int = 32, w: int = 48) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    base = torch.rand(t, 3, h // 8, w // 8, generator=gen)
    up = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    return up.permute(0, 2, 3, 1).contiguous()


def _run(registry: Any, name: str, **inputs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**inputs)


def test_specs_match_comfyui(registry: Any) -> None:
    info = registry.object_info()
    for name in ("CreateVideo", "SaveVideo", "LoadVideo", "GetVideoComponents", "SaveWEBM"):
        assert info[name]["category"] == "image/video", name
    assert [info[n]["display_name"] for n in ("CreateVideo", "SaveVideo", "LoadVideo", "GetVideoComponents")] == \
        ["Create Video", "Save Video", "Load Video", "Get Video Components"]
    create = info["CreateVideo"]
    assert create["input_order"] == {"required": ["images", "fps"], "optional": ["audio"]}
    assert create["input"]["required"]["fps"][1] == {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0}
    assert create["output"] == ["VIDEO"] and create["output_node"] is False
    save = info["SaveVideo"]
    assert save["input_order"]["required"] == ["video", "filename_prefix", "format", "codec"]
    assert save["input"]["required"]["format"][0] == ["auto", "mp4"]
    assert save["input"]["required"]["codec"][0] == ["auto", "h264"]
    assert save["input"]["required"]["filename_prefix"][1]["default"] == "video/ComfyUI"
    assert save["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert save["output_node"] is True and save["output"] == []
    parts = info["GetVideoComponents"]
    assert parts["output"] == ["IMAGE", "AUDIO", "FLOAT"] and parts["output_name"] == ["images", "audio", "fps"]
    assert info["LoadVideo"]["input"]["required"]["file"][1] == {"video_upload": True}
    webm = info["SaveWEBM"]
    assert webm["experimental"] is True and webm["input"]["required"]["codec"][0] == ["vp9", "av1"]
    assert webm["input_order"]["required"] == ["images", "filename_prefix", "codec", "fps", "crf"]


def test_create_then_save_video_writes_an_mp4_with_the_workflow(registry: Any, services: Any) -> None:
    frames = _frames()
    (video,) = _run(registry, "CreateVideo", images=frames, fps=12.0)
    assert isinstance(video, VideoInput) and video.get_dimensions() == (48, 32) and video.get_frame_count() == 8
    out = _run(registry, "SaveVideo", video=video, filename_prefix="video/ComfyUI", format="auto", codec="auto",
               prompt=PROMPT, extra_pnginfo=EXTRA)
    assert out == {"ui": {"images": [{"filename": "ComfyUI_00001_.mp4", "subfolder": "video", "type": "output"}],
                          "animated": (True,)}}
    path = Path(services.paths.output_dir) / "video" / "ComfyUI_00001_.mp4"
    info = codec.probe(path)
    assert info.frame_count == 8 and info.frame_rate == 12 and (info.width, info.height) == (48, 32)
    assert info.video_codec == "h264"
    assert json.loads(info.metadata["prompt"]) == PROMPT and json.loads(info.metadata["workflow"]) == EXTRA["workflow"]
    err = (codec.decode(path).images - frames).abs()
    assert err.mean() < 0.035 and err.max() < 0.3  # yuv420p at crf 23 (see tests/engine/test_video_codec.py)
    again = _run(registry, "SaveVideo", video=video, filename_prefix="video/ComfyUI", format="mp4", codec="h264")
    assert again["ui"]["images"][0]["filename"] == "ComfyUI_00002_.mp4"
    assert "prompt" not in codec.probe(path.parent / "ComfyUI_00002_.mp4").metadata


def test_save_video_disable_metadata_and_bad_sizes(registry: Any, services: Any) -> None:
    services.disable_metadata = True
    (video,) = _run(registry, "CreateVideo", images=_frames(), fps=10.0)
    _run(registry, "SaveVideo", video=video, filename_prefix="plain", format="auto", codec="auto", prompt=PROMPT,
         extra_pnginfo=EXTRA)
    tags = codec.probe(Path(services.paths.output_dir) / "plain_00001_.mp4").metadata
    assert "prompt" not in tags and "workflow" not in tags
    (odd,) = _run(registry, "CreateVideo", images=torch.zeros(2, 15, 16, 3), fps=10.0)
    with pytest.raises(ValueError, match=r"SaveVideo, input 'video': .*even dimensions, got 16x15"):
        _run(registry, "SaveVideo", video=odd, filename_prefix="odd", format="auto", codec="auto")
    with pytest.raises(ValueError, match=r"CreateVideo, input 'images': expected a non-empty IMAGE batch"):
        _run(registry, "CreateVideo", images=torch.zeros(0, 8, 8, 3), fps=10.0)


def test_load_video_lists_validates_and_splits(registry: Any, services: Any, tmp_path: Path) -> None:
    frames = _frames(6, 32, 32)
    src = tmp_path / "clip.mp4"
    codec.encode(src, frames, 6, audio={"waveform": torch.zeros(1, 1, 8000), "sample_rate": 8000})
    inp = Path(services.paths.input_dir)
    shutil.copy(src, inp / "clip.mp4")
    (inp / "still.png").write_bytes(b"x")
    (inp / "bad.webm").write_bytes(b"not a video" * 20)
    cls = registry.get("LoadVideo")
    assert cls.INPUT_TYPES()["required"]["file"][0] == ["bad.webm", "clip.mp4"]
    assert cls.VALIDATE_INPUTS(file="clip.mp4") is True
    assert cls.VALIDATE_INPUTS(file="gone.mp4") == "Invalid video file: gone.mp4"
    assert cls.VALIDATE_INPUTS(file="../x.mp4") == "Invalid video file: ../x.mp4"
    bad = cls.VALIDATE_INPUTS(file="bad.webm")
    assert isinstance(bad, str) and bad.startswith("Invalid video file: bad.webm (") and "not a readable video" in bad
    assert cls.IS_CHANGED(file="clip.mp4") == os.path.getmtime(inp / "clip.mp4")
    (video,) = _run(registry, "LoadVideo", file="clip.mp4")
    assert isinstance(video, VideoFromFile) and video.get_frame_count() == 6 and video.get_frame_rate() == 6
    images, audio, fps = _run(registry, "GetVideoComponents", video=video)
    assert images.shape == (6, 32, 32, 3) and fps == 6.0 and isinstance(fps, float)
    assert audio is not None and audio["sample_rate"] == 8000 and audio["waveform"].shape[:2] == (1, 1)
    assert torch.equal(images, codec.decode(src).images)
    (broken,) = _run(registry, "LoadVideo", file="bad.webm")
    with pytest.raises(ValueError, match=r"GetVideoComponents, input 'video': .*bad.webm.*not a readable video"):
        _run(registry, "GetVideoComponents", video=broken)


@pytest.mark.parametrize(("vcodec", "decoders"), [("vp9", {"vp9", "libvpx-vp9"}),
                                                  ("av1", {"libdav1d", "av1", "libaom-av1"})])
def test_save_webm(registry: Any, services: Any, vcodec: str, decoders: set[str]) -> None:
    frames = _frames(4, 32, 32)
    out = _run(registry, "SaveWEBM", images=frames, codec=vcodec, fps=8.0, filename_prefix="web", crf=20.0,
               prompt=PROMPT, extra_pnginfo=EXTRA)
    assert out == {"ui": {"images": [{"filename": "web_00001_.webm", "subfolder": "", "type": "output"}],
                          "animated": (True,)}}
    info = codec.probe(Path(services.paths.output_dir) / "web_00001_.webm")
    assert info.frame_count == 4 and info.frame_rate == 8 and "matroska" in info.container
    assert info.video_codec in decoders
    # the matroska muxer stores tag names upper-case, as for ComfyUI's file
    assert json.loads(info.metadata["PROMPT"]) == PROMPT and json.loads(info.metadata["WORKFLOW"]) == EXTRA["workflow"]


def test_graph_through_the_executor(registry: Any, services: Any) -> None:
    from executor import PromptExecutor, PromptValidationError, validate_prompt

    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 5, "color": 0xFF8000}},
        "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 10.0}},
        "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": "g/clip", "format": "auto",
                                                    "codec": "auto"}},
    }
    valid = validate_prompt(registry, prompt)
    outcome = PromptExecutor(registry).execute(valid.prompt, "p1", {"extra_pnginfo": EXTRA}, valid.outputs)
    assert outcome.status == "success", outcome.error
    entry = outcome.outputs["3"]["images"][0]
    assert entry == {"filename": "clip_00001_.mp4", "subfolder": "g", "type": "output"}
    saved = Path(services.paths.output_dir) / "g" / "clip_00001_.mp4"
    pixels = codec.decode(saved).images
    assert pixels.shape == (5, 48, 64, 3)
    assert (pixels - torch.tensor([1.0, 128 / 255, 0.0])).abs().max() < 0.012
    assert json.loads(codec.probe(saved).metadata["workflow"]) == EXTRA["workflow"]

    shutil.copy(saved, Path(services.paths.input_dir) / "clip.mp4")
    second = {
        "4": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
        "5": {"class_type": "GetVideoComponents", "inputs": {"video": ["4", 0]}},
        "6": {"class_type": "CreateVideo", "inputs": {"images": ["5", 0], "fps": ["5", 2]}},
        "7": {"class_type": "SaveVideo", "inputs": {"video": ["6", 0], "filename_prefix": "again", "format": "mp4",
                                                    "codec": "h264"}},
    }
    valid = validate_prompt(registry, second)
    outcome = PromptExecutor(registry).execute(valid.prompt, "p2", {}, valid.outputs)
    assert outcome.status == "success", outcome.error
    again = codec.probe(Path(services.paths.output_dir) / "again_00001_.mp4")
    assert again.frame_count == 5 and again.frame_rate == 10

    second["4"]["inputs"]["file"] = "missing.mp4"
    with pytest.raises(PromptValidationError) as caught:
        validate_prompt(registry, second)
    errors = caught.value.to_wire()["node_errors"]["4"]["errors"]
    assert any("Invalid video file: missing.mp4" in e["details"] for e in errors), errors


def test_video_slice(registry: Any, services: Any, tmp_path: Path) -> None:
    info = registry.object_info()["Video Slice"]
    assert info["display_name"] == "Video Slice" and info["category"] == "image/video" and info["output"] == ["VIDEO"]
    assert info["input_order"]["required"] == ["video", "start_time", "duration", "strict_duration"]
    assert info["input"]["required"]["start_time"][1]["min"] == -1e5
    frames = _frames(10, 32, 32)
    codec.encode(tmp_path / "ten.mp4", frames, 10)
    (part,) = _run(registry, "Video Slice", video=VideoFromFile(str(tmp_path / "ten.mp4")), start_time=0.2,
                   duration=0.5, strict_duration=False)
    assert part.get_frame_count() == 5
    images, _, fps = _run(registry, "GetVideoComponents", video=part)
    assert images.shape[0] == 5 and fps == 10.0
    assert torch.equal(images, codec.decode(tmp_path / "ten.mp4").images[2:7])
    with pytest.raises(ValueError, match=r"Video Slice, input 'duration': 5.0 s from 0.5 s is longer than the video"):
        _run(registry, "Video Slice", video=part, start_time=0.5, duration=5.0, strict_duration=True)
