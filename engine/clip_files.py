"""Stand-alone text-encoder files (CLIPLoader / DualCLIPLoader): layouts, tower roles and families.

A file holds one tower, in the HF layout (``text_model.*``, the usual ``clip_l`` / ``clip_g`` / SD2 files) or
the OpenCLIP layout (``token_embedding.weight``, ``transformer.resblocks.N.attn.in_proj_weight``), possibly
under a checkpoint prefix. OpenCLIP towers (SD2's ViT-H, SDXL's bigG) are run by Loom's OpenCLIP network, so
an HF-layout file of such a tower is converted: q/k/v fused into ``in_proj``, ``text_projection`` transposed.

Which family a file (or pair) serves follows ComfyUI's types: ``stable_diffusion`` decides by depth (a 31+
layer tower is the refiner's bigG, a 23+ layer tower SD2's ViT-H, else SD1's CLIP-L), ``sd2`` forces ViT-H,
``sdxl`` takes a CLIP-L file and a bigG file in any order.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from engine.errors import UnknownModelError
from engine.families import SD15, SD20, SDXL, SDXL_REFINER, Family

__all__ = ["TowerFile", "read_tower", "family_for", "classify_towers", "tower_layout", "CLIP_FILE_TYPES"]

CLIP_FILE_TYPES = ("stable_diffusion", "sd2", "sdxl")

_HF_PREFIXES = ("", "transformer.", "cond_stage_model.transformer.", "conditioner.embedders.0.transformer.",
                "conditioner.embedders.1.transformer.", "text_encoders.clip_l.transformer.",
                "text_encoders.clip_g.transformer.", "clip_l.transformer.", "clip_g.transformer.")
_OPEN_PREFIXES = ("", "model.", "cond_stage_model.model.", "conditioner.embedders.1.model.",
                  "conditioner.embedders.0.model.")
_HF_PROBE = "text_model.embeddings.token_embedding.weight"
_OPEN_PROBE = "token_embedding.weight"
_LAYER = re.compile(r"(?:text_model\.encoder\.layers|transformer\.resblocks)\.(\d+)\.")


@dataclass(frozen=True)
class TowerFile:
    """One text tower read from a file: its layout, width, depth and its tensors in Loom's names.

    layout: "hf" (``text_model.*``, run as CLIP-L) or "open_clip" (``token_embedding.weight`` ...);
    ``weights`` of an OpenCLIP tower are in OpenCLIP names (HF files converted); CLIP-L ones keep HF names.
    """

    name: str
    layout: Literal["hf", "open_clip"]
    width: int
    layers: int
    weights: dict[str, torch.Tensor]
    has_projection: bool


def _strip(sd: Mapping[str, torch.Tensor], prefixes: tuple[str, ...], probe: str) -> dict[str, torch.Tensor] | None:
    for prefix in prefixes:
        if prefix + probe in sd:
            return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return None


def _depth(keys: object) -> int:
    found = {int(m.group(1)) for k in keys if (m := _LAYER.match(str(k)))}  # type: ignore[attr-defined]
    return max(found) + 1 if found else 0


def hf_to_open_clip(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF CLIPTextModel(WithProjection) names -> OpenCLIP text tower names (fused in_proj, transposed proj)."""
    out: dict[str, torch.Tensor] = {
        "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": sd["text_model.final_layer_norm.weight"],
        "ln_final.bias": sd["text_model.final_layer_norm.bias"],
    }
    width = int(out["token_embedding.weight"].shape[1])
    proj = sd.get("text_projection.weight")
    out["text_projection"] = (proj.t().contiguous() if proj is not None
                              else torch.eye(width, dtype=out["ln_final.weight"].dtype))
    renames = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
               "self_attn.out_proj": "attn.out_proj"}
    for i in range(_depth(sd)):
        src, dst = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for hf, ours in renames.items():
            for part in ("weight", "bias"):
                out[f"{dst}{ours}.{part}"] = sd[f"{src}{hf}.{part}"]
        for part in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{part}"] = torch.cat(
                [sd[f"{src}self_attn.{p}_proj.{part}"] for p in ("q", "k", "v")], dim=0)
    return out


def read_tower(name: str, sd: Mapping[str, torch.Tensor]) -> TowerFile:
    """The text tower in a file's tensors (either layout, with or without a checkpoint prefix)."""
    hf = _strip(sd, _HF_PREFIXES, _HF_PROBE)
    if hf is not None:
        hf = {k: v for k, v in hf.items() if k.startswith(("text_model.", "text_projection"))}
        return TowerFile(name, "hf", int(hf[_HF_PROBE].shape[1]), _depth(hf), hf,
                         "text_projection.weight" in hf)
    oc = _strip(sd, _OPEN_PREFIXES, _OPEN_PROBE)
    if oc is not None:
        oc = {k: v for k, v in oc.items() if k != "logit_scale" and not k.endswith("attn_mask")
              and not k.startswith(("visual.", "model."))}
        return TowerFile(name, "open_clip", int(oc[_OPEN_PROBE].shape[1]), _depth(oc), oc, "text_projection" in oc)
    groups = sorted({".".join(k.split(".")[:2]) for k in sd})[:8]
    raise UnknownModelError(
        f"{name}: no CLIP text encoder found ({len(sd)} tensors; key groups {groups}). Supported: HF "
        "'text_model.*' files (clip_l, clip_g, SD2 ViT-H) and OpenCLIP 'token_embedding' / "
        "'transformer.resblocks' files, with or without a checkpoint prefix"
    )


def as_open_clip(tower: TowerFile) -> dict[str, torch.Tensor]:
    """The tower's tensors in OpenCLIP names (converting an HF file)."""
    return tower.weights if tower.layout == "open_clip" else hf_to_open_clip(tower.weights)


def as_clip_l(tower: TowerFile) -> dict[str, torch.Tensor]:
    """The tower's tensors in Loom's CLIP-L names (``transformer.text_model.*``)."""
    if tower.layout != "hf":
        raise UnknownModelError(f"{tower.name}: an OpenCLIP tower cannot serve as CLIP-L; pick the clip_l file")
    return {"transformer." + k: v for k, v in tower.weights.items() if k.startswith("text_model.")}


TowerShape = tuple[str, int, int]  # (layout, width, layers)


def tower_layout(shapes: Mapping[str, object]) -> TowerShape | None:
    """(layout, width, layers) of the tower in a file's key -> shape map (header only), None when absent."""
    for prefixes, probe, layout in ((_HF_PREFIXES, _HF_PROBE, "hf"), (_OPEN_PREFIXES, _OPEN_PROBE, "open_clip")):
        for prefix in prefixes:
            shape = shapes.get(prefix + probe)
            if shape is not None:
                keys = [k[len(prefix):] for k in shapes if k.startswith(prefix)]
                return layout, int(shape[1]), _depth(keys)  # type: ignore[index]
    return None


def classify_towers(clip_type: str, towers: list[TowerShape], names: list[str]) -> tuple[Family, list[str]]:
    """The family a CLIPLoader / DualCLIPLoader type serves and the token key ("l", "g", "h") of each file."""
    listed = ", ".join(names)
    if clip_type == "sdxl":
        if len(towers) != 2:
            raise UnknownModelError(f"DualCLIPLoader type 'sdxl' needs two files (clip_l and clip_g), got {listed}")
        order = sorted(range(2), key=lambda i: (towers[i][0] == "open_clip", towers[i][1], towers[i][2]))
        if towers[order[0]][0] != "hf":
            raise UnknownModelError(f"DualCLIPLoader type 'sdxl': neither {listed} is a CLIP-L (HF 'text_model.*') "
                                    "file; pick clip_l and clip_g")
        keys = ["", ""]
        keys[order[0]], keys[order[1]] = "l", "g"
        return SDXL, keys
    if len(towers) != 1:
        raise UnknownModelError(f"CLIP type {clip_type!r} takes one file, got {len(towers)} ({listed}); use "
                                "DualCLIPLoader with type 'sdxl' for an SDXL pair")
    layout, _, layers = towers[0]
    if clip_type == "sd2":
        return SD20, ["h"]
    if clip_type != "stable_diffusion":
        raise UnknownModelError(f"{listed}: CLIP type {clip_type!r} is not supported; supported: "
                                f"{', '.join(CLIP_FILE_TYPES)}")
    if layers >= 31:
        return SDXL_REFINER, ["g"]
    if layout == "open_clip" or layers >= 23:
        return SD20, ["h"]
    return SD15, ["l"]


Assigned = dict[str, tuple[TowerFile, dict[str, torch.Tensor]]]


def family_for(clip_type: str, towers: list[TowerFile]) -> tuple[Family, Assigned]:
    """The family a CLIPLoader / DualCLIPLoader type serves and, by token key, each tower with its tensors."""
    family, keys = classify_towers(clip_type, [(t.layout, t.width, t.layers) for t in towers],
                                   [t.name for t in towers])
    pairs = zip(keys, towers, strict=True)
    return family, {key: (t, as_clip_l(t) if key == "l" else as_open_clip(t)) for key, t in pairs}
