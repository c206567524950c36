"""How to test a pack's nodes without a server: `executor.testing.run_node` / `run_graph`."""
from __future__ import annotations

import pytest
import torch

from executor import PromptValidationError
from executor.testing import run_graph, run_node


def test_pack_loads_every_node(loaded) -> None:
    registry, report = loaded
    assert report.status == "loaded", report.error or report.refused
    assert report.nodes == ["ExampleTextJoin", "ExampleImageInvert", "ExampleLazySwitch", "ExampleShowText"]
    assert report.web_directory is not None and report.web_directory.endswith("web")
    assert registry.display_name_of("ExampleTextJoin") == "Join Text (example)"


def test_text_join(registry) -> None:
    run = run_node(registry.get("ExampleTextJoin"), text_a="a", text_b="b", separator=", ", repeat=2)
    assert run.result == ("a, b, a, b",)


def test_text_join_range_is_validated(registry) -> None:
    prompt = {
        "1": {"class_type": "ExampleTextJoin", "inputs": {"text_a": "a", "text_b": "b", "separator": " ",
                                                           "repeat": 11}},
        "2": {"class_type": "ExampleShowText", "inputs": {"value": ["1", 0]}},
    }
    with pytest.raises(PromptValidationError) as err:
        run_graph(registry, prompt)
    assert "1" in err.value.to_wire()["node_errors"]


def test_image_invert_full_partial_and_masked(registry) -> None:
    node = registry.get("ExampleImageInvert")
    image = torch.rand(2, 8, 6, 3)
    (full,) = run_node(node, image=image, strength=1.0).result
    assert torch.allclose(full, 1.0 - image)
    (half,) = run_node(node, image=image, strength=0.5).result
    assert torch.allclose(half, torch.full_like(image, 0.5))
    mask = torch.zeros(8, 6)
    mask[:4] = 1.0
    (masked,) = run_node(node, image=image, strength=1.0, mask=mask).result
    assert torch.allclose(masked[:, :4], 1.0 - image[:, :4]) and torch.equal(masked[:, 4:], image[:, 4:])
    assert masked.shape == image.shape and masked.dtype == torch.float32


def test_lazy_switch_runs_only_the_selected_branch(registry) -> None:
    prompt = {
        "1": {"class_type": "ExampleTextJoin", "inputs": {"text_a": "left", "text_b": "", "separator": " ",
                                                           "repeat": 1}},
        "2": {"class_type": "ExampleTextJoin", "inputs": {"text_a": "right", "text_b": "", "separator": " ",
                                                           "repeat": 1}},
        "3": {"class_type": "ExampleLazySwitch", "inputs": {"use_first": False, "first": ["1", 0],
                                                             "second": ["2", 0]}},
        "4": {"class_type": "ExampleShowText", "inputs": {"value": ["3", 0]}},
    }
    run = run_graph(registry, prompt)
    assert run.ui["4"] == {"text": ["right "]}
    assert "1" not in run.outcome.executed and "2" in run.outcome.executed
