"""TAESD step previews (engine.preview, engine.networks.taesd): the decoder takes the published files' tensors by
name, previews decode x0 at full resolution when models/vae_approx has the family's decoder ("taesd", "auto"),
and fall back to latent2rgb otherwise; a KSampler run with --preview-method taesd sends them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.latent_formats import FLUX, SD15
from engine.networks.taesd import Decoder
from engine.preview import load_taesd_decoder, step_previewer, taesd_decoder_file

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def published_decoder_keys() -> set[str]:
    """The tensor names of madebyollin's taesd*_decoder files: conv 1, residual blocks (three convs each) at
    3-5, 8-10, 13-15 and 18, bias-free convs after each upsampling at 7, 12, 17, the RGB conv at 19."""
    keys = {"1.weight", "1.bias", "19.weight", "19.bias", "7.weight", "12.weight", "17.weight"}
    for block in (3, 4, 5, 8, 9, 10, 13, 14, 15, 18):
        keys |= {f"{block}.conv.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    return keys


def _decoder_file(folder: Path, stem: str = "taesd", channels: int = 4) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    decoder = Decoder(channels).eval()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}_decoder.safetensors"
    save_file({k: v.contiguous() for k, v in decoder.state_dict().items()}, str(path))
    return path, decoder


def test_the_decoder_takes_the_published_files_tensors_by_name() -> None:
    assert set(Decoder(4).state_dict()) == published_decoder_keys()
    assert Decoder(16).state_dict()["1.weight"].shape == (64, 16, 3, 3)  # TAESD3 / TAEF1: 16 latent channels


def test_previews_decode_x0_at_full_resolution_and_fall_back_to_latent2rgb(tmp_path: Path) -> None:
    path, decoder = _decoder_file(tmp_path)
    x0 = torch.randn(2, 4, 8, 6)
    image = step_previewer(SD15, "taesd", path)(x0)
    assert image is not None and image.size == (48, 64) and image.mode == "RGB"
    with torch.no_grad():  # decode(x) = 2 * decoder(x) - 1, shown as (decode + 1) / 2
        expected = decoder(x0[:1])[0].clamp(0, 1).mul(255).round().permute(1, 2, 0).numpy()
    assert np.abs(np.asarray(image, dtype=np.float64) - expected).max() <= 1
    assert step_previewer(SD15, "auto", path)(x0).size == (48, 64)
    assert step_previewer(SD15, "latent2rgb", path)(x0).size == (6, 8)  # the method asks for latent2rgb
    assert step_previewer(SD15, "auto", None)(x0).size == (6, 8)  # no decoder file: latent2rgb
    assert step_previewer(SD15, "taesd", None)(x0).size == (6, 8)
    assert step_previewer(SD15, "none", path)(x0) is None
    assert load_taesd_decoder(path, 4) is load_taesd_decoder(path, 4)  # loaded once per file


def test_each_family_finds_its_own_decoder_file_and_a_wrong_file_is_named(tmp_path: Path) -> None:
    files = ["taesdxl_decoder.safetensors", "taesd_encoder.safetensors", "taesd_decoder.pth", "taef1_decoder.sft"]
    assert taesd_decoder_file(SD15, files) == "taesd_decoder.pth"
    assert taesd_decoder_file(FLUX, files) == "taef1_decoder.sft"
    assert taesd_decoder_file(SD15, ["taesd_encoder.safetensors"]) is None
    path, _ = _decoder_file(tmp_path, "taef1", channels=4)  # a 4-channel decoder where 16 channels are needed
    from engine.errors import UnknownModelError

    with pytest.raises(UnknownModelError, match="taef1_decoder.safetensors: not a TAESD decoder for 16-channel"):
        step_previewer(FLUX, "taesd", path)


def test_a_ksampler_run_with_taesd_previews_sends_full_resolution_frames(tmp_path: Path) -> None:
    from app.runner import build_runtime
    from executor import PromptExecutor, validate_prompt
    from executor.events import CollectingSink

    base = tmp_path / "base"
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "models" / "checkpoints" / "tiny.safetensors").symlink_to(FIX / "tiny-sd15" / "tiny-sd15.safetensors")
    _decoder_file(base / "models" / "vae_approx")
    rt = build_runtime(base, cpu=True, preview_method="taesd")
    try:
        graph: dict[str, Any] = {
            "ck": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
            "p": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["ck", 1]}},
            "n": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ck", 1]}},
            "l": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
            "k": {"class_type": "KSampler", "inputs": {
                "model": ["ck", 0], "seed": 1, "steps": 3, "cfg": 5.0, "sampler_name": "euler",
                "scheduler": "normal", "positive": ["p", 0], "negative": ["n", 0], "latent_image": ["l", 0],
                "denoise": 1.0}},
            "s": {"class_type": "PreviewAny", "inputs": {"source": ["k", 0]}},
        }
        valid = validate_prompt(rt.registry, graph)
        sink = CollectingSink()
        outcome = PromptExecutor(rt.registry).execute(valid.prompt, "taesd", {}, valid.outputs, sink=sink)
        assert outcome.status == "success", outcome.error
        frames = [image for _, node, image in sink.previews if node == "k"]
        assert len(frames) == 3 and all(f.size == (64, 48) for f in frames)  # 8x the 8x6 latent
        sink = CollectingSink()  # latent2rgb when the prompt asks for it
        PromptExecutor(rt.registry).execute(valid.prompt, "l2r", {"preview_method": "latent2rgb"}, valid.outputs,
                                            sink=sink)
        assert {image.size for _, _, image in sink.previews} == {(8, 6)}
    finally:
        rt.close()
