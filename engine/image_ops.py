"""Image, mask and latent tensor maths the nodes share (ComfyUI `common_upscale` semantics), small and pure.

torch is imported inside the functions so that importing the node catalogue (for /object_info and
validation) stays torch-free.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import torch


__all__ = ["common_upscale", "bislerp", "lanczos", "center_crop_to_multiple", "grow_mask", "reshape_mask_nchw",
           "post_kernel", "filter2d_reflect", "canny_edges", "bayer_offsets", "grey_masked", "resize_mask_to",
           "repeat_to_batch", "paste", "ceil_div"]


def _center_crop(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    old_w, old_h = samples.shape[-1], samples.shape[-2]
    old_aspect = old_w / old_h
    new_aspect = width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return samples.narrow(-2, y, old_h - 2 * y).narrow(-1, x, old_w - 2 * x)


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation along dim 1 (channels), magnitudes interpolated linearly."""
    import torch
    na = a.norm(dim=1, keepdim=True)
    nb = b.norm(dim=1, keepdim=True)
    ua = a / na.clamp_min(1e-8)
    ub = b / nb.clamp_min(1e-8)
    dot = (ua * ub).sum(dim=1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    lerp = ua * (1 - t) + ub * t
    slerp = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so.clamp_min(1e-8)
    direction = torch.where(so.abs() < 1e-6, lerp, slerp)
    out: torch.Tensor = direction * (na * (1 - t) + nb * t)
    return out


def _bislerp_axis(x: torch.Tensor, new: int, dim: int) -> torch.Tensor:
    import torch
    old = x.shape[dim]
    if old == new:
        return x
    coords = (torch.arange(new, dtype=torch.float32, device=x.device) + 0.5) * (old / new) - 0.5
    coords = coords.clamp(0, old - 1)
    lo = coords.floor().long()
    hi = (lo + 1).clamp(max=old - 1)
    t = (coords - lo.float())
    a = x.index_select(dim, lo)
    b = x.index_select(dim, hi)
    shape = [1] * x.ndim
    shape[dim] = new
    return _slerp(a, b, t.reshape(shape))


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinear resampling that slerps channel vectors (latent-friendly), `[B,C,H,W]`."""
    out = _bislerp_axis(samples.float(), height, 2)
    return _bislerp_axis(out, width, 3).to(samples.dtype)


def lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """PIL Lanczos resampling of `[B,C,H,W]` 0..1 images."""
    import numpy as np
    import torch
    out = []
    for img in samples:
        arr = (img.movedim(0, -1).clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
        pil = Image.fromarray(arr if arr.shape[2] != 1 else arr[:, :, 0])
        pil = pil.resize((width, height), resample=Image.Resampling.LANCZOS)
        t = torch.from_numpy(np.array(pil).astype(np.float32) / 255.0)
        out.append(t.reshape(height, width, -1).movedim(-1, 0))
    return torch.stack(out).to(samples.device, samples.dtype)


def common_upscale(samples: torch.Tensor, width: int, height: int, method: str, crop: str) -> torch.Tensor:
    """Resize `[B,C,H,W]` to (height, width); crop "center" trims to the target aspect first."""
    import torch.nn.functional as F
    s = _center_crop(samples, width, height) if crop == "center" else samples
    if method == "bislerp":
        return bislerp(s, width, height)
    if method == "lanczos":
        return lanczos(s, width, height)
    return F.interpolate(s, size=(height, width), mode=method)


def center_crop_to_multiple(pixels: torch.Tensor, multiple: int = 8) -> tuple[torch.Tensor, int, int]:
    """Crop `[B,H,W,C]` to multiples of `multiple` (offset remainder//2); returns (pixels, y_off, x_off)."""
    h = (pixels.shape[1] // multiple) * multiple
    w = (pixels.shape[2] // multiple) * multiple
    y_off = (pixels.shape[1] % multiple) // 2
    x_off = (pixels.shape[2] % multiple) // 2
    if h == pixels.shape[1] and w == pixels.shape[2]:
        return pixels, 0, 0
    return pixels[:, y_off : y_off + h, x_off : x_off + w, :], y_off, x_off


def reshape_mask_nchw(mask: torch.Tensor) -> torch.Tensor:
    """`[H,W]`, `[B,H,W]` or `[B,1,H,W]` -> `[B,1,H,W]`."""
    return mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))


def grey_masked(pixels: torch.Tensor, mask_nchw: torch.Tensor) -> torch.Tensor:
    """Pixels where round(mask) == 1 set to 0.5 grey (RGB channels only)."""
    keep = (1.0 - mask_nchw.round()).squeeze(1).unsqueeze(-1)
    out = pixels.clone()
    out[..., :3] = (out[..., :3] - 0.5) * keep + 0.5
    return out


def resize_mask_to(mask: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Mask as `[B,1,H,W]` bilinearly resized to `[B,H,W,C]` pixels; ValueError for a different aspect ratio."""
    import torch.nn.functional as F
    m = reshape_mask_nchw(mask).float()
    mh, mw = m.shape[-2], m.shape[-1]
    ph, pw = pixels.shape[1], pixels.shape[2]
    if (mh, mw) != (ph, pw) and abs(mw / mh - pw / ph) > 0.02 * (pw / ph):
        raise ValueError(f"mask is {mw}x{mh} px but the image is {pw}x{ph} px; use a mask of the image's size")
    return F.interpolate(m, size=(ph, pw), mode="bilinear")


def repeat_to_batch(t: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat (or cut) the leading batch dimension to `batch` items, ComfyUI's repeat_to_batch_size rule."""
    if t.shape[0] == batch:
        return t
    return t.repeat(ceil_div(batch, t.shape[0]), *([1] * (t.dim() - 1)))[:batch]


def paste(destination: torch.Tensor, source: torch.Tensor, x: int, y: int, mask: torch.Tensor | None,
          resize_source: bool) -> torch.Tensor:
    """`source` pasted onto a copy of `destination` (both [B,C,H,W]) at column x, row y, through `mask`.

    The source (optionally resized to the destination first) and the mask (resized to the source) repeat to
    the destination's batch; what falls outside the destination is cut off. ImageCompositeMasked and
    LatentCompositeMasked share it.
    """
    import torch
    import torch.nn.functional as F

    out = destination.clone()
    src = source.to(out)
    if resize_source:
        src = F.interpolate(src, size=out.shape[2:], mode="bilinear", align_corners=False)
    src = repeat_to_batch(src, out.shape[0])
    h = max(0, min(src.shape[2], out.shape[2] - y))
    w = max(0, min(src.shape[3], out.shape[3] - x))
    if not (h and w):
        return out
    if mask is None:
        weight = torch.ones_like(src[:, :1])
    else:
        weight = F.interpolate(reshape_mask_nchw(mask.to(out)), size=src.shape[2:], mode="bilinear",
                               align_corners=False)
        weight = repeat_to_batch(weight, out.shape[0])
    a = weight[:, :, :h, :w]
    region = out[:, :, y: y + h, x: x + w]
    out[:, :, y: y + h, x: x + w] = src[:, :, :h, :w] * a + region * (1.0 - a)
    return out


def grow_mask(mask: torch.Tensor, expand: int, tapered_corners: bool) -> torch.Tensor:
    """Grey dilation (expand > 0) or erosion (< 0) with a 3x3 kernel, |expand| times, `[B,H,W]`."""
    import torch
    import torch.nn.functional as F
    m = mask.reshape((-1, mask.shape[-2], mask.shape[-1])).float()
    steps = abs(int(expand))
    if steps == 0:
        return m.clone()
    sign = 1.0 if expand > 0 else -1.0
    x = (m * sign).unsqueeze(1)
    for _ in range(steps):
        p = F.pad(x, (1, 1, 1, 1), mode="replicate")
        h, w = x.shape[-2], x.shape[-1]
        shifts = [p[:, :, 1 : 1 + h, 1 : 1 + w], p[:, :, 0:h, 1 : 1 + w], p[:, :, 2 : 2 + h, 1 : 1 + w],
                  p[:, :, 1 : 1 + h, 0:w], p[:, :, 1 : 1 + h, 2 : 2 + w]]
        if not tapered_corners:
            shifts += [p[:, :, 0:h, 0:w], p[:, :, 0:h, 2 : 2 + w], p[:, :, 2 : 2 + h, 0:w],
                       p[:, :, 2 : 2 + h, 2 : 2 + w]]
        x = torch.stack(shifts).amax(dim=0)
    return (x * sign).squeeze(1)


def ceil_div(a: int, b: int) -> int:
    """Ceiling division for positive ints."""
    return math.ceil(a / b)


def post_kernel(size: int, sigma: float) -> torch.Tensor:
    """ComfyUI's post-processing Gaussian: `size` x `size` taps over coordinates spanning [-1, 1], summing to 1.

    The coordinates are normalised to the kernel, so `sigma` is relative to the radius, not in pixels.
    """
    import torch
    t = torch.linspace(-1.0, 1.0, size)
    g = torch.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2.0 * sigma * sigma))
    return g / g.sum()


def gaussian_blur_2d(images: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Blur `[B,C,H,W]` with a `kernel_size` Gaussian whose `sigma` is in pixels (reflect padding): the blur of
    Self-Attention Guidance (Hong et al. 2023), ComfyUI's `comfy_extras.nodes_sag.gaussian_blur_2d`."""
    import torch
    half = (kernel_size - 1) * 0.5
    pdf = torch.exp(-0.5 * (torch.linspace(-half, half, kernel_size) / sigma) ** 2)
    taps = pdf / pdf.sum()
    return filter2d_reflect(images, taps[:, None] * taps[None, :])


def filter2d_reflect(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of `[B,C,H,W]` with one odd `[k,k]` kernel; reflect padding keeps the size."""
    import torch.nn.functional as F
    r = kernel.shape[-1] // 2
    channels = images.shape[1]
    weight = kernel.to(images).expand(channels, 1, *kernel.shape).contiguous()
    return F.conv2d(F.pad(images, (r, r, r, r), mode="reflect"), weight, groups=channels)


# neighbour (dy, dx) for gradient directions 0, 45, ..., 315 degrees (y grows downwards)
_DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def canny_edges(images: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Canny edges of `[B,C,H,W]` (RGB or grey) as a `[B,1,H,W]` 0/1 map, kornia's defaults as ComfyUI uses them.

    Luma (0.299, 0.587, 0.114), 5x5 Gaussian with sigma 1 (reflect border), unnormalised 3x3 Sobel (replicate
    border), non-maximum suppression along the gradient rounded to 45 degrees (zeros outside), double threshold, then hysteresis: weak pixels 8-connected to strong ones are kept.
    """
    import torch
    import torch.nn.functional as F
    x = images.float()
    if x.shape[1] >= 3:
        x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    elif x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    taps = torch.exp(-(torch.arange(5, dtype=torch.float32) - 2.0) ** 2 / 2.0)
    taps = taps / taps.sum()
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="reflect"), taps.reshape(1, 1, 1, 5))
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="reflect"), taps.reshape(1, 1, 5, 1))
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    h, w = x.shape[-2:]

    def at(dy: int, dx: int, src: torch.Tensor = p) -> torch.Tensor:
        return src[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    magnitude = torch.sqrt(gx * gx + gy * gy + 1e-6)
    direction = torch.round(torch.rad2deg(torch.atan2(gy, gx)) / 45.0).long() % 8
    zp = F.pad(magnitude, (1, 1, 1, 1))
    neighbours = torch.cat([at(dy, dx, zp) for dy, dx in _DIRECTIONS], dim=1)
    ahead = torch.gather(neighbours, 1, direction)
    behind = torch.gather(neighbours, 1, (direction + 4) % 8)
    # kornia keeps a pixel only if strictly above both neighbours, which drops *both* sides of a symmetric
    # step (gaps in the edges of flat shapes); ties go to the pixel ahead along the gradient instead
    tol = 1e-5 * magnitude.amax().clamp_min(1.0)
    magnitude = magnitude * ((magnitude - ahead > tol) & (magnitude - behind >= -tol))
    strong = magnitude > high
    weak = (magnitude > low) & ~strong
    while True:
        before = strong
        for _ in range(8):  # several growth steps per convergence check
            strong = strong | (weak & (F.max_pool2d(strong.float(), 3, stride=1, padding=1) > 0))
        if torch.equal(before, strong):
            return strong.to(images.dtype if images.is_floating_point() else torch.float32)


def bayer_offsets(order: int) -> torch.Tensor:
    """The `order` x `order` ordered-dither matrix, centred: `(rank + 0.5) / order**2 - 0.5`."""
    import torch
    rank = torch.zeros((1, 1), dtype=torch.float64)
    while rank.shape[0] < order:
        top = torch.cat([4 * rank, 4 * rank + 2], dim=1)
        bottom = torch.cat([4 * rank + 3, 4 * rank + 1], dim=1)
        rank = torch.cat([top, bottom], dim=0)
    return (rank + 0.5) / (order * order) - 0.5
