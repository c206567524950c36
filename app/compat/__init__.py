"""ComfyUI module shims for custom node packs (`folder_paths`, `comfy.*`, `nodes`, `server`, ...).

Loaded only for custom nodes, by `app.custom_nodes.load_custom_nodes` through `CompatEnvironment`
(`_environment.py`); Loom's core never imports anything from here. Files whose names start with `_` are
the loader's machinery; the others are executed under their ComfyUI module names.
"""
