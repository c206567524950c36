"""ComfyUI's `comfy` package for packs: the submodules packs use most, as thin views over Loom's engine.

Only the names listed in docs/custom-nodes.md exist; importing any other `comfy.*` module fails with the
usual ImportError naming it, and the pack's report says so.
"""
from __future__ import annotations

import importlib

# ComfyUI's own nodes.py imports these before any pack is loaded, so packs that only `import comfy` (or
# `import comfy.sample`) go on to use `comfy.samplers.KSampler`, `comfy.utils.ProgressBar`, ...; ComfyUI's `comfy.sd`
# imports the CLIP model modules and the VAE network's, so packs reach `comfy.sd1_clip.SD1ClipModel`,
# `comfy.ldm.models.autoencoder.AutoencoderKL` the same way (Easy-Use).
for _submodule in ("cli_args", "model_management", "utils", "model_patcher", "samplers", "sample", "sd", "sd1_clip",
                   "sdxl_clip", "ldm.models.autoencoder"):
    importlib.import_module(f"{__name__}.{_submodule}")
