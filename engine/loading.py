"""Checkpoint loading: a file -> (ModelHandle, ClipHandle, VaeHandle), plus UNet/VAE/CLIP-only files.

Networks are built on the meta device and take the file's tensors with ``load_state_dict(assign=True)``,
so a checkpoint is held in memory once. The ModelManager caches results by path + mtime.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from engine import pack_layers
from engine.clip_handle import TOWER_MODULES, ClipHandle, TextEncoderSet
from engine.detect import (
    ModelConfig,
    detect,
    detect_family_of_unet,
    detect_text_tower,
    detect_vae,
    metadata_config,
)
from engine.detect_flow import flux_prefix, mmdit_prefix
from engine.embeddings import EmbeddingStore
from engine.errors import CheckpointError, UnknownModelError
from engine.families import Family, TextEncoderSpec
from engine.flow_clip import FLOW_CLIP_TYPES, build_flow_clip
from engine.flow_loading import flow_checkpoint_arch, load_flow_checkpoint, make_flux_model, make_mmdit_model
from engine.handles import ModelHandle, VaeHandle
from engine.meta_build import BASE_OF as _BASE_OF
from engine.meta_build import meta_build as _meta_build
from engine.meta_build import meta_ops as _meta_ops
from engine.model_management import ModelManager, file_cache_key
from engine.networks.ops import CpuBf16, ManualCast, Operations, Plain
from engine.networks.text_encoders import ClipTextConfig, ClipTextEncoder, OpenClipConfig, OpenClipTextEncoder
from engine.networks.unet import UNetConfig, UNetModel
from engine.networks.vae import AutoencoderKL, VAEConfig
from engine.safetensors_header import read_safetensors_header
from engine.state_files import read_shapes, read_state_dict
from engine.tokenizer import PromptTokenizer

__all__ = ["load_checkpoint", "checkpoint_from_state_dict", "load_unet", "load_vae", "load_clip", "detect",
           "ModelConfig"]

M = TypeVar("M", bound=nn.Module)
PathLike = str | os.PathLike[str]


def _sub(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _check_keys(module: nn.Module, sd: Mapping[str, torch.Tensor], what: str, path: Path,
                ignore: tuple[str, ...] = ()) -> None:
    expected = set(module.state_dict().keys())
    got = {k for k in sd if not k.endswith(ignore or ("\0",))}
    missing = sorted(expected - got)
    unexpected = sorted(got - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path.name}: the {what} weights do not fit the detected layout "
            f"(missing {len(missing)}: {missing[:4]}; unexpected {len(unexpected)}: {unexpected[:4]}). "
            "The file may be damaged or a variant Loom does not support yet"
        )


_LOW_PRECISION = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))


# ---- reading: one header parse gives the shapes (for detection) and memory-mapped tensors --------------
_ST_TORCH: dict[str, torch.dtype] = {
    name: getattr(torch, attr) for name, attr in (
        ("F64", "float64"), ("F32", "float32"), ("F16", "float16"), ("BF16", "bfloat16"), ("I64", "int64"),
        ("I32", "int32"), ("I16", "int16"), ("I8", "int8"), ("U8", "uint8"), ("BOOL", "bool"),
        ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2")) if hasattr(torch, attr)
}


def _fast_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, tuple[int, ...]]] | None:
    """Tensors, metadata and shapes of a .safetensors file from one header parse, as views of one copy-on-write
    memory map of the file (torch.from_file, nothing read until used, never copied). None when anything is
    unusual (damaged file, unaligned tensor, unknown dtype): engine.state_files then reads it, or names the
    problem, exactly as before."""
    try:
        header = read_safetensors_header(path)
        size, base = header.file_size, header.data_start
        if size <= base or not header.tensors:
            return None
        mapped = torch.from_file(str(path), shared=False, size=size, dtype=torch.uint8)
        out: dict[str, torch.Tensor] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        for key, info in header.tensors.items():
            dtype = _ST_TORCH[info.dtype]
            start, end, shape = info.start, info.end, info.shape
            count = 1
            for d in shape:
                count *= d
            item = dtype.itemsize
            if (end - start != count * item or base + end > size or start > end or count == 0
                    or (base + start) % item):
                return None
            flat = mapped[base + start:base + end]
            out[key] = (flat if dtype == torch.uint8 else flat.view(dtype)).view(shape)
            shapes[key] = shape
        return out, dict(header.metadata), shapes
    except Exception:  # noqa: BLE001 - the careful reader reports it
        return None


def _read_with_shapes(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, tuple[int, ...]]]:
    """(tensors, metadata, key -> shape) of a model file; safetensors through one header parse."""
    if path.suffix.lower() in (".safetensors", ".sft"):
        fast = _fast_safetensors(path)
        if fast is not None:
            return fast
    sd, metadata = read_state_dict(path)
    return sd, metadata, read_shapes(sd)


# ---- building: networks on the meta device, then the file's tensors adopted in one pass -----------------

def _adopt(module: nn.Module, sd: Mapping[str, torch.Tensor], dtype: torch.dtype, what: str, path: Path,
           storage_dtype: torch.dtype | None = None) -> None:
    """Take the file's tensors as the module's parameters and buffers, in eval mode without grad.

    The result equals ``_check_keys`` + ``load_state_dict(sd, strict=True, assign=True)`` + ``to(dtype=dtype)``
    (+ matrices to ``storage_dtype``) + ``eval()`` + ``requires_grad_(False)``, done in one walk over the
    modules: tensors already in ``dtype`` are adopted as they are (memory-mapped, no copy).
    """
    slots: list[tuple[nn.Module, str, str, bool]] = []  # (module, name, key, is_parameter)
    modules: list[nn.Module] = []
    stack: list[tuple[str, nn.Module]] = [("", module)]
    while stack:
        prefix, m = stack.pop()
        base = _BASE_OF.get(type(m))
        if base is not None:
            m.__class__ = base
        modules.append(m)
        for name, p in m._parameters.items():
            if p is not None:
                slots.append((m, name, prefix + name, True))
        if m._buffers:
            skip = m._non_persistent_buffers_set
            for name, b in m._buffers.items():
                if b is not None and name not in skip:
                    slots.append((m, name, prefix + name, False))
        if type(m).set_extra_state is not nn.Module.set_extra_state:  # unusual layer: torch's own loader
            return _adopt_slow(module, sd, dtype, what, path, storage_dtype)
        for name, child in reversed(m._modules.items()):
            if child is not None:
                stack.append((prefix + name + ".", child))
    expected = {key for _, _, key, _ in slots}
    if len(expected) != len(sd) or any(k not in sd for k in expected):
        _check_keys(module, sd, what, path)
    errors: list[str] = []
    adopted: list[torch.Tensor] = []
    for m, name, key, is_param in slots:
        t, cur = sd[key], (m._parameters[name] if is_param else m._buffers[name])
        assert cur is not None  # slots hold only set parameters / buffers
        if len(cur.shape) == 0 and len(t.shape) == 1 and t.shape[0] == 1:  # torch's 0-dim rule
            t = t[0]
        if t.shape != cur.shape:
            errors.append(f"size mismatch for {key}: copying a param with shape {t.shape} from checkpoint, "
                          f"the shape in current model is {cur.shape}.")
        adopted.append(t)
    if errors:
        raise RuntimeError(f"Error(s) in loading state_dict for {type(module).__name__}:\n\t" + "\n\t".join(errors))
    hooks = bool(nn.modules.module._global_parameter_registration_hooks
                 or nn.modules.module._global_buffer_registration_hooks)
    for (m, name, _, is_param), t in zip(slots, adopted, strict=True):
        if t.is_floating_point() or t.is_complex():
            if storage_dtype is not None and is_param and t.ndim >= 2:
                if t.dtype != storage_dtype:  # a matrix already in its storage dtype stays the mapped tensor
                    t = t.to(dtype=dtype).to(storage_dtype)
            elif t.dtype != dtype:
                t = t.to(dtype=dtype)
        if is_param:
            if type(t) is not torch.Tensor and isinstance(t, nn.Parameter):
                t.requires_grad_(False)
            else:
                t = nn.Parameter(t, requires_grad=False)
            if hooks:
                setattr(m, name, t)
            else:
                m._parameters[name] = t
        elif hooks:
            setattr(m, name, t)
        else:
            m._buffers[name] = t
    if all(type(m).train is nn.Module.train for m in modules):
        for m in modules:  # what eval() does, without its recursion
            m.__dict__["training"] = False
    else:
        module.eval()


def _adopt_slow(module: nn.Module, sd: Mapping[str, torch.Tensor], dtype: torch.dtype, what: str, path: Path,
                storage_dtype: torch.dtype | None = None) -> None:
    for m in module.modules():
        base = _BASE_OF.get(type(m))
        if base is not None:
            m.__class__ = base
    _check_keys(module, sd, what, path)
    module.load_state_dict(dict(sd), strict=True, assign=True)
    module.to(dtype=dtype)
    if storage_dtype is not None:
        for p in module.parameters():
            if p.ndim >= 2:
                p.data = p.data.to(storage_dtype)
    module.eval()
    module.requires_grad_(False)


def build_assign(cls: type[M], config: Any, sd: Mapping[str, torch.Tensor], dtype: torch.dtype,
                 what: str, path: Path, storage_dtype: torch.dtype | None = None, bf16_ops: bool = False,
                 cast: bool = False) -> M:
    """Build on the meta device, adopt the file's tensors, then cast to ``dtype``.

    With a ``storage_dtype`` (fp8, fp16, or a bf16 / fp16 file kept as it is), matrices are stored in it and cast
    to ``dtype`` on each call (ManualCast layers, also when ``cast``); vectors (norms, biases) stay in ``dtype``.
    With ``bf16_ops`` the convs and linears compute in ``storage_dtype`` instead (CpuBf16 layers,
    engine.precision); a VAE's weights then go channels-last, which oneDNN's bf16 convs run natively (512x512
    decode 10.9 -> 9.5 s here; the UNet gains nothing from it, and fp32 keeps NCHW and ComfyUI's exact pixels).
    """
    ops: Operations = CpuBf16 if bf16_ops else ManualCast if storage_dtype is not None or cast else Plain
    module = _meta_build(cls, config, operations=_meta_ops(ops))
    _adopt(module, sd, dtype, what, path, storage_dtype)
    if bf16_ops and cls is AutoencoderKL:
        for param in module.parameters():
            if param.ndim == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
    return module  # type: ignore[return-value]


def build_with_operations(operations: Any) -> Callable[..., Any]:
    """A builder with ``build_assign``'s signature for a pack's own layer set (ComfyUI's ``custom_operations``):
    the network is made from ``operations`` on the meta device and takes the tensors through torch's state-dict
    loader, so layers that read their own tensors (GGUF's quantised weights) do; dtype and storage arguments are
    the layers' business and ignored here."""

    def build(cls: type[M], config: Any, sd: Mapping[str, torch.Tensor], dtype: torch.dtype, what: str,
              path: Path, **_: Any) -> M:
        with torch.device("meta"):
            module = cls(config, operations=operations)
        pack_layers.adopt(module, sd, what, path)
        return module

    return build


def _model_sampling(prediction: str) -> Any:
    from engine.sampling.model_sampling import ModelSamplingDiscrete

    return ModelSamplingDiscrete(prediction=prediction)  # type: ignore[arg-type]


def _make_model(unet_cfg: UNetConfig, sd: Mapping[str, torch.Tensor], family: Family, prediction: str,
                manager: ModelManager, path: Path, dtype: torch.dtype | None,
                builder: Callable[..., Any] = build_assign) -> ModelHandle:
    prec = manager.policy.network("unet")
    compute, storage, bf16_ops = prec.compute, prec.storage, prec.bf16_ops
    if dtype is not None:  # UNETLoader's weight_dtype wins over the --*-unet flags, as in ComfyUI
        if dtype in _LOW_PRECISION:
            storage, bf16_ops = dtype, False
        else:
            compute, storage, bf16_ops = dtype, None, False
    if storage is not None and storage != compute:
        unet = builder(UNetModel, unet_cfg, sd, compute, "UNet", path, storage_dtype=storage, bf16_ops=bf16_ops)
    else:
        unet = builder(UNetModel, unet_cfg, sd, compute, "UNet", path)
    entry = manager.register(unet, f"{path.name} (unet)", "unet")
    return ModelHandle(unet, _model_sampling(prediction), family.latent_format, family, manager, entry,
                       compute_dtype=compute)


def _make_vae(cfg: VAEConfig, sd: Mapping[str, torch.Tensor], manager: ModelManager, path: Path) -> VaeHandle:
    prec = manager.policy.network("vae")
    if prec.storage is not None and prec.storage != prec.compute:
        vae = build_assign(AutoencoderKL, cfg, sd, prec.compute, "VAE", path, storage_dtype=prec.storage,
                            bf16_ops=prec.bf16_ops)
    else:
        vae = build_assign(AutoencoderKL, cfg, sd, prec.compute, "VAE", path)
    return VaeHandle(vae, manager, manager.register(vae, f"{path.name} (vae)", "vae"), compute_dtype=prec.compute)


def _build_tower(spec: TextEncoderSpec, cfg: ClipTextConfig | OpenClipConfig, sd: Mapping[str, torch.Tensor],
                 dtype: torch.dtype, path: Path, operations: Any = None) -> nn.Module:
    """One text tower from its config and its keys (prefix already stripped to the tower's own names); with
    ``operations`` (a pack's layer set) its layers are those (engine.pack_layers) and ``dtype`` is theirs."""
    tower: nn.Module
    if isinstance(cfg, ClipTextConfig):
        # Loom's own module: no random init, the file's tensors are adopted
        tower = _meta_build(ClipTextEncoder, cfg, layer_norm_hidden_state=spec.norm_hidden,
                            default_layer=spec.default_layer, skip_init_mode=True)
        weights = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    else:
        weights = {k: v for k, v in sd.items() if k != "logit_scale" and not k.endswith("attn_mask")}
        tower = _meta_build(OpenClipTextEncoder, cfg, layer_norm_hidden_state=spec.norm_hidden,
                            default_layer=spec.default_layer, skip_init_mode=True)
    if operations is None:
        _adopt(tower, weights, dtype, f"text encoder ({spec.key})", path)
    else:
        pack_layers.adopt(pack_layers.swap_layers(tower, operations), weights, f"text encoder ({spec.key})", path)
    return tower


def _make_clip(family: Family, configs: Mapping[str, ClipTextConfig | OpenClipConfig],
               weights: Mapping[str, Mapping[str, torch.Tensor]], manager: ModelManager, path: Path,
               embedding_directory: str | None, operations: Any = None) -> ClipHandle:
    """A CLIP handle over the family's towers; ``weights`` maps token key -> that tower's tensors."""
    towers = TextEncoderSet()
    tokenizers: dict[str, PromptTokenizer] = {}
    for spec in family.text_encoders:
        cfg = configs[spec.key]
        towers[TOWER_MODULES[spec.key]] = _build_tower(spec, cfg, weights[spec.key], manager.policy.text_dtype,
                                                       path, operations)
        width = cfg.hidden_size if isinstance(cfg, ClipTextConfig) else cfg.width
        store = (EmbeddingStore(embedding_directory, width, TOWER_MODULES[spec.key])
                 if embedding_directory else None)
        tokenizers[spec.key] = PromptTokenizer(pad_token=spec.pad_token,
                                               embedding_lookup=store.get if store else None)
    entry = manager.register(towers, f"{path.name} (clip)", "clip")
    return ClipHandle(towers, tokenizers, manager, entry, embedding_directory)


def _load_checkpoint_uncached(path: Path, manager: ModelManager, embedding_directory: str | None,
                              output_clip: bool, output_vae: bool, prediction: str | None
                              ) -> tuple[ModelHandle, ClipHandle | None, VaeHandle | None]:
    sd, metadata, shapes = _read_with_shapes(path)
    return checkpoint_from_state_dict(sd, metadata, shapes, path, manager, embedding_directory, output_clip,
                                      output_vae, prediction)


def checkpoint_from_state_dict(sd: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
                               shapes: Mapping[str, Sequence[int]], path: Path, manager: ModelManager,
                               embedding_directory: str | None, output_clip: bool, output_vae: bool,
                               prediction: str | None) -> tuple[ModelHandle, ClipHandle | None, VaeHandle | None]:
    """MODEL / CLIP / VAE handles from a checkpoint's tensors in the single-file layout (``path`` names the source
    in messages and the model manager; not cached here)."""
    if flow_checkpoint_arch(shapes) is not None:
        builders: dict[str, Any] = {"assign": build_assign, "tower": _build_tower,
                    "vae": lambda vsd: _make_vae(detect_vae(read_shapes(vsd)), vsd, manager, path)}
        return load_flow_checkpoint(sd, metadata, path, manager, output_clip, output_vae, builders)
    cfg = detect(shapes, metadata, get_tensor=sd.__getitem__, prediction=prediction, source=path.name)
    assert cfg.unet is not None
    model = _make_model(cfg.unet, _sub(sd, cfg.unet_prefix), cfg.family, cfg.prediction, manager, path, None)
    clip: ClipHandle | None = None
    if output_clip:
        if "text_error" in cfg.found:
            raise UnknownModelError(cfg.found["text_error"])
        missing = [spec.key for spec in cfg.family.text_encoders if spec.key not in cfg.text]
        if missing:
            raise CheckpointError(
                f"{path.name}: detected family {cfg.family.name}, but its text encoder weights "
                f"({', '.join(spec.prefix for spec in cfg.family.text_encoders if spec.key in missing)}*) are "
                "missing; load a text encoder with CLIPLoader"
            )
        weights: dict[str, Mapping[str, torch.Tensor]] = {spec.key: _sub(sd, spec.prefix if spec.kind == "open_clip"
                                  else spec.prefix.removesuffix("transformer."))
                   for spec in cfg.family.text_encoders}
        clip = _make_clip(cfg.family, cfg.text, weights, manager, path, embedding_directory)
    vae: VaeHandle | None = None
    if output_vae:
        if cfg.vae is None or cfg.vae_prefix is None:
            raise CheckpointError(f"{path.name}: no VAE weights (first_stage_model.*) in this checkpoint; "
                                  "load one with VAELoader")
        vae = _make_vae(cfg.vae, _sub(sd, cfg.vae_prefix), manager, path)
    return model, clip, vae


def load_checkpoint(path: PathLike, manager: ModelManager, embedding_directory: str | None = None,
                    output_clip: bool = True, output_vae: bool = True, prediction: str | None = None
                    ) -> tuple[ModelHandle, ClipHandle | None, VaeHandle | None]:
    """Load a single-file checkpoint (family auto-detected) as fresh MODEL / CLIP / VAE handles."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}. Put it in models/checkpoints and refresh")
    key = file_cache_key("checkpoint", p, embedding_directory, output_clip, output_vae, prediction)
    model, clip, vae = manager.cached(key, partial(_load_checkpoint_uncached, p, manager, embedding_directory,
                                                   output_clip, output_vae, prediction))
    return model.clone(), clip.clone() if clip else None, vae.clone() if vae else None


def _strip_known(sd: dict[str, torch.Tensor], prefixes: Sequence[str], probe: str) -> dict[str, torch.Tensor]:
    for prefix in prefixes:
        if prefix + probe in sd:
            return _sub(sd, prefix) if prefix else sd
    return sd


def load_unet(path: PathLike, manager: ModelManager, dtype: torch.dtype | None = None,
              prediction: str | None = None) -> ModelHandle:
    """Load a UNet-only file (keys without prefix; a full checkpoint's UNet also works)."""
    p = Path(path)

    def build() -> ModelHandle:
        sd, metadata = read_state_dict(p)
        return unet_from_state_dict(sd, manager, p, dtype=dtype, prediction=prediction, metadata=metadata)

    if not p.is_file():
        raise CheckpointError(f"UNet file not found: {p}. Put it in models/diffusion_models (or models/unet)")
    return manager.cached(file_cache_key("unet", p, str(dtype), prediction), build).clone()


def unet_from_state_dict(sd: Mapping[str, torch.Tensor], manager: ModelManager, source: Path, *,
                         dtype: torch.dtype | None = None, prediction: str | None = None,
                         metadata: Mapping[str, str] | None = None, operations: Any = None) -> ModelHandle:
    """The MODEL handle of a diffusion model's tensors (UNet, Flux or MMDiT, detected from their shapes; keys
    without prefix or with ``model.diffusion_model.``); ``source`` names them in messages. With ``operations``
    (a pack's layer set) the network is built from those layers (``build_with_operations``)."""
    builder = build_assign if operations is None else build_with_operations(operations)
    sd = dict(sd)
    shapes = read_shapes(sd)
    flux, mmdit = flux_prefix(shapes), mmdit_prefix(shapes)
    if flux is not None:
        return make_flux_model(_sub(sd, flux) if flux else sd, manager, source, dtype, builder)
    if mmdit is not None:
        return make_mmdit_model(_sub(sd, mmdit) if mmdit else sd, manager, source, dtype, builder)
    sd = _strip_known(sd, ("", "model.diffusion_model."), "input_blocks.0.0.weight")
    if "conv_in.weight" in sd and "input_blocks.0.0.weight" not in sd:
        raise UnknownModelError(f"{source.name}: diffusers-format UNet (conv_in / down_blocks keys) is not "
                                "supported yet; use the single-file (LDM) version of the model")
    family, cfg, pred = detect_family_of_unet(read_shapes(sd), dict(metadata or {}), sd.__getitem__,
                                              source=source.name)
    return _make_model(cfg, sd, family, prediction or pred, manager, source, dtype, builder)


def load_vae(path: PathLike, manager: ModelManager) -> VaeHandle:
    """Load a VAE-only file (keys without prefix, or with ``first_stage_model.``)."""
    p = Path(path)

    def build() -> VaeHandle:
        sd, _ = read_state_dict(p)
        sd = _strip_known(sd, ("", "first_stage_model.", "vae."), "decoder.conv_in.weight")
        if "decoder.conv_in.weight" not in sd:
            raise UnknownModelError(f"{p.name}: not an AutoencoderKL VAE (no 'decoder.conv_in.weight'); "
                                    f"found {len(sd)} tensors such as {sorted(sd)[:3]}")
        return _make_vae(detect_vae(read_shapes(sd)), sd, manager, p)

    if not p.is_file():
        raise CheckpointError(f"VAE file not found: {p}. Put it in models/vae")
    return manager.cached(file_cache_key("vae", p), build).clone()


def load_clip(paths: PathLike | Sequence[PathLike], clip_type: str = "stable_diffusion", *,
              manager: ModelManager, embedding_directory: str | None = None) -> ClipHandle:
    """Load text-encoder-only files: one for ``stable_diffusion`` (SD1 CLIP-L, SD2 ViT-H or the refiner's
    bigG, by depth) or ``sd2``; a CLIP-L + bigG pair for ``sdxl`` (DualCLIPLoader); the flow families' sets
    (``flux``, ``sd3``). See engine.clip_files and engine.flow_clip."""
    plist = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(x) for x in paths]
    for p in plist:
        if not p.is_file():
            raise CheckpointError(f"text encoder file not found: {p}. Put it in models/text_encoders "
                                  "(or models/clip)")

    def build() -> ClipHandle:
        return clip_from_state_dicts([(p, *read_state_dict(p)) for p in plist], clip_type, manager=manager,
                                     embedding_directory=embedding_directory)

    key = file_cache_key("clip", plist[0], clip_type, embedding_directory,
                         *(file_cache_key("clip", p) for p in plist[1:]))
    return manager.cached(key, build).clone()


def clip_from_state_dicts(files: Sequence[tuple[Path, Mapping[str, torch.Tensor], Mapping[str, str]]],
                          clip_type: str = "stable_diffusion", *, manager: ModelManager,
                          embedding_directory: str | None = None, operations: Any = None) -> ClipHandle:
    """``load_clip`` from (path naming the source, tensors, metadata) of each text encoder (not cached here);
    with ``operations`` (a pack's layer set, ComfyUI's ``custom_operations``) the towers are built from it."""
    from engine.clip_files import family_for, read_tower

    if clip_type in FLOW_CLIP_TYPES:
        return build_flow_clip(clip_type, files, manager, partial(_build_tower, operations=operations),
                               operations)
    towers, metas = [], {}
    for p, sd, metadata in files:
        towers.append(read_tower(p.name, sd))
        metas[p.name] = metadata_config(metadata)
    family, assigned = family_for(clip_type, towers)
    configs: dict[str, ClipTextConfig | OpenClipConfig] = {}
    for spec in family.text_encoders:
        tower, weights = assigned[spec.key]
        cfg = detect_text_tower(read_shapes(weights), spec, metas[tower.name], tower.name,
                                prefix="transformer." if spec.kind == "clip_l" else "")
        assert cfg is not None
        configs[spec.key] = cfg
    return _make_clip(family, configs, {k: w for k, (_, w) in assigned.items()}, manager, files[0][0],
                      embedding_directory, operations)

