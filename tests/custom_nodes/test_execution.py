"""Pack nodes run through Loom's real validator and executor: V3 nodes, lazy inputs, errors, progress."""
from __future__ import annotations

from typing import Any

from executor import CollectingSink, PromptExecutor, validate_prompt


def run(registry: Any, prompt: dict[str, Any], prompt_id: str = "p1", show: str | None = None
        ) -> tuple[Any, CollectingSink]:
    """Execute `prompt`, adding a V3Show output node "99" fed by node `show` (default: the last node)."""
    prompt = dict(prompt)
    prompt["99"] = {"class_type": "V3Show", "inputs": {"value": [show or list(prompt)[-1], 0]}}
    valid = validate_prompt(registry, prompt)
    sink = CollectingSink()
    outcome = PromptExecutor(registry).execute(valid.prompt, prompt_id, {"client_id": "c1"}, valid.outputs,
                                               sink=sink)
    return outcome, sink


def test_a_node_raising_at_run_time_fails_only_its_prompt(packs) -> None:
    packs.load("runtime_error_pack", "good_pack", "v3_pack")
    bad, sink = run(packs.registry, {
        "1": {"class_type": "Explode", "inputs": {"value": 4}},
        "2": {"class_type": "V3ScaleNumber", "inputs": {"value": ["1", 0], "mode": "double"}},
    })
    assert bad.status == "error"
    error = sink.of("execution_error")[0]
    assert error["node_id"] == "1" and "Explode always fails (value=4.0)" in error["exception_message"]
    good, _ = run(packs.registry, {"1": {"class_type": "V3ScaleNumber", "inputs": {"value": 2.5, "mode": "double"}}},
                  "p2")
    assert good.status == "success"
    assert list(good.outputs["1"]["text"]) == ["1:5.0"]
    assert good.outputs["99"] == {"shown": ["5.0"], "had_prompt": [True]}


def test_v3_node_is_registered_from_its_schema(packs) -> None:
    report = packs.load("v3_pack")["v3_pack"]
    assert report.status == "loaded", report.error or report.refused
    assert report.nodes == ["V3Mapped", "V3ScaleNumber", "V3Gate", "V3Show", "V1Stubbed"]
    assert packs.registry.object_info()["V1Stubbed"]["display_name"] == "Stubbed V1 node"
    stubbed, _ = run(packs.registry, {"1": {"class_type": "V1Stubbed", "inputs": {"value": 2.0}},
                                      "2": {"class_type": "V3Show", "inputs": {"value": ["1", 0]}}}, "stub")
    assert stubbed.status == "success" and stubbed.outputs["2"]["shown"] == ["6.0"]
    info = packs.registry.object_info()["V3ScaleNumber"]
    assert info["display_name"] == "Scale a number (V3)"
    assert info["category"] == "fixtures/v3"
    assert info["output"] == ["FLOAT"] and info["output_name"] == ["scaled"]
    assert info["input"]["required"]["mode"] == ["COMBO", {"default": "double", "options": ["double", "halve"]}]
    assert info["input"]["optional"]["bonus"][1]["lazy"] is True
    assert info["input"]["hidden"] == {"unique_id": "UNIQUE_ID"}
    assert info["python_module"] == "custom_nodes.v3_pack"


def test_v3_lazy_input_is_only_evaluated_when_requested(packs) -> None:
    packs.load("v3_pack", "runtime_error_pack")
    # bonus links to a node that would fail: it must not run while value >= 0 ...
    prompt = {
        "1": {"class_type": "Explode", "inputs": {"value": 1}},
        "2": {"class_type": "V3ScaleNumber", "inputs": {"value": 3.0, "mode": "halve", "bonus": ["1", 0]}},
    }
    outcome, _ = run(packs.registry, prompt)
    assert outcome.status == "success", outcome.error
    assert "1" not in outcome.executed
    # ... and runs (and fails) once check_lazy_status asks for it.
    prompt["2"]["inputs"]["value"] = -3.0
    outcome, _ = run(packs.registry, prompt, "p2")
    assert outcome.status == "error" and "1" in str(outcome.error)


def test_v3_block_execution_stops_consumers(packs) -> None:
    packs.load("v3_pack")
    outcome, _ = run(packs.registry, {
        "1": {"class_type": "V3Gate", "inputs": {"open": False, "value": 2.0}},
        "2": {"class_type": "V3ScaleNumber", "inputs": {"value": ["1", 0], "mode": "double"}},
    })
    assert outcome.status == "success"
    assert "2" not in outcome.outputs and "99" not in outcome.outputs
    opened, _ = run(packs.registry, {
        "1": {"class_type": "V3Gate", "inputs": {"open": True, "value": 2.0}},
        "2": {"class_type": "V3ScaleNumber", "inputs": {"value": ["1", 0], "mode": "double"}},
    }, "p2")
    assert opened.outputs["2"]["text"][0] == "2:4.0"
    assert opened.outputs["99"]["shown"] == ["4.0"]


def test_pack_expansion_and_progress_through_the_executor(packs) -> None:
    packs.load("comfy_imports_pack", "progress_pack", "v3_pack")
    outcome, sink = run(packs.registry, {
        "1": {"class_type": "AddTwice", "inputs": {"a": 5}},
        "2": {"class_type": "SlowCounter", "inputs": {"steps": ["1", 0]}},
    })
    assert outcome.status == "success", outcome.error
    progress = [(d["node"], d["value"], d["max"]) for d in sink.of("progress")]
    assert progress == [("2", 1, 5), ("2", 2, 5), ("2", 3, 5), ("2", 4, 5), ("2", 5, 5)]
    assert outcome.outputs["99"]["shown"] == ["5"]


def test_v3_class_in_node_class_mappings(packs) -> None:
    packs.load("v3_pack")
    cls = packs.registry.get("V3Mapped")
    assert cls.INPUT_TYPES()["required"]["text"] == ("STRING", {"multiline": True})
    assert cls.IS_CHANGED(text="abc") == "ABC"
    outcome, _ = run(packs.registry, {"1": {"class_type": "V3Mapped", "inputs": {"text": "abc"}}})
    assert outcome.outputs["99"]["shown"] == ["'cba'"]
