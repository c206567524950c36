"""ModelSamplingDiscrete: the SD1.x sigma table, timestep lookup and eps / v parameterisation."""

from __future__ import annotations

import math

import pytest
import torch

from engine.sampling.model_sampling import ModelSamplingDiscrete


def test_table_matches_reference_values() -> None:
    ms = ModelSamplingDiscrete()
    assert ms.sigmas.dtype == torch.float32
    assert ms.sigmas.shape == (1000,)
    assert ms.sigma_min.item() == pytest.approx(0.0291671585, rel=1e-7)
    assert ms.sigma_max.item() == pytest.approx(14.6146412, rel=1e-7)
    # independent float64 recomputation
    betas = [(math.sqrt(0.00085) + i * (math.sqrt(0.012) - math.sqrt(0.00085)) / 999) ** 2 for i in range(1000)]
    ac = 1.0
    for i, b in enumerate(betas):
        ac *= 1 - b
        if i in (0, 250, 500, 999):
            assert ms.sigmas[i].item() == pytest.approx(math.sqrt((1 - ac) / ac), rel=1e-6)


def test_timestep_is_nearest_integer_in_log_space() -> None:
    ms = ModelSamplingDiscrete()
    assert int(ms.timestep(ms.sigma_max)) == 999
    assert int(ms.timestep(ms.sigma_min)) == 0
    s = torch.tensor([ms.sigmas[500].item(), ms.sigmas[10].item() * 1.0001, 100.0, 1e-4])
    assert ms.timestep(s).tolist() == [500, 10, 999, 0]
    # geometric midpoint between two entries, slightly nudged, decides by log distance
    lo, hi = ms.sigmas[300].item(), ms.sigmas[301].item()
    mid = math.sqrt(lo * hi)
    assert int(ms.timestep(torch.tensor(mid * 0.999))) == 300
    assert int(ms.timestep(torch.tensor(mid * 1.001))) == 301


def test_sigma_interpolates_log_sigma_and_round_trips() -> None:
    ms = ModelSamplingDiscrete()
    for t in (0, 17, 500, 999):
        assert ms.sigma(torch.tensor(float(t))).item() == pytest.approx(ms.sigmas[t].item(), rel=1e-6)
    half = ms.sigma(torch.tensor(400.5)).item()
    expected = math.exp(0.5 * (ms.log_sigmas[400].item() + ms.log_sigmas[401].item()))
    assert half == pytest.approx(expected, rel=1e-6)
    assert ms.sigma(torch.tensor(5000.0)).item() == pytest.approx(ms.sigma_max.item())


def test_percent_to_sigma_edges_and_middle() -> None:
    ms = ModelSamplingDiscrete()
    assert ms.percent_to_sigma(0.0) > 1e8
    assert ms.percent_to_sigma(1.0) == 0.0
    assert ms.percent_to_sigma(0.5) == pytest.approx(ms.sigma(torch.tensor(499.5)).item())


def test_eps_and_v_parameterisation() -> None:
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    out = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([2.0, 0.5])
    eps = ModelSamplingDiscrete("eps")
    cin = eps.calculate_input(sigma, x)
    assert torch.allclose(cin[0], x[0] / math.sqrt(5.0))
    assert torch.allclose(cin[1], x[1] / math.sqrt(1.25))
    den = eps.calculate_denoised(sigma, out, x)
    assert torch.allclose(den[0], x[0] - 2.0 * out[0])
    v = ModelSamplingDiscrete("v")
    den_v = v.calculate_denoised(sigma, out, x)
    assert torch.allclose(den_v[1], x[1] / 1.25 - out[1] * 0.5 / math.sqrt(1.25), atol=1e-6)


def test_noise_scaling_rule() -> None:
    ms = ModelSamplingDiscrete()
    noise = torch.ones(1, 4, 2, 2)
    latent = torch.full((1, 4, 2, 2), 0.5)
    full = ms.noise_scaling(ms.sigma_max, noise, latent, max_denoise=True)
    assert full[0, 0, 0, 0].item() == pytest.approx(math.sqrt(1 + 14.6146412**2) + 0.5, rel=1e-6)
    part = ms.noise_scaling(torch.tensor(3.0), noise, latent, max_denoise=False)
    assert part[0, 0, 0, 0].item() == pytest.approx(3.5)
    assert ms.inverse_noise_scaling(torch.tensor(1.0), latent) is latent


def test_zero_snr_makes_last_sigma_huge_and_validation() -> None:
    ms = ModelSamplingDiscrete(zero_snr=True)
    assert ms.sigma_max.item() > 4000
    assert ms.sigma_min.item() == pytest.approx(0.0291671585, rel=1e-4)
    with pytest.raises(ValueError, match="prediction"):
        ModelSamplingDiscrete("x0")  # type: ignore[arg-type]
