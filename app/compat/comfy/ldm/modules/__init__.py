"""ComfyUI's `comfy.ldm.modules` for packs: only `attention` is provided."""
