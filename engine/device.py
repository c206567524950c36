"""Device policy: which device and dtypes models run in, decided at run time (never at import)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DevicePolicy"]


@dataclass(frozen=True)
class DevicePolicy:
    """Where models compute and which dtypes they use. Build with ``DevicePolicy.detect()``."""

    device: torch.device
    offload_device: torch.device
    unet_dtype: torch.dtype
    vae_dtype: torch.dtype
    text_dtype: torch.dtype

    @classmethod
    def detect(cls, cpu_only: bool = False, force_fp32: bool = False) -> DevicePolicy:
        """Pick cuda, then mps, then cpu; half precision on a GPU where it is safe, float32 on the CPU."""
        cpu = torch.device("cpu")
        if not cpu_only and torch.cuda.is_available():
            dev = torch.device("cuda", torch.cuda.current_device())
            if force_fp32:
                return cls(dev, cpu, torch.float32, torch.float32, torch.float32)
            bf16 = torch.cuda.is_bf16_supported()
            # The SD VAE overflows in fp16; bf16 keeps its range, else keep it in fp32.
            return cls(dev, cpu, torch.float16, torch.bfloat16 if bf16 else torch.float32, torch.float16)
        mps = getattr(torch.backends, "mps", None)
        if not cpu_only and mps is not None and mps.is_available():
            dev = torch.device("mps")
            half = torch.float32 if force_fp32 else torch.float16
            return cls(dev, cpu, half, torch.float32, half)
        return cls.cpu()

    @classmethod
    def cpu(cls) -> DevicePolicy:
        """Everything float32 on the CPU (the parity setting)."""
        cpu = torch.device("cpu")
        return cls(cpu, cpu, torch.float32, torch.float32, torch.float32)

    def total_memory(self) -> int:
        """Bytes of memory on the compute device (system RAM for the CPU)."""
        if self.device.type == "cuda":
            return int(torch.cuda.get_device_properties(self.device).total_memory)
        import psutil

        return int(psutil.virtual_memory().total)

    def free_memory(self) -> int:
        """Bytes currently free on the compute device."""
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(free)
        import psutil

        return int(psutil.virtual_memory().available)
