"""The demo model's world: coloured shapes on plain backgrounds, their captions and held-out pairs."""
from __future__ import annotations

from dataclasses import dataclass

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "green": (35, 165, 55),
    "blue": (35, 70, 215),
    "yellow": (245, 215, 35),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "purple": (135, 45, 175),
    "orange": (245, 135, 25),
}
"""The eight colour words and the RGB value drawn for each."""

DEFAULT_BACKGROUND = "grey"
"""Background used when a caption names none (not one of the colour words)."""

BACKGROUND_RGB: dict[str, tuple[int, int, int]] = {**COLOURS, DEFAULT_BACKGROUND: (128, 128, 128)}
"""Every background the world draws, by name."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

# Pairs never drawn in training, so that scoring them shows the words compose.
HELD_OUT_COLOUR_SHAPE: frozenset[tuple[str, str]] = frozenset(
    {("green", "triangle"), ("purple", "square"), ("orange", "circle"), ("white", "triangle")}
)
"""(shape colour, shape) pairs kept out of training."""

HELD_OUT_COLOUR_BACKGROUND: frozenset[tuple[str, str]] = frozenset(
    {("red", "green"), ("blue", "yellow"), ("yellow", "purple"), ("black", "orange")}
)
"""(shape colour, background colour) pairs kept out of training."""


@dataclass(frozen=True)
class Scene:
    """One picture of the world: a shape of a colour on a background."""

    shape: str
    colour: str
    background: str = DEFAULT_BACKGROUND

    def caption(self) -> str:
        """The canonical caption, e.g. 'a yellow square on a blue background'."""
        text = f"{_article(self.colour)} {self.colour} {self.shape}"
        if self.background == DEFAULT_BACKGROUND:
            return text
        return f"{text} on {_article(self.background)} {self.background} background"

    @property
    def held_out(self) -> bool:
        """True when this scene combines a pair that training never shows."""
        return (self.colour, self.shape) in HELD_OUT_COLOUR_SHAPE or (
            self.colour,
            self.background,
        ) in HELD_OUT_COLOUR_BACKGROUND


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def valid_scene(scene: Scene) -> bool:
    """A scene is drawable when its shape stands out from its background."""
    return (
        scene.shape in SHAPES
        and scene.colour in COLOURS
        and scene.background in BACKGROUND_RGB
        and scene.colour != scene.background
    )


def training_scenes() -> list[Scene]:
    """Every scene that training may draw (valid and not held out), in a fixed order."""
    out: list[Scene] = []
    for shape in SHAPES:
        for colour in COLOURS:
            for background in BACKGROUND_RGB:
                scene = Scene(shape, colour, background)
                if valid_scene(scene) and not scene.held_out:
                    out.append(scene)
    return out


def scoring_scenes() -> list[Scene]:
    """The scenes the score runs over: every colour with every shape, plus backgrounds, seen and held out.

    Each colour/shape pair appears on the default background; every held-out colour/background pair
    appears once; and one seen background per colour so background words are scored on seen pairs too.
    """
    out = [Scene(shape, colour) for colour in COLOURS for shape in SHAPES]
    shapes_cycle = list(SHAPES)
    for i, (colour, background) in enumerate(sorted(HELD_OUT_COLOUR_BACKGROUND)):
        out.append(Scene(shapes_cycle[i % 3], colour, background))
    names = list(COLOURS)
    for i, colour in enumerate(names):
        for step in range(1, len(names)):
            background = names[(i + step * 3) % len(names)]
            scene = Scene(shapes_cycle[i % 3], colour, background)
            if valid_scene(scene) and not scene.held_out:
                out.append(scene)
                break
    return out
