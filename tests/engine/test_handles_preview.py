"""Latent previews: the factor matrix maps each channel to its RGB row."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from engine.latent_formats import SD15, SDXL
from engine.preview import effective_preview_method, latent_preview, latent_to_rgb


def test_single_channel_maps_to_its_factor_row() -> None:
    lat = torch.zeros(1, 4, 2, 3)
    lat[0, 1] = 1.0
    rgb = latent_to_rgb(lat, SD15)
    expected = (torch.tensor(SD15.latent_rgb_factors[1]) + 1) / 2
    assert rgb.shape == (2, 3, 3) and torch.allclose(rgb[1, 2], expected)


def test_bias_and_clamp() -> None:
    rgb = latent_to_rgb(torch.zeros(4, 1, 1), SDXL)
    assert torch.allclose(rgb[0, 0], (torch.tensor(SDXL.latent_rgb_bias) + 1) / 2)
    assert float(latent_to_rgb(torch.full((4, 2, 2), 100.0), SD15).max()) <= 1.0


def test_pil_preview_size_and_errors() -> None:
    # one pixel per latent cell: the event sink, not the engine, shrinks frames to --preview-size
    img = latent_preview(SD15, torch.randn(2, 4, 80, 40))
    assert img is not None and img.size == (40, 80) and img.mode == "RGB"
    handle = SimpleNamespace(latent_format=SDXL)
    assert latent_preview(handle, torch.randn(1, 4, 8, 8), "auto") is not None
    assert latent_preview(handle, torch.randn(1, 4, 8, 8), "none") is None
    with pytest.raises(ValueError, match="channels"):
        latent_to_rgb(torch.randn(16, 2, 2), SD15)


def test_prompt_preview_method_overrides_the_server_default_unless_unknown() -> None:
    assert effective_preview_method("none", {"preview_method": "latent2rgb"}) == "latent2rgb"
    assert effective_preview_method("auto", {"preview_method": "none"}) == "none"
    assert effective_preview_method("auto", {"preview_method": "default"}) == "auto"
    assert effective_preview_method("latent2rgb", {}) == "latent2rgb"
    assert effective_preview_method("none", {"preview_method": 3}) == "none"
