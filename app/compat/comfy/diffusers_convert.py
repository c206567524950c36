"""ComfyUI's `comfy.diffusers_convert` for packs: diffusers VAE / HF CLIP text tower tensors renamed to the
single-file (LDM / OpenCLIP) layout, by the renames Loom's own diffusers loader uses (`engine.diffusers_names`,
`engine.clip_files`). `load_diffusers` is the name older ComfyUI kept here (packs such as WAS call it)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from engine.clip_files import hf_to_open_clip
from engine.diffusers_names import vae_to_ldm


def reshape_weight_for_sd(w: torch.Tensor, conv3d: bool = False) -> torch.Tensor:
    """A linear weight [out, in] as a 1x1 (1x1x1 with ``conv3d``) convolution weight."""
    return w.reshape(*w.shape, *(1,) * (3 if conv3d else 2))


def convert_vae_state_dict(vae_state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict under the single-file VAE names (no ``first_stage_model.`` prefix);
    tensors with no single-file name keep theirs, as in ComfyUI."""
    return vae_to_ldm(vae_state_dict, "convert_vae_state_dict", keep_unknown=True)


def cat_tensors(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` along dim 0 by copying into a preallocated tensor (works for fp8 tensors on CUDA)."""
    out = torch.empty((sum(t.shape[0] for t in tensors), *tensors[0].shape[1:]),
                      dtype=tensors[0].dtype, device=tensors[0].device)
    start = 0
    for t in tensors:
        out[start:start + t.shape[0]] = t
        start += t.shape[0]
    return out


class _Reads(Mapping[str, torch.Tensor]):
    """A read-only view that records which keys were read, so the tensors a conversion did not use pass through."""

    def __init__(self, data: Mapping[str, torch.Tensor]) -> None:
        self.data = data
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> torch.Tensor:
        value = self.data[key]
        self.read.add(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def convert_text_enc_state_dict_v20(text_enc_dict: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any]:
    """The keys under ``prefix`` of an HF CLIP text tower (``{prefix}transformer.text_model.*``, ComfyUI's own
    layout) under OpenCLIP names (``{prefix}transformer.resblocks.*``, ``{prefix}token_embedding.weight``, fused
    ``in_proj``, transposed ``text_projection``), as SD2.x / SDXL checkpoints store them. Other keys are dropped."""
    hf_prefix = prefix + "transformer."
    tower = {k[len(hf_prefix):]: v for k, v in text_enc_dict.items() if k.startswith(hf_prefix)}
    others = {k: v for k, v in text_enc_dict.items() if k.startswith(prefix) and not k.startswith(hf_prefix)}
    if not tower:
        return others
    reads = _Reads(tower)
    try:
        converted = hf_to_open_clip(reads)
    except KeyError as exc:
        raise ValueError(f"convert_text_enc_state_dict_v20: the CLIP text tower under '{hf_prefix}' is incomplete: "
                         f"{hf_prefix}{exc.args[0]} is missing (a full CLIPTextModel is needed)") from exc
    if "text_projection.weight" not in tower:
        del converted["text_projection"]  # Loom's loader fills in an identity; ComfyUI's converter adds nothing
    out = {prefix + k: v for k, v in converted.items()}
    out.update({hf_prefix + k: v for k, v in tower.items() if k not in reads.read})
    out.update(others)
    return out


def convert_text_enc_state_dict(text_enc_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP-L towers keep the HF layout in single-file checkpoints: the dict unchanged."""
    return text_enc_dict


def load_diffusers(model_path: str, fp16: bool | None = None, output_vae: bool = True, output_clip: bool = True,
                   embedding_directory: Any = None) -> tuple[Any, Any, Any]:
    """Older ComfyUI's name for `comfy.diffusers_load.load_diffusers`: (MODEL, CLIP, VAE) of a diffusers folder.

    Loom's device policy picks the weights' dtype; ``fp16`` may only ask for what it picks (packs pass
    `comfy.model_management.should_use_fp16()`)."""
    import comfy.diffusers_load
    import comfy.model_management

    if fp16 is not None and bool(fp16) != comfy.model_management.should_use_fp16():
        policy = "fp16" if comfy.model_management.should_use_fp16() else "not fp16"
        raise ValueError(f"load_diffusers(fp16={fp16}): Loom's device policy loads this folder's weights {policy}; "
                         "a per-call dtype is not supported (pass fp16=None, or start Loom with the precision "
                         "flags you want)")
    loaded: tuple[Any, Any, Any] = comfy.diffusers_load.load_diffusers(
        model_path, output_vae=output_vae, output_clip=output_clip, embedding_directory=embedding_directory)
    return loaded
