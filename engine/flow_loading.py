"""Loading the flow-matching families' diffusion models (Flux.1, SD3.x) as MODEL handles.

The transformer is built on the meta device and adopts the file's memory-mapped tensors. Matrices stay in
the file's dtype (bf16 / fp16 / fp8; or UNETLoader's fp8 ``weight_dtype``) and are cast per layer at call
time (ManualCast layers); only vectors (biases, norm gains) are held in the compute dtype. A bf16 file thus
never becomes an fp32 copy.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from engine.detect_flow import detect_flux, detect_mmdit
from engine.families import Family
from engine.handles import ModelHandle
from engine.model_management import ModelManager
from engine.networks.flux import Flux
from engine.networks.mmdit import MMDiT

__all__ = ["model_sampling_for", "make_flux_model", "make_mmdit_model", "NARROW_DTYPES"]

NARROW_DTYPES = tuple(getattr(torch, n) for n in ("float16", "bfloat16", "float8_e4m3fn", "float8_e5m2")
                      if hasattr(torch, n))


def model_sampling_for(family: Family, shift: float | None = None, multiplier: float | None = None) -> Any:
    """The family's default noise schedule (ModelSamplingSD3 / ModelSamplingFlux nodes override shift)."""
    from engine.sampling.flow_sampling import ModelSamplingDiscreteFlow, ModelSamplingFlux
    from engine.sampling.model_sampling import ModelSamplingDiscrete

    if family.sampling == "flux":
        return ModelSamplingFlux(family.shift if shift is None else shift)
    if family.sampling == "flow":
        return ModelSamplingDiscreteFlow(family.shift if shift is None else shift,
                                         family.multiplier if multiplier is None else multiplier)
    return ModelSamplingDiscrete(prediction=family.prediction)  # type: ignore[arg-type]


def _storage_dtype(sd: Mapping[str, torch.Tensor], requested: torch.dtype | None) -> torch.dtype | None:
    """The dtype matrices are kept in: the requested one (UNETLoader weight_dtype), else the file's own when
    it is narrower than fp32."""
    if requested is not None:
        return requested
    for t in sd.values():
        if t.ndim >= 2 and t.is_floating_point():
            return t.dtype if t.dtype in NARROW_DTYPES else None
    return None


def make_flux_model(sd: Mapping[str, torch.Tensor], manager: ModelManager, path: Path,
                    dtype: torch.dtype | None, build_assign: Callable[..., Any]) -> ModelHandle:
    """A MODEL handle over a Flux transformer (keys without prefix); ``build_assign`` is engine.loading's
    meta-device builder."""
    family, cfg = detect_flux({k: tuple(v.shape) for k, v in sd.items()}, "", path.name)
    return _make(Flux, family, cfg, sd, manager, path, dtype, build_assign)


def make_mmdit_model(sd: Mapping[str, torch.Tensor], manager: ModelManager, path: Path,
                     dtype: torch.dtype | None, build_assign: Callable[..., Any]) -> ModelHandle:
    """A MODEL handle over an SD3 / SD3.5 MMDiT (keys without prefix)."""
    family, cfg = detect_mmdit({k: tuple(v.shape) for k, v in sd.items()}, "", path.name)
    return _make(MMDiT, family, cfg, sd, manager, path, dtype, build_assign)


def _make(cls: Any, family: Family, cfg: Any, sd: Mapping[str, torch.Tensor], manager: ModelManager, path: Path,
          dtype: torch.dtype | None, build_assign: Callable[..., Any]) -> ModelHandle:
    compute = manager.policy.unet_dtype
    if dtype is not None and dtype not in NARROW_DTYPES and dtype != compute:
        compute = dtype
    storage = _storage_dtype(sd, dtype if dtype in NARROW_DTYPES else None)
    if storage == compute:
        storage = None
    net = build_assign(cls, cfg, sd, compute, f"{family.name} transformer", path, storage_dtype=storage, cast=True)
    entry = manager.register(net, f"{path.name} ({family.arch})", "unet")
    return ModelHandle(net, model_sampling_for(family), family.latent_format, family, manager, entry,
                       compute_dtype=compute)


_TOWER_PREFIX = "text_encoders.{}.transformer."


def flow_checkpoint_arch(shapes: Mapping[str, Any]) -> str | None:
    """"flux" / "mmdit" when a checkpoint holds a flow transformer under ``model.diffusion_model.``."""
    from engine.detect_flow import FLUX_PROBE, MMDIT_PROBE

    if "model.diffusion_model." + MMDIT_PROBE in shapes:
        return "mmdit"
    if "model.diffusion_model." + FLUX_PROBE in shapes:
        return "flux"
    return None


def load_flow_checkpoint(sd: Mapping[str, torch.Tensor], metadata: Mapping[str, str], path: Path,
                         manager: ModelManager, output_clip: bool, output_vae: bool,
                         builders: Mapping[str, Callable[..., Any]]) -> tuple[ModelHandle, Any, Any]:
    """MODEL / CLIP / VAE of an all-in-one SD3.x or Flux checkpoint (``model.diffusion_model.``, the VAE under
    ``first_stage_model.`` or ``vae.``, towers under ``text_encoders.{clip_l,clip_g,t5xxl}.transformer.``).
    CLIP is None when the file holds no text encoders (ComfyUI's behaviour; load them with a CLIP loader); an SD3 file
    with some of the three gets a CLIP of those (zeros for the others, engine.flow_clip)."""
    from engine.errors import CheckpointError
    from engine.flow_clip import build_flow_clip

    def sub(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}

    arch = flow_checkpoint_arch(sd)
    maker = make_mmdit_model if arch == "mmdit" else make_flux_model
    model = maker(sub("model.diffusion_model."), manager, path, None, builders["assign"])
    clip = None
    if output_clip:
        names = ("clip_l", "clip_g", "t5xxl") if arch == "mmdit" else ("clip_l", "t5xxl")
        towers = {n: sub(_TOWER_PREFIX.format(n)) for n in names}
        if any(towers.values()):
            absent = [n for n, t in towers.items() if not t]
            if absent and arch != "mmdit":  # SD3 files may hold a subset (sd3_medium_incl_clips: no T5)
                raise CheckpointError(f"{path.name}: text encoders {', '.join(absent)} are missing from this "
                                      "checkpoint; load them with a CLIP loader")
            clip = build_flow_clip("sd3" if arch == "mmdit" else "flux",
                                   [(path, t, metadata) for t in towers.values() if t], manager, builders["tower"])
    vae = None
    if output_vae:
        prefix = next((p for p in ("first_stage_model.", "vae.") if p + "decoder.conv_in.weight" in sd), None)
        if prefix is None:
            raise CheckpointError(f"{path.name}: no VAE weights (first_stage_model.* / vae.*) in this checkpoint; "
                                  "load one with VAELoader")
        vae = builders["vae"](sub(prefix))
    return model, clip, vae
