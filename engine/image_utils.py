"""Image and mask utilities with ComfyUI's results: flip, rotate, stitch, fit-and-pad, longest-side scaling,
noise, colour keying, alpha join / split and Porter-Duff compositing.

IMAGE is `[B,H,W,C]` float 0..1, MASK `[B,H,W]`; a MASK is 1 - alpha (ComfyUI's convention). Resampling is
`engine.image_ops.common_upscale` (ComfyUI's semantics). torch is imported inside the functions so that importing
the node catalogue stays torch-free.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.image_ops import common_upscale, repeat_to_batch

if TYPE_CHECKING:
    import torch

__all__ = ["FLIP_METHODS", "ROTATIONS", "STITCH_DIRECTIONS", "SPACING_COLORS", "PORTER_DUFF_MODES",
           "flip", "rotate", "stitch", "resize_and_pad", "scale_to_max_dimension", "max_dimension_size", "add_noise", "color_to_mask",
           "join_alpha", "split_alpha", "porter_duff", "porter_duff_batch", "mask_preview_pixels", "ASPECT_RATIOS",
           "resolution_for"]

FLIP_METHODS = ("x-axis: vertically", "y-axis: horizontally")
ROTATIONS = ("none", "90 degrees", "180 degrees", "270 degrees")
STITCH_DIRECTIONS = ("right", "down", "left", "up")
SPACING_COLORS: dict[str, tuple[float, ...]] = {
    "white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0)}
PORTER_DUFF_MODES = ("ADD", "CLEAR", "DARKEN", "DST", "DST_ATOP", "DST_IN", "DST_OUT", "DST_OVER", "LIGHTEN",
                     "MULTIPLY", "OVERLAY", "SCREEN", "SRC", "SRC_ATOP", "SRC_IN", "SRC_OUT", "SRC_OVER", "XOR")


def flip(image: torch.Tensor, method: str) -> torch.Tensor:
    """"x-axis" mirrors top-bottom (dim H), "y-axis" left-right (dim W)."""
    if method.startswith("x"):
        return image.flip(dims=[1])
    if method.startswith("y"):
        return image.flip(dims=[2])
    return image


def rotate(image: torch.Tensor, rotation: str) -> torch.Tensor:
    """Clockwise rotation by 0 / 90 / 180 / 270 degrees."""
    import torch
    turns = {"90": 1, "180": 2, "270": 3}.get(rotation.split(" ")[0], 0)
    return torch.rot90(image, k=turns, dims=[2, 1])


def _repeat_last(images: torch.Tensor, batch: int) -> torch.Tensor:
    import torch
    if images.shape[0] >= batch:
        return images
    return torch.cat([images, images[-1:].repeat(batch - images.shape[0], 1, 1, 1)])


def _pad_centered(image: torch.Tensor, dim: int, size: int, value: float) -> torch.Tensor:
    """Pad dim 1 (H) or 2 (W) of `[B,H,W,C]` to `size`, the smaller half before."""
    import torch.nn.functional as F
    extra = size - image.shape[dim]
    if extra <= 0:
        return image
    before, after = extra // 2, extra - extra // 2
    pad = (0, 0, 0, 0, before, after) if dim == 1 else (0, 0, before, after)
    return F.pad(image, pad, mode="constant", value=value)


def _add_ones_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    import torch
    if image.shape[-1] >= channels:
        return image
    ones = torch.ones(*image.shape[:-1], channels - image.shape[-1], dtype=image.dtype, device=image.device)
    return torch.cat([image, ones], dim=-1)


def stitch(image1: torch.Tensor, image2: torch.Tensor | None, direction: str, match_image_size: bool,
           spacing_width: int, spacing_color: str) -> torch.Tensor:
    """image2 joined to image1 on the `direction` side (KJNodes' ImageStitch as upstreamed into ComfyUI).

    Batches are equalised by repeating the last image; with `match_image_size` image2 is resized (lanczos) to
    image1's height (left/right) or width (up/down) keeping its aspect, else the shorter one is padded centred
    (white / black pad, 0 for coloured spacing). Channel counts are equalised with ones. Spacing is rounded
    up to an even width.
    """
    import torch
    if image2 is None:
        return image1
    batch = max(image1.shape[0], image2.shape[0])
    image1, image2 = _repeat_last(image1, batch), _repeat_last(image2, batch)
    horizontal = direction in ("left", "right")
    if match_image_size:
        h1, w1 = image1.shape[1:3]
        h2, w2 = image2.shape[1:3]
        aspect = w2 / h2
        target_w, target_h = (int(h1 * aspect), h1) if horizontal else (w1, int(w1 / aspect))
        image2 = common_upscale(image2.movedim(-1, 1), target_w, target_h, "lanczos", "disabled").movedim(1, -1)
    else:
        pad_value = 1.0 if spacing_color == "white" else 0.0
        dim = 1 if horizontal else 2
        size = max(image1.shape[dim], image2.shape[dim])
        image1 = _pad_centered(image1, dim, size, pad_value)
        image2 = _pad_centered(image2, dim, size, pad_value)
    channels = max(image1.shape[-1], image2.shape[-1])
    image1, image2 = _add_ones_channels(image1, channels), _add_ones_channels(image2, channels)
    parts = [image2, image1] if direction in ("left", "up") else [image1, image2]
    if spacing_width > 0:
        spacing_width += spacing_width % 2
        if horizontal:
            shape = (batch, max(image1.shape[1], image2.shape[1]), spacing_width, channels)
        else:
            shape = (batch, spacing_width, max(image1.shape[2], image2.shape[2]), channels)
        spacing = torch.zeros(shape, dtype=image1.dtype, device=image1.device)
        rgb = SPACING_COLORS[spacing_color]
        for i in range(min(3, channels)):
            spacing[..., i] = rgb[i]
        if channels == 4:
            spacing[..., 3] = 1.0
        parts.insert(1, spacing)
    return torch.cat(parts, dim=2 if horizontal else 1)


def resize_and_pad(image: torch.Tensor, target_width: int, target_height: int, padding_color: str,
                   interpolation: str) -> torch.Tensor:
    """Scale to fit inside the target keeping the aspect (sizes truncated), centred on white or black."""
    import torch
    b, h, w, c = image.shape
    scale = min(target_width / w, target_height / h)
    new_w, new_h = int(w * scale), int(h * scale)
    resized = common_upscale(image.permute(0, 3, 1, 2), new_w, new_h, interpolation, "disabled")
    value = 0.0 if padding_color == "black" else 1.0
    out = torch.full((b, c, target_height, target_width), value, dtype=image.dtype, device=image.device)
    y, x = (target_height - new_h) // 2, (target_width - new_w) // 2
    out[:, :, y:y + new_h, x:x + new_w] = resized
    return out.permute(0, 2, 3, 1)


def scale_to_max_dimension(image: torch.Tensor, method: str, largest_size: int) -> torch.Tensor:
    """Resize `[B,H,W,C]` so that its longer side is `largest_size` (the other rounded in proportion)."""
    width, height = max_dimension_size(image.shape[1], image.shape[2], largest_size)
    return common_upscale(image.movedim(-1, 1), width, height, method, "disabled").movedim(1, -1)


def max_dimension_size(height: int, width: int, largest_size: int) -> tuple[int, int]:
    """(width, height) with the longer side set to `largest_size` and the other rounded in proportion."""
    if height > width:
        return round(width / height * largest_size), largest_size
    if width > height:
        return largest_size, round(height / width * largest_size)
    return largest_size, largest_size


def add_noise(image: torch.Tensor, seed: int, strength: float) -> torch.Tensor:
    """image + strength * N(0, 1) from a CPU generator seeded with `seed`, clipped to 0..1."""
    import torch
    generator = torch.Generator(device="cpu").manual_seed(seed)  # same stream as torch.manual_seed(seed)
    noise = torch.randn(image.size(), generator=generator, device="cpu").to(image)
    return torch.clip(image + strength * noise, min=0.0, max=1.0)


def color_to_mask(image: torch.Tensor, color: int) -> torch.Tensor:
    """1.0 where the pixel's 8-bit RGB (rounded) packs to `color` (0xRRGGBB), else 0.0."""
    import torch
    rgb = (torch.clamp(image, 0, 1.0) * 255.0).round().to(torch.int)
    packed = (rgb[..., 0] << 16) + (rgb[..., 1] << 8) + rgb[..., 2]
    return (packed == color).float()


def join_alpha(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RGBA from an image and a MASK (alpha = 1 - mask, the mask resized bilinearly to the image)."""
    import torch
    import torch.nn.functional as F
    batch = max(image.shape[0], mask.shape[0] if mask.ndim == 3 else 1)
    mask = mask.reshape((-1, mask.shape[-2], mask.shape[-1]))
    image, mask = repeat_to_batch(image, batch), repeat_to_batch(mask, batch)
    if mask.shape[-2:] != image.shape[1:3]:
        mask = F.interpolate(mask.unsqueeze(1), size=(image.shape[1], image.shape[2]), mode="bilinear").squeeze(1)
    return torch.cat((image[..., :3], (1.0 - mask).unsqueeze(-1)), dim=-1)


def split_alpha(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(RGB, MASK = 1 - alpha); an image without alpha gives an all-zero mask."""
    import torch
    rgb = image[..., :3]
    alpha = image[..., 3] if image.shape[-1] > 3 else torch.ones_like(image[..., 0])
    return rgb, 1.0 - alpha


def porter_duff(src: torch.Tensor, src_alpha: torch.Tensor, dst: torch.Tensor, dst_alpha: torch.Tensor,
                mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Porter & Duff (1984) "Compositing Digital Images" operators on one `[H,W,C]` pair.

    The alphas arrive as MASKs (`[H,W,1]`, 1 - alpha); images are premultiplied, composited, un-premultiplied
    (0 where the result alpha <= 1e-5), clamped, and the alpha is returned as a mask again. DARKEN, LIGHTEN
    and OVERLAY are ComfyUI's formulas, which differ from the SVG ones.
    """
    import torch
    sa, da = 1 - src_alpha, 1 - dst_alpha
    s, d = src * sa, dst * da
    ops: dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]] = {
        "ADD": lambda: (torch.clamp(sa + da, 0, 1), torch.clamp(s + d, 0, 1)),
        "CLEAR": lambda: (torch.zeros_like(da), torch.zeros_like(d)),
        "DARKEN": lambda: (sa + da - sa * da, (1 - da) * s + (1 - sa) * d + torch.min(s, d)),
        "DST": lambda: (da, d),
        "DST_ATOP": lambda: (sa, sa * d + (1 - da) * s),
        "DST_IN": lambda: (sa * da, d * sa),
        "DST_OUT": lambda: ((1 - sa) * da, (1 - sa) * d),
        "DST_OVER": lambda: (da + (1 - da) * sa, d + (1 - da) * s),
        "LIGHTEN": lambda: (sa + da - sa * da, (1 - da) * s + (1 - sa) * d + torch.max(s, d)),
        "MULTIPLY": lambda: (sa * da, s * d),
        "OVERLAY": lambda: (sa + da - sa * da,
                            torch.where(2 * d < da, 2 * s * d, sa * da - 2 * (da - s) * (sa - d))),
        "SCREEN": lambda: (sa + da - sa * da, s + d - s * d),
        "SRC": lambda: (sa, s),
        "SRC_ATOP": lambda: (da, da * s + (1 - sa) * d),
        "SRC_IN": lambda: (sa * da, s * da),
        "SRC_OUT": lambda: ((1 - da) * sa, (1 - da) * s),
        "SRC_OVER": lambda: (sa + (1 - sa) * da, s + (1 - sa) * d),
        "XOR": lambda: ((1 - da) * sa + (1 - sa) * da, (1 - da) * s + (1 - sa) * d),
    }
    if mode not in ops:
        raise ValueError(f"Porter-Duff mode {mode!r} is not one of {list(PORTER_DUFF_MODES)}")
    out_alpha, out_image = ops[mode]()
    out_image = torch.where(out_alpha > 1e-5, out_image / out_alpha, torch.zeros_like(out_image))
    return torch.clamp(out_image, 0, 1), 1 - out_alpha


def porter_duff_batch(source: torch.Tensor, source_alpha: torch.Tensor, destination: torch.Tensor,
                      destination_alpha: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """PorterDuffImageComposite over the shortest of the four batches.

    Per item: the destination alpha is resized to the destination (bicubic, centre crop), the source to the
    destination, then the source alpha to the destination alpha. Images must have equal channel counts.
    """
    import torch
    count = min(len(source), len(source_alpha), len(destination), len(destination_alpha))
    images, alphas = [], []

    def fit(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        fitted = common_upscale(x.unsqueeze(0).permute(0, 3, 1, 2), w, h, "bicubic", "center")
        return fitted.permute(0, 2, 3, 1).squeeze(0)

    for i in range(count):
        src, dst = source[i], destination[i]
        if src.shape[2] != dst.shape[2]:
            raise ValueError(f"source has {src.shape[2]} channels and destination {dst.shape[2]}; "
                             "they must match (use SplitImageWithAlpha to drop alpha)")
        sa, da = source_alpha[i].unsqueeze(2), destination_alpha[i].unsqueeze(2)
        if da.shape[:2] != dst.shape[:2]:
            da = fit(da, dst.shape[0], dst.shape[1])
        if src.shape != dst.shape:
            src = fit(src, dst.shape[0], dst.shape[1])
        if sa.shape != da.shape:
            sa = fit(sa, da.shape[0], da.shape[1])
        out_image, out_alpha = porter_duff(src, sa, dst, da, mode)
        images.append(out_image)
        alphas.append(out_alpha.squeeze(2))
    return torch.stack(images), torch.stack(alphas)


def mask_preview_pixels(mask: torch.Tensor) -> torch.Tensor:
    """A MASK as a grey RGB IMAGE `[B,H,W,3]` for previews."""
    return mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3)


# ResolutionSelector's aspect ratios: label -> (width units, height units)
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1 (Square)": (1, 1), "3:2 (Photo)": (3, 2), "4:3 (Standard)": (4, 3), "16:9 (Widescreen)": (16, 9),
    "21:9 (Ultrawide)": (21, 9), "2:3 (Portrait Photo)": (2, 3), "3:4 (Portrait Standard)": (3, 4),
    "9:16 (Portrait Widescreen)": (9, 16)}


def resolution_for(aspect_ratio: str, megapixels: float, multiple: int, minimum: int) -> tuple[int, int]:
    """(width, height) near `megapixels` x 2^20 pixels at the ratio, each rounded to a multiple of `multiple`.

    When a side falls under `minimum`, both become the smallest common scale k of the ratio with k * ratio a
    multiple of `multiple` on each side and no side under `minimum` (the ratio kept exactly).
    """
    w_ratio, h_ratio = ASPECT_RATIOS[aspect_ratio]
    scale = math.sqrt(megapixels * 1024 * 1024 / (w_ratio * h_ratio))
    width = round(w_ratio * scale / multiple) * multiple
    height = round(h_ratio * scale / multiple) * multiple
    if width < minimum or height < minimum:
        step_w = multiple // math.gcd(w_ratio, multiple)
        step_h = multiple // math.gcd(h_ratio, multiple)
        k_step = step_w * step_h // math.gcd(step_w, step_h)
        k = math.ceil(math.ceil(max(minimum / w_ratio, minimum / h_ratio)) / k_step) * k_step
        width, height = w_ratio * k, h_ratio * k
    return width, height
