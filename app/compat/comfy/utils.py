"""ComfyUI's `comfy.utils` for packs: ProgressBar (wired to the executing node), upscaling, file loading."""
from __future__ import annotations

from typing import Any

import torch

from app.compat._environment import handles_for
from app.compat._unet_key_maps import TRANSFORMER_BLOCKS as TRANSFORMER_BLOCKS
from app.compat._unet_key_maps import UNET_MAP_ATTENTIONS as UNET_MAP_ATTENTIONS
from app.compat._unet_key_maps import UNET_MAP_BASIC as UNET_MAP_BASIC
from app.compat._unet_key_maps import UNET_MAP_RESNET as UNET_MAP_RESNET
from engine import image_ops
from engine.safetensors_header import HEADER_LIMIT, HeaderTooLargeError, read_safetensors_header
from engine.sampling.conditioning import repeat_to_batch_size as engine_repeat_to_batch_size
from engine.tiling import tile_positions
from engine.tiling import tiled_scale_multidim as tiled_scale_multidim

_loom = handles_for(__name__)  # this Loom instance's objects

PROGRESS_BAR_ENABLED = True


def set_progress_bar_enabled(enabled: bool) -> None:
    global PROGRESS_BAR_ENABLED  # ComfyUI's API is a module flag; it only silences console bars
    PROGRESS_BAR_ENABLED = enabled


def set_progress_bar_global_hook(function: Any) -> None:
    """Accepted for compatibility; Loom reports progress through the executing node's context."""
    return None


def _context() -> Any:
    from executor.context import current

    return current()


def _preview_image(preview: Any) -> Any:
    # ComfyUI passes ("JPEG", PIL.Image, max_size); Loom's context takes the PIL image.
    if isinstance(preview, (tuple, list)) and len(preview) >= 2:
        return preview[1]
    return preview


class ProgressBar:
    """`ProgressBar(total, node_id=None)`; `update(n)` / `update_absolute(value, total, preview)`.

    Progress goes to the node that created the bar (its execution context, captured at construction so
    worker threads a node starts report for it too); every update also checks for an interrupt.
    """

    def __init__(self, total: int, node_id: Any = None) -> None:
        self.total: float = total
        self.current: float = 0
        self.node_id = node_id
        self._ctx = _context()

    def update_absolute(self, value: float, total: float | None = None, preview: Any = None) -> None:
        if total is not None:
            self.total = total
        if value > self.total:
            value = self.total
        self.current = value
        ctx = self._ctx or _context()
        if ctx is not None:
            ctx.progress(value, self.total, _preview_image(preview))
        elif _loom.interrupt is not None and _loom.interrupt.is_set():
            import comfy.model_management

            comfy.model_management.throw_exception_if_processing_interrupted()

    def update(self, value: float) -> None:
        self.update_absolute(self.current + value)


def load_torch_file(ckpt: str, safe_load: bool = True, device: Any = None, return_metadata: bool = False) -> Any:
    """State dict from a .safetensors / .sft file or a torch pickle (weights only, never arbitrary code)."""
    device = device if device is not None else torch.device("cpu")
    metadata = None
    if str(ckpt).lower().endswith((".safetensors", ".sft")):
        from safetensors import safe_open

        sd = {}
        with safe_open(str(ckpt), framework="pt", device=str(device)) as f:
            for key in f.keys():
                sd[key] = f.get_tensor(key)
            metadata = f.metadata()
    else:
        data = torch.load(ckpt, map_location=device, weights_only=True)
        sd = data.get("state_dict", data) if isinstance(data, dict) and "global_step" in data else data
        if isinstance(sd, dict) and "state_dict" in sd and len(sd) == 1:
            sd = sd["state_dict"]
    return (sd, metadata) if return_metadata else sd


def safetensors_header(safetensors_path: str, max_size: int = HEADER_LIMIT) -> bytes | None:
    """The raw JSON header of a .safetensors file, or None when it is larger than `max_size`."""
    try:
        return read_safetensors_header(safetensors_path, limit=max_size).raw
    except HeaderTooLargeError:
        return None


def save_torch_file(sd: dict[str, torch.Tensor], ckpt: str, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    save_file(sd, ckpt, metadata=metadata)


def calculate_parameters(sd: dict[str, torch.Tensor], prefix: str = "") -> int:
    return sum(v.nelement() for k, v in sd.items() if k.startswith(prefix))


def state_dict_prefix_replace(sd: dict[str, Any], replace_prefix: dict[str, str], filter_keys: bool = False) -> dict[str, Any]:
    out = {} if filter_keys else sd
    for old, new in replace_prefix.items():
        for key in [k for k in sd if k.startswith(old)]:
            out[new + key[len(old):]] = sd.pop(key) if not filter_keys else sd[key]
    return out


def repeat_to_batch_size(tensor: torch.Tensor, batch_size: int, dim: int = 0) -> torch.Tensor:
    """Repeat (or cut) `tensor` along `dim` to `batch_size`."""
    return engine_repeat_to_batch_size(tensor, batch_size, dim)


def lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Lanczos resize of [B,C,H,W] 0..1 images through PIL (Loom's one implementation in engine.image_ops)."""
    return image_ops.lanczos(samples, width, height)


def common_upscale(samples: torch.Tensor, width: int, height: int, upscale_method: str, crop: str) -> torch.Tensor:
    """Resize [B,C,H,W] to (height, width): nearest-exact / bilinear / area / bicubic / lanczos / bislerp;
    crop "center" first cuts the source to the target aspect ratio (ComfyUI's rule, as the built-in nodes do)."""
    return image_ops.common_upscale(samples, width, height, upscale_method, crop)


def get_tiled_scale_steps(width: int, height: int, tile_x: int, tile_y: int, overlap: int) -> int:
    """The number of tiles `tiled_scale` runs on one image (a progress bar's total)."""
    return len(tile_positions(height, tile_y, overlap)) * len(tile_positions(width, tile_x, overlap))


def tiled_scale(samples: torch.Tensor, function: Any, tile_x: int = 64, tile_y: int = 64, overlap: int = 8,
                upscale_amount: float = 4, out_channels: int = 3, output_device: Any = "cpu",
                pbar: Any = None) -> torch.Tensor:
    """Apply `function` ([1,C,th,tw] -> [1,out_channels,th*s,tw*s]) tile by tile over [B,C,H,W] and blend
    the overlaps with linear feathering (what upscale-model nodes use to bound memory): `engine.tiling`."""
    return tiled_scale_multidim(samples, function, (tile_y, tile_x), overlap, upscale_amount, out_channels,
                                output_device, pbar=pbar)


def get_attr(obj: Any, attr: str) -> Any:
    """The attribute at a dotted path (``"blocks.0.weight"``) under ``obj``."""
    for name in attr.split("."):
        obj = getattr(obj, name)
    return obj


def set_attr(obj: Any, attr: str, value: Any) -> Any:
    """Set the attribute at a dotted path under ``obj``; returns the value it replaced."""
    *path, last = attr.split(".")
    owner = get_attr(obj, ".".join(path)) if path else obj
    previous = getattr(owner, last)
    setattr(owner, last, value)
    return previous


def set_attr_param(obj: Any, attr: str, value: torch.Tensor) -> Any:
    """``set_attr`` with ``value`` as a parameter without gradient."""
    return set_attr(obj, attr, torch.nn.Parameter(value, requires_grad=False))
