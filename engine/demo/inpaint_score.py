"""Inpainting score cases for the demo's 9-channel variant and a pixel scorer for their results.

Two kinds of case per scene of the txt2img score set (`engine.demo.world.scoring_scenes`): `beside`, a
picture with another shape on its left and the right half masked (the shipped example mask), and `replace`,
another shape in the middle under a mask that covers it with a margin. The prompt asks for the scene. What was painted is
read like a txt2img image (`engine.demo.score.read_image`: colour, shape, background), on the mask's box for
`beside` (the other shape stays outside it) and on the whole picture for `replace` (its border is kept
background, and the model may fill the mask to its edges); outside the mask the result is compared with the
source (mean absolute difference in 0..1, PSNR in dB).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.demo.draw import draw_shapes
from engine.demo.inpaint_data import Rect, rect_mask
from engine.demo.score import Reading, read_image
from engine.demo.world import COLOURS, SHAPES, Scene, scoring_scenes

KINDS = ("beside", "replace")


@dataclass(frozen=True)
class InpaintCase:
    """A source picture, the mask's rectangle and the scene the prompt asks for inside it."""

    scene: Scene
    kind: str
    source: np.ndarray
    rect: Rect

    @property
    def mask(self) -> np.ndarray:
        """[H, W] float32, 1 = repaint."""
        return rect_mask(self.rect, self.source.shape[0])

    @property
    def prompt(self) -> str:
        return self.scene.caption()


def _other(scene: Scene) -> tuple[str, str]:
    """A shape and colour that differ from the scene's (and from its background), chosen deterministically."""
    names = list(COLOURS)
    i = names.index(scene.colour)
    colour = next(c for c in names[i + 1:] + names[:i] if c not in (scene.colour, scene.background))
    shape = SHAPES[(SHAPES.index(scene.shape) + 1) % len(SHAPES)]
    return shape, colour


def inpaint_case(scene: Scene, kind: str, size: int = 128) -> InpaintCase:
    """The case of `kind` ("beside" or "replace") for `scene` at `size` pixels."""
    shape, colour = _other(scene)
    if kind == "beside":
        box, rect = (0.06 * size, 0.3 * size, 0.38 * size), (size // 2, 0, size, size)
    elif kind == "replace":
        box = (0.25 * size, 0.25 * size, 0.5 * size)
        rect = (round(0.19 * size), round(0.19 * size), round(0.81 * size), round(0.81 * size))
    else:
        raise ValueError(f"unknown inpaint case kind {kind!r}; known: {', '.join(KINDS)}")
    source = np.asarray(draw_shapes(scene.background, [(shape, colour, box)], size), dtype=np.float32) / 255.0
    return InpaintCase(scene, kind, source, rect)


def inpaint_cases(size: int = 128) -> list[InpaintCase]:
    """Every score scene in both kinds."""
    return [inpaint_case(scene, kind, size) for scene in scoring_scenes() for kind in KINDS]


@dataclass(frozen=True)
class InpaintReading:
    """What the scorer sees: the reading inside the mask's box and how far the outside moved."""

    inside: Reading
    outside_mad: float
    outside_psnr: float

    def matches(self, case: InpaintCase) -> dict[str, bool]:
        return self.inside.matches(case.scene)


def read_inpaint(case: InpaintCase, result: np.ndarray) -> InpaintReading:
    """Score one result image ([H, W, 3] float 0..1) against its case."""
    image = np.asarray(result, dtype=np.float32)
    if image.shape != case.source.shape:
        raise ValueError(f"result is {image.shape}, the case's source is {case.source.shape}")
    x0, y0, x1, y1 = case.rect if case.kind == "beside" else (0, 0, image.shape[1], image.shape[0])
    inside = read_image(image[y0:y1, x0:x1])
    keep = case.mask < 0.5
    diff = image[keep] - case.source[keep]
    mse = float((diff**2).mean())
    return InpaintReading(inside, float(np.abs(diff).mean()), 10.0 * math.log10(1.0 / max(mse, 1e-10)))


def inpaint_table(rows: list[tuple[InpaintCase, InpaintReading]]) -> dict[str, dict[str, float]]:
    """Per group (all / seen / held_out, and per kind): inside colour, shape and background accuracy, mean
    outside difference and PSNR, image count."""
    groups: dict[str, list[tuple[InpaintCase, InpaintReading]]] = {
        "all": rows,
        "seen": [r for r in rows if not r[0].scene.held_out],
        "held_out": [r for r in rows if r[0].scene.held_out],
    }
    for kind in KINDS:
        groups[kind] = [r for r in rows if r[0].kind == kind]
    table: dict[str, dict[str, float]] = {}
    for name, items in groups.items():
        if not items:
            continue
        marks = [reading.matches(case) for case, reading in items]
        row = {k: sum(m[k] for m in marks) / len(marks) for k in ("colour", "shape", "background")}
        row["outside_mad"] = float(np.mean([r.outside_mad for _, r in items]))
        row["outside_psnr"] = float(np.mean([r.outside_psnr for _, r in items]))
        row["count"] = float(len(items))
        table[name] = row
    return table
