"""PromptExecutor: events, errors, lazy inputs, lists, blockers, expansion, interrupts, ordering."""
from __future__ import annotations

from typing import Any

from executor_fixture_nodes import CallLog

from executor import CollectingSink, ExecutionOutcome, InterruptFlag, NodeRegistry, PromptExecutor

Reg = tuple[NodeRegistry, CallLog]


def run(reg: NodeRegistry, prompt: dict[str, Any], executor: PromptExecutor | None = None,
        **kw: Any) -> tuple[ExecutionOutcome, CollectingSink]:
    sink = CollectingSink()
    executor = executor or PromptExecutor(reg)
    outcome = executor.execute(prompt, kw.pop("prompt_id", "p"), kw.pop("extra_data", {}), kw.pop("outputs", None),
                               sink=sink, **kw)
    return outcome, sink


CHAIN = {"1": {"class_type": "Const", "inputs": {"value": 2}},
         "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 5}},
         "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}


def test_event_order_and_payloads(nodes: Reg) -> None:
    reg, _ = nodes
    outcome, sink = run(reg, CHAIN, prompt_id="abc")
    assert outcome.status == "success" and outcome.executed == ["1", "2", "3"]
    names = sink.names()
    # a node's "finished" state travels with the next node's "running" state (one progress_state per node)
    assert names == ["execution_start", "execution_cached",
                     "progress_state", "executing",
                     "progress_state", "executing",
                     "progress_state", "executing", "executed",
                     "progress_state", "execution_success"]
    states = [e["nodes"] for e in sink.of("progress_state")]
    assert states[1]["1"]["state"] == "finished" and states[1]["2"]["state"] == "running"
    assert [s["state"] for s in states[3].values()] == ["finished"] * 3
    assert set(sink.of("execution_start")[0]) == {"prompt_id", "timestamp"}
    assert sink.of("execution_cached")[0]["nodes"] == []
    assert sink.of("executing")[0] == {"node": "1", "display_node": "1", "prompt_id": "abc"}
    assert all(e["node"] is not None for e in sink.of("executing"))  # the server sends {node: null}
    assert sink.of("executed") == [{"node": "3", "display_node": "3", "output": {"value": [7]}, "prompt_id": "abc"}]
    last_state = sink.of("progress_state")[-1]["nodes"]
    assert set(last_state) == {"1", "2", "3"}
    assert last_state["2"] == {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "2", "prompt_id": "abc",
                               "display_node_id": "2", "parent_node_id": None, "real_node_id": "2"}
    assert outcome.outputs == {"3": {"value": [7]}}
    assert outcome.meta == {"3": {"node_id": "3", "display_node": "3", "parent_node": None, "real_node_id": "3"}}
    assert [m[0] for m in outcome.messages] == ["execution_start", "execution_cached", "execution_success"]
    assert set(outcome.timings) == {"1", "2", "3"}


def test_failing_node_reports_and_executor_survives(nodes: Reg) -> None:
    reg, log = nodes
    executor = PromptExecutor(reg)
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 3}},
              "2": {"class_type": "Fail", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    outcome, sink = run(reg, prompt, executor, prompt_id="bad")
    assert outcome.status == "error" and "3" not in log.calls
    error = sink.of("execution_error")[0]
    assert error == outcome.error
    assert set(error) == {"prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type",
                          "traceback", "current_inputs", "current_outputs", "timestamp"}
    assert error["node_id"] == "2" and error["node_type"] == "Fail" and error["prompt_id"] == "bad"
    assert error["exception_type"] == "ValueError" and error["exception_message"] == "boom 3"
    assert error["traceback"] and all(isinstance(line, str) for line in error["traceback"])
    assert any("boom" in line or "raise ValueError" in line for line in error["traceback"])
    assert error["current_inputs"] == {"value": [3]}
    assert error["current_outputs"] == ["1"] and error["executed"] == ["1"]
    assert sink.of("progress_state")[-1]["nodes"]["2"]["state"] == "error"
    assert "execution_success" not in sink.names()
    ok, _ = run(reg, CHAIN, executor)
    assert ok.status == "success" and ok.outputs == {"3": {"value": [7]}}


def test_exception_type_names_module_for_non_builtins(nodes: Reg) -> None:
    reg, _ = nodes

    class MyError(Exception):
        pass

    class Raiser:
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        def run(self) -> None:
            raise MyError("custom")

    reg.register("Raiser", Raiser)
    outcome, _ = run(reg, {"1": {"class_type": "Raiser", "inputs": {}}})
    assert outcome.error is not None
    assert outcome.error["exception_type"] == f"{__name__}.test_exception_type_names_module_for_non_builtins.<locals>.MyError"


def test_unknown_class_and_bad_return_become_errors(nodes: Reg) -> None:
    reg, _ = nodes
    outcome, _ = run(reg, {"1": {"class_type": "Nope", "inputs": {}}, "2": {"class_type": "Show",
                                                                           "inputs": {"value": ["1", 0]}}})
    assert outcome.status == "error" and outcome.error is not None and outcome.error["node_id"] == "1"

    class BadReturn:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        def run(self) -> int:
            return 5

    reg.register("BadReturn", BadReturn)
    outcome, _ = run(reg, {"1": {"class_type": "BadReturn", "inputs": {}},
                           "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}})
    assert outcome.error is not None and "trailing comma" in outcome.error["exception_message"]
    assert outcome.error["exception_type"] == "executor.errors.NodeContractError"


def test_runtime_cycle_is_reported(nodes: Reg) -> None:
    reg, _ = nodes
    outcome, sink = run(reg, {"1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
                              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
                              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}})
    assert outcome.status == "error" and outcome.error is not None
    assert outcome.error["exception_type"] == "graph.DependencyCycleError"
    assert outcome.error["node_id"] in {"1", "2"}
    assert "Dependency cycle detected" in outcome.error["exception_message"]


def test_lazy_branch_not_requested_never_runs(nodes: Reg) -> None:
    reg, log = nodes
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 4}},
              "2": {"class_type": "Fail", "inputs": {"value": 0}},
              "3": {"class_type": "Switch", "inputs": {"cond": True, "on_true": ["1", 0], "on_false": ["2", 0]}},
              "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}}}
    outcome, _ = run(reg, prompt)
    assert outcome.status == "success" and outcome.outputs["4"] == {"value": [4]}
    assert "2" not in log.calls and log.count("3") == 1
    prompt["3"]["inputs"]["cond"] = False
    outcome, _ = run(reg, prompt)
    assert outcome.status == "error" and outcome.error is not None and outcome.error["node_id"] == "2"


def test_lists_map_and_input_is_list(nodes: Reg) -> None:
    reg, log = nodes
    prompt = {"1": {"class_type": "Range", "inputs": {"n": 3}},
              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 10}},
              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
              "4": {"class_type": "Total", "inputs": {"values": ["2", 0]}},
              "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}}}
    outcome, _ = run(reg, prompt)
    assert outcome.outputs["3"] == {"value": [10, 11, 12]}  # Show ran once per element, UIs merged
    assert outcome.outputs["5"] == {"value": [33]}
    assert log.count("2") == 3 and log.count("3") == 3 and log.count("4") == 1


def test_shorter_lists_repeat_their_last_element(nodes: Reg) -> None:
    reg, _ = nodes
    prompt = {"1": {"class_type": "Range", "inputs": {"n": 3}},
              "2": {"class_type": "Range", "inputs": {"n": 2}},
              "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
              "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}}}
    outcome, _ = run(reg, prompt)
    assert outcome.outputs["4"] == {"value": [0, 2, 3]}


def test_blocker_stops_branch_reports_once_and_prompt_succeeds(nodes: Reg) -> None:
    reg, log = nodes
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 1}},
              "2": {"class_type": "Gate", "inputs": {"value": ["1", 0], "open": False, "message": "no way"}},
              "3": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
              "4": {"class_type": "Add", "inputs": {"a": ["3", 0], "b": 1}},
              "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}},
              "6": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    outcome, sink = run(reg, prompt)
    assert outcome.status == "success"
    assert "3" not in log.calls and "4" not in log.calls and "5" not in log.calls
    errors = sink.of("execution_error")
    assert len(errors) == 1 and errors[0]["node_id"] == "3"
    assert errors[0]["exception_type"] == "ExecutionBlocked"
    assert errors[0]["exception_message"] == "Execution Blocked: no way"
    assert outcome.outputs == {"6": {"value": [1]}}


def test_silent_blocker_reports_nothing(nodes: Reg) -> None:
    reg, log = nodes
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 1}},
              "2": {"class_type": "Gate", "inputs": {"value": ["1", 0], "open": False, "message": ""}},
              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    outcome, sink = run(reg, prompt)
    assert outcome.status == "success" and sink.of("execution_error") == [] and "3" not in log.calls


def test_node_expansion_runs_ephemeral_nodes(nodes: Reg) -> None:
    reg, log = nodes
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 5}},
              "R": {"class_type": "Repeat", "inputs": {"value": ["1", 0], "times": 3}},
              "3": {"class_type": "Show", "inputs": {"value": ["R", 0]}}}
    outcome, sink = run(reg, prompt)
    assert outcome.status == "success", outcome.error
    assert outcome.outputs["3"] == {"value": [15]}
    ephemeral = [e for e in sink.of("executing") if e["node"].startswith("R.")]
    assert [e["node"] for e in ephemeral] == ["R.0.0.1", "R.0.0.2", "R.0.0.3", "R.0.0.4"]
    assert all(e["display_node"] == "R" for e in ephemeral)
    assert log.count("R") == 1  # the parent's FUNCTION runs once; its outputs come from the subgraph
    state = sink.of("progress_state")[-1]["nodes"]["R.0.0.2"]
    assert state["parent_node_id"] == "R" and state["real_node_id"] == "R"
    again, _ = run(reg, prompt, outcome_executor := PromptExecutor(reg))
    assert again.outputs["3"] == {"value": [15]}
    log.calls.clear()
    cached, _ = run(reg, prompt, outcome_executor)
    assert cached.outputs["3"] == {"value": [15]} and log.calls == []


def test_output_nodes_run_as_soon_as_ready(nodes: Reg) -> None:
    reg, _ = nodes
    prompt = {"10": {"class_type": "Show", "inputs": {"value": ["11", 0]}},
              "11": {"class_type": "Const", "inputs": {"value": 1}},
              "20": {"class_type": "Show", "inputs": {"value": ["21", 0]}},
              "21": {"class_type": "Const", "inputs": {"value": 2}}}
    outcome, _ = run(reg, prompt)
    assert outcome.executed == ["11", "10", "21", "20"]


def test_interrupt_before_next_node(nodes: Reg) -> None:
    reg, log = nodes
    flag = InterruptFlag()

    class Trigger(CollectingSink):
        def emit(self, event: str, data: dict[str, Any]) -> None:
            super().emit(event, data)
            if event == "executed" or (event == "executing" and data["node"] == "2"):
                flag.set()

    sink = Trigger()
    outcome = PromptExecutor(reg).execute(CHAIN, "p", {}, None, sink=sink, interrupt=flag)
    assert outcome.status == "interrupted" and "3" not in log.calls
    payload = sink.of("execution_interrupted")[0]
    assert payload == outcome.error
    assert set(payload) == {"prompt_id", "node_id", "node_type", "executed", "timestamp"}
    assert payload["node_id"] == "2" and payload["executed"] == ["1"]
    assert not flag.is_set()


def test_interrupt_through_context_and_progress_events(nodes: Reg) -> None:
    reg, _ = nodes
    prompt = {"1": {"class_type": "Steps", "inputs": {"steps": 4}},
              "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    outcome, sink = run(reg, prompt, prompt_id="q")
    assert sink.of("progress") == [{"value": i, "max": 4, "prompt_id": "q", "node": "1"} for i in (1, 2, 3, 4)]
    running = [e["nodes"]["1"] for e in sink.of("progress_state") if e["nodes"]["1"]["state"] == "running"]
    assert running[-1]["value"] == 4.0 and running[-1]["max"] == 4.0
    flag = InterruptFlag()

    class StopAtTwo(CollectingSink):
        def emit(self, event: str, data: dict[str, Any]) -> None:
            super().emit(event, data)
            if event == "progress" and data["value"] == 2:
                flag.set()

    sink2 = StopAtTwo()
    outcome = PromptExecutor(reg).execute(prompt, "q", {}, None, sink=sink2, interrupt=flag)
    assert outcome.status == "interrupted" and [p["value"] for p in sink2.of("progress")] == [1, 2]


def test_async_function_and_hidden_inputs(nodes: Reg) -> None:
    reg, _ = nodes
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 21}},
              "2": {"class_type": "AsyncDouble", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
              "4": {"class_type": "Hidden", "inputs": {}},
              "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}}}
    outcome, _ = run(reg, prompt, extra_data={"extra_pnginfo": {"workflow": 1}})
    assert outcome.outputs["3"] == {"value": [42]}
    assert outcome.outputs["5"] == {"value": ["4:['1', '2', '3', '4', '5']:{'workflow': 1}:Hidden"]}


def test_node_instances_are_reused_per_node_id(nodes: Reg) -> None:
    reg, _ = nodes
    made: list[int] = []

    class Stateful:
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        def __init__(self) -> None:
            made.append(1)
            self.runs = 0

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"x": ("INT", {"default": 0})}}

        def run(self, x: int) -> dict[str, Any]:
            self.runs += 1
            return {"ui": {"runs": [self.runs]}}

    reg.register("Stateful", Stateful)
    executor = PromptExecutor(reg)
    for x in (1, 2, 3):
        outcome, _ = run(reg, {"1": {"class_type": "Stateful", "inputs": {"x": x}}}, executor)
    assert outcome.outputs["1"] == {"runs": [3]} and len(made) == 1


def test_raw_link_and_literal_arrays(nodes: Reg) -> None:
    reg, _ = nodes

    class Raw:
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"link": ("INT", {"rawLink": True}), "items": ("*",)}}

        def run(self, link: Any, items: Any) -> dict[str, Any]:
            return {"ui": {"got": [link, items]}}

    reg.register("Raw", Raw)
    outcome, _ = run(reg, {"1": {"class_type": "Const", "inputs": {"value": 1}},
                           "2": {"class_type": "Raw", "inputs": {"link": ["1", 0], "items": {"__value__": ["a", 0]}}}})
    assert outcome.outputs["2"] == {"got": [["1", 0], ["a", 0]]}
