"""ComfySwitchNode (lazy), ImageCompare (ui payload) and ResolutionSelector, through the real registry."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def test_specs(registry: Any) -> None:
    info = registry.object_info()
    sw = info["ComfySwitchNode"]
    assert sw["display_name"] == "Switch" and sw["category"] == "logic" and sw["experimental"] is True
    assert sw["input_order"]["required"] == ["switch", "on_false", "on_true"]
    assert sw["input"]["required"]["on_true"][1]["lazy"] is True
    assert sw["output"] == ["COMFY_MATCHTYPE_V3"] and sw["output_name"] == ["output"]
    ic = info["ImageCompare"]
    assert ic["output_node"] is True and ic["output"] == [] and set(ic["input"]["optional"]) == {"image_a", "image_b"}
    rs = info["ResolutionSelector"]
    assert rs["output_name"] == ["width", "height"] and rs["input"]["required"]["aspect_ratio"][0][0] == "1:1 (Square)"


def test_switch_runs_only_the_chosen_branch(registry: Any) -> None:
    from executor.testing import run_graph

    def graph(switch: bool) -> dict[str, Any]:
        return {
            "1": {"class_type": "StringConcatenate", "inputs": {"string_a": "a", "string_b": "b", "delimiter": "+"}},
            # an invalid pattern: RegexReplace raises if this branch is ever run
            "2": {"class_type": "RegexReplace", "inputs": {"string": "x", "regex_pattern": "(", "replace": ""}},
            "3": {"class_type": "ComfySwitchNode", "inputs": {"switch": switch, "on_false": ["1", 0],
                                                              "on_true": ["2", 0]}},
            "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
        }

    run = run_graph(registry, graph(False))
    assert run.ui["4"]["text"] == ["a+b"] and "2" not in run.outputs
    import pytest

    from executor.errors import GraphRunError
    with pytest.raises(GraphRunError, match="regex_pattern"):  # now the invalid-regex branch runs
        run_graph(registry, graph(True))


def test_image_compare_saves_both_sides_to_temp(registry: Any, services: Any) -> None:
    cls = registry.get("ImageCompare")
    a, b = torch.full((2, 2, 3, 3), 0.5), torch.zeros(1, 2, 3, 3)
    ui = cls().compare(image_a=a, image_b=b, compare_view={})["ui"]
    assert set(ui) == {"a_images", "b_images"} and len(ui["a_images"]) == 2 and len(ui["b_images"]) == 1
    first = ui["a_images"][0]
    assert first["type"] == "temp" and first["filename"].startswith("comfy.compare.a_temp_")
    pixels = np.asarray(Image.open(Path(services.paths.temp_dir) / first["subfolder"] / first["filename"]))
    assert pixels.shape == (2, 3, 3) and np.all(pixels == 127)
    assert cls().compare(image_b=b, compare_view={})["ui"]["a_images"] == []


def test_resolution_selector(registry: Any) -> None:
    node = registry.get("ResolutionSelector")()
    assert node.execute("1:1 (Square)", 1.0, 8, 256) == (1024, 1024)
    # 16:9 at 1 MP: scale = sqrt(2^20 / 144) = 85.33 -> 1365.3 and 768, to multiples of 8
    assert node.execute("16:9 (Widescreen)", 1.0, 8, 256) == (1368, 768)
    assert node.execute("2:3 (Portrait Photo)", 2.0, 64, 256) == (1152, 1792)  # 1182.4 / 1773.6 to 64s
    # 21:9 at 0.1 MP gives 496 x 208; 208 < 256, so the smallest k (multiple of 8) with 9k >= 256: k = 32
    assert node.execute("21:9 (Ultrawide)", 0.1, 8, 256) == (672, 288)


def test_image_compare_accepts_the_editors_widget_value(registry: Any) -> None:
    from executor.testing import run_graph

    # the editor's compare widget holds ["", ""] and sends array widget values wrapped as {"__value__": [...]}
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageCompare", "inputs": {"image_a": ["1", 0], "compare_view": {"__value__": ["", ""]}}},
    }
    run = run_graph(registry, prompt)
    assert len(run.ui["2"]["a_images"]) == 1 and run.ui["2"]["b_images"] == []
