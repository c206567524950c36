"""The choices of the advanced image formats (torch-free, so node schemas can list them without loading torch):
PNG / EXR bit depths, EXR / AVIF input colour spaces, AVIF bit depths, and the colour spaces ImageColorSpace
converts between. `engine.image_files`, `engine.avif` and `engine.color_space` check against these."""
from __future__ import annotations

__all__ = ["PNG_DEPTHS", "EXR_DEPTHS", "EXR_SPACES", "AVIF_DEPTHS", "AVIF_SPACES", "COLOR_SPACES"]

PNG_DEPTHS = ("8-bit", "16-bit")
EXR_DEPTHS = ("32-bit float",)
EXR_SPACES = ("sRGB", "HDR", "linear")
AVIF_DEPTHS = ("auto", "8-bit YUV420", "10-bit YUV420")
COLOR_SPACES = ("sRGB", "HDR", "HDR PQ")
AVIF_SPACES = COLOR_SPACES
