"""ComfyUI's `comfy_extras.chainner_models` for packs written before spandrel: `model_loading.load_state_dict`."""
