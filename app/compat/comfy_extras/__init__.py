"""ComfyUI's `comfy_extras` package for packs: the `nodes_*` modules listed in `app/compat/_extras.py`."""
