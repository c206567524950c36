"""ComfyUI's `comfy.model_management` for packs: devices, memory and interrupts from Loom's objects."""
from __future__ import annotations

from enum import Enum
from typing import Any

import torch

from app.compat._environment import handles_for
from engine.device import DevicePolicy
from executor.errors import ExecutionInterrupted

_loom = handles_for(__name__)  # this Loom instance's objects

# ComfyUI's exception: the executor turns it into `execution_interrupted`.
InterruptProcessingException = ExecutionInterrupted


class VRAMState(Enum):
    DISABLED = 0
    NO_VRAM = 1
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5


class CPUState(Enum):
    GPU = 0
    CPU = 1
    MPS = 2


def _policy() -> DevicePolicy:
    if _loom.models is not None:  # the engine's own manager: packs see the device Loom's nodes use
        return _loom.models.real().policy
    if "device_policy" not in _loom.extra:
        _loom.extra["device_policy"] = DevicePolicy.detect(cpu_only=bool(getattr(_loom.config, "cpu", False)))
    policy: DevicePolicy = _loom.extra["device_policy"]
    return policy


def get_torch_device() -> torch.device:
    """The compute device Loom uses."""
    return _policy().device


def get_torch_device_name(device: Any) -> str:
    """ComfyUI's description of a device: ``cuda:0 <GPU name> : <allocator>`` for CUDA, the device type otherwise."""
    dev = torch.device(device) if isinstance(device, (str, int)) else device
    kind = getattr(dev, "type", None)
    if kind == "cuda":
        try:
            backend = torch.cuda.get_allocator_backend()
        except RuntimeError:
            backend = ""
        return f"{dev} {torch.cuda.get_device_name(dev)} : {backend}"
    if kind == "xpu":
        return f"{dev} {torch.xpu.get_device_name(dev)}"
    return str(kind if kind is not None else dev)


def intermediate_device() -> torch.device:
    """Where IMAGE / LATENT tensors live between nodes: the CPU."""
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    return _policy().offload_device


def text_encoder_offload_device() -> torch.device:
    return _policy().offload_device


def vae_offload_device() -> torch.device:
    return _policy().offload_device


def text_encoder_device() -> torch.device:
    return _policy().device


def vae_device() -> torch.device:
    return _policy().device_for("vae")  # the CPU under --cpu-vae


def unet_dtype(*args: Any, **kwargs: Any) -> torch.dtype:
    return _policy().unet_dtype


def unet_manual_cast(weight_dtype: torch.dtype, inference_device: Any = None, supported_dtypes: Any = None
                     ) -> torch.dtype | None:
    """The dtype a UNet stored in ``weight_dtype`` computes in when that differs (ComfyUI's manual cast), else
    None: Loom's UNet computes in the device policy's dtype."""
    compute = _policy().unet_dtype
    if weight_dtype in (torch.float32, torch.float64, compute):
        return None
    return compute


def dtype_size(dtype: torch.dtype) -> int:
    """Bytes per element of ``dtype``."""
    return int(dtype.itemsize)


def xformers_enabled() -> bool:
    """False: Loom's attention is torch's scaled_dot_product_attention, never xformers."""
    return False


def pytorch_attention_enabled() -> bool:
    """True: Loom's attention is torch's scaled_dot_product_attention."""
    return True


def vae_dtype(*args: Any, **kwargs: Any) -> torch.dtype:
    return _policy().vae_dtype


def text_encoder_dtype(*args: Any, **kwargs: Any) -> torch.dtype:
    return _policy().text_dtype


def cpu_mode() -> bool:
    return get_torch_device().type == "cpu"


def mps_mode() -> bool:
    return get_torch_device().type == "mps"


def is_device_mps(device: Any) -> bool:
    return getattr(device, "type", str(device)) == "mps"


def is_device_cuda(device: Any) -> bool:
    return getattr(device, "type", str(device)) == "cuda"


def should_use_fp16(*args: Any, **kwargs: Any) -> bool:
    return _policy().unet_dtype == torch.float16


def should_use_bf16(*args: Any, **kwargs: Any) -> bool:
    return _policy().unet_dtype == torch.bfloat16


def device_supports_non_blocking(device: Any) -> bool:
    """Whether copies to `device` may be asynchronous (CUDA only, as ComfyUI decides by default)."""
    return torch.device(device).type == "cuda"


def cast_to_device(tensor: torch.Tensor, device: Any, dtype: Any, copy: bool = False) -> torch.Tensor:
    """`tensor` on `device` in `dtype` (a copy when asked)."""
    return tensor.to(device=device, dtype=dtype, copy=copy)


def get_total_memory(dev: Any = None, torch_total_too: bool = False) -> Any:
    total = int(_policy().total_memory())
    return (total, total) if torch_total_too else total


def get_free_memory(dev: Any = None, torch_free_too: bool = False) -> Any:
    free = int(_policy().free_memory())
    return (free, free) if torch_free_too else free


def soft_empty_cache(force: bool = False) -> None:
    """Release cached allocator blocks (CUDA / MPS); no-op on the CPU."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif getattr(torch, "mps", None) is not None and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def unload_all_models() -> None:
    if _loom.models is not None:
        _loom.models.unload_all()
    soft_empty_cache()


def free_memory(memory_required: int, device: Any = None, keep_loaded: Any = ()) -> None:
    if _loom.models is not None:
        _loom.models.free_memory(int(memory_required))


def load_models_gpu(models: Any, *args: Any, **kwargs: Any) -> None:
    """Loom's model handles move themselves to the device when used; nothing to do up front."""
    return None


def load_model_gpu(model: Any) -> None:
    return None


def loaded_models(only_currently_used: bool = False) -> list[Any]:
    return []


def cleanup_models(*args: Any, **kwargs: Any) -> None:
    return None


def interrupt_current_processing(value: bool = True) -> None:
    """Request (or with False, withdraw) an interrupt of the running prompt, like POST /interrupt."""
    flag = _loom.interrupt
    if flag is None:
        return
    if value:
        flag.set()
    else:
        flag.clear()


def processing_interrupted() -> bool:
    flag = _loom.interrupt
    if flag is not None and flag.is_set():
        return True
    ctx = _current()
    interrupt = getattr(ctx, "_interrupt", None) if ctx is not None else None
    return bool(interrupt is not None and interrupt.is_set())


def throw_exception_if_processing_interrupted() -> None:
    """Raise InterruptProcessingException (clearing the request) if an interrupt was requested."""
    ctx = _current()
    if ctx is not None:
        ctx.check_interrupt()
    flag = _loom.interrupt
    if flag is not None and flag.is_set():
        flag.clear()
        raise InterruptProcessingException("Processing interrupted")


def _current() -> Any:
    from executor.context import current

    return current()
