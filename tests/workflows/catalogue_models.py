"""Derived catalogue fixtures written at test time (README of tests/fixtures/catalogue, `make_derived.py` recipe):
tiny-sd15-b, a second SD1.5 for the merge nodes, is 46 MB, so it is computed from tiny-sd15 and the 256 KB noise
table instead of being stored. A uniquely named module (``conftest`` is ambiguous across test folders)."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SD15 = FIX / "tiny-sd15" / "tiny-sd15.safetensors"
NOISE_TABLE = FIX / "catalogue" / "tiny-catalogue.noise.safetensors"
LORA = FIX / "families" / "tiny-sd15-lora.safetensors"
SD15_B_CONTENT_SHA256 = "f7f8597da62b55085ae06c7e94b2dcfa2a290009cab6812c45f24cee99e46080"


def _table() -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(NOISE_TABLE), "pt") as f:
        return f.get_tensor("table").float()


def table_noise(table: torch.Tensor, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The recipe's noise for tensor ``name``: element i = TABLE[(i*a + (i >> 16)*40503 + o) mod 65536] with o / a
    from sha256(name) (o: first 8 bytes, a: next 4 bytes | 1, little endian). Only o mod 65536 matters, and
    i*a < 2**56 for these sizes, so int64 arithmetic is exact."""
    digest = hashlib.sha256(name.encode()).digest()
    o = int.from_bytes(digest[:8], "little") & 0xFFFF
    a = int.from_bytes(digest[8:12], "little") | 1
    n = 1
    for d in shape:
        n *= d
    i = torch.arange(n, dtype=torch.int64)
    idx = (i * a + (i >> 16) * 40503 + o) & 0xFFFF
    return table[idx].reshape(shape)


def content_sha256(sd: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the sorted ``name|dtype|shape|`` strings and raw bytes (the README's content hash)."""
    h = hashlib.sha256()
    for key in sorted(sd):
        t = sd[key]
        h.update(f"{key}|{str(t.dtype).replace('torch.', '')}|{list(t.shape)}|".encode())
        if t.numel():
            h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def sd15_b_state() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """tiny-sd15 + 0.02 * noise('tiny-sd15-b:' + key) on every float UNet / text-encoder tensor."""
    from safetensors import safe_open

    table = _table()
    with safe_open(str(SD15), "pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata() or {})
    for key, value in sd.items():
        if key.startswith(("model.diffusion_model.", "cond_stage_model.")) and value.is_floating_point():
            noise = table_noise(table, "tiny-sd15-b:" + key, tuple(value.shape)) * torch.tensor(0.02)
            sd[key] = value + noise.to(value.dtype)
    config = json.loads(meta.get("tiny_sd15_config", "{}"))
    return sd, {"format": "pt", "tiny_sd15_config": json.dumps(config)}


def write_sd15_b(target: Path) -> Path:
    """Write tiny-sd15-b.safetensors to ``target`` (its content hash is the README's)."""
    from safetensors.torch import save_file

    sd, meta = sd15_b_state()
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(target), metadata=meta)
    return target
