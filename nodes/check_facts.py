"""What model files say about themselves, from their safetensors headers only, for the validation checks.

`ModelFiles` resolves a (models folder, file name) pair the way the loader nodes do, reads the header once per
(path, mtime) through `engine.safetensors_header`, and derives the facts `nodes.checks` compares: widths and
channel counts, and the model family of checkpoints, diffusion models and text encoders.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import EngineError
from engine.paths import ModelPaths
from engine.safetensors_header import SafetensorsHeaderError, read_safetensors_header

__all__ = ["HeaderFacts", "UnetFacts", "ModelFiles"]

Shapes = Mapping[str, tuple[int, ...]]
_CHECKPOINT_UNET = "model.diffusion_model."


@dataclass(frozen=True)
class HeaderFacts:
    """Widths and channel counts a header shows (None where it does not say), plus its shapes and metadata."""

    shapes: Shapes
    metadata: Mapping[str, str]
    latent_channels: int | None = None
    context_dim: int | None = None
    text_width: int | None = None
    vae_channels: int | None = None


@dataclass(frozen=True)
class UnetFacts:
    """The family of a UNet (checkpoint or diffusion-model file), its config and its parameter shapes."""

    family: str
    unet_config: Any = None
    unet_shapes: Shapes = field(default_factory=dict)


def header_facts(shapes: Shapes, metadata: Mapping[str, str]) -> HeaderFacts:
    """UNet latent channels and cross-attention width, summed text-encoder widths, VAE latent channels."""
    unet_prefix = next((p for p in (_CHECKPOINT_UNET, "") if f"{p}out.2.weight" in shapes), None)
    latent = context = None
    if unet_prefix is not None:
        latent = int(shapes[f"{unet_prefix}out.2.weight"][0])
        to_k = sorted(k for k in shapes if k.startswith(unet_prefix) and k.endswith("attn2.to_k.weight"))
        if to_k:
            context = int(shapes[to_k[0]][1])
    widths = [int(shapes[k][0]) for k in sorted(shapes)
              if k.endswith(("text_model.final_layer_norm.weight", "ln_final.weight"))]
    vae = next((int(shapes[f"{p}decoder.conv_in.weight"][1]) for p in ("first_stage_model.", "", "vae.")
                if f"{p}decoder.conv_in.weight" in shapes), None)
    return HeaderFacts(shapes, metadata, latent, context, sum(widths) if widths else None, vae)


class ModelFiles:
    """Header facts of the files in the model folders, cached by path and modification time.

    Within one validation pass (`new_pass()` starts one) each file is looked up and stat'ed once, however many
    checks ask about it; a new pass sees files that were added, replaced or removed since."""

    def __init__(self, paths: ModelPaths) -> None:
        self.paths = paths
        self._headers: dict[tuple[str, float], HeaderFacts | None] = {}
        self._unets: dict[tuple[str, str, float], UnetFacts | None] = {}
        self._located: dict[tuple[str, str], tuple[str, float] | None] = {}

    def new_pass(self) -> None:
        """Forget where files were found (call at the start of each validation)."""
        self._located.clear()

    def _locate(self, folder: str, name: object) -> tuple[str, float] | None:
        """(path, mtime) of the .safetensors file `name` in `folder`, once per pass; None if absent / other format."""
        if not isinstance(name, str):
            return None
        key = (folder, name)
        if key not in self._located:
            found: tuple[str, float] | None = None
            try:
                path = self.paths.get_full_path(folder, name)
                if path and path.endswith((".safetensors", ".sft")):
                    found = (path, os.path.getmtime(path))
            except (ValueError, OSError):
                found = None
            self._located[key] = found
        return self._located[key]

    def path(self, folder: str, name: object) -> str | None:
        """The .safetensors file `name` in `folder`, or None (other formats are not read before loading)."""
        located = self._locate(folder, name)
        return located[0] if located else None

    def header(self, folder: str, name: object) -> HeaderFacts | None:
        """The facts of one file's header; None when it is missing or unreadable (its loader reports that)."""
        key = self._locate(folder, name)
        if key is None:
            return None
        path = key[0]
        if key not in self._headers:
            try:
                header = read_safetensors_header(path)
            except SafetensorsHeaderError:
                self._headers[key] = None
            else:
                self._headers[key] = header_facts(header.shapes(), header.metadata)
        return self._headers[key]

    def unet(self, folder: str, name: object, *, checkpoint: bool) -> UnetFacts | None:
        """Family facts of a checkpoint (UNet under ``model.diffusion_model.``) or a diffusion-model file."""
        facts = self.header(folder, name)
        located = self._locate(folder, name)
        if facts is None or located is None:
            return None
        key = (folder, *located)
        if key not in self._unets:
            prefix = _CHECKPOINT_UNET
            if not checkpoint and f"{_CHECKPOINT_UNET}input_blocks.0.0.weight" not in facts.shapes:
                prefix = ""
            self._unets[key] = _unet_facts(facts, prefix)
        return self._unets[key]

    def text_encoder_family(self, folder: str, names: Sequence[object], clip_type: str) -> str | None:
        """The family a CLIPLoader / DualCLIPLoader `clip_type` gives these text-encoder files, or None."""
        from engine.clip_files import classify_towers, tower_layout

        layouts = []
        for name in names:
            facts = self.header(folder, name)
            layout = tower_layout(facts.shapes) if facts is not None else None
            if layout is None:
                return None
            layouts.append(layout)
        try:
            family, _ = classify_towers(clip_type, layouts, [str(n) for n in names])
        except EngineError:  # a type / file combination the loader node refuses with its own message
            return None
        return family.name


def _unet_facts(facts: HeaderFacts, prefix: str) -> UnetFacts | None:
    from engine.detect import detect_family_of_unet

    unet = {k[len(prefix):]: v for k, v in facts.shapes.items() if k.startswith(prefix)}
    try:
        family, cfg, _ = detect_family_of_unet(unet, facts.metadata)
    except (EngineError, ValueError, KeyError, IndexError):  # unknown layouts are reported by the loader node
        return None
    return UnetFacts(family.name, cfg, unet)
