"""Crop an image to its mask's subject, as ComfyUI's ``ImageCropToMask`` does for 3D pipelines (Trellis2 and the
like): a centred box of the requested aspect around the mask's foreground, composited over a background colour.

Per image: a mask whose border is mostly set and centre mostly clear is taken as inverted and flipped; it is grown
or shrunk by ``grow`` pixels (max pooling) and values under 0.05 are dropped. When the image is larger than
``max_size`` on its long side, image and mask are first scaled down (Lanczos). The foreground is the mask above
80 % (alpha byte > 204; the inverse when nothing passes); its bounding box is widened to ``aspect`` (width /
height) on its long side, scaled by ``pad_factor`` and centred; parts outside the image are zero. The crop is
``image * mask + background * (1 - mask)``.
"""
from __future__ import annotations

import math

import torch

from engine import image_ops

__all__ = ["crop_to_mask", "parse_hex_color"]

THRESHOLD = 0.05
FOREGROUND_BYTE = 204


def parse_hex_color(color: str) -> tuple[float, float, float]:
    """``#RRGGBB`` -> RGB floats 0..1; anything else is black."""
    digits = color.lstrip("#")
    if len(digits) != 6:
        return (0.0, 0.0, 0.0)
    return (int(digits[0:2], 16) / 255.0, int(digits[2:4], 16) / 255.0, int(digits[4:6], 16) / 255.0)


def _grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    pool = torch.nn.functional.max_pool2d
    if pixels > 0:
        return pool(mask, kernel_size=2 * pixels + 1, stride=1, padding=pixels)
    if pixels < 0:
        return 1.0 - pool(1.0 - mask, kernel_size=-2 * pixels + 1, stride=1, padding=-pixels)
    return mask


def _box(mask: torch.Tensor, aspect: float, pad_factor: float) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """The (possibly flipped) mask and the crop box ``(x1, y1, x2, y2)`` around its foreground."""
    height, width = mask.shape[-2:]
    alpha = (mask[0, 0].clamp(0, 1) * 255.0).to(torch.uint8)
    points = (alpha > FOREGROUND_BYTE).nonzero()
    if points.numel() == 0:
        flipped = ((255 - alpha) > FOREGROUND_BYTE).nonzero()
        if flipped.numel() > 0:
            mask, points = 1.0 - mask, flipped
    if points.numel() == 0:
        return mask, (0, 0, width, height)
    y_min, x_min = points.min(dim=0).values.tolist()
    y_max, x_max = points.max(dim=0).values.tolist()
    box_w, box_h = x_max - x_min + 1, y_max - y_min + 1
    if box_w / max(box_h, 1) >= aspect:
        crop_w, crop_h = int(box_w * pad_factor), int(box_w / aspect * pad_factor)
    else:
        crop_w, crop_h = int(box_h * aspect * pad_factor), int(box_h * pad_factor)
    half_w, half_h = math.ceil(crop_w / 2), math.ceil(crop_h / 2)
    x1, y1 = int((x_min + x_max) / 2.0 - half_w), int((y_min + y_max) / 2.0 - half_h)
    return mask, (x1, y1, x1 + 2 * half_w, y1 + 2 * half_h)


def crop_to_mask(image: torch.Tensor, mask: torch.Tensor, max_size: int, pad_factor: float, grow: int,
                 background: tuple[float, float, float], aspect: float) -> torch.Tensor:
    """One ``[H,W,C]`` image and ``[H,W]`` mask -> the composited crop ``[1,C,h,w]`` (before the final resize)."""
    img = image.permute(2, 0, 1).unsqueeze(0).cpu().float().clamp(0, 1)
    m = mask.unsqueeze(0).unsqueeze(0).cpu().float().clamp(0, 1)
    h, w = m.shape[-2:]
    border = torch.cat([m[0, 0, 0, :], m[0, 0, -1, :], m[0, 0, :, 0], m[0, 0, :, -1]])
    centre = m[0, 0, h // 4:h - h // 4, w // 4:w - w // 4]
    if float(border.mean()) > 0.5 and float(centre.mean()) < 0.5:
        m = 1.0 - m
    m = _grow(m, grow)
    m = torch.where(m < THRESHOLD, torch.zeros_like(m), m)
    if max(h, w) > max_size:
        scale = max_size / max(h, w)
        new_w, new_h = int(w * scale), int(h * scale)
        img = image_ops.common_upscale(img, new_w, new_h, "lanczos", "disabled")
        m = image_ops.common_upscale(m, new_w, new_h, "lanczos", "disabled")
        h, w = new_h, new_w
    m, (x1, y1, x2, y2) = _box(m, aspect, pad_factor)
    pad = (max(0, -x1), max(0, x2 - w), max(0, -y1), max(0, y2 - h))
    if any(pad):
        img, m = torch.nn.functional.pad(img, pad, value=0.0), torch.nn.functional.pad(m, pad, value=0.0)
        x1, x2, y1, y2 = x1 + pad[0], x2 + pad[0], y1 + pad[2], y2 + pad[2]
    img, m = img[..., y1:y2, x1:x2], m[..., y1:y2, x1:x2]
    bg = torch.tensor(background, dtype=img.dtype).view(1, 3, 1, 1)
    return (img * m + bg * (1.0 - m)).clamp(0, 1)
