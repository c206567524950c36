"""Sampling: noise schedules, k-diffusion-style samplers, CFG guidance and the KSampler entry point."""

from __future__ import annotations

from engine.sampling.model_sampling import ModelSamplingDiscrete

__all__ = ["ModelSamplingDiscrete"]
