"""Precision flags (ComfyUI's ``--fp32-unet``, ``--bf16-vae``, ...) resolved into the dtypes each network uses.

ComfyUI's meaning, per network: an explicit flag wins over ``--force-fp32`` / ``--force-fp16``, which win over the
device default (half precision on a GPU, float32 on the CPU). On the CPU, a 16-bit UNet or VAE flag sets the
*storage* dtype of the weights; the arithmetic Loom runs in that dtype is decided per operator from a measurement
(``bench/precision.py``, docs/performance.md):

- bf16: convolutions and linear layers run in bf16 (oneDNN's bf16 kernels accumulate in fp32) where the CPU has
  AVX512_BF16 / AMX; measured 1.8-2.5x faster than fp32 at SD1.5 shapes. Self-attention (SDPA, 1.0x) and the norms
  (GroupNorm / LayerNorm 1.7-25x *slower* in bf16) stay fp32, and so do the activations between layers and the
  sampler's arithmetic. Without AVX512_BF16 bf16 runs emulated and is slower than fp32: the flag still works and
  warns.
- fp16 / fp8: weights stored narrow, cast to fp32 for each call (ComfyUI's manual cast; it saves memory, not time).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where dtypes are made: the HTTP side reads the flags without it
    import torch

__all__ = ["PrecisionFlags", "NetworkPrecision", "ResolvedPrecision", "cpu_flags", "cpu_has_bf16", "resolve"]

log = logging.getLogger("loom.precision")

UNET_CHOICES = ("fp32", "fp64", "bf16", "fp16", "fp8_e4m3fn", "fp8_e5m2")
VAE_CHOICES = ("fp32", "bf16", "fp16")
TEXT_CHOICES = ("fp32", "bf16", "fp16")

_DTYPE_NAMES: dict[str, str] = {"fp32": "float32", "fp64": "float64", "bf16": "bfloat16", "fp16": "float16",
                                 "fp8_e4m3fn": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}


def _dtype(name: str) -> torch.dtype:
    """The torch dtype of a flag name (``bf16`` -> torch.bfloat16)."""
    import torch

    dtype: torch.dtype = getattr(torch, _DTYPE_NAMES[name])
    return dtype
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where the file is missing: not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 dot products (AVX512_BF16 or AMX-BF16), read at run time."""
    return any(f in cpu_flags() for f in BF16_CPU_FLAGS)


@dataclass(frozen=True)
class PrecisionFlags:
    """The command line's precision choices, as names (None: the device default). Built by app.config."""

    unet: str | None = None
    vae: str | None = None
    text_enc: str | None = None
    cpu_vae: bool = False
    force_fp32: bool = False
    force_fp16: bool = False


@dataclass(frozen=True)
class NetworkPrecision:
    """How one network runs: ``compute`` is the dtype of its activations (what its handle feeds it);
    ``storage`` the dtype of its weight matrices when it differs; ``bf16_ops`` whether its convs and linears
    run in bf16 on the CPU; ``reason`` a sentence for reports."""

    compute: torch.dtype
    storage: torch.dtype | None = None
    bf16_ops: bool = False
    reason: str = "device default"


@dataclass(frozen=True)
class ResolvedPrecision:
    """The three networks' precision plus the VAE's device (None: the compute device)."""

    unet: NetworkPrecision
    vae: NetworkPrecision
    text: NetworkPrecision
    vae_device: torch.device | None = None

    def describe(self) -> str:
        """One line for logs and the bench report: which precision runs and why."""
        def one(n: NetworkPrecision) -> str:
            stored = f", weights {_name(n.storage)}" if n.storage is not None else ""
            ops = " (bf16 conv/linear, fp32 norms+attention)" if n.bf16_ops else ""
            return f"{_name(n.compute)}{stored}{ops} [{n.reason}]"
        vae_dev = f" on {self.vae_device}" if self.vae_device is not None else ""
        return f"unet {one(self.unet)}; vae {one(self.vae)}{vae_dev}; text {one(self.text)}"


def _name(dtype: torch.dtype | None) -> str:
    return next((k for k in _DTYPE_NAMES if dtype is not None and _dtype(k) == dtype), str(dtype))


def _cpu_narrow(flag: str, why: str) -> NetworkPrecision:
    """A 16/8-bit choice (``why``: the flag) for a network on the CPU: fp32 activations, narrow weights."""
    import torch

    storage = _dtype(flag)
    if flag == "bf16":
        if cpu_has_bf16():
            return NetworkPrecision(torch.float32, storage, True, f"{why}: CPU has AVX512_BF16")
        log.warning("%s: this CPU has no AVX512_BF16/AMX (see /proc/cpuinfo), so bf16 convolutions and matrix "
                    "products are emulated and will be SLOWER than fp32; drop the flag for speed", why)
        return NetworkPrecision(torch.float32, storage, True, f"{why}: no AVX512_BF16, slower than fp32")
    return NetworkPrecision(torch.float32, storage, False, f"{why}: weights stored {flag}, computed in fp32 on the CPU")


def resolve(flags: PrecisionFlags, device: torch.device, *, bf16_supported: bool = False) -> ResolvedPrecision:
    """The dtypes each network uses on ``device`` under ``flags`` (``bf16_supported``: the GPU runs bf16)."""
    import torch

    cpu = device.type == "cpu"
    # ---- UNet
    if flags.unet in ("fp32", "fp64"):
        unet = NetworkPrecision(_dtype(flags.unet), reason=f"--{flags.unet}-unet")
    elif flags.unet is not None or flags.force_fp16:
        name = flags.unet or "fp16"
        why = f"--{name}-unet" if flags.unet else "--force-fp16"
        if cpu:
            unet = _cpu_narrow(name, why)
        elif name.startswith("fp8"):
            default = torch.float32 if flags.force_fp32 else torch.float16
            unet = NetworkPrecision(default, _dtype(name), reason=f"{why}: fp8 weights, cast per layer")
        else:
            unet = NetworkPrecision(_dtype(name), reason=why)
    elif flags.force_fp32 or cpu:
        unet = NetworkPrecision(torch.float32, reason="--force-fp32" if flags.force_fp32 else
                                "CPU default: fp32 gives ComfyUI's exact pixels")
    else:
        unet = NetworkPrecision(torch.float16, reason="GPU default")
    # ---- VAE
    vae_device = torch.device("cpu") if flags.cpu_vae else None
    vae_cpu = cpu or flags.cpu_vae
    if flags.vae is not None:
        if flags.vae == "bf16" and vae_cpu:
            vae = _cpu_narrow("bf16", "--bf16-vae")
        else:
            vae = NetworkPrecision(_dtype(flags.vae), reason=f"--{flags.vae}-vae")
    elif flags.force_fp32 or vae_cpu:
        vae = NetworkPrecision(torch.float32, reason="--force-fp32" if flags.force_fp32 else
                               ("--cpu-vae" if flags.cpu_vae and not cpu else "CPU default"))
    else:
        # The SD VAE overflows in fp16; bf16 keeps its range, else fp32.
        vae = NetworkPrecision(torch.bfloat16 if bf16_supported else torch.float32, reason="GPU default")
    # ---- text encoders (run as a whole in the chosen dtype: they are small next to the UNet)
    if flags.text_enc is not None:
        text = NetworkPrecision(_dtype(flags.text_enc), reason=f"--{flags.text_enc}-text-enc")
    elif flags.force_fp32 or cpu:
        text = NetworkPrecision(torch.float32, reason="--force-fp32" if flags.force_fp32 else "CPU default")
    else:
        text = NetworkPrecision(torch.float16, reason="--force-fp16" if flags.force_fp16 else "GPU default")
    return ResolvedPrecision(unet=unet, vae=vae, text=text, vae_device=vae_device)
