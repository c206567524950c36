"""ComfyUI's `comfy.k_diffusion` package for packs: `sampling` and `utils` over Loom's `engine.sampling`."""
