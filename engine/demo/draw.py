"""Deterministic, anti-aliased drawings of demo-world scenes (PIL + numpy, no torch)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from engine.demo.world import BACKGROUND_RGB, COLOURS, Scene

SUPERSAMPLE = 4
"""Shapes are drawn this many times larger and downsampled, which anti-aliases their edges."""


def shape_box(rng: np.random.Generator, size: int) -> tuple[float, float, float]:
    """A random square bounding box (left, top, side) that keeps a shape fully inside the image."""
    side = float(rng.uniform(0.38, 0.72)) * size
    margin = 0.06 * size
    left = float(rng.uniform(margin, size - margin - side))
    top = float(rng.uniform(margin, size - margin - side))
    return left, top, side


def draw_scene(scene: Scene, size: int, box: tuple[float, float, float]) -> Image.Image:
    """Draw `scene` as an RGB image of `size` x `size` pixels with its shape filling `box`."""
    return draw_shapes(scene.background, [(scene.shape, scene.colour, box)], size)


def draw_shapes(background: str, shapes: list[tuple[str, str, tuple[float, float, float]]],
                size: int) -> Image.Image:
    """Draw (shape, colour, box) items in order (later ones on top) on `background`, `size` x `size` px."""
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUND_RGB[background])
    pen = ImageDraw.Draw(image)
    for shape, colour_name, box in shapes:
        left, top, side = (v * SUPERSAMPLE for v in box)
        colour = COLOURS[colour_name]
        if shape == "circle":
            pen.ellipse([left, top, left + side, top + side], fill=colour)
        elif shape == "square":
            pen.rectangle([left, top, left + side, top + side], fill=colour)
        elif shape == "triangle":
            pen.polygon([(left + side / 2, top), (left + side, top + side), (left, top + side)], fill=colour)
        else:
            raise ValueError(f"unknown shape {shape!r}; the demo world draws circle, square, triangle")
    return image.resize((size, size), Image.Resampling.BOX)


def random_image(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """`scene` at a random place and size, as float32 [H, W, 3] in 0..1."""
    image = draw_scene(scene, size, shape_box(rng, size))
    return np.asarray(image, dtype=np.float32) / 255.0


def random_batch(
    scenes: list[Scene], size: int, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[str]]:
    """`count` random scenes drawn from `scenes`: images [N, H, W, 3] in 0..1 and their captions."""
    picks = rng.integers(0, len(scenes), size=count)
    images = np.stack([random_image(scenes[i], size, rng) for i in picks])
    return images, [scenes[i].caption() for i in picks]
