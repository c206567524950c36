"""Colour-space transfers for IMAGE tensors: sRGB (Rec.709), HDR (Rec.2020 HLG) and HDR PQ (Rec.2020 PQ).

ComfyUI's ``ImageColorSpace`` and ``SaveImageAdvanced`` (comfy_extras nodes_images) use these; the numbers
follow IEC 61966-2-1 (sRGB), ITU-R BT.2100 (HLG, PQ) and BT.2087 (Rec.709 <-> Rec.2020 primaries), with ComfyUI's
conventions: SDR white at 203 cd/m², a 1000 cd/m² HLG reference display with system gamma 1.2, and, when a
conversion narrows the range, an extended-Reinhard tone map over the whole batch's peak followed by a gamut
compression toward each pixel's luminance. Straight alpha (a 4th channel) is never colour-transformed.
"""
from __future__ import annotations

from functools import cache

import torch

from engine.image_format_names import COLOR_SPACES

__all__ = ["SPACES", "srgb_to_linear", "linear_to_srgb", "hlg_to_linear", "linear_to_hlg", "pq_to_nits",
           "nits_to_pq", "convert"]

SPACES = COLOR_SPACES

SDR_WHITE_NITS = 203.0
HLG_PEAK_NITS = 1000.0
HLG_GAMMA = 1.2
# BT.2100 HLG OETF constants
HLG_A = 0.17883277
HLG_B = 1.0 - 4.0 * HLG_A
HLG_C = 0.55991072928  # 0.5 - a * ln(4a), to BT.2100's stated precision
# BT.2100 PQ constants
PQ_M1 = 2610 / 16384
PQ_M2 = 2523 / 32
PQ_C1 = 3424 / 4096
PQ_C2 = 2413 / 128
PQ_C3 = 2392 / 128
PQ_PEAK_NITS = 10000.0

# CIE 1931 xy of the red, green and blue primaries; both share the D65 white point
PRIMARIES = {"Rec.709": ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)),
             "Rec.2020": ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046))}
D65 = (0.3127, 0.3290)
REC2020_LUMA = (0.2627, 0.6780, 0.0593)  # BT.2020's rounded luminance weights


def _rgb_to_xyz(primaries: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """The RGB -> XYZ matrix of a set of primaries under D65 (float64)."""
    xyz = torch.tensor([[x / y, 1.0, (1.0 - x - y) / y] for x, y in primaries], dtype=torch.float64).T
    wx, wy = D65
    white = torch.tensor([wx / wy, 1.0, (1.0 - wx - wy) / wy], dtype=torch.float64)
    scaled: torch.Tensor = xyz * torch.linalg.solve(xyz, white)
    return scaled


@cache
def _matrices() -> dict[str, torch.Tensor]:
    m709, m2020 = _rgb_to_xyz(PRIMARIES["Rec.709"]), _rgb_to_xyz(PRIMARIES["Rec.2020"])
    return {"709->2020": torch.linalg.solve(m2020, m709), "2020->709": torch.linalg.solve(m709, m2020),
            "709 luma": m709[1].clone()}


def _apply(rgb: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return rgb @ matrix.to(rgb.dtype).T


def _luminance(rgb: torch.Tensor, weights: torch.Tensor | tuple[float, ...]) -> torch.Tensor:
    return (rgb * torch.as_tensor(weights, dtype=rgb.dtype)).sum(dim=-1, keepdim=True)


def srgb_to_linear(t: torch.Tensor) -> torch.Tensor:
    """The sRGB decoding curve (linear toe below 0.04045)."""
    return torch.where(t <= 0.04045, t / 12.92, ((t.clamp(min=0.0) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(t: torch.Tensor) -> torch.Tensor:
    """The sRGB encoding curve (linear toe up to 0.0031308)."""
    return torch.where(t <= 0.0031308, t * 12.92, 1.055 * t.clamp(min=0.0) ** (1.0 / 2.4) - 0.055)


def hlg_to_linear(t: torch.Tensor) -> torch.Tensor:
    """BT.2100's inverse HLG OETF: signal 0..1 -> scene light 0..1 (values above 1 extrapolate)."""
    return torch.where(t <= 0.5, t * t / 3.0, (torch.exp((t.clamp(min=0.5) - HLG_C) / HLG_A) + HLG_B) / 12.0)


def linear_to_hlg(t: torch.Tensor) -> torch.Tensor:
    """BT.2100's HLG OETF: scene light 0..1 -> signal 0..1."""
    return torch.where(t <= 1.0 / 12.0, (3.0 * t.clamp(min=0.0)).sqrt(),
                       HLG_A * torch.log(12.0 * t.clamp(min=1.0 / 12.0) - HLG_B) + HLG_C)


def pq_to_nits(t: torch.Tensor) -> torch.Tensor:
    """BT.2100's PQ EOTF: signal 0..1 -> display light in cd/m² (computed around 1 to keep float32 precision)."""
    p = torch.expm1(t.clamp(min=0.0).log() / PQ_M2)  # signal^(1/m2) - 1
    return ((p + (1.0 - PQ_C1)).clamp(min=0.0) / ((PQ_C2 - PQ_C3) - PQ_C3 * p)) ** (1.0 / PQ_M1) * PQ_PEAK_NITS


def nits_to_pq(nits: torch.Tensor) -> torch.Tensor:
    """BT.2100's inverse PQ EOTF: display light in cd/m² -> signal 0..1."""
    y = (nits.clamp(min=0.0) / PQ_PEAK_NITS) ** PQ_M1
    ratio_minus_one = ((PQ_C1 - 1.0) + (PQ_C2 - PQ_C3) * y) / (1.0 + PQ_C3 * y)
    return torch.exp(torch.log1p(ratio_minus_one) * PQ_M2)


def _tone_map(rgb: torch.Tensor, weights: torch.Tensor | tuple[float, ...]) -> torch.Tensor:
    """Extended Reinhard on luminance, one white point (the batch's peak) so frames keep the same exposure."""
    lum = _luminance(rgb, weights).clamp(min=0.0)
    peak = lum.amax().clamp(min=1.0)
    if float(peak) <= 1.0001:  # transfer-function round-off at white is not an excess to compress
        return rgb
    return rgb * ((1.0 + lum / peak.square()) / (1.0 + lum))


def _compress_gamut(rgb: torch.Tensor, weights: torch.Tensor | tuple[float, ...]) -> torch.Tensor:
    """Desaturate out-of-range pixels toward their luminance just enough to fit 0..1."""
    lum = _luminance(rgb, weights).clamp(0.0, 1.0)
    tiny = torch.finfo(rgb.dtype).tiny
    low, high = rgb.amin(dim=-1, keepdim=True), rgb.amax(dim=-1, keepdim=True)
    room = torch.minimum((1.0 - lum) / (high - lum).clamp(min=tiny), lum / (lum - low).clamp(min=tiny))
    inside = (low >= -1e-5) & (high <= 1.00001)
    return torch.where(inside, rgb, lum + (rgb - lum) * room.clamp(0.0, 1.0)).clamp(0.0, 1.0)


def _to_display_nits(rgb: torch.Tensor, source: str) -> torch.Tensor:
    """Encoded pixels -> display-linear Rec.2020 light in cd/m²."""
    if source == "sRGB":
        return _apply(srgb_to_linear(rgb), _matrices()["709->2020"]) * SDR_WHITE_NITS
    if source == "HDR":
        scene = hlg_to_linear(rgb)  # the HLG OOTF: luminance-dependent gamma on the reference display
        return scene * (_luminance(scene, REC2020_LUMA).clamp(min=0.0) ** (HLG_GAMMA - 1.0) * HLG_PEAK_NITS)
    return pq_to_nits(rgb)


def _from_display_nits(nits: torch.Tensor, source: str, destination: str) -> torch.Tensor:
    if destination == "sRGB":
        luma = _matrices()["709 luma"]
        rgb = _tone_map(_apply(nits / SDR_WHITE_NITS, _matrices()["2020->709"]), luma)
        return linear_to_srgb(_compress_gamut(rgb, luma))
    if destination == "HDR":
        rgb = nits / HLG_PEAK_NITS
        if source == "HDR PQ":
            rgb = _tone_map(rgb, REC2020_LUMA)
        lum = _luminance(rgb, REC2020_LUMA).clamp(min=torch.finfo(rgb.dtype).tiny)
        rgb = rgb * lum ** (1.0 / HLG_GAMMA - 1.0)  # the inverse OOTF
        if source == "HDR PQ":
            rgb = _compress_gamut(rgb, REC2020_LUMA)
        return linear_to_hlg(rgb)
    return nits_to_pq(nits)


def convert(image: torch.Tensor, source: str, destination: str) -> torch.Tensor:
    """An IMAGE ``[..., 3 or 4]`` from one of ``SPACES`` to another, computed in float32 (alpha kept)."""
    for name, value in (("source", source), ("destination", destination)):
        if value not in SPACES:
            raise ValueError(f"{name} colour space {value!r} is not one of {list(SPACES)}")
    if source == destination:
        return image.float()
    rgb = _from_display_nits(_to_display_nits(image[..., :3].float(), source), source, destination)
    if image.shape[-1] == 4:
        rgb = torch.cat((rgb, image[..., 3:].float()), dim=-1)
    return rgb
