"""Noise sources: the initial KSampler noise and the per-step noise of stochastic samplers.

All randomness is explicit: a sampler receives a ``NoiseSampler`` (a callable ``(sigma, sigma_next) ->
Tensor``) built here from the seed, never the global torch generator.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_SEED_MOD = 2**64


def _cpu_generator(seed: int) -> torch.Generator:
    # torch.manual_seed(seed) reseeds the default CPU generator; a private generator seeded the same way
    # draws the same stream without touching global state.
    return torch.Generator(device="cpu").manual_seed(int(seed) % _SEED_MOD)


def prepare_noise(latent: torch.Tensor, seed: int, batch_index: Sequence[int] | None = None) -> torch.Tensor:
    """Initial noise exactly as ComfyUI draws it: CPU float32 ``randn`` after seeding with ``seed``.

    Without ``batch_index`` one draw covers the whole batch; with it, ``[1, C, H, W]`` draws are made for
    indices 0..max(batch_index) in order and draw ``i`` is used for each listed index ``i``.
    """
    gen = _cpu_generator(seed)
    if batch_index is None:
        return torch.randn(latent.size(), dtype=latent.dtype, layout=latent.layout, generator=gen, device="cpu")
    indices = [int(i) for i in batch_index]
    if not indices or min(indices) < 0:
        raise ValueError(f"prepare_noise: batch_index must be non-empty and >= 0, got {list(batch_index)}")
    wanted = set(indices)
    draws: dict[int, torch.Tensor] = {}
    for i in range(max(indices) + 1):
        one = torch.randn([1, *latent.shape[1:]], dtype=latent.dtype, layout=latent.layout, generator=gen, device="cpu")
        if i in wanted:
            draws[i] = one
    return torch.cat([draws[i] for i in indices], dim=0)


def gaussian_noise_sampler(x: torch.Tensor, seed: int | None) -> NoiseSampler:
    """Fresh ``randn(x.shape)`` per call from a generator on x's device (ComfyUI's default noise sampler).

    Seeded with ``seed`` itself, as ComfyUI 0.3.64 does (golden txt2img__batch2__euler_ancestral): on the
    CPU its first draw therefore equals the initial noise. (Later ComfyUI versions add 1 on the CPU.)
    """
    gen: torch.Generator | None = None
    if seed is not None:
        s = int(seed)
        gen = torch.Generator(device=x.device).manual_seed(s % _SEED_MOD)
    shape, dtype, layout, device = x.size(), x.dtype, x.layout, x.device

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, dtype=dtype, layout=layout, device=device, generator=gen)

    return sample


class BrownianTreeNoiseSampler:
    """Brownian-motion increments over sigma from a torchsde ``BrownianTree`` (Kidger et al. 2021).

    The tree spans ``[sigma_min, sigma_max]`` of the schedule and is seeded with the full seed, so the
    noise of a step depends only on its sigma interval: what SDE samplers (DPM-Solver++ SDE) need.
    Returned increments are normalised to unit variance: ``W(s, s') / sqrt(|s' - s|)``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        sigma_min: torch.Tensor | float,
        sigma_max: torch.Tensor | float,
        seed: int | None = None,
        cpu: bool = True,
    ) -> None:
        import torchsde  # imported lazily: only SDE samplers need it

        t0 = torch.as_tensor(sigma_min)
        t1 = torch.as_tensor(sigma_max)
        self._sign = 1.0
        if not t0 < t1:
            t0, t1, self._sign = t1, t0, -1.0
        entropy = int(torch.randint(0, 2**63 - 1, ()).item()) if seed is None else int(seed)
        w0 = torch.zeros_like(x)
        self._cpu = cpu
        if cpu:
            t0, t1, w0 = t0.detach().cpu(), t1.detach().cpu(), w0.detach().cpu()
        self._tree = torchsde.BrownianTree(t0, w0, t1, entropy=entropy)

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        s0 = torch.as_tensor(sigma)
        s1 = torch.as_tensor(sigma_next)
        sign = 1.0
        if not s0 < s1:
            s0, s1, sign = s1, s0, -1.0
        device, dtype = s0.device, s0.dtype
        a, b = (s0.detach().cpu().float(), s1.detach().cpu().float()) if self._cpu else (s0, s1)
        with warnings.catch_warnings():
            # the float32 schedule's sigma_max can exceed the tree's end by an ulp; torchsde clamps and warns
            warnings.filterwarnings("ignore", message="Should have", category=UserWarning)
            w: torch.Tensor = self._tree(a, b)
        w = w.to(device=device, dtype=dtype) * (self._sign * sign)
        return w / (s1 - s0).abs().sqrt()
