"""ComfyUI's `comfy.ldm` for packs: only `comfy.ldm.modules.attention` is provided."""
