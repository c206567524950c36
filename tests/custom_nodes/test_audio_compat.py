"""What packs reach of ComfyUI's audio code: `comfy_api.latest.ui` (PreviewAudio, AudioSaveHelper, SavedAudios) and
`comfy_extras.nodes_audio` (the node classes, `load`, `f32_pcm`, `match_audio_sample_rates`)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import audio as audio_files
from nodes import bind, builtin_node_classes


@pytest.fixture
def shims(packs: Any) -> Any:
    packs.load("good_pack")
    return packs


def clip(rate: int = 16000) -> dict[str, Any]:
    t = torch.arange(rate // 4) / rate
    return {"waveform": torch.stack([0.5 * torch.sin(2 * math.pi * 440 * t)] * 2)[None], "sample_rate": rate}


def test_ui_preview_audio_writes_flac_to_temp(shims: Any) -> None:
    import folder_paths
    from comfy_api.latest import ui

    value = clip()
    (entry,) = ui.PreviewAudio(value).as_dict()["audio"]
    assert entry["type"] == "temp" and entry["filename"].startswith("ComfyUI_temp_") and entry["filename"].endswith(
        "_00001.flac")
    got = audio_files.decode_file(Path(folder_paths.get_temp_directory()) / entry["subfolder"] / entry["filename"])
    assert got["sample_rate"] == 16000 and (got["waveform"] - value["waveform"]).abs().max() < 1e-4


def test_audio_save_helper_writes_the_node_hidden_values(shims: Any) -> None:
    import folder_paths
    from comfy_api.latest import io, ui

    class Saver(io.ComfyNode):  # type: ignore[misc]
        hidden = io.HiddenHolder({"prompt": {"1": {"class_type": "Saver"}}, "extra_pnginfo": {"workflow": {"n": 1}}})

    saved = ui.AudioSaveHelper.get_save_audio_ui(clip(), "audio/pack", cls=Saver, format="opus", quality="V3")
    assert isinstance(saved, ui.SavedAudios)
    (entry,) = saved.as_dict()["audio"]
    assert entry == {"filename": "pack_00001.opus", "subfolder": "audio", "type": "output"}
    path = Path(folder_paths.get_output_directory()) / "audio" / "pack_00001.opus"
    tags = audio_files.read_tags(path)
    assert json.loads(tags["prompt"]) == {"1": {"class_type": "Saver"}} and json.loads(tags["workflow"]) == {"n": 1}
    assert audio_files.decode_file(path)["sample_rate"] == 48000  # 16 kHz is an Opus rate, decoded at 48 kHz
    with pytest.raises(ValueError, match="Unsupported audio format: 'wma'"):
        ui.AudioSaveHelper.save_audio(clip(), "x", io.FolderType.output, None, format="wma")


def test_comfy_extras_nodes_audio(shims: Any, tmp_path: Path) -> None:
    shims.registry.register("TrimAudioDuration", bind(builtin_node_classes()["TrimAudioDuration"], None),  # type: ignore[arg-type]
                            source="builtin")
    import comfy_extras.nodes_audio as nodes_audio

    assert nodes_audio.TrimAudioDuration is shims.registry.get("TrimAudioDuration")
    (trimmed,) = nodes_audio.TrimAudioDuration().execute(audio=clip(), start_index=0.0, duration=0.125)
    assert trimmed["waveform"].shape == (1, 2, 2000)

    audio_files.encode_file(clip()["waveform"][0], 16000, tmp_path / "a.flac", "flac")
    waveform, rate = nodes_audio.load(str(tmp_path / "a.flac"))
    assert rate == 16000 and waveform.shape == (2, 4000)
    assert torch.equal(nodes_audio.f32_pcm(torch.tensor([-32768, 16384], dtype=torch.int16)), torch.tensor([-1.0, 0.5]))
    one, two, rate = nodes_audio.match_audio_sample_rates(torch.zeros(1, 1, 100), 8000, torch.zeros(1, 1, 300), 24000)
    assert rate == 24000 and one.shape == two.shape == (1, 1, 300)


def test_comfy_audio_module(shims: Any) -> None:
    import comfy.audio

    x = torch.randn(2, 3, 1000, generator=torch.Generator().manual_seed(0))
    up = comfy.audio.resample(x, 16000, 24000)
    assert up.shape == (2, 3, 1500)
    assert comfy.audio.resample(x, 8000, 8000) is x
    with pytest.raises(ValueError, match="rolloff=0.9 is not supported"):
        comfy.audio.resample(x, 16000, 24000, rolloff=0.9)
    t = torch.arange(44100) / 44100
    bass = (0.1 * torch.sin(2 * math.pi * 40 * t))[None]
    boosted = comfy.audio.bass_biquad(bass, 44100, gain=6.0, central_freq=300)
    ratio = boosted[:, 4000:].pow(2).mean().sqrt() / bass[:, 4000:].pow(2).mean().sqrt()
    assert 20 * math.log10(ratio.item()) == pytest.approx(6.0, abs=0.3)
    assert torch.allclose(comfy.audio.treble_biquad(bass, 44100, gain=-6.0), bass, atol=2e-3)
    assert comfy.audio.equalizer_biquad(bass, 44100, 1000.0, 3.0).shape == bass.shape
