"""Loom's example custom node pack: the V1 node contract in three small nodes (and an output node).

A pack is a folder in `custom_nodes/` (or a single `.py` file) exposing:

* `NODE_CLASS_MAPPINGS`: `{node id: class}`; ids are public API, keep them unique (prefix with the pack).
* `NODE_DISPLAY_NAME_MAPPINGS` (optional): `{node id: menu title}`.
* `WEB_DIRECTORY` (optional): folder of `.js` frontend extensions, served at `/extensions/<pack>/`.

Loom imports it as `custom_nodes.example_pack`, so modules inside the pack use relative imports
(`from .nodes import ...`). See docs/custom-nodes.md for the whole contract.
"""
from .nodes import ExampleImageInvert, ExampleLazySwitch, ExampleShowText, ExampleTextJoin

NODE_CLASS_MAPPINGS = {
    "ExampleTextJoin": ExampleTextJoin,
    "ExampleImageInvert": ExampleImageInvert,
    "ExampleLazySwitch": ExampleLazySwitch,
    "ExampleShowText": ExampleShowText,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ExampleTextJoin": "Join Text (example)",
    "ExampleImageInvert": "Invert Image (example)",
    "ExampleLazySwitch": "Lazy Switch (example)",
    "ExampleShowText": "Show Text (example)",
}

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
