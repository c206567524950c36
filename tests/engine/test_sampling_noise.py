"""Initial noise (ComfyUI's CPU generator rules) and the per-step noise sources."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.sampling.noise import BrownianTreeNoiseSampler, gaussian_noise_sampler, prepare_noise


def test_reference_values_from_the_spec() -> None:
    first = prepare_noise(torch.zeros(1, 4, 64, 64), 0).flatten()[:5]
    np.testing.assert_allclose(first.numpy(), [-1.125840, -1.152360, -0.250579, -0.433879, 0.848710], atol=1e-6)
    item1 = prepare_noise(torch.zeros(2, 4, 64, 64), 42)[1].flatten()[:5]
    np.testing.assert_allclose(item1.numpy(), [-1.304659, 1.450703, 0.244280, -0.279890, 0.130801], atol=1e-6)


def test_prepare_noise_does_not_touch_the_global_generator() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    prepare_noise(torch.zeros(1, 4, 8, 8), 123)
    assert torch.equal(torch.rand(3), expected)


def test_full_64_bit_seeds() -> None:
    a = prepare_noise(torch.zeros(1, 4, 2, 2), 2**64 - 1)
    assert a.shape == (1, 4, 2, 2) and torch.isfinite(a).all()


def test_batch_index_draws_per_index() -> None:
    latent = torch.zeros(3, 4, 8, 8)
    full = prepare_noise(torch.zeros(4, 4, 8, 8), 9)
    picked = prepare_noise(latent, 9, batch_index=[3, 1, 1])
    # 4*8*8 is a multiple of 16, so per-index draws equal the slices of one batch draw
    assert torch.equal(picked, full[[3, 1, 1]])
    odd = prepare_noise(torch.zeros(2, 4, 3, 3), 9, batch_index=[0, 1])
    assert not torch.equal(odd, prepare_noise(torch.zeros(2, 4, 3, 3), 9))
    with pytest.raises(ValueError, match="batch_index"):
        prepare_noise(latent, 9, batch_index=[])


def test_gaussian_noise_sampler_is_seeded_like_comfyui_0_3_64() -> None:
    x = torch.zeros(1, 4, 8, 8)
    ns = gaussian_noise_sampler(x, 42)
    one = torch.tensor(1.0)
    assert torch.equal(ns(one, one), prepare_noise(x, 42))  # the first draw equals the initial noise
    assert not torch.equal(ns(one, one), prepare_noise(x, 42))


def test_brownian_tree_increments_are_standard_normal_and_path_consistent() -> None:
    x = torch.zeros(1, 4, 32, 32)
    bt = BrownianTreeNoiseSampler(x, torch.tensor(0.03), torch.tensor(14.6), seed=1)
    a = bt(torch.tensor(5.0), torch.tensor(2.0))
    assert abs(float(a.std()) - 1.0) < 0.05 and abs(float(a.mean())) < 0.05
    again = BrownianTreeNoiseSampler(x, torch.tensor(0.03), torch.tensor(14.6), seed=1)
    assert torch.allclose(again(torch.tensor(5.0), torch.tensor(2.0)), a)
    # W(5)-W(2) = (W(5)-W(3)) + (W(3)-W(2)) in unnormalised increments
    w1 = bt(torch.tensor(5.0), torch.tensor(3.0)) * math.sqrt(2.0)
    w2 = bt(torch.tensor(3.0), torch.tensor(2.0)) * 1.0
    assert torch.allclose(w1 + w2, a * math.sqrt(3.0), atol=1e-4)
    other = BrownianTreeNoiseSampler(x, torch.tensor(0.03), torch.tensor(14.6), seed=2)
    assert not torch.allclose(other(torch.tensor(5.0), torch.tensor(2.0)), a)
