"""Helper functions of ComfyUI's `nodes.py` that packs call (`nodes.common_ksampler`, ...).

Served by the `nodes` proxy (`_nodes_proxy.py`); they import the other shims by their ComfyUI names,
which the compat finder answers while custom nodes are active.
"""
from __future__ import annotations

from typing import Any


def common_ksampler(model: Any, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
                    positive: Any, negative: Any, latent: dict[str, Any], denoise: float = 1.0,
                    disable_noise: bool = False, start_step: int | None = None, last_step: int | None = None,
                    force_full_denoise: bool = False) -> tuple[dict[str, Any]]:
    """KSampler's body: noise from `seed`, sample, return `({**latent, "samples": result},)`."""
    import comfy.sample
    import latent_preview
    import torch

    latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    if disable_noise:
        noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout,
                            device="cpu")
    else:
        noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
    callback = latent_preview.prepare_callback(model, steps)
    samples = comfy.sample.sample(
        model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=denoise,
        disable_noise=disable_noise, start_step=start_step, last_step=last_step,
        force_full_denoise=force_full_denoise, noise_mask=latent.get("noise_mask"), callback=callback, seed=seed,
    )
    out = dict(latent)
    out["samples"] = samples
    return (out,)


def before_node_execution() -> None:
    """ComfyUI calls this before each node; packs call it to check for an interrupt."""
    import comfy.model_management

    comfy.model_management.throw_exception_if_processing_interrupted()


def interrupt_processing(value: bool = True) -> None:
    import comfy.model_management

    comfy.model_management.interrupt_current_processing(value)
