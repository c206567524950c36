"""Flow schedules against ComfyUI's sigmas, the flow parameterisation, latent formats, the T5 tokenizer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from families2_support import GOLDEN2


@pytest.mark.parametrize("case,kind,scheduler,steps", [
    ("comfy__flux_dev__txt2img__euler__simple__128x128", "flux", "simple", 20),
    ("comfy__flux_schnell__txt2img__euler__simple__4steps", "schnell", "simple", 4),
    ("comfy__sd35m__txt2img__euler__sgm_uniform__shift3", "sd3", "sgm_uniform", 20),
])
def test_flow_sigmas_match_comfyui(case: str, kind: str, scheduler: str, steps: int) -> None:
    from engine.sampling.flow_sampling import (
        ModelSamplingDiscreteFlow,
        ModelSamplingFlux,
        flux_resolution_shift,
    )
    from engine.sampling.schedulers import calculate_sigmas

    ms = {"flux": lambda: ModelSamplingFlux(flux_resolution_shift(128, 128)),
          "schnell": lambda: ModelSamplingDiscreteFlow(1.0, 1.0),
          "sd3": lambda: ModelSamplingDiscreteFlow(3.0, 1000.0)}[kind]()
    ours = calculate_sigmas(ms, scheduler, steps).numpy()
    theirs = np.load(GOLDEN2 / f"{case}.sigmas.npy")
    assert ours.shape == theirs.shape and float(np.abs(ours - theirs).max()) < 1e-6


def test_flux_shift_formula() -> None:
    from engine.sampling.flow_sampling import flux_resolution_shift

    assert abs(flux_resolution_shift(128, 128) - 0.4675) < 1e-12
    assert abs(flux_resolution_shift(1024, 1024) - 1.15) < 1e-12  # 4096 patches -> max shift


def test_flow_parameterisation() -> None:
    from engine.sampling.flow_sampling import ModelSamplingDiscreteFlow

    ms = ModelSamplingDiscreteFlow(3.0, 1000.0)
    x0, noise = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 4)
    s = torch.tensor([0.7])
    xs = ms.noise_scaling(s, noise, x0)
    assert torch.allclose(xs, 0.7 * noise + 0.3 * x0)
    assert torch.allclose(ms.calculate_denoised(s, noise - x0, xs), x0, atol=1e-6)  # v = noise - x0
    assert float(ms.timestep(s)) == pytest.approx(700.0)
    assert ms.percent_to_sigma(0.0) == 1.0 and ms.percent_to_sigma(1.0) == 0.0
    assert ms.percent_to_sigma(0.5) == pytest.approx(3 * 0.5 / (1 + 2 * 0.5))


def test_latent_formats_shift() -> None:
    from engine.latent_formats import FLUX, SD3

    z = torch.randn(1, 16, 2, 2)
    for fmt, scale, shift in ((FLUX, 0.3611, 0.1159), (SD3, 1.5305, 0.0609)):
        assert torch.allclose(fmt.process_in(z), (z - shift) * scale)
        assert torch.allclose(fmt.process_out(fmt.process_in(z)), z, atol=1e-6)


def test_t5_tokenizer_offline_with_licence() -> None:
    from engine.t5 import T5_TOKENIZER_DIR, T5PromptTokenizer

    assert (T5_TOKENIZER_DIR / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert (T5_TOKENIZER_DIR / "NOTICE").exists()
    window = T5PromptTokenizer(min_length=256).tokenize_with_weights("a photo of a cat")
    ids = [t for t, _ in window[0]]
    assert ids[:8] == [3, 9, 1202, 13, 3, 9, 1712, 1] and len(ids) == 256 and set(ids[8:]) == {0}
    sd3 = T5PromptTokenizer(min_length=77).tokenize_with_weights("(cat:1.2)")
    assert len(sd3[0]) == 77 and sd3[0][0][1] == pytest.approx(1.2)
