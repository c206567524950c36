"""Reference latents (Flux.1 Kontext image editing), carried on conditioning entries as ComfyUI carries them.

``ReferenceLatent`` appends a VAE latent to an entry's ``reference_latents`` list and
``FluxKontextMultiReferenceLatentMethod`` sets its ``reference_latents_method`` ("offset", "index" or "uxo"; its
"index_timestep_zero", for Flux 2 / Qwen-Image edit models, is refused).
Before sampling, ``bind_reference_latents`` moves them into the model's latent space (the family's ``process_in``,
no resize: ComfyUI's ``Flux.extra_conds``) onto each ``Cond``; the guider tiles them to each call's batch and joins
the entries of one call (ComfyUI's ``CONDList``), and the network appends them as extra image tokens
(``engine.networks.flux``). A model that cannot read them is refused, naming its family, rather than sampled
without the reference.
"""
from __future__ import annotations

from typing import Any

import torch

from engine.networks.flux import REFERENCE_METHODS
from engine.sampling.conditioning import Cond, repeat_to_batch_size

__all__ = ["REFERENCE_METHODS", "bind_reference_latents", "reference_inputs", "same_references",
           "supports_reference_latents"]


def supports_reference_latents(family: Any) -> bool:
    """Whether the networks of ``family`` read reference latents (Flux.1 and its variants, Kontext among them)."""
    return bool(family.arch == "flux")


def bind_reference_latents(model: Any, conds: list[Cond], name: str) -> None:
    """Give each entry with ``reference_latents`` its references in model space and its method on ``Cond``."""
    for k, c in enumerate(conds):
        refs = c.extra.get("reference_latents")
        if refs is None:
            continue
        where = f"{name} conditioning entry {k}"
        if not supports_reference_latents(model.family):
            raise ValueError(f"{where}: has reference latents (ReferenceLatent), but the {model.family.name} model "
                             "family cannot use them; they need a Flux model (Flux.1 Kontext): load one, or remove "
                             "the ReferenceLatent node")
        if not isinstance(refs, (list, tuple)) or not all(isinstance(r, torch.Tensor) and r.ndim == 4 for r in refs):
            got = ([getattr(r, "shape", type(r).__name__) for r in refs] if isinstance(refs, (list, tuple))
                   else type(refs).__name__)
            raise ValueError(f"{where}: 'reference_latents' must be a list of latents [B, C, H, W], got {got}")
        channels = model.latent_format.latent_channels
        for r in refs:
            if r.shape[1] != channels:
                raise ValueError(f"{where}: a reference latent has {r.shape[1]} channels, the {model.family.name} "
                                 f"model's latents have {channels} (encode the image with this model's VAE)")
        method = c.extra.get("reference_latents_method")
        if method is not None and method not in REFERENCE_METHODS:
            raise ValueError(f"{where}: 'reference_latents_method' {method!r} is not one the {model.family.name} "
                             f"network places references by (one of {REFERENCE_METHODS}); index_timestep_zero is "
                             "for Flux 2 / Qwen-Image edit models, which Loom does not load")
        device = c.cross_attn.device
        c.ref_latents = [model.latent_format.process_in(r.to(device=device, dtype=torch.float32)) for r in refs]
        c.ref_method = method


def same_references(a: Cond, b: Cond) -> bool:
    """Whether two entries' references can share one model call (same count, shapes and method)."""
    if a.ref_latents is None or b.ref_latents is None:
        return a.ref_latents is None and b.ref_latents is None
    return (a.ref_method == b.ref_method and len(a.ref_latents) == len(b.ref_latents)
            and all(x.shape == y.shape for x, y in zip(a.ref_latents, b.ref_latents, strict=True)))


def reference_inputs(conds: list[Cond], batch: int) -> dict[str, Any]:
    """The network's ``ref_latents`` / ``ref_latents_method`` for one call over ``conds`` (each tiled to ``batch``,
    then joined in call order); empty when they carry none."""
    first = conds[0]
    if first.ref_latents is None:
        return {}
    refs = [torch.cat([repeat_to_batch_size(c.ref_latents[i], batch) for c in conds if c.ref_latents is not None])
            for i in range(len(first.ref_latents))]
    out: dict[str, Any] = {"ref_latents": refs}
    if first.ref_method is not None:
        out["ref_latents_method"] = first.ref_method
    return out
