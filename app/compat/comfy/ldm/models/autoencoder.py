"""ComfyUI's `comfy.ldm.models.autoencoder`: `AutoencoderKL`, the VAE network class (Loom's
`engine.networks.vae.AutoencoderKL`, what a VAE handle's `first_stage_model` is), for `isinstance` checks
(Easy-Use's BrushNet lists it among the models to unload). ComfyUI's other autoencoder classes are not provided.
"""
from __future__ import annotations

from engine.networks.vae import AutoencoderKL

__all__ = ["AutoencoderKL"]
