"""Model detection from tensor names and shapes (plus optional safetensors metadata).

``detect(shapes)`` reads the UNet layout (model_channels, channel_mult, res blocks, transformer depths,
context_dim, linear vs conv proj_in, ADM width), the VAE and text-encoder widths, and picks a family.
Heads cannot be read from shapes: they come from a config in the file's metadata when present, else from
the family's standard value.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from engine.errors import UnknownModelError
from engine.families import SD15, SD20, SD21_UNCLIP, SDXL, SDXL_REFINER, Family, TextEncoderSpec, family_names
from engine.networks.configs import ClipTextConfig, OpenClipConfig, UNetConfig, VAEConfig

__all__ = ["ModelConfig", "detect", "detect_unet", "detect_vae", "detect_clip_l", "metadata_config",
           "V_PREDICTION_STD_THRESHOLD", "head_width_defaults"]

Shapes = Mapping[str, Sequence[int]]
TensorGetter = Callable[[str], "torch.Tensor"]

V_PREDICTION_STD_THRESHOLD = 0.09
_V_RULE_KEY = "output_blocks.11.1.transformer_blocks.0.norm1.bias"


@dataclass(frozen=True)
class ModelConfig:
    """What a checkpoint holds: family, network configs (None when absent), text towers by token key
    ("l", "g", "h"; empty when the file has none) and prediction type. ``found["text_error"]`` explains a
    tower that is present but cannot be configured."""

    family: Family
    unet: UNetConfig | None
    vae: VAEConfig | None
    text: dict[str, ClipTextConfig | OpenClipConfig]
    prediction: str
    unet_prefix: str
    vae_prefix: str | None
    found: dict[str, Any] = field(default_factory=dict)


def metadata_configs(metadata: Mapping[str, str] | None) -> Iterator[dict[str, Any]]:
    """The JSON objects stored under ``*config`` keys of safetensors metadata, in key order (others skipped)."""
    for key, value in (metadata or {}).items():
        if not key.endswith("config"):
            continue
        try:
            parsed = json.loads(value)
        except (TypeError, ValueError):
            continue
        if isinstance(parsed, dict):
            yield parsed


def metadata_config(metadata: Mapping[str, str] | None) -> dict[str, Any]:
    """A JSON model config stored in safetensors metadata (a ``*_config`` key holding a ``unet`` dict)."""
    for parsed in metadata_configs(metadata):
        if any(k in parsed for k in ("unet", "clip", "vae", "text_encoder")):
            return parsed
    return {}


class _IndexedShapes(dict):  # type: ignore[type-arg]
    """A key -> shape dict that also knows, for every ``prefix.`` followed by a numeric key component, the
    numbers that follow it: built in one pass over the keys, so the many block-index lookups of one
    detection cost a dict lookup each instead of a regex scan over all keys."""

    _numbers: dict[str, list[int]] | None = None

    def numbers(self, prefix: str) -> list[int]:
        if self._numbers is None:
            found: dict[str, set[int]] = {}
            for key in self:
                parts = key.split(".")
                start = 0
                for part in parts[:-1]:  # a number followed by a dot: never the last component
                    if part.isdecimal():
                        found.setdefault(key[:start], set()).add(int(part))
                    start += len(part) + 1
            self._numbers = {p: sorted(v) for p, v in found.items()}
        return self._numbers.get(prefix, [])


def _indexed(shapes: Shapes) -> Shapes:
    """``shapes`` as an _IndexedShapes (itself when it already is one)."""
    return shapes if isinstance(shapes, _IndexedShapes) else _IndexedShapes(shapes)


def _indices(shapes: Shapes, prefix: str) -> list[int]:
    if isinstance(shapes, _IndexedShapes) and (prefix == "" or prefix.endswith(".")):
        return list(shapes.numbers(prefix))
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in shapes if (m := pat.match(k))})


def _depth(shapes: Shapes, prefix: str) -> int:
    return len(_indices(shapes, prefix + "transformer_blocks."))


def detect_unet(shapes: Shapes, prefix: str = "", heads: Mapping[str, Any] | None = None,
                family: Family | None = None) -> UNetConfig:
    """UNet hyper-parameters from the keys/shapes under ``prefix``."""
    shapes = _indexed(shapes)
    conv_in = shapes.get(prefix + "input_blocks.0.0.weight")
    if conv_in is None:
        raise KeyError(prefix + "input_blocks.0.0.weight")
    mc, in_ch = int(conv_in[0]), int(conv_in[1])
    out = shapes.get(prefix + "out.2.weight")  # absent in a ControlNet (an encoder-only copy of the UNet)
    out_ch = int(out[0]) if out is not None else in_ch
    channel_mult: list[int] = []
    num_res: list[int] = []
    depth_in: list[int] = []
    count = 0
    cur = mc
    for i in _indices(shapes, prefix + "input_blocks.")[1:]:
        p = f"{prefix}input_blocks.{i}."
        if p + "0.op.weight" in shapes:
            channel_mult.append(cur // mc)
            num_res.append(count)
            count = 0
        elif p + "0.in_layers.2.weight" in shapes:
            cur = int(shapes[p + "0.in_layers.2.weight"][0])
            count += 1
            depth_in.append(_depth(shapes, p + "1."))
    channel_mult.append(cur // mc)
    num_res.append(count)
    depth_out = [_depth(shapes, f"{prefix}output_blocks.{i}.1.")
                 for i in _indices(shapes, prefix + "output_blocks.")]
    if prefix + "middle_block.1.proj_in.weight" in shapes:
        depth_mid = _depth(shapes, prefix + "middle_block.1.")
    elif prefix + "middle_block.0.in_layers.2.weight" in shapes:
        depth_mid = -1
    else:
        depth_mid = -2
    context_dim = 0
    use_linear = False
    for key, shape in shapes.items():
        if key.startswith(prefix) and key.endswith("attn2.to_k.weight"):
            context_dim = int(shape[1])
            break
    for key, shape in shapes.items():
        if key.startswith(prefix) and key.endswith(".proj_in.weight"):
            use_linear = len(shape) == 2
            break
    adm = shapes.get(prefix + "label_emb.0.0.weight")
    heads = dict(heads or {})
    num_head_channels = int(heads.get("num_head_channels", family.default_num_head_channels if family else -1))
    num_heads = int(heads.get("num_heads", family.default_num_heads if family else 8))
    if num_head_channels == -1 and num_heads <= 0:
        num_heads = 8
    return UNetConfig(
        model_channels=mc, in_channels=in_ch, out_channels=out_ch, channel_mult=tuple(channel_mult),
        num_res_blocks=tuple(num_res), transformer_depth=tuple(depth_in),
        transformer_depth_output=tuple(reversed(depth_out)), transformer_depth_middle=depth_mid,
        context_dim=context_dim, num_heads=num_heads, num_head_channels=num_head_channels,
        use_linear_in_transformer=use_linear, num_classes="sequential" if adm is not None else None,
        adm_in_channels=int(adm[1]) if adm is not None else None,
    )


def detect_vae(shapes: Shapes, prefix: str = "") -> VAEConfig:
    """AutoencoderKL hyper-parameters from the keys/shapes under ``prefix``."""
    shapes = _indexed(shapes)
    ch = int(shapes[prefix + "decoder.conv_out.weight"][1])
    levels = _indices(shapes, prefix + "decoder.up.")
    mult = tuple(int(shapes[f"{prefix}decoder.up.{i}.block.0.conv2.weight"][0]) // ch for i in levels)
    n_res = len(_indices(shapes, prefix + "decoder.up.0.block.")) - 1
    z = int(shapes[prefix + "decoder.conv_in.weight"][1])
    quant = prefix + "post_quant_conv.weight" in shapes
    embed = int(shapes[prefix + "post_quant_conv.weight"][1]) if quant else z
    return VAEConfig(ch=ch, ch_mult=mult, num_res_blocks=n_res, z_channels=z, embed_dim=embed, quant_conv=quant)


def detect_clip_l(shapes: Shapes, prefix: str, heads: int) -> ClipTextConfig:
    """CLIP-L (HF layout) text tower config; ``prefix`` ends with ``text_model.``."""
    shapes = _indexed(shapes)
    tok = shapes[prefix + "embeddings.token_embedding.weight"]
    pos = shapes[prefix + "embeddings.position_embedding.weight"]
    layers = len(_indices(shapes, prefix + "encoder.layers."))
    inter = int(shapes[prefix + "encoder.layers.0.mlp.fc1.weight"][0])
    hidden = int(tok[1])
    return ClipTextConfig(vocab_size=int(tok[0]), hidden_size=hidden, intermediate_size=inter,
                          num_hidden_layers=layers, num_attention_heads=heads,
                          max_position_embeddings=int(pos[0]), projection_dim=hidden)


def clip_heads(hidden: int, configured: Any, default: int, source: str) -> int:
    """Text-encoder heads: the file's config value, else the family standard (must divide the width)."""
    heads = int(configured) if configured is not None else default
    if heads <= 0 or hidden % heads:
        raise UnknownModelError(
            f"{source}: text encoder width {hidden} is not divisible by {heads} heads"
            f"{'' if configured is not None else ' (the family standard; heads cannot be read from shapes)'}; "
            "add a config with text encoder num_attention_heads to the file's metadata"
        )
    return heads


def detect_open_clip(shapes: Shapes, prefix: str, heads: int) -> OpenClipConfig:
    """OpenCLIP text tower config; ``prefix`` ends with ``model.`` (keys ``token_embedding.weight`` ...)."""
    shapes = _indexed(shapes)
    tok = shapes[prefix + "token_embedding.weight"]
    width = int(tok[1])
    proj = shapes.get(prefix + "text_projection")
    return OpenClipConfig(
        vocab_size=int(tok[0]), width=width, layers=len(_indices(shapes, prefix + "transformer.resblocks.")),
        heads=heads, mlp_width=int(shapes[prefix + "transformer.resblocks.0.mlp.c_fc.weight"][0]),
        context_length=int(shapes[prefix + "positional_embedding"][0]),
        projection_dim=int(proj[1]) if proj is not None else width,
    )


def tower_probe_key(spec: TextEncoderSpec) -> str:
    """The key whose presence (under the family prefix) means the file holds this tower."""
    if spec.kind == "clip_l":
        return "text_model.embeddings.token_embedding.weight"
    return "token_embedding.weight"


def detect_text_tower(shapes: Shapes, spec: TextEncoderSpec, meta: Mapping[str, Any], source: str,
                      prefix: str | None = None) -> ClipTextConfig | OpenClipConfig | None:
    """Config of one text tower (None when its keys are absent); heads from metadata or the family."""
    shapes = _indexed(shapes)
    prefix = spec.prefix if prefix is None else prefix
    probe = prefix + tower_probe_key(spec)
    if probe not in shapes:
        return None
    configured = next((meta[k].get("num_attention_heads") for k in spec.meta_keys
                       if isinstance(meta.get(k), dict) and "num_attention_heads" in meta[k]), None)
    heads = clip_heads(int(shapes[probe][1]), configured, spec.default_heads, source)
    if spec.kind == "clip_l":
        return detect_clip_l(shapes, prefix + "text_model.", heads)
    return detect_open_clip(shapes, prefix, heads)


def _classify(unet: UNetConfig, shapes: Shapes) -> Family:
    if unet.adm_in_channels is not None:
        if unet.transformer_depth and unet.transformer_depth[0] > 0:
            # attention at the first level: an SD2 UNet with an ADM input (SDXL / refiner have none there)
            return SD21_UNCLIP
        if any(k.startswith("conditioner.embedders.1.") for k in shapes):
            return SDXL
        if any(k.startswith("conditioner.embedders.0.model.") for k in shapes):
            return SDXL_REFINER
        return SDXL if len(unet.channel_mult) == 3 else SDXL_REFINER
    return SD20 if unet.use_linear_in_transformer else SD15


_STANDARD_HEAD_WIDTH = 64  # channels per head of real SD2 / unCLIP UNets and OpenCLIP-H text towers
_SMALL_HEAD_WIDTH = 16  # the convention of small test models, whose widths 64 does not divide


def _head_width(*widths: int) -> int:
    return _STANDARD_HEAD_WIDTH if all(w % _STANDARD_HEAD_WIDTH == 0 for w in widths) else _SMALL_HEAD_WIDTH


def head_width_defaults(unet: UNetConfig, shapes: Shapes, meta: Mapping[str, Any],
                        text_prefix: str | None) -> dict[str, Any]:
    """``meta`` with the UNet / text heads an unCLIP file's metadata does not give: 64 channels per head when 64
    divides the model width (real files), else 16 (small models). Heads are not in the tensors, and the unCLIP
    family has no fixed head count to fall back on."""
    out = dict(meta)
    unet_meta: dict[str, Any] = dict(out["unet"]) if isinstance(out.get("unet"), dict) else {}
    if "num_head_channels" not in unet_meta and "num_heads" not in unet_meta:
        out["unet"] = {**unet_meta, "num_head_channels": _head_width(unet.model_channels), "num_heads": -1}
    tok = shapes.get(text_prefix + "token_embedding.weight") if text_prefix is not None else None
    text_meta: dict[str, Any] = dict(out["text_encoder"]) if isinstance(out.get("text_encoder"), dict) else {}
    if tok is not None and "num_attention_heads" not in text_meta:
        width = int(tok[1])
        out["text_encoder"] = {**text_meta, "num_attention_heads": width // _head_width(width)}
    return out


def _is_v_prediction(unet: UNetConfig, get_tensor: TensorGetter | None, prefix: str) -> bool:
    if get_tensor is None or unet.in_channels != 4:
        return False
    try:
        bias = get_tensor(prefix + _V_RULE_KEY)
    except KeyError:
        return False
    return float(bias.float().std(unbiased=False)) > V_PREDICTION_STD_THRESHOLD


def _summary(shapes: Shapes) -> str:
    roots = sorted({".".join(k.split(".")[:2]) for k in shapes})
    shown = ", ".join(roots[:12]) + (f", ... ({len(roots)} groups)" if len(roots) > 12 else "")
    return f"{len(shapes)} tensors; key groups: {shown}"


def detect(shapes: Shapes, metadata: Mapping[str, str] | None = None,
           get_tensor: TensorGetter | None = None, prediction: str | None = None,
           source: str = "checkpoint") -> ModelConfig:
    """Detect family and network configs of a full checkpoint (``model.diffusion_model.`` keys)."""
    shapes = _indexed(shapes)
    meta = metadata_config(metadata)
    unet_prefix = "model.diffusion_model."
    if unet_prefix + "input_blocks.0.0.weight" not in shapes:
        raise UnknownModelError(
            f"{source}: no Stable Diffusion UNet found (expected keys under '{unet_prefix}'); {_summary(shapes)}. "
            f"Supported families: {', '.join(family_names())}. A UNet-only, VAE-only or text-encoder-only file "
            "goes through the UNETLoader / VAELoader / CLIPLoader nodes instead."
        )
    try:
        probe = detect_unet(shapes, unet_prefix)
    except (KeyError, IndexError) as exc:
        raise UnknownModelError(f"{source}: UNet layout not recognised (missing {exc}); {_summary(shapes)}. "
                                f"Supported families: {', '.join(family_names())}") from exc
    family = _classify(probe, shapes)
    if family is SD21_UNCLIP:
        meta = head_width_defaults(probe, shapes, meta, family.text_encoders[0].prefix)
    unet = detect_unet(shapes, unet_prefix, meta.get("unet"), family)
    vae_prefix: str | None = family.vae_prefix if family.vae_prefix + "decoder.conv_in.weight" in shapes else None
    vae = detect_vae(shapes, vae_prefix) if vae_prefix else None
    found: dict[str, Any] = {"metadata_config": bool(meta)}
    text: dict[str, ClipTextConfig | OpenClipConfig] = {}
    for spec in family.text_encoders:
        try:
            cfg = detect_text_tower(shapes, spec, meta, source)
        except UnknownModelError as exc:
            found["text_error"] = str(exc)
            continue
        if cfg is not None:
            text[spec.key] = cfg
    pred = prediction or family.prediction
    if prediction is None and family in (SD20, SD21_UNCLIP) and _is_v_prediction(unet, get_tensor, unet_prefix):
        pred = "v"
    return ModelConfig(family=family, unet=unet, vae=vae, text=text, prediction=pred,
                       unet_prefix=unet_prefix, vae_prefix=vae_prefix, found=found)


def detect_family_of_unet(shapes: Shapes, metadata: Mapping[str, str] | None = None,
                          get_tensor: TensorGetter | None = None, source: str = "unet file"
                          ) -> tuple[Family, UNetConfig, str]:
    """Family, UNet config and prediction of a UNet-only file (keys without prefix)."""
    shapes = _indexed(shapes)
    if "input_blocks.0.0.weight" not in shapes:
        raise UnknownModelError(
            f"{source}: not a Stable Diffusion UNet (no 'input_blocks.0.0.weight'); {_summary(shapes)}. "
            f"Supported families: {', '.join(family_names())}"
        )
    meta = metadata_config(metadata)
    probe = detect_unet(shapes, "")
    family = _classify(probe, shapes)
    if family is SD21_UNCLIP:
        meta = head_width_defaults(probe, shapes, meta, None)
    unet = detect_unet(shapes, "", meta.get("unet"), family)
    pred = family.prediction
    if family in (SD20, SD21_UNCLIP) and _is_v_prediction(unet, get_tensor, ""):
        pred = "v"
    return family, unet, pred


