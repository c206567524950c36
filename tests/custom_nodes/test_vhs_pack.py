"""The real Kosinkadink/ComfyUI-VideoHelperSuite (the commit pinned in bench/pack_suite/packs.json, staged from its
git mirror) on Loom's in-process engine: VHS_VideoCombine writes an IMAGE batch through its ffmpeg subprocess
(imageio-ffmpeg's binary) as h264 mp4 / webp / gif with the prompt and workflow, and answers the `gifs` ui entry
the frontend reads; VHS_LoadVideoPath / VHS_LoadVideo (OpenCV) read frames back with frame_load_cap, skip and
select_every_nth; VHS_VideoInfo and VHS_LoadAudio. Frames are checked against Loom's own decoder
(`engine.video.codec`). VHS_BatchManager needs a prompt queue: without Loom's server it fails with an error naming
what is missing (it runs on the server: test_vhs_server.py)."""
from __future__ import annotations

import json
import shutil
import wave
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import real_packs
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PIN = real_packs.pin("ComfyUI-VideoHelperSuite")
pytestmark = real_packs.skip_unless_staged(PIN)

FIX = ROOT / "tests" / "fixtures"
T, H, W = 8, 48, 64
WORKFLOW = {"nodes": [{"id": 1, "type": "VHS_VideoCombine"}], "links": [], "version": 0.4}


def frames() -> torch.Tensor:
    """A smooth moving gradient, [T,H,W,3] in 0..1 (smooth, so yuv420p's halved chroma costs little)."""
    t = torch.arange(T, dtype=torch.float32).view(T, 1, 1)
    y = torch.arange(H, dtype=torch.float32).view(1, H, 1)
    x = torch.arange(W, dtype=torch.float32).view(1, 1, W)
    r = (x + 4 * t) / (W + 4 * T)
    g = y / H + 0 * t
    b = 0.5 + 0.4 * torch.sin((x + y) / 20 + t / 2)
    return torch.stack([c.expand(T, H, W) for c in (r, g, b)], dim=-1).contiguous()


class TestFrames:
    """The batch above as a node, so VHS nodes get their IMAGE through the executor."""

    CATEGORY = "tests"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {}}

    def run(self) -> tuple[torch.Tensor]:
        return (frames(),)


class TestAudio:
    """A fixed AUDIO (set on the class by the test) as a node."""

    CATEGORY = "tests"
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "run"
    waveform: dict[str, Any] = {}

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {}}

    def run(self) -> tuple[dict[str, Any]]:
        return (TestAudio.waveform,)


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from app.runner import build_runtime

    base = tmp_path_factory.mktemp("vhs")
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "models" / "checkpoints" / "tiny-sd15.safetensors").symlink_to(FIX / "tiny-sd15" / "tiny-sd15.safetensors")
    real_packs.stage(PIN, base / "custom_nodes")
    torch.set_num_threads(1)
    runtime = build_runtime(base, cpu=True)
    runtime.registry.register("VHSTestFrames", TestFrames)
    runtime.registry.register("VHSTestAudio", TestAudio)
    env, reports = real_packs.load_packs(runtime, base)
    yield SimpleNamespace(registry=runtime.registry, services=runtime.services, base=base, vhs_report=reports[0])
    real_packs.unload_packs(env)
    runtime.close()


def _run(rt: Any, graph: dict[str, Any], ok: bool = True) -> Any:
    from executor import PromptExecutor, validate_prompt
    from nodes.checks import builtin_checks

    valid = validate_prompt(rt.registry, graph, extra_checks=builtin_checks(rt.services))
    assert not getattr(valid, "node_errors", None), valid.node_errors
    outcome = PromptExecutor(rt.registry, keep_values=True).execute(
        valid.prompt, "p", {"extra_pnginfo": {"workflow": WORKFLOW}}, valid.outputs)
    if ok:
        assert outcome.status == "success", (outcome.error or {}).get("exception_message")
    return outcome


def _combine(format: str, prefix: str, **widgets: Any) -> dict[str, Any]:
    return {"src": {"class_type": "VHSTestFrames", "inputs": {}},
            "vc": {"class_type": "VHS_VideoCombine",
                   "inputs": {"images": ["src", 0], "frame_rate": 8, "loop_count": 0, "filename_prefix": prefix,
                              "format": format, "pingpong": False, "save_output": True, **widgets}}}


@pytest.fixture(scope="module")
def mp4(rt: Any) -> tuple[Path, dict[str, Any], Any]:
    """(the mp4 VHS_VideoCombine wrote, its `gifs` ui entry, the run's outcome)."""
    outcome = _run(rt, _combine("video/h264-mp4", "vhs_mp4", pix_fmt="yuv420p", crf=19, save_metadata=True,
                                trim_to_audio=False))
    (entry,) = outcome.outputs["vc"]["gifs"]
    return Path(entry["fullpath"]), entry, outcome


def test_every_node_registers(rt: Any) -> None:
    report = rt.vhs_report
    assert report.status == "loaded", report.error
    assert not report.refused and not report.warnings
    assert len(report.nodes) == 40
    assert report.routes_added == 6  # /vhs/viewvideo (+ /viewvideo), viewaudio, queryvideo, getpath (+ /getpath)
    for name in ("VHS_VideoCombine", "VHS_LoadVideo", "VHS_LoadVideoPath", "VHS_LoadAudio", "VHS_BatchManager",
                 "VHS_VideoInfo"):
        assert rt.registry.source_of(name) == report.module


def test_combine_mp4_decodes_back(rt: Any, mp4: tuple[Path, dict[str, Any], Any]) -> None:
    from engine.video import codec

    path, entry, outcome = mp4
    assert path.parent == rt.base / "output" and path.name == "vhs_mp4_00001.mp4"
    assert entry == {"filename": "vhs_mp4_00001.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4",
                     "frame_rate": 8.0, "workflow": "vhs_mp4_00001.png", "fullpath": str(path)}
    assert outcome.values["vc"][0][0] == (True, [str(rt.base / "output" / "vhs_mp4_00001.png"), str(path)])
    info = codec.probe(path)
    assert (info.width, info.height, info.frame_count, info.frame_rate) == (W, H, T, Fraction(8))
    assert info.video_codec == "h264"
    decoded = codec.decode(path)
    assert decoded.images.shape == (T, H, W, 3)
    error = (decoded.images - frames()).abs()
    # measured: mean 0.0061, max 0.065 (crf 19, yuv420p)
    assert float(error.mean()) < 0.01 and float(error.max()) < 0.15
    # the frames are in order: each decoded frame is closest to its own source frame
    src = frames()
    nearest = [int(((src - decoded.images[i]).abs().mean(dim=(1, 2, 3))).argmin()) for i in range(T)]
    assert nearest == list(range(T))


def test_combine_writes_prompt_and_workflow(rt: Any, mp4: tuple[Path, dict[str, Any], Any]) -> None:
    from engine.video import codec

    path, entry, _ = mp4
    tags = codec.probe(path).metadata
    assert json.loads(tags["workflow"]) == WORKFLOW
    prompt = json.loads(tags["prompt"])
    assert prompt["vc"]["class_type"] == "VHS_VideoCombine" and prompt["vc"]["inputs"]["crf"] == 19
    # the first frame as a png with the same two chunks (the frontend drags it in as the workflow)
    with Image.open(path.parent / entry["workflow"]) as png:
        assert png.size == (W, H)
        assert json.loads(png.info["workflow"]) == WORKFLOW and json.loads(png.info["prompt"]) == prompt


def test_combine_format_widgets_reach_ffmpeg(rt: Any) -> None:
    """crf arrives through the node's open hidden section: a worse crf gives a measurably worse file."""
    from engine.video import codec

    low = _run(rt, _combine("video/h264-mp4", "vhs_crf", pix_fmt="yuv420p", crf=45, save_metadata=False,
                            trim_to_audio=False))
    path = Path(low.outputs["vc"]["gifs"][0]["fullpath"])
    assert "prompt" not in codec.probe(path).metadata  # save_metadata=False reached the node too
    error = float((codec.decode(path).images - frames()).abs().mean())
    assert error > 0.015  # measured 0.027 at crf 45 (0.0061 at crf 19)


@pytest.mark.parametrize(("format", "extension", "widgets"),
                         [("image/gif", "gif", {}), ("image/webp", "webp", {"lossless": True})])
def test_combine_gif_and_webp(rt: Any, format: str, extension: str, widgets: dict[str, Any]) -> None:
    outcome = _run(rt, _combine(format, f"vhs_{extension}", **widgets))
    (entry,) = outcome.outputs["vc"]["gifs"]
    assert entry["format"] == format and entry["filename"] == f"vhs_{extension}_00001.{extension}"
    with Image.open(entry["fullpath"]) as img:
        assert img.size == (W, H) and getattr(img, "n_frames", 1) == T
        img.seek(3)
        got = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)
    error = float((got - frames()[3]).abs().mean())
    # measured: webp (lossless) 0.00098, 8-bit rounding only; gif 0.016, a 256-colour palette
    assert error < (0.002 if extension == "webp" else 0.03), error


def _load_path(video: Path, **options: Any) -> dict[str, Any]:
    inputs = {"video": str(video), "force_rate": 0, "custom_width": 0, "custom_height": 0, "frame_load_cap": 0,
              "skip_first_frames": 0, "select_every_nth": 1, **options}
    return {"lv": {"class_type": "VHS_LoadVideoPath", "inputs": inputs},
            "info": {"class_type": "VHS_VideoInfo", "inputs": {"video_info": ["lv", 3]}},
            "out": {"class_type": "PreviewImage", "inputs": {"images": ["lv", 0]}},
            "shown": {"class_type": "PreviewAny", "inputs": {"source": ["info", 6]}}}


def test_load_video_path_frames_and_info(rt: Any, mp4: tuple[Path, dict[str, Any], Any]) -> None:
    from engine.video import codec

    path = mp4[0]
    reference = codec.decode(path).images
    outcome = _run(rt, _load_path(path))
    images, count = outcome.values["lv"][0][0], outcome.values["lv"][1][0]
    assert images.shape == (T, H, W, 3) and count == T
    # OpenCV's decode (VHS) and Loom's PyAV decode of the same file, two yuv -> rgb converters: measured mean
    # 0.0081, max 0.063
    error = (images - reference).abs()
    assert float(error.mean()) < 0.015 and float(error.max()) < 0.1
    info = [v[0] for v in outcome.values["info"]]
    assert info == [8.0, T, 1.0, W, H, 8.0, T, 1.0, W, H]


@pytest.mark.parametrize(("cap", "skip", "nth", "picked"),
                         [(3, 0, 1, [0, 1, 2]), (0, 2, 1, [2, 3, 4, 5, 6, 7]), (0, 0, 3, [0, 3, 6]),
                          (2, 1, 2, [1, 3])])
def test_load_video_upload_cap_skip_nth(rt: Any, mp4: tuple[Path, dict[str, Any], Any], cap: int, skip: int,
                                        nth: int, picked: list[int]) -> None:
    from engine.video import codec

    path = mp4[0]
    shutil.copy(path, rt.base / "input" / "clip.mp4")
    reference = codec.decode(path).images
    graph = _load_path(path, frame_load_cap=cap, skip_first_frames=skip, select_every_nth=nth)
    graph["lv"]["class_type"] = "VHS_LoadVideo"
    graph["lv"]["inputs"]["video"] = "clip.mp4"
    outcome = _run(rt, graph)
    images = outcome.values["lv"][0][0]
    assert outcome.values["lv"][1][0] == len(picked)
    # the frames picked, not their neighbours: each is closest to its own decoded frame
    assert [int((reference - image).abs().mean(dim=(1, 2, 3)).argmin()) for image in images] == picked
    info = [v[0] for v in outcome.values["info"]]
    assert info[6] == len(picked) and info[5] == pytest.approx(8.0 / nth)
    assert outcome.outputs["shown"]["text"] == [str(len(picked))]


def test_load_video_path_names_a_bad_path(rt: Any) -> None:
    from executor import validate_prompt
    from executor.errors import PromptValidationError
    from nodes.checks import builtin_checks

    graph = _load_path(rt.base / "input" / "no_such.mp4")
    with pytest.raises(PromptValidationError) as caught:
        validate_prompt(rt.registry, graph, extra_checks=builtin_checks(rt.services))
    assert "no_such.mp4" in json.dumps(caught.value.node_errors["lv"])


def test_load_audio(rt: Any) -> None:
    rate, seconds = 16000, 0.5
    t = np.arange(int(rate * seconds)) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    path = rt.base / "input" / "tone.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(tone.tobytes())
    graph = {"la": {"class_type": "VHS_LoadAudio", "inputs": {"audio_file": str(path), "seek_seconds": 0.0,
                                                              "duration": 0.0}},
             "out": {"class_type": "PreviewAudio", "inputs": {"audio": ["la", 0]}}}
    outcome = _run(rt, graph)
    audio, duration = outcome.values["la"][0][0], outcome.values["la"][1][0]
    assert audio["sample_rate"] == rate and audio["waveform"].shape == (1, 1, len(tone))
    assert duration == pytest.approx(seconds)
    assert float((audio["waveform"][0, 0] - torch.from_numpy(tone / 32768.0)).abs().max()) < 1e-3


def test_batch_manager_without_a_server_names_what_is_missing(rt: Any, mp4: tuple[Path, dict[str, Any], Any]) -> None:
    graph = _combine("video/h264-mp4", "vhs_meta", pix_fmt="yuv420p", crf=19, save_metadata=False,
                     trim_to_audio=False)
    graph["bm"] = {"class_type": "VHS_BatchManager", "inputs": {"frames_per_batch": 4}}
    graph["lv"] = _load_path(mp4[0], meta_batch=["bm", 0])["lv"]
    graph["vc"]["inputs"].update(images=["lv", 0], meta_batch=["bm", 0])
    outcome = _run(rt, graph, ok=False)
    assert outcome.status == "error"
    message = outcome.error["exception_message"]
    assert "prompt_queue.currently_running" in message and "no prompt queue" in message


def test_load_video_ffmpeg_path(rt: Any, mp4: tuple[Path, dict[str, Any], Any]) -> None:
    """VHS's ffmpeg-subprocess loader: from 0.25 s (frame 2 at 8 fps), 4 frames."""
    from engine.video import codec

    path = mp4[0]
    reference = codec.decode(path).images
    inputs = {"video": str(path), "force_rate": 0, "custom_width": 0, "custom_height": 0, "frame_load_cap": 4,
              "start_time": 0.25}
    graph = {"lv": {"class_type": "VHS_LoadVideoFFmpegPath", "inputs": inputs},
             "out": {"class_type": "PreviewImage", "inputs": {"images": ["lv", 0]}}}
    outcome = _run(rt, graph)
    images, mask = outcome.values["lv"][0][0], outcome.values["lv"][1][0]
    assert images.shape == (4, H, W, 3)
    assert mask.shape == (4, 64, 64) and not mask.any()  # no alpha: the pack's own empty 64x64 placeholder
    assert [int((reference - image).abs().mean(dim=(1, 2, 3)).argmin()) for image in images] == [2, 3, 4, 5]
    assert float((images - reference[2:6]).abs().mean()) < 0.01


def test_combine_muxes_audio(rt: Any) -> None:
    """AUDIO into VHS_VideoCombine: a second file `<name>-audio.mp4` with an aac track, the one the ui shows."""
    from engine.video import codec

    rate = 44100
    t = torch.arange(rate) / rate  # 1 s, the video lasts T / 8 = 1 s
    waveform = (0.3 * torch.sin(2 * torch.pi * 330 * t)).view(1, 1, -1).repeat(1, 2, 1)
    graph = _combine("video/h264-mp4", "vhs_audio", pix_fmt="yuv420p", crf=19, save_metadata=True,
                     trim_to_audio=False)
    graph["au"] = {"class_type": "VHSTestAudio", "inputs": {}}
    graph["vc"]["inputs"]["audio"] = ["au", 0]
    TestAudio.waveform = {"waveform": waveform, "sample_rate": rate}
    outcome = _run(rt, graph)
    (entry,) = outcome.outputs["vc"]["gifs"]
    assert entry["filename"] == "vhs_audio_00001-audio.mp4"
    path = Path(entry["fullpath"])
    info = codec.probe(path)
    assert info.audio_codec == "aac" and info.frame_count == T
    decoded = codec.decode(path)
    assert decoded.audio is not None and decoded.audio["sample_rate"] == rate
    got = decoded.audio["waveform"][0]
    assert got.shape[0] == 2 and abs(got.shape[1] - rate) < rate // 20
    # the tone survives aac: the strongest frequency of the decoded left channel is 330 Hz
    spectrum = torch.fft.rfft(got[0, :rate // 2])
    assert int(spectrum.abs().argmax()) * 2 == 330


def _with_vae(graph: dict[str, Any]) -> dict[str, Any]:
    graph["ck"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}}
    return graph


def test_batched_vae_nodes_equal_the_core_ones(rt: Any) -> None:
    """VHS_VAEEncodeBatched / VHS_VAEDecodeBatched (3 frames at a time) give the core VAEEncode / VAEDecode's values."""
    graph = _with_vae({"src": {"class_type": "VHSTestFrames", "inputs": {}}})
    graph.update({
        "enc": {"class_type": "VAEEncode", "inputs": {"pixels": ["src", 0], "vae": ["ck", 2]}},
        "benc": {"class_type": "VHS_VAEEncodeBatched", "inputs": {"pixels": ["src", 0], "vae": ["ck", 2],
                                                                  "per_batch": 3}},
        "dec": {"class_type": "VAEDecode", "inputs": {"samples": ["enc", 0], "vae": ["ck", 2]}},
        "bdec": {"class_type": "VHS_VAEDecodeBatched", "inputs": {"samples": ["benc", 0], "vae": ["ck", 2],
                                                                  "per_batch": 3}},
        "o1": {"class_type": "PreviewImage", "inputs": {"images": ["dec", 0]}},
        "o2": {"class_type": "PreviewImage", "inputs": {"images": ["bdec", 0]}}})
    values = _run(rt, graph).values
    core, batched = values["enc"][0][0]["samples"], values["benc"][0][0]["samples"]
    assert batched.shape == core.shape == (T, 4, H // 8, W // 8)
    assert float((batched - core).abs().max()) < 1e-5
    assert values["bdec"][0][0].shape == (T, H, W, 3)
    assert float((values["bdec"][0][0] - values["dec"][0][0]).abs().max()) < 1e-5


def test_combine_decodes_latents_with_its_vae(rt: Any) -> None:
    """LATENT + VAE into VHS_VideoCombine: it decodes with the VAE (`vae.decode`, `vae.downscale_ratio`) and writes
    the same file as VAEDecode's IMAGE into the same node."""
    from engine.video import codec

    graph = _with_vae(_combine("video/h264-mp4", "vhs_vae", pix_fmt="yuv420p", crf=19, save_metadata=False,
                               trim_to_audio=False))
    graph["enc"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["src", 0], "vae": ["ck", 2]}}
    graph["dec"] = {"class_type": "VAEDecode", "inputs": {"samples": ["enc", 0], "vae": ["ck", 2]}}
    graph["vc2"] = {"class_type": "VHS_VideoCombine", "inputs": {**graph["vc"]["inputs"], "images": ["dec", 0],
                                                                 "filename_prefix": "vhs_vae_image"}}
    graph["vc"]["inputs"].update(images=["enc", 0], vae=["ck", 2])
    outcome = _run(rt, graph)
    from_latent = codec.decode(Path(outcome.outputs["vc"]["gifs"][0]["fullpath"])).images
    from_image = codec.decode(Path(outcome.outputs["vc2"]["gifs"][0]["fullpath"])).images
    assert from_latent.shape == (T, H, W, 3)
    # measured: 7 of 8 frames identical, one 0.003 apart (mean); the tiny VAE's noisy frames are far from h264's
    # reach (0.056 mean from VAEDecode's own IMAGE), so the two files agreeing is what shows the same frames went in
    assert float((from_latent - from_image).abs().mean(dim=(1, 2, 3)).max()) < 0.01


def test_load_video_with_a_vae_gives_latents(rt: Any, mp4: tuple[Path, dict[str, Any], Any]) -> None:
    """VHS_LoadVideoPath with a VAE encodes as it reads: the core VAEEncode's latent of the frames it reads."""
    graph = _with_vae(_load_path(mp4[0]))
    graph["lv2"] = {"class_type": "VHS_LoadVideoPath", "inputs": {**graph["lv"]["inputs"], "vae": ["ck", 2]}}
    graph["enc"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["lv", 0], "vae": ["ck", 2]}}
    graph["count"] = {"class_type": "PreviewAny", "inputs": {"source": ["lv2", 1]}}
    graph["dec"] = {"class_type": "VAEDecode", "inputs": {"samples": ["enc", 0], "vae": ["ck", 2]}}
    graph["shown"] = {"class_type": "PreviewImage", "inputs": {"images": ["dec", 0]}}
    values = _run(rt, graph).values
    latent, core = values["lv2"][0][0]["samples"], values["enc"][0][0]["samples"]
    assert latent.shape == core.shape == (T, 4, H // 8, W // 8)
    assert float((latent - core).abs().max()) < 1e-4
