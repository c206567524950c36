"""ComfyUI's `comfy_execution` package for packs (graph helpers of Loom's executor)."""
