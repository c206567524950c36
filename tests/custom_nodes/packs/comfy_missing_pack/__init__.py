import comfy.ldm.flux.layers  # noqa: F401  (a ComfyUI module Loom does not provide)

NODE_CLASS_MAPPINGS = {}
