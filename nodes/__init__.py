"""Loom's built-in nodes: ComfyUI names, inputs and outputs, as thin adapters over `engine`."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from executor.registry import NodeRegistry
    from nodes.services import NodeServices

__all__ = ["register_builtin_nodes", "builtin_node_classes", "CATEGORY_MODULES"]

# one module per category; each exposes NODES (a list of node classes)
CATEGORY_MODULES: tuple[str, ...] = (
    "nodes.loaders",
    "nodes.text_encoders",
    "nodes.conditioning",
    "nodes.latent",
    "nodes.latent_ops",
    "nodes.vae",
    "nodes.sampling",
    "nodes.image",
    "nodes.image_filters",
    "nodes.mask",
    "nodes.io",
    "nodes.primitives",
    "nodes.families",
    "nodes.custom_sampling",
    "nodes.custom_samplers",
    "nodes.custom_sigmas",
    "nodes.model_patches",
    "nodes.upscale",
    "nodes.batch",
    "nodes.strings",
    "nodes.image_utils",
    "nodes.latent_utils",
    "nodes.save_animated",
    "nodes.template_staples",
    "nodes.dynamic_staples",
    "nodes.custom_samplers_extra",
    "nodes.custom_schedulers_extra",
    "nodes.guidance_patches",
    "nodes.guiders_extra",
    "nodes.flow_families",
    "nodes.adapters",
    "nodes.clip_vision",
    "nodes.model_merging",
    "nodes.model_saving",
    "nodes.extra_loaders",
    "nodes.attention_patches",
    "nodes.hooks",
    "nodes.hook_attach",
    "nodes.audio",
    "nodes.audio_edit",
    "nodes.save_advanced",
    "nodes.utility_staples",
    "nodes.conditioning_files",
    "nodes.video",
)


def builtin_node_classes() -> dict[str, type]:
    """Every unbound built-in class by node id (class name), in catalogue order."""
    classes: dict[str, type] = {}
    for module_name in CATEGORY_MODULES:
        module = importlib.import_module(module_name)
        for cls in module.NODES:
            classes[cls.__name__] = cls
    return classes


def bind(cls: type, services: NodeServices) -> type:
    """A subclass of `cls` carrying `services`, so one registry's nodes see that instance's folders."""
    return type(cls.__name__, (cls,), {"services": services, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})


def register_builtin_nodes(registry: NodeRegistry, services: NodeServices) -> None:
    """Register every built-in node class on `registry`, bound to `services` (see docs/architecture.md)."""
    for name, cls in builtin_node_classes().items():
        display = getattr(cls, "DISPLAY_NAME", None) or name
        registry.register(name, bind(cls, services), display_name=display, source="builtin")
