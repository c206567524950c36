"""Data parallel: one prompt's latent batch split across idle workers, its images reassembled in order.

A prompt qualifies when its single `KSampler` takes its latent straight from an `EmptyLatentImage` with
`batch_size` > 1 and a sampler that draws no noise after the first step. Each part inserts a
`LatentFromBatch(batch_index=start, length=n)` before the sampler: the engine then draws the initial noise
per batch slot, which equals the whole-batch draw when an image's latent holds a multiple of 16 numbers
(torch's CPU normal sampler works in blocks of 16), so width and height must be multiples of 16 pixels.
Ancestral and SDE samplers draw noise over the whole batch at every step: never split.
"""
from __future__ import annotations

import copy
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = ["Part", "plan_split", "merge_ui", "set_png_text", "SPLIT_SAMPLERS"]

# Samplers whose only randomness is the initial noise and whose every step is per image (dpm_adaptive is
# not: its step size follows an error norm over the whole batch).
SPLIT_SAMPLERS = frozenset({"euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ddim", "uni_pc", "uni_pc_bh2", "deis",
                            "ipndm", "ipndm_v"})


@dataclass(frozen=True)
class Part:
    """One slice of the batch: its images are `start .. start + length - 1` of the whole prompt."""

    start: int
    length: int
    prompt: dict[str, Any]


def plan_split(prompt: dict[str, Any], workers: int) -> list[Part] | None:
    """The parts to run on `workers` idle workers, or None when the prompt must run whole."""
    samplers = [nid for nid, n in prompt.items() if isinstance(n, dict) and n.get("class_type") == "KSampler"]
    if workers < 2 or len(samplers) != 1:
        return None
    ks = prompt[samplers[0]]["inputs"]
    link = ks.get("latent_image")
    if ks.get("sampler_name") not in SPLIT_SAMPLERS or not (isinstance(link, list) and len(link) == 2):
        return None
    latent_id = str(link[0])
    latent = prompt.get(latent_id)
    if not isinstance(latent, dict) or latent.get("class_type") != "EmptyLatentImage":
        return None
    inputs = latent.get("inputs", {})
    batch, width, height = inputs.get("batch_size"), inputs.get("width"), inputs.get("height")
    if not all(isinstance(v, int) for v in (batch, width, height)) or batch < 2 or width % 16 or height % 16:
        return None
    k = min(workers, batch)
    sizes = [batch // k + (1 if i < batch % k else 0) for i in range(k)]
    new_id = next(f"{latent_id}.split{i}" for i in range(1000) if f"{latent_id}.split{i}" not in prompt)
    parts, start = [], 0
    for size in sizes:
        sub = copy.deepcopy(prompt)
        sub[new_id] = {"class_type": "LatentFromBatch",
                       "inputs": {"samples": [latent_id, link[1]], "batch_index": start, "length": size}}
        sub[samplers[0]]["inputs"]["latent_image"] = [new_id, 0]
        parts.append(Part(start, size, sub))
        start += size
    return parts


def merge_ui(uis: list[dict[str, Any]]) -> dict[str, Any]:
    """One node's ui dicts from the parts, in part order: lists concatenated, other values from the first."""
    out: dict[str, Any] = {}
    for ui in uis:
        for key, value in ui.items():
            if isinstance(value, list):
                out.setdefault(key, [])
                out[key] = [*out[key], *value]
            else:
                out.setdefault(key, value)
    return out


def set_png_text(data: bytes, key: str, value: Any) -> bytes:
    """PNG bytes with the tEXt chunk `key` replaced by `json.dumps(value)` (as SaveImage writes it)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return data
    out, pos, prefix = [data[:8]], 8, key.encode("latin-1") + b"\x00"
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        end = pos + 12 + length
        if ctype == b"tEXt" and body.startswith(prefix):
            body = prefix + json.dumps(value).encode("latin-1")
            crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
            out.append(struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc))
        else:
            out.append(data[pos:end])
        pos = end
    return b"".join(out)
