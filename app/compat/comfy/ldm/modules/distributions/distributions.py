"""ComfyUI's `comfy.ldm.modules.distributions.distributions` for packs: the VAE encoder's diagonal Gaussian."""
from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["DiagonalGaussianDistribution"]


class DiagonalGaussianDistribution:
    """A Gaussian with per-element mean and variance, read from VAE encoder moments ``[B, 2C, ...]`` (mean
    channels first, then log-variance, clamped to [-30, 20] as the LDM code does). ``deterministic``: zero
    variance (``sample`` is the mean)."""

    def __init__(self, parameters: torch.Tensor, deterministic: bool = False) -> None:
        self.parameters = parameters
        self.mean, logvar = torch.chunk(parameters, 2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.deterministic = deterministic
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)
        if deterministic:
            self.std = self.var = torch.zeros_like(self.mean)

    def sample(self) -> torch.Tensor:
        return self.mean + self.std * torch.randn_like(self.mean)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self, other: DiagonalGaussianDistribution | None = None) -> torch.Tensor:
        """KL divergence to ``other`` (default: the standard normal), summed over channels and space."""
        if self.deterministic:
            return torch.zeros(self.mean.shape[0], device=self.mean.device)
        dims = list(range(1, self.mean.ndim))
        if other is None:
            return 0.5 * torch.sum(self.mean ** 2 + self.var - 1.0 - self.logvar, dim=dims)
        return 0.5 * torch.sum((self.mean - other.mean) ** 2 / other.var + self.var / other.var - 1.0
                               - self.logvar + other.logvar, dim=dims)

    def nll(self, sample: torch.Tensor, dims: Sequence[int] = (1, 2, 3)) -> torch.Tensor:
        """Negative log-likelihood of ``sample``, summed over ``dims``."""
        if self.deterministic:
            return torch.zeros(())
        log_two_pi = torch.log(torch.tensor(2.0 * torch.pi))
        return 0.5 * torch.sum(log_two_pi + self.logvar + (sample - self.mean) ** 2 / self.var, dim=list(dims))
