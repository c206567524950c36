"""Writers of the derived catalogue fixtures (InstructPix2Pix, diffusers folder, GLIGEN, hypernetwork).

The stored inputs are small (tests/fixtures/catalogue): the noise table, the InstructPix2Pix input-conv delta, the
GLIGEN tensor spec and the diffusers key map (made with diffusers' own converters). This module follows the recipe
of the fixture README (tests/fixtures/catalogue/README.md): every value is a byte copy of a stored tensor or a
noise-table entry picked by integer index arithmetic, so the files equal the README's content hashes.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

FIX = Path(__file__).resolve().parents[1] / "fixtures"
CAT = FIX / "catalogue"
SD15 = FIX / "tiny-sd15" / "tiny-sd15.safetensors"
HN_WIDTHS = (32, 64, 128)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


class Noise:
    """The README's deterministic N(0, 1) values: element i of tensor ``name`` is
    TABLE[(i * a + (i >> 16) * 40503 + o) mod 65536], o / a from sha256(name) (little endian, a made odd)."""

    def __init__(self) -> None:
        with safe_open(str(CAT / "tiny-catalogue.noise.safetensors"), "np") as f:
            self.table = f.get_tensor("table").astype(np.float32)

    def __call__(self, name: str, shape: list[int]) -> np.ndarray:
        count = int(np.prod(shape)) if shape else 1
        digest = hashlib.sha256(name.encode()).digest()
        offset = int.from_bytes(digest[:8], "little")
        step = int.from_bytes(digest[8:12], "little") | 1
        i = np.arange(count, dtype=np.uint64)
        with np.errstate(over="ignore"):
            idx = (i * np.uint64(step) + (i >> np.uint64(16)) * np.uint64(40503) + np.uint64(offset)) & np.uint64(0xFFFF)
        return self.table[idx.astype(np.int64)].reshape(tuple(shape))

    def init(self, name: str, shape: list[int], kind: Any) -> torch.Tensor:
        """weights noise / sqrt(fan_in), biases 0.02 noise, norm gains 1 + 0.1 noise, constants as given."""
        if isinstance(kind, list) and kind[0] == "const":
            return torch.full(tuple(shape), float(kind[1]), dtype=torch.float32)
        z = self(name, shape)
        if kind == "w":
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
            v = z * np.float32(1.0 / np.sqrt(fan_in))
        elif kind in ("b", "ln_b"):
            v = z * np.float32(0.02)
        elif kind == "ln_w":
            v = np.float32(1.0) + z * np.float32(0.1)
        else:
            raise ValueError(kind)
        return torch.from_numpy(np.ascontiguousarray(v.astype(np.float32))).reshape(shape)


def content_hash(sd: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the sorted ``name|dtype|shape|`` strings and raw bytes (the README's content hash)."""
    h = hashlib.sha256()
    for k in sorted(sd):
        v = sd[k]
        h.update(f"{k}|{str(v.dtype).replace('torch.', '')}|{list(v.shape)}|".encode())
        if v.numel():
            h.update(v.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def make_ip2p(out: Path) -> Path:
    sd, _ = _read(SD15)
    delta, delta_meta = _read(CAT / "tiny-sd15-ip2p.delta.safetensors")
    (key, w), = delta.items()
    assert torch.equal(w[:, :4], sd[key])
    sd[key] = w
    path = out / "tiny-sd15-ip2p.safetensors"
    # the config (text encoder heads included) travels in the delta's metadata, as in the recipe
    save_file(sd, str(path), metadata={"format": "pt", "tiny_sd15_ip2p_config": delta_meta["tiny_sd15_ip2p_config"]})
    return path


def make_diffusers(out: Path) -> Path:
    sd, _ = _read(SD15)
    keymap = json.loads((CAT / "tiny-sd15-diffusers.keymap.json").read_text())
    root = out / "tiny-sd15-diffusers"
    for part, fname in (("unet", "diffusion_pytorch_model.safetensors"), ("vae", "diffusion_pytorch_model.safetensors"),
                        ("text_encoder", "model.safetensors")):
        (root / part).mkdir(parents=True)
        tensors = {}
        for dkey, (lkey, op) in keymap["keys"][part].items():
            v = sd[lkey]
            tensors[dkey] = (v.reshape(v.shape[0], v.shape[1]) if op == "squeeze" else v).contiguous()
        save_file(tensors, str(root / part / fname), metadata={"format": "pt"})
        (root / part / "config.json").write_text(json.dumps(keymap["configs"][part], indent=2))
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(keymap["configs"]["scheduler"]))
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(keymap["configs"]["tokenizer"]))
    (root / "model_index.json").write_text(json.dumps(keymap["configs"]["model_index"], indent=2))
    return root


def make_gligen(out: Path) -> Path:
    spec = json.loads((CAT / "tiny-gligen-sd15.spec.json").read_text())
    noise = Noise()
    sd = {k: noise.init("tiny-gligen:" + k, shape, kind).to(torch.float16) for k, shape, kind in spec["tensors"]}
    path = out / "tiny-gligen-sd15-textbox.safetensors"
    save_file(sd, str(path), metadata={"format": "pt", "tiny_gligen_config": json.dumps(spec["config"])})
    return path


def hypernetwork_layers(d: int) -> list[tuple[str, list[int], str]]:
    """A1111 layout for layer_structure [1, 2, 1] with layer norm: Linear, (act), LN, Linear, LN."""
    return [("linear.0.weight", [2 * d, d], "w"), ("linear.0.bias", [2 * d], "b"),
            ("linear.2.weight", [2 * d], "ln_w"), ("linear.2.bias", [2 * d], "ln_b"),
            ("linear.3.weight", [d, 2 * d], "w"), ("linear.3.bias", [d], "b"),
            ("linear.4.weight", [d], "ln_w"), ("linear.4.bias", [d], "ln_b")]


def make_hypernetwork(out: Path) -> Path:
    noise = Noise()
    hn: dict[Any, Any] = {}
    for d in HN_WIDTHS:
        hn[d] = [{k: noise.init(f"tiny-hypernetwork:{d}:{which}:{k}", shape, kind)
                  for k, shape, kind in hypernetwork_layers(d)} for which in ("k", "v")]
    hn.update({"activation_func": "swish", "is_layer_norm": True, "layer_structure": [1, 2, 1], "use_dropout": False,
               "activate_output": False, "last_layer_dropout": False, "dropout_structure": [0, 0, 0],
               "weight_initialization": "Normal", "name": "tiny-sd15-hypernetwork", "step": 1000,
               "sd_checkpoint": "00000000", "sd_checkpoint_name": "tiny-sd15"})
    path = out / "tiny-sd15-hypernetwork.pt"
    torch.save(hn, str(path))
    return path


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    """Run node ``name`` of ``registry`` with ``kwargs``."""
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**kwargs)
