"""Device policy: which device and dtypes models run in, decided at run time (never at import)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.precision import NetworkPrecision, PrecisionFlags, ResolvedPrecision, resolve

__all__ = ["DevicePolicy"]


@dataclass(frozen=True)
class DevicePolicy:
    """Where models compute and which dtypes they use. Build with ``DevicePolicy.detect()``.

    ``unet_dtype`` / ``vae_dtype`` / ``text_dtype`` are the dtypes the networks compute in; ``precision`` adds
    the storage dtypes, the CPU bf16 operator choice and why (engine.precision); ``vae_device`` is where the VAE
    runs when it is not ``device`` (``--cpu-vae``).
    """

    device: torch.device
    offload_device: torch.device
    unet_dtype: torch.dtype
    vae_dtype: torch.dtype
    text_dtype: torch.dtype
    precision: ResolvedPrecision | None = None
    vae_device: torch.device | None = None

    @classmethod
    def detect(cls, cpu_only: bool = False, force_fp32: bool = False,
               flags: PrecisionFlags | None = None) -> DevicePolicy:
        """Pick cuda, then mps, then cpu; dtypes from ``flags`` (ComfyUI's precision flags), else half precision
        on a GPU where it is safe and float32 on the CPU."""
        flags = flags or PrecisionFlags(force_fp32=force_fp32)
        if force_fp32 and not flags.force_fp32:
            flags = PrecisionFlags(flags.unet, flags.vae, flags.text_enc, flags.cpu_vae, True, flags.force_fp16)
        cpu = torch.device("cpu")
        if not cpu_only and torch.cuda.is_available():
            dev = torch.device("cuda", torch.cuda.current_device())
            return cls.from_precision(dev, resolve(flags, dev, bf16_supported=torch.cuda.is_bf16_supported()))
        mps = getattr(torch.backends, "mps", None)
        if not cpu_only and mps is not None and mps.is_available():
            dev = torch.device("mps")
            res = resolve(flags, dev, bf16_supported=False)
            if flags.vae is None:  # the SD VAE is unreliable in half precision on mps
                res = ResolvedPrecision(res.unet, NetworkPrecision(torch.float32, reason="mps default"), res.text,
                                        res.vae_device)
            return cls.from_precision(dev, res)
        return cls.from_precision(cpu, resolve(flags, cpu))

    @classmethod
    def from_precision(cls, device: torch.device, res: ResolvedPrecision) -> DevicePolicy:
        """A policy computing on ``device`` with the resolved precision ``res`` (offload to the CPU)."""
        return cls(device, torch.device("cpu"), res.unet.compute, res.vae.compute, res.text.compute,
                   precision=res, vae_device=res.vae_device)

    @classmethod
    def cpu(cls) -> DevicePolicy:
        """Everything float32 on the CPU (the parity setting)."""
        cpu = torch.device("cpu")
        return cls(cpu, cpu, torch.float32, torch.float32, torch.float32)

    def device_for(self, kind: str) -> torch.device:
        """The compute device of a network kind (``unet`` / ``clip`` / ``vae``): ``--cpu-vae`` moves the VAE."""
        if kind == "vae" and self.vae_device is not None:
            return self.vae_device
        return self.device

    def network(self, kind: str) -> NetworkPrecision:
        """The precision of a network kind (``unet`` / ``vae`` / ``clip``)."""
        if self.precision is not None:
            return {"unet": self.precision.unet, "vae": self.precision.vae, "clip": self.precision.text}[kind]
        return NetworkPrecision({"unet": self.unet_dtype, "vae": self.vae_dtype, "clip": self.text_dtype}[kind])

    def describe(self) -> str:
        """Which precision each network runs in and why (one line)."""
        if self.precision is not None:
            return self.precision.describe()
        return f"unet {self.unet_dtype}; vae {self.vae_dtype}; text {self.text_dtype} [fixed policy]"

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
