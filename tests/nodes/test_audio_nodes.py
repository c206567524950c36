"""ComfyUI's model-free audio nodes: their /object_info entries, and graphs over real files run by the executor."""
from __future__ import annotations

import json
import math
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from engine import audio as audio_files

EXTRA = {"extra_pnginfo": {"workflow": {"nodes": [], "links": [], "version": 0.4}}}


def write_wav(path: Path, rate: int = 16000, seconds: float = 1.0, freqs: tuple[float, ...] = (440.0, 660.0)
              ) -> np.ndarray:
    """A 16-bit PCM file written by Python's wave module; its samples as float [C, S]."""
    t = np.arange(int(rate * seconds)) / rate
    ints = np.stack([np.round((0.5 - 0.2 * i) * 32767 * np.sin(2 * np.pi * f * t)) for i, f in enumerate(freqs)])
    ints = ints.astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(freqs))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(ints.T.tobytes())
    return ints.astype(np.float32) / 32768.0


def run(registry: Any, services: Any, prompt: dict[str, Any]) -> Any:
    """Validate and execute `prompt` with the built-in checks, as the server does."""
    from executor import PromptExecutor, validate_prompt
    from nodes.checks import builtin_checks

    valid = validate_prompt(registry, prompt, extra_checks=builtin_checks(services))
    return PromptExecutor(registry).execute(valid.prompt, "p1", EXTRA, valid.outputs)


def call(registry: Any, name: str, **inputs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**inputs)


def test_object_info_entries(registry: Any, services: Any) -> None:
    for name in ("a.wav", "b.mp3", "c.mp4", "d.png", "e.txt", "f.flac", "g.webm"):
        (Path(services.paths.input_dir) / name).write_bytes(b"x")
    info = registry.object_info()
    load = info["LoadAudio"]
    assert (load["display_name"], load["category"], load["output"], load["output_node"]) == \
        ("Load Audio", "audio", ["AUDIO"], False)
    assert load["input"]["required"]["audio"] == [["a.wav", "b.mp3", "c.mp4", "f.flac", "g.webm"],
                                                  {"audio_upload": True}]
    assert info["RecordAudio"]["input"]["required"] == {"audio": ["AUDIO_RECORD", {}]}
    for name, display in (("SaveAudio", "Save Audio (FLAC) (DEPRECATED)"), ("SaveAudioMP3", "Save Audio (MP3) "
                          "(DEPRECATED)"), ("SaveAudioOpus", "Save Audio (Opus) (DEPRECATED)")):
        node = info[name]
        assert node["display_name"] == display and node["deprecated"] is True and node["output_node"] is True
        assert node["output"] == ["AUDIO"] and node["input"]["hidden"] == {"prompt": "PROMPT",
                                                                           "extra_pnginfo": "EXTRA_PNGINFO"}
        assert node["input"]["required"]["filename_prefix"] == ["STRING", {"default": "audio/ComfyUI"}]
    assert info["SaveAudioMP3"]["input"]["required"]["quality"] == [["V0", "128k", "320k"], {"default": "V0"}]
    assert info["SaveAudioOpus"]["input"]["required"]["quality"] == [["64k", "96k", "128k", "192k", "320k"],
                                                                     {"default": "128k"}]
    fmt = info["SaveAudioAdvanced"]["input"]["required"]["format"]
    assert fmt[0] == "COMFY_DYNAMICCOMBO_V3" and [o["key"] for o in fmt[1]["options"]] == ["flac", "mp3", "opus"]
    assert "deprecated" not in info["SaveAudioAdvanced"] and info["PreviewAudio"]["output_node"] is True
    assert info["SplitAudioChannels"]["output_name"] == ["left", "right"]
    assert info["AudioDuration"]["output"] == ["FLOAT", "INT"]
    assert info["AudioConcat"]["input"]["required"]["direction"][0] == ["after", "before"]
    assert info["AudioMerge"]["input"]["required"]["merge_method"][0] == ["add", "mean", "subtract", "multiply"]
    assert info["AudioAdjustVolume"]["input"]["required"]["volume"][1]["default"] == 1
    assert info["AudioEqualizer3Band"]["experimental"] is True
    assert {info[n]["category"] for n in ("EmptyAudio", "TrimAudioDuration", "JoinAudioChannels")} == {"audio"}


def test_load_trim_save_advanced_mp3(registry: Any, services: Any) -> None:
    samples = write_wav(Path(services.paths.input_dir) / "voice.wav")
    prompt = {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": "voice.wav"}},
        "2": {"class_type": "TrimAudioDuration", "inputs": {"audio": ["1", 0], "start_index": 0.25, "duration": 0.5}},
        "3": {"class_type": "SaveAudioAdvanced", "inputs": {"audio": ["2", 0], "filename_prefix": "audio/ComfyUI",
                                                              "format": "mp3", "format.quality": "320k"}},
        "4": {"class_type": "SaveAudio", "inputs": {"audio": ["2", 0], "filename_prefix": "audio/ComfyUI"}},
    }
    outcome = run(registry, services, prompt)
    assert outcome.status == "success", outcome.error
    (mp3_entry,), (flac_entry,) = outcome.outputs["3"]["audio"], outcome.outputs["4"]["audio"]
    assert mp3_entry["subfolder"] == flac_entry["subfolder"] == "audio"
    assert mp3_entry["type"] == flac_entry["type"] == "output"
    # whichever save runs second in the same folder takes the next counter
    assert {mp3_entry["filename"], flac_entry["filename"]} in (
        {"ComfyUI_00001.mp3", "ComfyUI_00002.flac"}, {"ComfyUI_00002.mp3", "ComfyUI_00001.flac"})
    out = Path(services.paths.output_dir) / "audio"
    flac = audio_files.decode_file(out / flac_entry["filename"])
    assert flac["sample_rate"] == 16000 and torch.equal(flac["waveform"][0],
                                                         torch.from_numpy(samples[:, 4000:12000]))
    mp3 = audio_files.decode_file(out / mp3_entry["filename"])
    assert mp3["waveform"].shape == (1, 2, 8000)
    tags = audio_files.read_tags(out / mp3_entry["filename"])
    assert json.loads(tags["prompt"]) == prompt and json.loads(tags["workflow"]) == EXTRA["extra_pnginfo"]["workflow"]


def test_preview_writes_flac_to_temp(registry: Any, services: Any) -> None:
    prompt = {"1": {"class_type": "EmptyAudio", "inputs": {"duration": 0.5, "sample_rate": 8000, "channels": 1}},
              "2": {"class_type": "AudioAdjustVolume", "inputs": {"audio": ["1", 0], "volume": 6}},
              "3": {"class_type": "PreviewAudio", "inputs": {"audio": ["2", 0]}}}
    outcome = run(registry, services, prompt)
    assert outcome.status == "success", outcome.error
    (entry,) = outcome.outputs["3"]["audio"]
    assert entry["type"] == "temp" and entry["subfolder"] == "" and entry["filename"].startswith("ComfyUI_temp_")
    got = audio_files.decode_file(Path(services.paths.temp_dir) / entry["filename"])
    assert got["sample_rate"] == 8000 and got["waveform"].shape == (1, 1, 4000)
    assert not got["waveform"].any()


def test_batch_saves_one_file_per_clip(registry: Any, services: Any) -> None:
    batch = {"waveform": torch.rand(3, 2, 800) - 0.5, "sample_rate": 8000}
    out = call(registry, "SaveAudioOpus", audio=batch, filename_prefix="clips/b%batch_num%", quality="64k")
    assert [e["filename"] for e in out["ui"]["audio"]] == ["b0_00001.opus", "b1_00002.opus", "b2_00003.opus"]
    assert out["result"] == (batch,)
    for entry in out["ui"]["audio"]:
        got = audio_files.decode_file(Path(services.paths.output_dir) / "clips" / entry["filename"])
        assert got["sample_rate"] == 48000 and got["waveform"].shape == (1, 2, 4800)  # 8 kHz decoded at 48 kHz


def test_disable_metadata_writes_no_tags(registry: Any, services: Any) -> None:
    services.disable_metadata = True
    out = call(registry, "SaveAudioMP3", audio={"waveform": torch.zeros(1, 1, 1000), "sample_rate": 8000},
               filename_prefix="quiet", quality="V0", prompt={"1": {}}, extra_pnginfo={"workflow": {}})
    tags = audio_files.read_tags(Path(services.paths.output_dir) / out["ui"]["audio"][0]["filename"])
    assert "prompt" not in tags and "workflow" not in tags


def test_record_audio_reads_the_uploaded_temp_file(registry: Any, services: Any) -> None:
    folder = Path(services.paths.temp_dir) / "audio"
    folder.mkdir()
    samples = write_wav(folder / "recording-1712345678901.wav", rate=48000, seconds=0.25, freqs=(300.0,))
    prompt = {"1": {"class_type": "RecordAudio", "inputs": {"audio": "audio/recording-1712345678901.wav [temp]"}},
              "2": {"class_type": "AudioDuration", "inputs": {"audio": ["1", 0]}},
              "3": {"class_type": "PreviewAudio", "inputs": {"audio": ["1", 0]}},
              "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
              "5": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}}}
    outcome = run(registry, services, prompt)
    assert outcome.status == "success", outcome.error
    assert (outcome.outputs["4"]["text"], outcome.outputs["5"]["text"]) == (["0.25"], ["48000"])
    (entry,) = outcome.outputs["3"]["audio"]
    got = audio_files.decode_file(Path(services.paths.temp_dir) / entry["filename"])
    assert torch.equal(got["waveform"][0], torch.from_numpy(samples))


def test_load_audio_from_a_video(registry: Any, services: Any) -> None:
    path = Path(services.paths.input_dir) / "clip.mp4"
    with av.open(str(path), mode="w", format="mp4") as out:
        video = out.add_stream("mpeg4", rate=Fraction(10, 1))
        video.width, video.height, video.pix_fmt = 16, 16, "yuv420p"
        sound = out.add_stream("aac", rate=22050, layout="mono")
        for _ in range(5):
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")))
        out.mux(video.encode(None))
        t = np.arange(22050) / 22050
        frame = av.AudioFrame.from_ndarray((0.5 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)[None],
                                           format="flt", layout="mono")
        frame.sample_rate, frame.pts = 22050, 0
        out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    (loaded,) = call(registry, "LoadAudio", audio="clip.mp4")
    assert loaded["sample_rate"] == 22050 and loaded["waveform"].shape[:2] == (1, 1)
    assert loaded["waveform"].pow(2).mean().item() == pytest.approx(0.125, rel=0.1)


def test_missing_and_bad_files_name_node_input_and_file(registry: Any, services: Any) -> None:
    from executor.errors import PromptValidationError

    bad: dict[str, Any] = {"1": {"class_type": "LoadAudio", "inputs": {"audio": "nothere.wav"}},
           "2": {"class_type": "PreviewAudio", "inputs": {"audio": ["1", 0]}}}
    with pytest.raises(PromptValidationError) as info:
        run(registry, services, bad)
    assert "Invalid audio file: nothere.wav" in json.dumps(info.value.node_errors["1"])

    (Path(services.paths.input_dir) / "broken.flac").write_bytes(b"fLaC but not really" * 10)
    bad["1"]["inputs"]["audio"] = "broken.flac"
    outcome = run(registry, services, bad)
    assert outcome.status == "error"
    message = outcome.error["exception_message"]
    assert "node 1 (LoadAudio)" in message and "input 'audio'" in message and "broken.flac" in message
    assert "cannot be loaded as audio" in message

    record = {"1": {"class_type": "RecordAudio", "inputs": {"audio": "audio/gone.wav [temp]"}},
              "2": {"class_type": "PreviewAudio", "inputs": {"audio": ["1", 0]}}}
    outcome = run(registry, services, record)
    assert outcome.status == "error"
    assert "RecordAudio" in outcome.error["exception_message"] and "'audio/gone.wav [temp]' not found" in \
        outcome.error["exception_message"]


def test_channel_and_mixing_nodes(registry: Any) -> None:
    t = torch.arange(800) / 8000
    stereo: dict[str, Any] = {"waveform": torch.stack([torch.sin(2 * math.pi * 100 * t), 0.5 * torch.cos(2 * math.pi * 100 * t)])
              [None], "sample_rate": 8000}
    left, right = call(registry, "SplitAudioChannels", audio=stereo)
    assert torch.equal(left["waveform"], stereo["waveform"][:, :1])
    assert torch.equal(right["waveform"], stereo["waveform"][:, 1:])
    (joined,) = call(registry, "JoinAudioChannels", audio_left=left, audio_right=right)
    assert torch.equal(joined["waveform"], stereo["waveform"]) and joined["sample_rate"] == 8000
    with pytest.raises(ValueError, match="SplitAudioChannels.*'audio'.*got 1 channel"):
        call(registry, "SplitAudioChannels", audio=left)

    mono16k: dict[str, Any] = {"waveform": torch.ones(1, 1, 400) * 0.25, "sample_rate": 16000}
    (after,) = call(registry, "AudioConcat", audio1=stereo, audio2=mono16k, direction="after")
    assert after["sample_rate"] == 16000 and after["waveform"].shape == (1, 2, 1600 + 400)
    assert torch.allclose(after["waveform"][..., 1700:1900], torch.full((1, 2, 200), 0.25), atol=1e-3)
    (before,) = call(registry, "AudioConcat", audio1=stereo, audio2=mono16k, direction="before")
    assert torch.allclose(before["waveform"][..., 100:300], torch.full((1, 2, 200), 0.25), atol=1e-3)

    ones: dict[str, Any] = {"waveform": torch.ones(1, 2, 800) * 0.75, "sample_rate": 8000}
    short: dict[str, Any] = {"waveform": torch.ones(1, 2, 300) * 0.5, "sample_rate": 8000}
    (added,) = call(registry, "AudioMerge", audio1=ones, audio2=short, merge_method="add")
    assert added["waveform"].shape == (1, 2, 800)  # audio2 padded to audio1's length
    assert torch.allclose(added["waveform"][..., :300], torch.ones(1, 2, 300))  # 1.25 peak scaled back to 1
    assert torch.allclose(added["waveform"][..., 300:], torch.full((1, 2, 500), 0.6))
    (mean,) = call(registry, "AudioMerge", audio1=ones, audio2=short, merge_method="mean")
    assert torch.allclose(mean["waveform"][..., :300], torch.full((1, 2, 300), 0.625))

    (louder,) = call(registry, "AudioAdjustVolume", audio=short, volume=-20)
    assert torch.allclose(louder["waveform"], short["waveform"] * 0.1)
    assert call(registry, "AudioAdjustVolume", audio=short, volume=0) == (short,)
    assert call(registry, "AudioDuration", audio=stereo) == (0.1, 8000)


def test_trim_and_empty(registry: Any) -> None:
    clip: dict[str, Any] = {"waveform": torch.arange(1000.0).reshape(1, 1, 1000), "sample_rate": 1000}
    (tail,) = call(registry, "TrimAudioDuration", audio=clip, start_index=-0.25, duration=60.0)
    assert tail["waveform"][0, 0].tolist() == list(range(750, 1000))
    (mid,) = call(registry, "TrimAudioDuration", audio=clip, start_index=0.1, duration=0.0105)
    assert mid["waveform"][0, 0].tolist() == list(range(100, 110))
    with pytest.raises(ValueError, match="TrimAudioDuration.*'start_index'.*select nothing"):
        call(registry, "TrimAudioDuration", audio=clip, start_index=2.0, duration=1.0)
    (empty,) = call(registry, "EmptyAudio", duration=1.5, sample_rate=22050, channels=2)
    assert empty["waveform"].shape == (1, 2, 33075) and empty["sample_rate"] == 22050
    assert call(registry, "TrimAudioDuration", audio=None, start_index=0.0, duration=1.0) == (None,)


def test_equalizer_node(registry: Any) -> None:
    t = torch.arange(44100) / 44100
    bass: dict[str, Any] = {"waveform": (0.1 * torch.sin(2 * math.pi * 50 * t))[None, None], "sample_rate": 44100}
    flat = call(registry, "AudioEqualizer3Band", audio=bass, low_gain_dB=0.0, low_freq=100, mid_gain_dB=0.0,
                mid_freq=1000, mid_q=0.707, high_gain_dB=0.0, high_freq=5000)[0]
    assert torch.equal(flat["waveform"], bass["waveform"])
    boosted = call(registry, "AudioEqualizer3Band", audio=bass, low_gain_dB=12.0, low_freq=400, mid_gain_dB=0.0,
                   mid_freq=1000, mid_q=0.707, high_gain_dB=-12.0, high_freq=8000)[0]
    rms = boosted["waveform"][..., 8000:].pow(2).mean().sqrt() / bass["waveform"][..., 8000:].pow(2).mean().sqrt()
    assert 20 * math.log10(rms.item()) == pytest.approx(12.0, abs=0.5)


def test_save_refuses_a_prefix_outside_output_and_non_audio(registry: Any) -> None:
    clip = {"waveform": torch.zeros(1, 1, 10), "sample_rate": 8000}
    with pytest.raises(ValueError, match="SaveAudio.*'filename_prefix'.*outside the output folder"):
        call(registry, "SaveAudio", audio=clip, filename_prefix="../escape")
    with pytest.raises(ValueError, match="PreviewAudio.*'audio'.*AUDIO dict"):
        call(registry, "PreviewAudio", audio=torch.zeros(1, 1, 10))
