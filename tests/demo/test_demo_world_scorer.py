"""The demo world's data and the pixel scorer, checked on drawn shapes."""
from __future__ import annotations

import numpy as np
import pytest

from engine.demo.draw import draw_scene, random_batch, random_image
from engine.demo.score import read_image, score_table
from engine.demo.world import (
    BACKGROUND_RGB,
    COLOURS,
    HELD_OUT_COLOUR_BACKGROUND,
    HELD_OUT_COLOUR_SHAPE,
    SHAPES,
    Scene,
    scoring_scenes,
    training_scenes,
    valid_scene,
)


def test_captions_read_naturally() -> None:
    assert Scene("circle", "red").caption() == "a red circle"
    assert Scene("square", "yellow", "blue").caption() == "a yellow square on a blue background"
    assert Scene("triangle", "orange", "orange").caption().startswith("an orange")


def test_training_never_shows_held_out_pairs() -> None:
    scenes = training_scenes()
    assert scenes, "training needs scenes"
    for scene in scenes:
        assert (scene.colour, scene.shape) not in HELD_OUT_COLOUR_SHAPE
        assert (scene.colour, scene.background) not in HELD_OUT_COLOUR_BACKGROUND
        assert valid_scene(scene)
    # every word is still seen somewhere
    assert {s.colour for s in scenes} == set(COLOURS)
    assert {s.shape for s in scenes} == set(SHAPES)
    assert {s.background for s in scenes} == set(BACKGROUND_RGB)


def test_scoring_covers_every_colour_shape_and_held_out_pair() -> None:
    scenes = scoring_scenes()
    pairs = {(s.colour, s.shape) for s in scenes}
    assert pairs == {(c, s) for c in COLOURS for s in SHAPES}
    assert HELD_OUT_COLOUR_BACKGROUND <= {(s.colour, s.background) for s in scenes}
    assert any(s.held_out for s in scenes) and any(not s.held_out for s in scenes)


def test_drawing_is_deterministic() -> None:
    a, caps_a = random_batch(training_scenes(), 32, 4, np.random.default_rng(7))
    b, caps_b = random_batch(training_scenes(), 32, 4, np.random.default_rng(7))
    assert caps_a == caps_b
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 32, 32, 3) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0


@pytest.mark.parametrize("size", [64, 96])
def test_scorer_reads_every_drawn_scene(size: int) -> None:
    rng = np.random.default_rng(size)
    results = []
    for shape in SHAPES:
        for colour in COLOURS:
            for background in BACKGROUND_RGB:
                scene = Scene(shape, colour, background)
                if valid_scene(scene):
                    results.append((scene, read_image(random_image(scene, size, rng))))
    table = score_table(results)
    assert table["all"]["colour"] == 1.0
    assert table["all"]["background"] == 1.0
    assert table["all"]["shape"] == 1.0


def test_scorer_catches_wrong_answers() -> None:
    rng = np.random.default_rng(3)
    wrong = read_image(random_image(Scene("circle", "red", "blue"), 64, rng))
    marks = wrong.matches(Scene("square", "green", "white"))
    assert marks == {"background": False, "colour": False, "shape": False}
    blank = np.full((64, 64, 3), 0.5, dtype=np.float32)
    reading = read_image(blank)
    assert reading.colour == "none" and reading.shape == "none"


def test_scorer_tolerates_noise_and_blur() -> None:
    rng = np.random.default_rng(11)
    scene = Scene("triangle", "purple", "yellow")
    image = random_image(scene, 64, rng)
    noisy = np.clip(image + rng.normal(0, 0.04, image.shape).astype(np.float32), 0, 1)
    assert all(read_image(noisy).matches(scene).values())


def test_scorer_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="H, W, 3"):
        read_image(np.zeros((8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="batch"):
        read_image(np.zeros((2, 8, 8, 3), dtype=np.float32))


@pytest.mark.parametrize("shape", SHAPES)
def test_scorer_ignores_specks_of_the_shape_colour_elsewhere(shape: str) -> None:
    # generated images can carry a few stray pixels of the shape's colour (e.g. in a corner): they must not
    # stretch the shape's bounding box and turn a circle into a "triangle"
    scene = Scene(shape, "green")
    image = np.asarray(draw_scene(scene, 128, (40.0, 40.0, 60.0)), dtype=np.float32) / 255
    green = np.array(COLOURS["green"], dtype=np.float32) / 255
    image[2:5, 2:5] = green
    image[120:123, 3:5] = green
    reading = read_image(image)
    assert reading.shape == shape, reading
    # ...while a shape that is really spread out still reads by its own blob's fill
    assert abs(reading.fill - {"circle": 0.785, "square": 1.0, "triangle": 0.5}[shape]) < 0.06
