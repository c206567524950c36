"""Detection on the real full-size key/shape sets of SD1.5, SD2.1-768-v, SDXL base and refiner.

The networks are built on the meta device from the public configs (no weights, no memory), their state
dict names are placed under each real file's prefixes, and detection must recover the configs, with the
heads from the family standard (64 channels per head for SD2/SDXL, 8 heads for SD1; text: 12 / 16 / 20).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from engine.detect import V_PREDICTION_STD_THRESHOLD, detect
from engine.errors import UnknownModelError
from engine.networks.text_encoders import ClipTextConfig, ClipTextEncoder, OpenClipConfig, OpenClipTextEncoder
from engine.networks.unet import UNetConfig, UNetModel
from engine.networks.vae import AutoencoderKL, VAEConfig

SD15_UNET = UNetConfig()
SD21_UNET = UNetConfig(context_dim=1024, num_head_channels=64, use_linear_in_transformer=True)
SDXL_UNET = UNetConfig(channel_mult=(1, 2, 4), num_res_blocks=(2, 2, 2), transformer_depth=(0, 0, 2, 2, 10, 10),
                       transformer_depth_output=(0, 0, 0, 2, 2, 2, 10, 10, 10), transformer_depth_middle=10,
                       context_dim=2048, num_head_channels=64, use_linear_in_transformer=True,
                       num_classes="sequential", adm_in_channels=2816)
REFINER_UNET = UNetConfig(model_channels=384, transformer_depth=(0, 0, 4, 4, 4, 4, 0, 0),
                          transformer_depth_output=(0, 0, 0, 4, 4, 4, 4, 4, 4, 0, 0, 0),
                          transformer_depth_middle=4, context_dim=1280, num_head_channels=64,
                          use_linear_in_transformer=True, num_classes="sequential", adm_in_channels=2560)
CLIP_L = ClipTextConfig()
OPEN_CLIP_H = OpenClipConfig(width=1024, layers=24, heads=16, mlp_width=4096, projection_dim=1024)
OPEN_CLIP_G = OpenClipConfig(width=1280, layers=32, heads=20, mlp_width=5120, projection_dim=1280)


def _shapes(factory: Callable[[], torch.nn.Module], prefix: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        module = factory()
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}


def _unet(cfg: UNetConfig) -> dict[str, tuple[int, ...]]:
    return _shapes(lambda: UNetModel(cfg), "model.diffusion_model.")


def _full(family: str, unet: UNetConfig | None = None) -> dict[str, tuple[int, ...]]:
    shapes = {"alphas_cumprod": (1000,), "betas": (1000,)}
    shapes.update(_shapes(lambda: AutoencoderKL(VAEConfig()), "first_stage_model."))
    if family == "sd15":
        shapes.update(_unet(unet or SD15_UNET))
        shapes.update(_shapes(lambda: ClipTextEncoder(CLIP_L), "cond_stage_model."))
    elif family == "sd21":
        shapes.update(_unet(unet or SD21_UNET))
        shapes.update(_shapes(lambda: OpenClipTextEncoder(OPEN_CLIP_H), "cond_stage_model.model."))
        shapes["cond_stage_model.model.logit_scale"] = ()
    elif family == "sdxl":
        shapes.update(_unet(unet or SDXL_UNET))
        shapes.update(_shapes(lambda: ClipTextEncoder(CLIP_L), "conditioner.embedders.0."))
        shapes.update(_shapes(lambda: OpenClipTextEncoder(OPEN_CLIP_G), "conditioner.embedders.1.model."))
    else:
        shapes.update(_unet(unet or REFINER_UNET))
        shapes.update(_shapes(lambda: OpenClipTextEncoder(OPEN_CLIP_G), "conditioner.embedders.0.model."))
    return shapes


@pytest.fixture(scope="module")
def full_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    return {f: _full(f) for f in ("sd15", "sd21", "sdxl", "refiner")}


def _norm_bias(std: float) -> Callable[[str], torch.Tensor]:
    def get(key: str) -> torch.Tensor:
        if key.endswith("output_blocks.11.1.transformer_blocks.0.norm1.bias"):
            g = torch.Generator().manual_seed(0)
            return torch.randn(320, generator=g) * std
        raise KeyError(key)
    return get


@pytest.mark.parametrize("family,expected_family,unet,text", [
    ("sd15", "sd15", SD15_UNET, {"l": CLIP_L}),
    ("sd21", "sd20", SD21_UNET, {"h": OPEN_CLIP_H}),
    ("sdxl", "sdxl", SDXL_UNET, {"l": CLIP_L, "g": OPEN_CLIP_G}),
    ("refiner", "sdxl_refiner", REFINER_UNET, {"g": OPEN_CLIP_G}),
])
def test_full_size_layouts(full_shapes: dict[str, Any], family: str, expected_family: str, unet: UNetConfig,
                           text: dict[str, Any]) -> None:
    cfg = detect(full_shapes[family], source=f"{family}.safetensors")
    assert cfg.family.name == expected_family
    assert cfg.unet == unet
    assert cfg.vae == VAEConfig()
    assert cfg.text == text
    assert cfg.prediction == "eps"
    assert cfg.family.latent_format.scale_factor == (0.13025 if family in ("sdxl", "refiner") else 0.18215)


def test_sd21_768_v_by_norm_bias_rule(full_shapes: dict[str, Any]) -> None:
    shapes = full_shapes["sd21"]
    assert detect(shapes, get_tensor=_norm_bias(0.2)).prediction == "v"
    assert detect(shapes, get_tensor=_norm_bias(V_PREDICTION_STD_THRESHOLD / 2)).prediction == "eps"
    assert detect(shapes, get_tensor=_norm_bias(0.2), prediction="eps").prediction == "eps"  # user override


def test_nine_channel_inpaint_unets_are_eps() -> None:
    sd15_inpaint = detect(_full("sd15", UNetConfig(in_channels=9)))
    assert sd15_inpaint.family.name == "sd15" and sd15_inpaint.unet is not None
    assert sd15_inpaint.unet.in_channels == 9 and sd15_inpaint.unet.out_channels == 4
    sd2_inpaint = detect(_full("sd21", UNetConfig(**{**SD21_UNET.__dict__, "in_channels": 9})),
                         get_tensor=_norm_bias(0.2))
    assert sd2_inpaint.family.name == "sd20" and sd2_inpaint.prediction == "eps"


def test_unknown_layout_lists_found_and_supported() -> None:
    shapes = {"encoder.layers.0.weight": (8, 8), "decoder.conv_in.weight": (4, 4, 3, 3)}
    with pytest.raises(UnknownModelError) as err:
        detect(shapes, source="mystery.safetensors")
    msg = str(err.value)
    assert "mystery.safetensors" in msg and "2 tensors" in msg and "encoder.layers" in msg
    for name in ("sd15", "sd20", "sdxl", "sdxl_refiner"):
        assert name in msg
