"""Training examples for the demo's 9-channel inpainting variant: a target image, a mask and a caption.

Each example says "paint this inside the mask, keep the rest": a base picture (the background, sometimes
another shape anywhere) and a repaint layer (the background with the captioned shape inside the mask) are
composed through a rectangular mask. Usually the mask holds the whole captioned shape with a margin (sides
sometimes running to the image edge); sometimes it covers only part of a shape that the base already shows, so
the model learns to complete it; sometimes the mask comes first (a side of the picture cut at 35-65%, like the
example's right-half mask, or a box of 40-85% of each side) and the shape is drawn inside it, so the masks do not
always follow the shapes. The caption names the captioned
shape; half the time without its background ("a yellow square"), which the model then reads from the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.demo.draw import draw_shapes, shape_box
from engine.demo.world import DEFAULT_BACKGROUND, Scene

Rect = tuple[int, int, int, int]
"""Mask rectangle in pixels: left, top, right, bottom (right/bottom exclusive)."""


@dataclass(frozen=True)
class InpaintExample:
    """One example: target pixels [H, W, 3] float 0..1, mask [H, W] float 0/1 (1 = repaint), caption."""

    image: np.ndarray
    mask: np.ndarray
    caption: str


def _margin(rng: np.random.Generator, size: int) -> float:
    """A mask margin beyond a shape's box: a quarter of the time to the image edge."""
    return float(size) if rng.random() < 0.25 else float(rng.uniform(0.02, 0.25)) * size


def mask_around(box: tuple[float, float, float], size: int, rng: np.random.Generator) -> Rect:
    """A rectangle holding the whole box plus a random margin on each side (clipped to the image)."""
    left, top, side = box
    x0, y0 = left - _margin(rng, size), top - _margin(rng, size)
    x1, y1 = left + side + _margin(rng, size), top + side + _margin(rng, size)
    return _clip((x0, y0, x1, y1), size)


def mask_over_part(box: tuple[float, float, float], size: int, rng: np.random.Generator) -> Rect:
    """A rectangle over one side of the box (30-80% of it cut off), spanning the box the other way."""
    left, top, side = box
    cut = float(rng.uniform(0.3, 0.8)) * side
    across0, across1 = -_margin(rng, size), side + _margin(rng, size)
    direction = int(rng.integers(0, 4))
    if direction == 0:  # right part
        rect = (left + side - cut, top + across0, left + side + _margin(rng, size), top + across1)
    elif direction == 1:  # left part
        rect = (left - _margin(rng, size), top + across0, left + cut, top + across1)
    elif direction == 2:  # bottom part
        rect = (left + across0, top + side - cut, left + across1, top + side + _margin(rng, size))
    else:  # top part
        rect = (left + across0, top - _margin(rng, size), left + across1, top + cut)
    return _clip(rect, size)


def _clip(rect: tuple[float, float, float, float], size: int) -> Rect:
    x0, y0, x1, y1 = rect
    return (max(0, int(np.floor(x0))), max(0, int(np.floor(y0))),
            min(size, int(np.ceil(x1))), min(size, int(np.ceil(y1))))


def free_rect(size: int, rng: np.random.Generator) -> Rect:
    """A mask chosen before the shape: half the time one side of the picture (cut at 35-65%), else a box."""
    if rng.random() < 0.5:
        cut = int(round(float(rng.uniform(0.35, 0.65)) * size))
        return ((cut, 0, size, size), (0, 0, cut, size), (0, cut, size, size), (0, 0, size, cut))[int(rng.integers(0, 4))]
    w, h = (int(round(float(rng.uniform(0.4, 0.85)) * size)) for _ in range(2))
    x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
    return (x0, y0, x0 + w, y0 + h)


def box_inside(rect: Rect, size: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """A shape's square box inside `rect` (60-90% of its shorter side, at most 72% of the picture)."""
    x0, y0, x1, y1 = rect
    side = min(0.72 * size, float(rng.uniform(0.6, 0.9)) * min(x1 - x0, y1 - y0))
    return (float(rng.uniform(x0, x1 - side)), float(rng.uniform(y0, y1 - side)), side)


def rect_mask(rect: Rect, size: int) -> np.ndarray:
    """[size, size] float32 mask, 1 inside `rect`."""
    mask = np.zeros((size, size), dtype=np.float32)
    x0, y0, x1, y1 = rect
    mask[y0:y1, x0:x1] = 1.0
    return mask


def inpaint_example(scenes: list[Scene], size: int, rng: np.random.Generator, *, partial_prob: float,
                    distractor_prob: float, short_caption_prob: float, free_prob: float = 0.0) -> InpaintExample:
    """One random example; the captioned shape comes from `scenes`, the other shape from those with its
    background (so held-out pairs stay out of training when `scenes` leaves them out). `free_prob`: the share
    of masks chosen before the shape (`free_rect`); of the rest, `partial_prob` cover part of a shape."""
    scene = scenes[int(rng.integers(0, len(scenes)))]
    partial = False
    if rng.random() < free_prob:
        rect = free_rect(size, rng)
        box = box_inside(rect, size, rng)
    else:
        box = shape_box(rng, size)
        partial = rng.random() < partial_prob
        rect = mask_over_part(box, size, rng) if partial else mask_around(box, size, rng)
    target = (scene.shape, scene.colour, box)
    base: list[tuple[str, str, tuple[float, float, float]]] = []
    if rng.random() < distractor_prob:
        same_bg = [s for s in scenes if s.background == scene.background]
        other = same_bg[int(rng.integers(0, len(same_bg)))]
        base.append((other.shape, other.colour, shape_box(rng, size)))
    if partial:
        base.append(target)
    mask = rect_mask(rect, size)
    below = np.asarray(draw_shapes(scene.background, base, size), dtype=np.float32) / 255.0
    above = np.asarray(draw_shapes(scene.background, [target], size), dtype=np.float32) / 255.0
    image = np.where(mask[..., None] > 0, above, below)
    caption = scene.caption()
    if rng.random() < short_caption_prob:
        caption = Scene(scene.shape, scene.colour, DEFAULT_BACKGROUND).caption()
    return InpaintExample(image, mask, caption)


def inpaint_batch(scenes: list[Scene], size: int, count: int, rng: np.random.Generator, *,
                  partial_prob: float, distractor_prob: float, short_caption_prob: float,
                  free_prob: float = 0.0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`count` examples: images [N, H, W, 3], masks [N, H, W] and captions."""
    examples = [inpaint_example(scenes, size, rng, partial_prob=partial_prob, distractor_prob=distractor_prob,
                                short_caption_prob=short_caption_prob, free_prob=free_prob)
                for _ in range(count)]
    return (np.stack([e.image for e in examples]), np.stack([e.mask for e in examples]),
            [e.caption for e in examples])
