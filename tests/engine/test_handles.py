"""ModelHandle: the denoiser rule (c_in, integer timestep, eps / v), cheap clones, patches off the base weights."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from engine.device import DevicePolicy
from engine.handles import ModelHandle
from engine.loading import load_checkpoint
from engine.model_management import ModelManager
from engine.sampling.model_sampling import ModelSamplingDiscrete


@pytest.fixture(scope="module")
def model(fixtures_dir: Path) -> ModelHandle:
    m, _, _ = load_checkpoint(fixtures_dir / "tiny-sd15/tiny-sd15.safetensors", ModelManager(DevicePolicy.cpu()),
                              output_clip=False, output_vae=False)
    return m


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 4, 8, 8, generator=g) * 3, torch.tensor([2.5, 0.7]), torch.randn(2, 77, 32, generator=g)


def _nearest_t(sigma: torch.Tensor) -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    log_sigmas = (((1 - ac) / ac) ** 0.5).log().float()
    return (sigma.log()[None] - log_sigmas[:, None]).abs().argmin(0).float()


def test_eps_denoiser_rule(model: ModelHandle) -> None:
    x, sigma, ctx = _inputs()
    s = sigma[:, None, None, None]
    with torch.no_grad():
        eps = model.diffusion_model(x / (s**2 + 1).sqrt(), _nearest_t(sigma), ctx)
    assert torch.allclose(model.apply_model(x, sigma, ctx), x - eps * s, atol=1e-5)


def test_v_denoiser_rule(model: ModelHandle) -> None:
    v_model = model.clone()
    v_model.model_sampling = ModelSamplingDiscrete(prediction="v")
    x, sigma, ctx = _inputs()
    s = sigma[:, None, None, None]
    with torch.no_grad():
        out = model.diffusion_model(x / (s**2 + 1).sqrt(), _nearest_t(sigma), ctx)
    expected = x / (s**2 + 1) - out * s / (s**2 + 1).sqrt()
    assert torch.allclose(v_model.apply_model(x, sigma, ctx), expected, atol=1e-5)


def test_scalar_sigma_broadcasts(model: ModelHandle) -> None:
    x, _, ctx = _inputs()
    assert torch.equal(model.apply_model(x, torch.tensor(1.5), ctx), model.apply_model(x, torch.tensor([1.5, 1.5]), ctx))


def test_clone_shares_weights_and_patches_stay_local(model: ModelHandle) -> None:
    x, sigma, ctx = _inputs()
    before = model.apply_model(x, sigma, ctx)
    key = "input_blocks.1.1.proj_in.weight"
    base = model.diffusion_model.state_dict()[key].clone()
    delta = torch.randn_like(base) * 0.5
    patched = model.clone()
    assert patched.diffusion_model is model.diffusion_model
    assert patched.add_patches({"diffusion_model." + key: delta, "not.a.key": delta}, 0.8) == ["diffusion_model." + key]
    out = patched.apply_model(x, sigma, ctx)
    # reference: a private copy of the network with the weight changed by hand
    ref_net = copy.deepcopy(model.diffusion_model)
    ref_net.state_dict()[key].add_(0.8 * delta)
    ref = ModelHandle(ref_net, model.model_sampling, model.latent_format, model.family, model.manager)
    assert torch.allclose(out, ref.apply_model(x, sigma, ctx), atol=1e-5)
    assert not torch.allclose(out, before, atol=1e-4)
    assert torch.equal(model.diffusion_model.state_dict()[key], base)
    assert torch.equal(model.apply_model(x, sigma, ctx), before)
    assert model.patches == {}
    again = patched.clone()
    assert again.patches == patched.patches and again.patches is not patched.patches


def test_function_patch_and_strength_model(model: ModelHandle) -> None:
    key = "out.2.bias"
    m = model.clone()
    m.add_patches({key: lambda w: torch.ones_like(w)}, strength_patch=2.0, strength_model=0.5)
    w = dict(m.diffusion_model.named_parameters())[key].detach()
    got = m._patched_weights(m.diffusion_model)[key]
    assert torch.allclose(got, w * 0.5 + 2.0)


def test_handle_properties(model: ModelHandle) -> None:
    assert model.in_channels == 4 and model.context_dim == 32 and model.family.name == "sd15"
    assert model.get_model_object("model_sampling") is model.model_sampling
