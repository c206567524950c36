"""SD2.1 unCLIP checkpoints: detection, the embedded CLIP vision tower, the ADM vector (against an independent
computation of ComfyUI's noise augmentation) and unCLIPConditioning through the real nodes, on the tiny unCLIP-H
file built at test time (tests/adapters/unclip_support.py)."""
from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from adapter_helpers import ADA, link_models, run_graph
from unclip_support import CONTENT_SHA256, SD21V, UNCLIP_NAME, build_unclip

from engine.detect import detect, detect_family_of_unet
from engine.state_files import read_shapes, read_state_dict

CLIP = "tiny-CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"


@pytest.fixture(scope="module")
def unclip_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    base = link_models(tmp_path_factory.mktemp("unclip"))
    path, digest = build_unclip(base / "models" / "checkpoints")
    (base / "models" / "checkpoints" / "tiny-sd21v.safetensors").symlink_to(SD21V)
    yield base, digest
    path.unlink()


@pytest.fixture(scope="module")
def urt(unclip_base: tuple[Path, str]) -> Iterator[Any]:
    from app.runner import build_runtime

    torch.set_num_threads(1)
    rt = build_runtime(unclip_base[0], cpu=True)
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def unclip_path(unclip_base: tuple[Path, str]) -> Path:
    return unclip_base[0] / "models" / "checkpoints" / UNCLIP_NAME


def _graph(strength: float = 1.0, noise_augmentation: float = 0.0, loader: str = "unCLIPCheckpointLoader",
           seed: int = 7) -> dict[str, Any]:
    g: dict[str, Any] = {
        "1": {"class_type": loader, "inputs": {"ckpt_name": UNCLIP_NAME}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a photo of a cat"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "reference_128x96.png"}},
        "5": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["1", 3], "image": ["4", 0],
                                                           "crop": "center"}},
        "6": {"class_type": "unCLIPConditioning", "inputs": {"conditioning": ["2", 0], "clip_vision_output": ["5", 0],
                                                             "strength": strength,
                                                             "noise_augmentation": noise_augmentation}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["6", 0], "negative": ["3", 0],
                                                   "latent_image": ["7", 0], "seed": seed, "steps": 4, "cfg": 5.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
    }
    if loader != "unCLIPCheckpointLoader":
        g["9"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": CLIP}}
        g["5"]["inputs"]["clip_vision"] = ["9", 0]
    return g


def _run(rt: Any, graph: dict[str, Any], prompt_id: str, *shown: str) -> Any:
    """Run ``graph`` with a PreviewAny output on each ``shown`` node's first output (so it executes)."""
    graph = dict(graph)
    for node in shown:
        graph[f"show{node}"] = {"class_type": "PreviewAny", "inputs": {"source": [node, 0]}}
    return run_graph(rt, graph, prompt_id)


def _latent(outcome: Any) -> np.ndarray:
    assert outcome.status == "success", outcome.error
    return np.asarray(outcome.values["8"][0][0]["samples"].numpy())


# ---------------------------------------------------------------------------------------------- detection
def test_built_file_is_the_catalogue_recipe(unclip_base: tuple[Path, str]) -> None:
    assert unclip_base[1] == CONTENT_SHA256


def test_detects_sd21_unclip_v_prediction_with_its_heads(unclip_path: Path) -> None:
    sd, meta = read_state_dict(unclip_path)
    cfg = detect(read_shapes(sd), meta, get_tensor=sd.__getitem__, source=unclip_path.name)
    assert cfg.family.name == "sd21_unclip" and cfg.family.adm == "unclip"
    assert cfg.prediction == "v"  # the SD2 norm1.bias std rule
    assert cfg.unet is not None and cfg.unet.adm_in_channels == 80 and cfg.unet.use_linear_in_transformer
    assert cfg.unet.heads_for(64) == (4, 16)  # 16 channels per head (small-model convention)
    assert cfg.text["h"].heads == 2  # type: ignore[union-attr]
    unet = {k.removeprefix("model.diffusion_model."): v for k, v in read_shapes(sd).items()
            if k.startswith("model.diffusion_model.")}
    family, unet_cfg, pred = detect_family_of_unet(unet, meta, lambda k: sd["model.diffusion_model." + k])
    assert (family.name, unet_cfg.adm_in_channels, pred) == ("sd21_unclip", 80, "v")


def test_sdxl_files_keep_their_families() -> None:
    fam = Path(__file__).resolve().parents[1] / "fixtures" / "families"
    for name, family in (("tiny-sdxl.safetensors", "sdxl"), ("tiny-sdxl-refiner.safetensors", "sdxl_refiner")):
        sd, meta = read_state_dict(fam / name)
        assert detect(read_shapes(sd), meta, source=name).family.name == family


def test_noise_schedule_equals_the_files_buffers(unclip_path: Path) -> None:
    from engine.unclip import noise_augmentor

    sd, _ = read_state_dict(unclip_path)
    aug = noise_augmentor(80)
    assert aug.timestep_dim == 40
    assert torch.allclose(aug.alphas_cumprod, sd["noise_augmentor.alphas_cumprod"], rtol=1e-6, atol=0)
    assert torch.allclose(aug.sqrt_alphas_cumprod, sd["noise_augmentor.sqrt_alphas_cumprod"], rtol=1e-6, atol=0)
    assert torch.allclose(aug.sqrt_one_minus_alphas_cumprod, sd["noise_augmentor.sqrt_one_minus_alphas_cumprod"],
                          rtol=1e-6, atol=0)


# --------------------------------------------------------------------------------------- loading + tower
def test_loader_node_gives_four_outputs_and_the_embedded_tower_equals_the_standalone_one(urt: Any) -> None:
    from PIL import Image

    graph = {"1": {"class_type": "unCLIPCheckpointLoader", "inputs": {"ckpt_name": UNCLIP_NAME}},
             "2": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": CLIP}}}
    for node, src in (("3", ["1", 3]), ("4", ["2", 0])):
        graph[node] = {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": src, "image": ["5", 0],
                                                                    "crop": "center"}}
    graph["5"] = {"class_type": "LoadImage", "inputs": {"image": "reference_128x96.png"}}
    out = _run(urt, graph, "tower", "1", "3", "4")
    assert out.status == "success", out.error.get("exception_message")
    model, clip, vae, vision = (out.values["1"][i][0] for i in range(4))
    assert model.family.name == "sd21_unclip" and model.model_sampling.prediction == "v"
    assert clip is not None and vae is not None and vision.config.num_attention_heads == 3
    embedded, standalone = out.values["3"][0][0], out.values["4"][0][0]
    for field in ("image_embeds", "penultimate_hidden_states", "last_hidden_state"):
        assert torch.equal(embedded[field], standalone[field]), field
    assert tuple(embedded["image_embeds"].shape) == (1, 40)
    assert Image.open(ADA / "reference_128x96.png").size == (128, 96)


# ----------------------------------------------------------------------------------- the ADM vector
def _independent_adm(entries: list[tuple[np.ndarray, float, float]], seed: int, width: int,
                     merge: float = 0.05) -> np.ndarray:
    """ComfyUI's unclip_adm written out with numpy (schedule in float64, then float32 as ComfyUI stores it) and
    torch's global generator seeded as ComfyUI seeds it."""
    steps = 1000
    abar = [math.cos((t / steps + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(steps + 1)]
    betas = np.minimum(1 - np.array(abar[1:]) / np.array(abar[:-1]), 0.999)
    acp = np.cumprod(1.0 - betas)
    sa, s1 = np.sqrt(acp).astype(np.float32), np.sqrt(1.0 - acp).astype(np.float32)

    def level_emb(level: int) -> np.ndarray:
        half = width // 2
        freqs = np.exp(-math.log(10000) * np.arange(half, dtype=np.float32) / half).astype(np.float32)
        args = np.float32(level) * freqs
        return np.concatenate([np.cos(args), np.sin(args)])[None].astype(np.float32)

    def augment(x: np.ndarray, level: int, noise: np.ndarray) -> np.ndarray:
        return np.concatenate([sa[level] * x + s1[level] * noise, level_emb(level)], axis=1)

    outs = []
    for embeds, strength, aug in entries:
        level = round(999 * aug)
        for row in embeds:
            torch.manual_seed(seed - 10)
            noise = torch.randn(1, width).numpy()
            outs.append(augment(row[None], level, noise) * np.float32(strength))
    if len(outs) == 1:
        return outs[0]
    summed = np.sum(np.stack(outs), axis=0)
    noise = torch.randn(1, width).numpy()
    return augment(summed[:, :width], round(999 * merge), noise)


def _vision_output(embeds: torch.Tensor) -> Any:
    from engine.adapters.clip_vision import ClipVisionOutput

    out = ClipVisionOutput()
    out.image_embeds = embeds
    return out


def test_adm_vector_matches_an_independent_computation(urt: Any) -> None:
    out = _run(urt, {"1": {"class_type": "unCLIPCheckpointLoader", "inputs": {"ckpt_name": UNCLIP_NAME}}}, "adm", "1")
    model = out.values["1"][0][0]
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(1, 40, generator=gen), torch.randn(2, 40, generator=gen)
    one = [{"clip_vision_output": _vision_output(a), "strength": 0.7, "noise_augmentation": 0.3}]
    y = model.adm({"unclip_conditioning": one}, (1, 4, 8, 8), "positive", seed=1234)
    ref = _independent_adm([(a.numpy(), 0.7, 0.3)], 1234, 40)
    assert tuple(y.shape) == (1, 80)
    assert np.abs(y.numpy() - ref).max() < 1e-5
    two = one + [{"clip_vision_output": _vision_output(b), "strength": 1.2, "noise_augmentation": 0.0}]
    y2 = model.adm({"unclip_conditioning": two}, (1, 4, 8, 8), "positive", seed=1234)
    ref2 = _independent_adm([(a.numpy(), 0.7, 0.3), (b.numpy(), 1.2, 0.0)], 1234, 40)
    assert np.abs(y2.numpy() - ref2).max() < 1e-5
    assert torch.equal(model.adm({}, (1, 4, 8, 8), "negative", seed=1234), torch.zeros(1, 80))
    # the seed drives the augmentation noise, even at level 0 (sqrt(1 - alpha_bar_0) > 0)
    zero = [{**one[0], "noise_augmentation": 0.0}]
    y_a = model.adm({"unclip_conditioning": zero}, (1, 4, 8, 8), seed=5)
    y_b = model.adm({"unclip_conditioning": zero}, (1, 4, 8, 8), seed=6)
    assert torch.equal(y_a, model.adm({"unclip_conditioning": zero}, (1, 4, 8, 8), seed=5))
    assert not torch.equal(y_a, y_b)
    with pytest.raises(ValueError, match="40"):
        wrong = [{"clip_vision_output": _vision_output(torch.zeros(1, 32)), "strength": 1.0,
                  "noise_augmentation": 0.0}]
        model.adm({"unclip_conditioning": wrong}, (1, 4, 8, 8), seed=5)


# ----------------------------------------------------------------------------------- through the nodes
def test_unclip_conditioning_changes_the_image_and_strength_0_does_not(urt: Any) -> None:
    zero = _run(urt, _graph(strength=0.0), "s0", "8")
    one = _run(urt, _graph(strength=1.0, noise_augmentation=0.25), "s1", "8")
    plain, with_image = _latent(zero), _latent(one)
    assert "6" not in zero.reports  # strength 0 adds nothing, so the history records nothing
    assert one.reports["6"]["unclip"] == [{"strength": 1.0, "noise_augmentation": 0.25, "images": 1}]
    no_unclip = copy.deepcopy(_graph())
    no_unclip["8"]["inputs"]["positive"] = ["2", 0]
    without = _latent(_run(urt, no_unclip, "none", "8"))
    assert np.array_equal(plain, without)  # strength 0 returns the conditioning unchanged: zero ADM
    rel = np.abs(with_image - plain).max() / np.abs(plain).max()
    assert rel > 1e-3, rel


def test_noise_augmentation_is_deterministic_and_changes_the_output(urt: Any) -> None:
    first = _latent(_run(urt, _graph(noise_augmentation=0.0), "aug0a", "8"))
    again = _latent(_run(urt, _graph(noise_augmentation=0.0), "aug0b", "8"))
    assert np.array_equal(first, again)
    noised = _latent(_run(urt, _graph(noise_augmentation=0.9), "aug09", "8"))
    assert np.abs(noised - first).max() / np.abs(first).max() > 1e-3


def test_checkpoint_loader_simple_with_a_standalone_tower_gives_the_same_latent(urt: Any) -> None:
    a = _latent(_run(urt, _graph(strength=0.8, noise_augmentation=0.2), "u", "8"))
    b = _latent(_run(urt, _graph(strength=0.8, noise_augmentation=0.2, loader="CheckpointLoaderSimple"), "c", "8"))
    assert np.array_equal(a, b)


def test_loader_on_a_file_without_a_tower_names_it(urt: Any) -> None:
    graph = {"1": {"class_type": "unCLIPCheckpointLoader", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}}}
    out = _run(urt, graph, "bad", "1")
    assert out.status == "error"
    message = str(out.error)
    assert "tiny-sd15.safetensors" in message and "embedder.model.visual" in message


def test_validation_takes_sd2_conditioning_and_names_sd15_conditioning(urt: Any) -> None:
    from executor import PromptValidationError, validate_prompt
    from nodes.checks import builtin_checks

    for ckpt, ok in (("tiny-sd21v.safetensors", True), ("tiny-sd15.safetensors", False)):
        graph = _graph()
        graph["10"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}
        graph["3"]["inputs"]["clip"] = ["10", 1]
        graph["show"] = {"class_type": "PreviewAny", "inputs": {"source": ["8", 0]}}
        if ok:
            validate_prompt(urt.registry, graph, extra_checks=builtin_checks(urt.services))
            continue
        with pytest.raises(PromptValidationError) as err:
            validate_prompt(urt.registry, graph, extra_checks=builtin_checks(urt.services))
        text = str(err.value.to_wire())
        assert "conditioning_family_mismatch" in text and "sd21_unclip" in text and "sd15" in text


def test_validation_takes_an_sd2_controlnet_and_names_an_sd15_one(urt: Any, unclip_base: tuple[Path, str]) -> None:
    """An SD2.x ControlNet fits the unCLIP model (same UNet encoder); the check reads headers only, so a file with
    the keys that say "SD2.x ControlNet" (linear proj_in, zero convs) is enough."""
    from safetensors.torch import save_file

    from executor import PromptValidationError, validate_prompt
    from nodes.checks import builtin_checks

    sd2 = {"zero_convs.0.0.weight": torch.zeros(32, 32, 1, 1), "input_hint_block.0.weight": torch.zeros(16, 3, 3, 3),
           "input_blocks.1.1.proj_in.weight": torch.zeros(32, 32),
           "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(32, 32)}
    save_file(sd2, str(unclip_base[0] / "models" / "controlnet" / "sd2-control.safetensors"))
    for control, ok in (("sd2-control.safetensors", True), ("tiny-control_v11p_sd15_canny_fp16.safetensors", False)):
        graph = _graph()
        graph["20"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": control}}
        graph["21"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["6", 0], "negative": ["3", 0], "control_net": ["20", 0], "image": ["4", 0],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
        graph["8"]["inputs"].update(positive=["21", 0], negative=["21", 1])
        graph["show"] = {"class_type": "PreviewAny", "inputs": {"source": ["8", 0]}}
        if ok:
            validate_prompt(urt.registry, graph, extra_checks=builtin_checks(urt.services))
            continue
        with pytest.raises(PromptValidationError) as err:
            validate_prompt(urt.registry, graph, extra_checks=builtin_checks(urt.services))
        assert "control_family_mismatch" in str(err.value.to_wire())
