# mypy: disable-error-code="arg-type,no-any-return,operator,union-attr"
# (network code: nn.Module attribute access and torch ops are typed loosely; the rest of engine is strict)
"""CLIP vision encoders (ComfyUI's CLIP_VISION / CLIP_VISION_OUTPUT): HF ``CLIPVisionModelWithProjection`` and
OpenCLIP ``visual.*`` files.

Config: the file's metadata (``comfy_clip_vision_config`` inside a ``*_config`` JSON), else ComfyUI's rule by
layer count for real files: 48 layers ViT-bigG/14, 32 ViT-H/14, 24 ViT-L/14 (224 or 336 px by the position
count). Heads, activation and image size are not in the tensors. ``encode_image(image, crop)`` preprocesses
as ``comfy.clip_vision.clip_preprocess`` (bicubic antialiased resize, centre crop, 8-bit rounding, OpenAI
mean / std) and returns ``last_hidden_state`` (no post-norm), ``penultimate_hidden_states`` (output of layer
n-2) and ``image_embeds`` (projection of the post-normed class token).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import CheckpointError, UnknownModelError
from engine.model_management import ManagedModel, ModelManager, file_cache_key
from engine.state_files import read_state_dict

__all__ = ["ClipVisionConfig", "ClipVision", "ClipVisionOutput", "clip_preprocess", "clip_vision_config",
           "clip_vision_from_state_dict", "load_clip_vision", "CLIP_MEAN", "CLIP_STD"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HF = "vision_model."


@dataclass(frozen=True)
class ClipVisionConfig:
    """A ViT image tower (transformers' CLIPVisionConfig fields)."""

    hidden_size: int = 1280
    intermediate_size: int = 5120
    num_attention_heads: int = 16
    num_hidden_layers: int = 32
    patch_size: int = 14
    image_size: int = 224
    projection_dim: int = 1024
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5


# ComfyUI's clip_vision_config_{g,h,vitl}.json by layer count (heads / activation are not in the tensors)
_BY_LAYERS = {48: ClipVisionConfig(1664, 8192, 16, 48, projection_dim=1280),
              32: ClipVisionConfig(1280, 5120, 16, 32, projection_dim=1024),
              24: ClipVisionConfig(1024, 4096, 16, 24, projection_dim=768, hidden_act="quick_gelu")}


def _shape_fields(shapes: Mapping[str, Any]) -> dict[str, int]:
    """The config fields the HF-named tensors give (widths, depth, patch, projection)."""
    patch = shapes.get(_HF + "embeddings.patch_embedding.weight")
    fc1 = shapes.get(_HF + "encoder.layers.0.mlp.fc1.weight")
    proj = shapes.get("visual_projection.weight")
    out = {"num_hidden_layers": len({k.split(".")[3] for k in shapes if k.startswith(_HF + "encoder.layers.")})}
    if patch is not None:
        out.update(hidden_size=int(patch[0]), patch_size=int(patch[2]))
    if fc1 is not None:
        out["intermediate_size"] = int(fc1[0])
    if proj is not None:
        out["projection_dim"] = int(proj[0])
    return out


def clip_vision_config(shapes: Mapping[str, Any], metadata: Mapping[str, str] | None, source: str) -> ClipVisionConfig:
    """The tower's config: from the metadata when present, else by layer count (real files)."""
    for value in (metadata or {}).values():
        try:
            parsed = json.loads(value)
        except (TypeError, ValueError):
            continue
        cfg = parsed.get("comfy_clip_vision_config") if isinstance(parsed, dict) else None
        if isinstance(cfg, dict):
            fields = set(ClipVisionConfig.__dataclass_fields__)
            # widths the config leaves out are read from the tensors
            return ClipVisionConfig(**{**_shape_fields(shapes), **{k: v for k, v in cfg.items() if k in fields}})
    layers = len({k.split(".")[3] for k in shapes if k.startswith(_HF + "encoder.layers.")})
    base = _BY_LAYERS.get(layers)
    if base is None:
        raise UnknownModelError(f"{source}: CLIP vision tower with {layers} layers; known: 48 (ViT-bigG/14), "
                                "32 (ViT-H/14), 24 (ViT-L/14). Add a comfy_clip_vision_config to its metadata")
    width = int(shapes[_HF + "embeddings.patch_embedding.weight"][0])
    positions = int(shapes[_HF + "embeddings.position_embedding.weight"][0])
    patch = int(shapes[_HF + "embeddings.patch_embedding.weight"][2])
    if width != base.hidden_size:
        raise UnknownModelError(f"{source}: {layers}-layer CLIP vision tower of width {width} (expected "
                                f"{base.hidden_size}); add a comfy_clip_vision_config to its metadata")
    side = math.isqrt(positions - 1) * patch
    return ClipVisionConfig(**{**base.__dict__, "image_size": side, "patch_size": patch})


def openclip_to_hf(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP ``visual.*`` keys -> transformers' CLIPVisionModelWithProjection keys."""
    out: dict[str, torch.Tensor] = {}
    simple = {"visual.class_embedding": _HF + "embeddings.class_embedding",
              "visual.conv1.weight": _HF + "embeddings.patch_embedding.weight",
              "visual.positional_embedding": _HF + "embeddings.position_embedding.weight",
              "visual.ln_pre.weight": _HF + "pre_layrnorm.weight", "visual.ln_pre.bias": _HF + "pre_layrnorm.bias",
              "visual.ln_post.weight": _HF + "post_layernorm.weight",
              "visual.ln_post.bias": _HF + "post_layernorm.bias"}
    parts = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    for key, value in sd.items():
        if key in simple:
            out[simple[key]] = value
        elif key == "visual.proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif key.startswith("visual.transformer.resblocks."):
            n, rest = key[len("visual.transformer.resblocks."):].split(".", 1)
            layer = f"{_HF}encoder.layers.{n}."
            if rest.startswith("attn.in_proj_"):
                for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3), strict=True):
                    out[f"{layer}self_attn.{name}.{rest.rsplit('_', 1)[1]}"] = chunk
            else:
                module, param = rest.rsplit(".", 1)
                out[f"{layer}{parts.get(module, module)}.{param}"] = value
    return out


class _Layer(nn.Module):
    def __init__(self, c: ClipVisionConfig) -> None:
        super().__init__()
        w = c.hidden_size
        self.heads = c.num_attention_heads
        self.act = c.hidden_act
        self.layer_norm1 = nn.LayerNorm(w, eps=c.layer_norm_eps)
        self.self_attn = nn.Module()
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self.self_attn, name, nn.Linear(w, w))
        self.layer_norm2 = nn.LayerNorm(w, eps=c.layer_norm_eps)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(w, c.intermediate_size)
        self.mlp.fc2 = nn.Linear(c.intermediate_size, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        h = self.layer_norm1(x)
        att = self.self_attn
        q, k, v = (p(h).view(b, t, self.heads, w // self.heads).transpose(1, 2)
                   for p in (att.q_proj, att.k_proj, att.v_proj))
        x = x + att.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, w))
        h = self.mlp.fc1(self.layer_norm2(x))
        h = h * torch.sigmoid(1.702 * h) if self.act == "quick_gelu" else F.gelu(h)
        return x + self.mlp.fc2(h)


class ClipVision(nn.Module):
    """CLIPVisionModelWithProjection. forward(pixel_values, intermediate_output=-2) -> (last hidden state,
    hidden state after layer ``intermediate_output``, image_embeds, None) as ComfyUI's model returns."""

    def __init__(self, c: ClipVisionConfig) -> None:
        super().__init__()
        self.config = c
        w = c.hidden_size
        self.vision_model = nn.Module()
        vm = self.vision_model
        vm.embeddings = nn.Module()
        vm.embeddings.class_embedding = nn.Parameter(torch.empty(w))
        vm.embeddings.patch_embedding = nn.Conv2d(3, w, c.patch_size, c.patch_size, bias=False)
        vm.embeddings.position_embedding = nn.Embedding((c.image_size // c.patch_size) ** 2 + 1, w)
        vm.pre_layrnorm = nn.LayerNorm(w, eps=c.layer_norm_eps)
        vm.encoder = nn.Module()
        vm.encoder.layers = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))
        vm.post_layernorm = nn.LayerNorm(w, eps=c.layer_norm_eps)
        self.visual_projection = nn.Linear(w, c.projection_dim, bias=False)

    def forward(self, pixel_values: torch.Tensor, intermediate_output: int | None = -2,
                **_: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, None]:
        vm = self.vision_model
        emb = vm.embeddings
        x = emb.patch_embedding(pixel_values.to(emb.class_embedding.dtype)).flatten(2).transpose(1, 2)
        x = torch.cat([emb.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + emb.position_embedding.weight
        x = vm.pre_layrnorm(x)
        layers = vm.encoder.layers
        stop = None if intermediate_output is None else intermediate_output % len(layers)
        inter = None
        for i, layer in enumerate(layers):
            x = layer(x)
            if i == stop:
                inter = x.clone()
        return x, inter, self.visual_projection(vm.post_layernorm(x[:, 0, :])), None


def clip_preprocess(image: torch.Tensor, size: int = 224, mean: tuple[float, ...] = CLIP_MEAN,
                    std: tuple[float, ...] = CLIP_STD, crop: bool = True) -> torch.Tensor:
    """IMAGE [B,H,W,C] 0..1 -> normalised NCHW pixels of ``size`` (ComfyUI's clip_preprocess)."""
    image = image[..., :3].movedim(-1, 1)
    if image.shape[2] != size or image.shape[3] != size:
        if crop:
            scale = size / min(image.shape[2], image.shape[3])
            scaled = (round(scale * image.shape[2]), round(scale * image.shape[3]))
        else:
            scaled = (size, size)
        image = F.interpolate(image, size=scaled, mode="bicubic", antialias=True)
        h, w = (image.shape[2] - size) // 2, (image.shape[3] - size) // 2
        image = image[:, :, h:h + size, w:w + size]
    image = torch.clip(255.0 * image, 0, 255).round() / 255.0
    m = torch.tensor(mean, device=image.device, dtype=image.dtype).view(3, 1, 1)
    s = torch.tensor(std, device=image.device, dtype=image.dtype).view(3, 1, 1)
    return (image - m) / s


class ClipVisionOutput:
    """CLIP_VISION_OUTPUT: attributes readable as items too (``out["image_embeds"]``), like ComfyUI's Output."""

    last_hidden_state: torch.Tensor
    penultimate_hidden_states: torch.Tensor
    image_embeds: torch.Tensor

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __contains__(self, key: str) -> bool:
        return hasattr(self, key)


class ClipVisionModel:
    """CLIP_VISION: the tower on the manager's device; ``encode_image(image, crop=True)``."""

    def __init__(self, module: ClipVision, manager: ModelManager, name: str, entry: ManagedModel | None = None) -> None:
        self.module = module
        self.manager = manager
        self.name = name
        self.entry = entry if entry is not None else manager.register(module, name, "clip_vision")
        self.image_size = module.config.image_size
        self.image_mean, self.image_std = list(CLIP_MEAN), list(CLIP_STD)

    @property
    def load_device(self) -> torch.device:
        return self.manager.policy.device

    @property
    def model(self) -> ClipVision:
        """The tower, on the compute device (packs call ``clip_vision.model(pixel_values=...)`` directly)."""
        module: ClipVision = self.manager.load(self.entry)  # type: ignore[assignment]
        return module

    @property
    def patcher(self) -> ClipVisionModel:
        """ComfyUI's ModelPatcher of the tower: this handle (it loads itself when used)."""
        return self

    @property
    def config(self) -> ClipVisionConfig:
        return self.module.config

    def encode_image(self, image: torch.Tensor, crop: bool = True) -> ClipVisionOutput:
        """IMAGE [B,H,W,C] -> ClipVisionOutput (float32, on the CPU)."""
        module = self.model
        pixels = clip_preprocess(image.to(self.load_device).float(), self.image_size, crop=crop)
        with torch.no_grad():
            last, penultimate, embeds, _ = module(pixels, intermediate_output=-2)
        out = ClipVisionOutput()
        out.last_hidden_state = last.float().cpu()
        out.penultimate_hidden_states = penultimate.float().cpu()
        out.image_embeds = embeds.float().cpu()
        return out


def clip_vision_from_state_dict(sd: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None, name: str,
                                manager: ModelManager) -> ClipVisionModel:
    """A CLIP_VISION from HF (``vision_model.*``) or OpenCLIP (``visual.*``) tensors; config as
    ``clip_vision_config`` reads it from ``metadata`` and the shapes."""
    sd = dict(sd)
    if "visual.conv1.weight" in sd:
        sd = openclip_to_hf(sd)
    if _HF + "embeddings.patch_embedding.weight" not in sd:
        groups = sorted({".".join(k.split(".")[:2]) for k in sd})[:8]
        raise UnknownModelError(f"{name}: not a CLIP vision model (no vision_model.* or visual.* keys; "
                                f"found {', '.join(groups)})")
    sd.pop(_HF + "embeddings.position_ids", None)
    cfg = clip_vision_config({k: tuple(v.shape) for k, v in sd.items()}, metadata, name)
    with torch.device("meta"):
        module = ClipVision(cfg)
    dtype = torch.float32  # ComfyUI computes CLIP vision in fp32 on the CPU; the tower is small
    try:
        module.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        details = "; ".join(ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip())[:400]
        raise UnknownModelError(f"{name}: CLIP vision tensors do not fit the {cfg.num_hidden_layers}-layer "
                                f"config: {details}") from exc
    return ClipVisionModel(module.eval(), manager, name)


def _build(path: Path, manager: ModelManager) -> ClipVisionModel:
    sd, metadata = read_state_dict(path)
    return clip_vision_from_state_dict(sd, metadata, path.name, manager)


def load_clip_vision(path: str | os.PathLike[str], manager: ModelManager) -> ClipVisionModel:
    """Load (once per unchanged file) a CLIP vision model from ``models/clip_vision``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"CLIP vision model not found: {p}. Put it in models/clip_vision")
    return manager.cached(file_cache_key("clip_vision", p), lambda: _build(p, manager))
