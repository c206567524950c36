"""The trained demo model draws what the prompt says, through Loom's real nodes and example workflows."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from demo_harness import NATIVE, DemoGraphRunner, with_prompt, workflow

from engine.demo.draw import draw_scene
from engine.demo.score import read_image, score_table
from engine.demo.world import Scene, scoring_scenes

FAST_SCENES = [
    Scene("circle", "red"),
    Scene("square", "yellow", "green"),
    Scene("triangle", "blue", "white"),
    Scene("circle", "purple", "orange"),
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoGraphRunner]:
    r = DemoGraphRunner(tmp_path_factory.mktemp("loom"))
    yield r
    r.close()


def test_fast_prompts_get_colour_and_background_right(runner: DemoGraphRunner) -> None:
    wrong = []
    for scene in FAST_SCENES:
        reading = read_image(runner.txt2img(scene.caption(), seed=1))
        marks = reading.matches(scene)
        if not (marks["colour"] and marks["background"]):
            wrong.append(f"{scene.caption()!r} -> {reading}")
    assert not wrong, "demo model drew the wrong colours: " + "; ".join(wrong)


@pytest.mark.slow
def test_score_over_every_colour_and_shape(runner: DemoGraphRunner, tmp_path: Path) -> None:
    results = runner.score(scoring_scenes(), seeds=(0, 1))
    table = score_table([(s, r) for s, r, _ in results])
    print(json.dumps(table, indent=1))
    per_image = float(np.median(runner.seconds[1:]))
    print(f"median seconds per native-size image (the txt2img workflow): {per_image:.2f}")
    assert table["all"]["colour"] >= 0.9, table
    assert table["all"]["background"] >= 0.9, table
    assert table["all"]["shape"] >= 0.8, table
    assert table["held_out"]["colour"] >= 0.75, table
    assert table["held_out"]["shape"] >= 0.75, table


def _image_to_input(runner: DemoGraphRunner, name: str, pixels: np.ndarray) -> str:
    return runner.add_input(name, pixels)


@pytest.mark.slow
def test_img2img_turns_a_red_circle_blue(runner: DemoGraphRunner) -> None:
    source = runner.txt2img("a red circle", seed=3)
    assert read_image(source).colour == "red"
    name = _image_to_input(runner, "demo_red_circle.png", source)
    graph = with_prompt(workflow("img2img"), "a blue circle", seed=5, denoise=0.6)
    for node in graph.values():
        if node["class_type"] == "LoadImage":
            node["inputs"]["image"] = name
    result = runner.run(graph)
    reading = read_image(result)
    assert reading.colour == "blue", reading
    assert reading.background == "grey", reading


@pytest.mark.slow
def test_inpaint_puts_a_yellow_square_in_the_masked_side(runner: DemoGraphRunner) -> None:
    # a red circle on the right half of a white picture; repaint the right half as a yellow square
    n = NATIVE
    box = (0.6 * n, 0.3 * n, 0.34 * n)
    init = np.asarray(draw_scene(Scene("circle", "red", "white"), n, box), dtype=np.float32) / 255
    mask = np.zeros((n, n, 3), dtype=np.float32)
    mask[:, n // 2:] = 1.0
    init_name = _image_to_input(runner, "demo_inpaint_init.png", init)
    mask_name = _image_to_input(runner, "demo_inpaint_mask.png", mask)
    graph = with_prompt(workflow("inpaint"), "a yellow square on a white background", seed=2)
    for node in graph.values():
        if node["class_type"] == "LoadImage":
            node["inputs"]["image"] = init_name
        elif node["class_type"] == "LoadImageMask":
            node["inputs"]["image"] = mask_name
    result = runner.run(graph)
    right = read_image(result[:, n // 2:])
    assert right.colour == "yellow", right
    kept = np.abs(result[:, : 3 * n // 8] - init[:, : 3 * n // 8]).mean()
    assert kept < 0.04, f"unmasked side changed by {kept:.3f} on average"


def test_workflows_use_the_demo_checkpoint() -> None:
    for name in ("txt2img", "img2img", "inpaint"):
        graph = json.loads((Path(__file__).resolve().parents[2] / "workflows" / f"{name}.json").read_text())
        loaders = [n for n in graph.values() if n["class_type"] == "CheckpointLoaderSimple"]
        assert [n["inputs"]["ckpt_name"] for n in loaders] == ["loom-demo-shapes.safetensors"], name
