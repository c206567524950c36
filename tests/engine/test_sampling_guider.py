"""CFG guider, conditioning semantics and KSampler entry point, on a fake analytic model handle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from engine.latent_formats import SD15
from engine.sampling import prepare_noise, sample
from engine.sampling.conditioning import resolve_conds
from engine.sampling.guider import CFGDenoiser
from engine.sampling.model_sampling import ModelSamplingDiscrete

S = 0.7


@dataclass
class FakeHandle:
    """ModelHandle stand-in: x0 = exact Gaussian denoiser whose mean is the context's mean."""

    in_channels: int = 4
    model_sampling: ModelSamplingDiscrete = field(default_factory=ModelSamplingDiscrete)
    latent_format: Any = SD15
    calls: list[dict[str, Any]] = field(default_factory=list)
    load_device: torch.device = torch.device("cpu")
    model_options: dict[str, Any] = field(default_factory=dict)

    def adm(self, cond: dict[str, Any], latent_shape: tuple[int, ...], prompt_type: str = "positive",
            seed: int | None = None) -> None:
        return None  # SD1.x: no ADM vector

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, y: Any = None,
                    concat: torch.Tensor | None = None, transformer_options: Any = None) -> torch.Tensor:
        self.calls.append({"batch": x.shape[0], "hw": tuple(x.shape[2:]), "ctx": context.mean(dim=(1, 2)).tolist(),
                           "concat": None if concat is None else concat.clone()})
        mu = context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
        s2 = sigma.reshape(-1, 1, 1, 1) ** 2
        return mu + S * S / (S * S + s2) * (x - mu)


def ctx(v: float) -> torch.Tensor:
    return torch.full((1, 77, 8), v)


def pred(v: float, x: torch.Tensor, sigma: float) -> torch.Tensor:
    return v + S * S / (S * S + sigma * sigma) * (x - v)


def guider(model: FakeHandle, pos: list, neg: list, cfg: float, shape=(1, 4, 8, 16)) -> CFGDenoiser:
    ms = model.model_sampling
    p = resolve_conds(pos, torch.Size(shape), ms, torch.device("cpu"), "positive")
    n = resolve_conds(neg, torch.Size(shape), ms, torch.device("cpu"), "negative")
    from engine.sampling.conditioning import add_matching_areas

    add_matching_areas(n, p)
    add_matching_areas(p, n)
    return CFGDenoiser(model, p, n, cfg)


def test_cfg_batches_uncond_first_and_combines() -> None:
    m = FakeHandle()
    x = torch.randn(2, 4, 8, 16, generator=torch.Generator().manual_seed(0))
    sig = torch.full((2,), 3.0)
    out = guider(m, [[ctx(1.0), {}]], [[ctx(-1.0), {}]], 7.5, (2, 4, 8, 16))(x, sig)
    assert len(m.calls) == 1 and m.calls[0]["batch"] == 4
    assert m.calls[0]["ctx"] == [-1.0, -1.0, 1.0, 1.0]
    expected = pred(-1.0, x, 3.0) + (pred(1.0, x, 3.0) - pred(-1.0, x, 3.0)) * 7.5
    assert torch.allclose(out, expected, atol=1e-5)


def test_cfg_one_skips_the_negative() -> None:
    m = FakeHandle()
    x = torch.randn(1, 4, 8, 16)
    out = guider(m, [[ctx(1.0), {}]], [[ctx(-1.0), {}]], 1.0)(x, torch.full((1,), 2.0))
    assert [c["batch"] for c in m.calls] == [1]
    assert torch.allclose(out, pred(1.0, x, 2.0), atol=1e-6)


def test_area_conditioning_is_feathered_and_averaged() -> None:
    m = FakeHandle()
    x = torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(1))
    pos = [[ctx(1.0), {}], [ctx(3.0), {"area": (8, 8, 0, 8), "strength": 1.0}]]
    out = guider(m, pos, [[ctx(0.0), {}]], 1.0)(x, torch.full((1,), 2.0))
    assert sorted(c["hw"] for c in m.calls) == [(8, 8), (8, 16)]
    # area 8 wide at x=8: its left edge is off the border and fades over min(8, 8 // 4) = 2 columns
    w = torch.zeros(16)
    w[8:] = 1.0
    w[8], w[9] = 0.5, 1.0
    a, b = pred(1.0, x, 2.0), pred(3.0, x, 2.0)
    expected = (a + b * w) / (1.0 + w)
    assert torch.allclose(out, expected, atol=1e-5)


def test_negative_gets_a_same_area_twin() -> None:
    m = FakeHandle()
    x = torch.zeros(1, 4, 8, 16)
    guider(m, [[ctx(1.0), {}], [ctx(3.0), {"area": (8, 8, 0, 8)}]], [[ctx(-2.0), {}]], 5.0)(x, torch.full((1,), 2.0))
    # full frame: [neg, pos] in one call; area: [neg twin, pos area] in another
    assert [(c["hw"], c["ctx"]) for c in m.calls] == [((8, 16), [-2.0, 1.0]), ((8, 8), [-2.0, 3.0])]


def test_mask_conditioning_weights_by_mask_and_strength() -> None:
    m = FakeHandle()
    x = torch.randn(1, 4, 8, 16)
    mask = torch.zeros(1, 8, 16)
    mask[:, :, :4] = 1.0
    pos = [[ctx(1.0), {}], [ctx(3.0), {"mask": mask, "mask_strength": 0.5, "strength": 2.0}]]
    out = guider(m, pos, [[ctx(0.0), {}]], 1.0)(x, torch.full((1,), 1.0))
    w = mask[0] * 0.5 * 2.0
    expected = (pred(1.0, x, 1.0) + pred(3.0, x, 1.0) * w) / (1.0 + w)
    assert torch.allclose(out, expected, atol=1e-5)


def test_mask_set_area_to_bounds_crops_to_the_mask() -> None:
    m = FakeHandle()
    mask = torch.zeros(1, 64, 128)
    mask[:, 8:40, 0:96] = 1.0  # pixel-size mask is resized to latent size first
    pos = [[ctx(3.0), {"mask": mask, "set_area_to_bounds": True}]]
    conds = resolve_conds(pos, torch.Size((1, 4, 8, 16)), m.model_sampling, torch.device("cpu"), "positive")
    assert conds[0].area is not None and conds[0].area[2:] == (1, 0) and conds[0].area[1] >= 12


def test_timestep_ranges_switch_conds_on_and_off() -> None:
    m = FakeHandle()
    ms = m.model_sampling
    pos = [[ctx(1.0), {"start_percent": 0.0, "end_percent": 0.5}], [ctx(3.0), {"start_percent": 0.5, "end_percent": 1.0}]]
    g = guider(m, pos, [[ctx(0.0), {}]], 1.0)
    x = torch.randn(1, 4, 8, 16)
    early, late = ms.percent_to_sigma(0.2), ms.percent_to_sigma(0.8)
    assert torch.allclose(g(x, torch.full((1,), early)), pred(1.0, x, early), atol=1e-5)
    assert torch.allclose(g(x, torch.full((1,), late)), pred(3.0, x, late), atol=1e-5)


def test_bad_conditioning_names_the_side_and_entry() -> None:
    with pytest.raises(TypeError, match="negative conditioning entry 0"):
        resolve_conds([("nope", {})], torch.Size((1, 4, 8, 8)), ModelSamplingDiscrete(), torch.device("cpu"), "negative")
    with pytest.raises(ValueError, match="area"):
        resolve_conds([[ctx(0), {"area": (1, 2)}]], torch.Size((1, 4, 8, 8)), ModelSamplingDiscrete(), torch.device("cpu"), "positive")


# ---- sample(): KSampler semantics -------------------------------------------------------------------


def run(model: FakeHandle, latent: torch.Tensor, **kw: Any) -> torch.Tensor:
    args: dict[str, Any] = {"steps": 6, "cfg": 2.0, "sampler_name": "euler", "scheduler": "karras", "seed": 3}
    args.update(kw)
    noise = kw.pop("noise", None)
    args.pop("noise", None)
    if noise is None:
        noise = prepare_noise(latent, args["seed"])
    return sample(model, noise, args.pop("steps"), args.pop("cfg"), args.pop("sampler_name"), args.pop("scheduler"),
                  [[ctx(1.0), {}]], [[ctx(-1.0), {}]], latent, **args)


def test_txt2img_matches_a_hand_written_euler_loop() -> None:
    m = FakeHandle()
    latent = torch.zeros(1, 4, 8, 8)
    seen: list[tuple[int, int]] = []
    out = run(m, latent, callback=lambda i, x0, x, total: seen.append((i, total)))
    ms = m.model_sampling
    from engine.sampling.schedulers import calculate_sigmas

    sig = calculate_sigmas(ms, "karras", 6)
    x = prepare_noise(latent, 3) * torch.sqrt(1.0 + sig[0] ** 2)
    for i in range(6):
        s = float(sig[i])
        d0 = pred(-1.0, x, s) + (pred(1.0, x, s) - pred(-1.0, x, s)) * 2.0
        x = x + (x - d0) / sig[i] * (sig[i + 1] - sig[i])
    assert torch.allclose(out, x / 0.18215, atol=1e-4)
    assert seen == [(i, 6) for i in range(6)]
    assert len(m.calls) == 6 and out.dtype == torch.float32


def test_img2img_scales_the_latent_and_starts_lower() -> None:
    m = FakeHandle()
    latent = torch.full((1, 4, 8, 8), 2.0)
    out = run(m, latent, denoise=0.5, cfg=1.0, noise=torch.zeros(1, 4, 8, 8))
    # no noise and a denoiser pulling towards 1.0: the result moves from 2.0 * 0.18215 towards 1.0
    scaled = out * 0.18215
    assert torch.all(scaled < 2.0 * 0.18215 + 1.0) and torch.all(scaled > 2.0 * 0.18215)
    assert len(m.calls) == 6


def test_nothing_to_do_returns_the_input_latent() -> None:
    m = FakeHandle()
    latent = torch.randn(1, 4, 8, 8)
    assert run(m, latent, denoise=0.0) is latent
    assert run(m, latent, start_step=6) is latent
    assert m.calls == []


def test_advanced_window_and_disable_noise() -> None:
    m = FakeHandle()
    latent = torch.zeros(1, 4, 8, 8)
    first = run(m, latent, start_step=0, last_step=3, force_full_denoise=False)
    assert len(m.calls) == 3
    second = run(m, first, start_step=3, last_step=10000, disable_noise=True, force_full_denoise=True)
    assert len(m.calls) == 6
    whole = run(FakeHandle(), latent)
    assert torch.allclose(second, whole, atol=1e-4)


def test_noise_mask_keeps_the_unmasked_region() -> None:
    m = FakeHandle()
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 32:] = 1.0
    out = run(m, latent, noise_mask=mask)
    assert torch.allclose(out[..., :4], latent[..., :4], atol=1e-5)
    assert not torch.allclose(out[..., 4:], latent[..., 4:], atol=1e-2)
    ddim = run(FakeHandle(), latent, noise_mask=mask, sampler_name="ddim")
    plain = run(FakeHandle(), latent, sampler_name="ddim")
    assert torch.allclose(plain, run(FakeHandle(), latent), atol=0)  # ddim == euler without a mask
    assert torch.allclose(ddim[..., :4], latent[..., :4], atol=1e-5)


def test_inpaint_model_gets_mask_and_masked_latent_channels() -> None:
    m = FakeHandle(in_channels=9)
    latent = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 64, 64)
    mask[:, :, 32:] = 1.0
    concat_image = torch.randn(1, 4, 8, 8)
    noise = prepare_noise(latent, 1)
    sample(m, noise, 2, 1.0, "euler", "normal", [[ctx(1.0), {"concat_latent_image": concat_image, "concat_mask": mask}]],
           [[ctx(0.0), {}]], latent, seed=1)
    c = m.calls[0]["concat"]
    assert c.shape == (1, 5, 8, 8)
    assert torch.equal(c[:, 0, :, 4:], torch.ones(1, 8, 4)) and torch.equal(c[:, 0, :, :4], torch.zeros(1, 8, 4))
    assert torch.allclose(c[:, 1:], concat_image * 0.18215)


def test_sample_rejects_unknown_sampler_with_choices() -> None:
    with pytest.raises(ValueError, match="dpmpp_2m"):
        run(FakeHandle(), torch.zeros(1, 4, 8, 8), sampler_name="nope")
