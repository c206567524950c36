"""ComfyUI's `comfy.utils` for packs: ProgressBar (wired to the executing node), upscaling, file loading."""
from __future__ import annotations

import math
from typing import Any

import torch

from app.compat._environment import handles_for
from app.compat._tiling import tiled_scale_multidim as tiled_scale_multidim
from engine import image_ops
from engine.safetensors_header import HEADER_LIMIT, HeaderTooLargeError, read_safetensors_header
from engine.sampling.conditioning import repeat_to_batch_size as engine_repeat_to_batch_size

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
    rows = 1 if height <= tile_y else math.ceil((height - overlap) / (tile_y - overlap))
    cols = 1 if width <= tile_x else math.ceil((width - overlap) / (tile_x - overlap))
    return rows * cols


def _feather(height: int, width: int, border: int) -> torch.Tensor:
    """A [1,1,h,w] weight that ramps up linearly over `border` pixels at each edge."""
    mask = torch.ones(1, 1, height, width)
    for i in range(min(border, height // 2, width // 2)):
        value = (i + 1) / (border + 1)
        mask[:, :, i, :] = torch.minimum(mask[:, :, i, :], torch.tensor(value))
        mask[:, :, height - 1 - i, :] = torch.minimum(mask[:, :, height - 1 - i, :], torch.tensor(value))
        mask[:, :, :, i] = torch.minimum(mask[:, :, :, i], torch.tensor(value))
        mask[:, :, :, width - 1 - i] = torch.minimum(mask[:, :, :, width - 1 - i], torch.tensor(value))
    return mask


def tiled_scale(samples: torch.Tensor, function: Any, tile_x: int = 64, tile_y: int = 64, overlap: int = 8,
                upscale_amount: float = 4, out_channels: int = 3, output_device: Any = "cpu",
                pbar: Any = None) -> torch.Tensor:
    """Apply `function` ([1,C,th,tw] -> [1,out_channels,th*s,tw*s]) tile by tile over [B,C,H,W] and blend
    the overlaps with linear feathering (what upscale-model nodes use to bound memory)."""
    batch, _, height, width = samples.shape
    out_h, out_w = round(height * upscale_amount), round(width * upscale_amount)
    result = torch.empty(batch, out_channels, out_h, out_w, device=output_device)
    step_y, step_x = max(1, tile_y - overlap), max(1, tile_x - overlap)
    ys = list(range(0, max(height - overlap, 1), step_y))
    xs = list(range(0, max(width - overlap, 1), step_x))
    for b in range(batch):
        out = torch.zeros(1, out_channels, out_h, out_w, device=output_device)
        weight = torch.zeros(1, 1, out_h, out_w, device=output_device)
        for y in ys:
            for x in xs:
                y0, x0 = max(0, min(height - tile_y, y)), max(0, min(width - tile_x, x))
                tile = samples[b:b + 1, :, y0:y0 + tile_y, x0:x0 + tile_x]
                scaled = function(tile).to(output_device)
                oy, ox = round(y0 * upscale_amount), round(x0 * upscale_amount)
                th, tw = scaled.shape[-2], scaled.shape[-1]
                mask = _feather(th, tw, round(overlap * upscale_amount)).to(output_device)
                out[:, :, oy:oy + th, ox:ox + tw] += scaled * mask
                weight[:, :, oy:oy + th, ox:ox + tw] += mask
                if pbar is not None:
                    pbar.update(1)
        result[b:b + 1] = out / weight.clamp_min(1e-8)
    return result
