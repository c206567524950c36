"""AVIF stills and animations the way ComfyUI's ``SaveImageAdvanced`` writes them (PyAV, SVT-AV1, YUV 4:2:0).

``input_color_space`` tags the stream: sRGB (BT.709 primaries, sRGB transfer, BT.709 matrix), HDR (BT.2020,
HLG, BT.2020 non-constant-luminance matrix) or HDR PQ (BT.2020, PQ); limited range. Bit depth ``auto`` means
10-bit for the HDR spaces and 8-bit for sRGB. Pixels are quantised by truncation (``int(x * 255)``, or
``int(x * 65535)`` before the 10-bit conversion). SVT-AV1 takes no alpha: 1- and 3-channel images only. The
prompt and workflow go in an Exif item (``engine.avif_metadata``).
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import TYPE_CHECKING

import torch

from engine.image_format_names import AVIF_DEPTHS, AVIF_SPACES

if TYPE_CHECKING:
    import av

__all__ = ["AVIF_DEPTHS", "AVIF_SPACES", "save_avif"]

# (colour primaries, transfer characteristics, matrix coefficients) as ISO/IEC 23091-2 code points
_TAGS = {"sRGB": (1, 13, 1), "HDR": (9, 18, 9), "HDR PQ": (9, 16, 9)}
_MPEG_RANGE = 1


def _depth(bit_depth: str, input_color_space: str) -> str:
    if bit_depth not in AVIF_DEPTHS:
        raise ValueError(f"AVIF bit depth {bit_depth!r} is not one of {list(AVIF_DEPTHS)}")
    if input_color_space not in AVIF_SPACES:
        raise ValueError(f"AVIF input colour space {input_color_space!r} is not one of {list(AVIF_SPACES)}")
    if bit_depth == "auto":
        return "8-bit YUV420" if input_color_space == "sRGB" else "10-bit YUV420"
    return bit_depth


def _tag(target: av.VideoFrame | av.video.codeccontext.VideoCodecContext, input_color_space: str) -> None:
    primaries, transfer, matrix = _TAGS[input_color_space]
    target.color_primaries, target.color_trc = primaries, transfer
    target.colorspace, target.color_range = matrix, _MPEG_RANGE


def _frame(image: torch.Tensor, depth: str, input_color_space: str, pixel_format: str) -> av.VideoFrame:
    import av
    import numpy as np

    if image.ndim == 2:
        image = image.unsqueeze(-1)
    channels = int(image.shape[-1])
    if channels not in (1, 3):
        raise ValueError(f"AVIF takes 1-channel (grayscale) or 3-channel (RGB) images, got {channels} channels; "
                         "SVT-AV1 cannot encode alpha: save as png or drop the alpha channel")
    image = image.detach().float().cpu()
    if depth == "10-bit YUV420":
        pixels = (image * 65535.0).clamp(0, 65535).to(torch.int32).numpy().astype(np.uint16)
        layout = "gray16le" if channels == 1 else "rgb48le"
    else:
        pixels = (image * 255.0).clamp(0, 255).to(torch.uint8).numpy()
        layout = "gray" if channels == 1 else "rgb24"
    frame = av.VideoFrame.from_ndarray(pixels[..., 0] if channels == 1 else pixels, format=layout)
    frame = frame.reformat(format=pixel_format, dst_colorspace=_TAGS[input_color_space][2])
    _tag(frame, input_color_space)
    return frame


def save_avif(path: str | os.PathLike[str], images: torch.Tensor, bit_depth: str, input_color_space: str,
              crf: int, fps: float = 1.0, loop_count: int | None = None, exif: bytes = b"") -> None:
    """Write ``images`` ``[B,H,W,C]`` as one AVIF (a sequence when B > 1); ``loop_count`` for animations;
    ``exif`` (``avif_metadata.exif_block``) becomes the file's Exif item."""
    import av

    from engine.avif_metadata import add_exif

    depth = _depth(bit_depth, input_color_space)
    pixel_format = "yuv420p10le" if depth == "10-bit YUV420" else "yuv420p"
    options = {"loop": str(loop_count)} if loop_count is not None else None
    with av.open(os.fspath(path), mode="w", format="avif", options=options) as container:
        stream = container.add_stream("libsvtav1", rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height = int(images.shape[2]), int(images.shape[1])
        stream.pix_fmt = pixel_format
        stream.options = {"crf": str(crf), "preset": "8"}
        _tag(stream.codec_context, input_color_space)
        for image in images:
            for packet in stream.encode(_frame(image, depth, input_color_space, pixel_format)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    add_exif(path, exif)
