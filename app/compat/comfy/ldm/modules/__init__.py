"""ComfyUI's `comfy.ldm.modules` for packs: `attention`, `diffusionmodules.openaimodel`, `distributions`."""
