"""ComfyUI's `comfy.cli_args` for packs: `args` mirrors Loom's parsed command line (read-only intent)."""
from __future__ import annotations

import enum
from types import SimpleNamespace
from typing import Any

from app.compat._environment import handles_for

_loom = handles_for(__name__)  # this Loom instance's objects


class LatentPreviewMethod(enum.Enum):
    NoPreviews = "none"
    Auto = "auto"
    Latent2RGB = "latent2rgb"
    TAESD = "taesd"


class PerformanceFeature(enum.Enum):
    Fp16Accumulation = "fp16_accumulation"
    Fp8MatrixMultiplication = "fp8_matrix_mult"
    CublasOps = "cublas_ops"
    AutoTune = "autotune"


_DEFAULTS: dict[str, Any] = {
    "listen": "127.0.0.1", "port": 8188, "cpu": False, "preview_method": LatentPreviewMethod.NoPreviews,
    "preview_size": 512, "disable_metadata": False, "disable_all_custom_nodes": False,
    "whitelist_custom_nodes": [], "multi_user": False, "verbose": "INFO", "lowvram": False, "novram": False,
    "highvram": False, "gpu_only": False, "normalvram": False, "force_fp16": False, "force_fp32": False,
    "fp16_vae": False, "fp32_vae": False, "bf16_vae": False, "cpu_vae": False, "deterministic": False,
    "fast": set(), "dont_print_server": False, "disable_smart_memory": False, "directml": None,
    "use_split_cross_attention": False, "use_quad_cross_attention": False, "use_pytorch_cross_attention": True,
    "disable_xformers": True, "use_sage_attention": False, "use_flash_attention": False,
    "force_upcast_attention": False, "dont_upcast_attention": False, "base_directory": None,
    "output_directory": None, "input_directory": None, "temp_directory": None, "user_directory": None,
    "extra_model_paths_config": [], "enable_cors_header": None, "max_upload_size": 100, "cuda_device": None,
    "default_device": None, "reserve_vram": None, "cache_classic": False, "cache_lru": 0, "cache_none": False,
    "disable_api_nodes": False, "front_end_version": "comfyanonymous/ComfyUI@latest", "front_end_root": None,
    "windows_standalone_build": False, "quick_test_for_ci": False, "enable_manager": False,
    "database_url": None, "comfy_api_base": "https://api.comfy.org", "tls_keyfile": None, "tls_certfile": None,
    "auto_launch": False, "disable_auto_launch": True, "log_stdout": False, "async_offload": None,
}


class _Args(SimpleNamespace):
    """ComfyUI's parsed `args`; assigning `preview_method` (ComfyUI-Manager's setting) changes the running
    server's default preview method."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "preview_method" and "preview_method" in self.__dict__:
            value = LatentPreviewMethod(value.value if isinstance(value, LatentPreviewMethod) else value)
            if value != self.__dict__["preview_method"]:
                _apply_preview_method(value)
        super().__setattr__(name, value)


def _apply_preview_method(method: LatentPreviewMethod) -> None:
    server = _loom.prompt_server
    loom = getattr(server, "loom", None) if server is not None else None
    if loom is None:
        raise NotImplementedError(
            f"comfy.cli_args.args.preview_method = {method}: no Loom server runs here to apply it to; pass "
            f"--preview-method, or extra_data.preview_method per prompt")
    loom.set_preview_method(method.value)


def _build_args() -> _Args:
    values = dict(_DEFAULTS)
    config = _loom.config
    if config is not None:
        for name in list(values):
            if hasattr(config, name):
                values[name] = getattr(config, name)
        method = getattr(config, "preview_method", None)
        if isinstance(method, str):
            try:
                values["preview_method"] = LatentPreviewMethod(method)
            except ValueError:
                pass
    return _Args(**values)


args = _build_args()
