"""Edge cases: expansion with output nodes, open input sections, robustness, GraphBuilder, policies."""
from __future__ import annotations

from typing import Any

from executor_fixture_nodes import CallLog

from executor import CachePolicy, CollectingSink, GraphBuilder, NodeRegistry, PromptExecutor, current
from executor.testing import run_graph

Reg = tuple[NodeRegistry, CallLog]


def test_expansion_with_an_output_node_records_meta(nodes: Reg) -> None:
    reg, _ = nodes

    class ShowTwice:
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("INT",)}}

        def run(self, value: int) -> dict[str, Any]:
            graph = GraphBuilder()
            doubled = graph.node("Add", a=value, b=value)
            graph.node("Show", value=doubled.out(0))
            return {"result": (), "expand": graph.finalize()}

    reg.register("ShowTwice", ShowTwice)
    sink = CollectingSink()
    outcome = PromptExecutor(reg).execute({"5": {"class_type": "ShowTwice", "inputs": {"value": 4}}}, "p", {}, None,
                                          sink=sink)
    assert outcome.status == "success", outcome.error
    assert outcome.outputs == {"5.0.0.2": {"value": [8]}}
    assert outcome.meta["5.0.0.2"] == {"node_id": "5.0.0.2", "display_node": "5", "parent_node": "5",
                                       "real_node_id": "5"}
    assert sink.of("executed")[0]["display_node"] == "5"


def test_duplicate_ephemeral_ids_are_an_error(nodes: Reg) -> None:
    reg, _ = nodes

    class Clash:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        def run(self) -> dict[str, Any]:
            return {"result": (["1", 0],), "expand": {"1": {"class_type": "Const", "inputs": {"value": 1}}}}

    reg.register("Clash", Clash)
    outcome = PromptExecutor(reg).execute({"1": {"class_type": "Clash", "inputs": {}},
                                           "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}, "p", {}, None)
    assert outcome.status == "error" and outcome.error is not None
    assert "GraphBuilder" in outcome.error["exception_message"]


def test_graph_builder_ids_outside_and_inside_a_node() -> None:
    graph = GraphBuilder(prefix="x.")
    a = graph.node("Const", value=1)
    b = graph.node("Add", id="sum", a=a.out(0), b=2)
    assert graph.finalize() == {"x.1": {"class_type": "Const", "inputs": {"value": 1}},
                                "x.sum": {"class_type": "Add", "inputs": {"a": ["x.1", 0], "b": 2}}}
    assert b.out(0) == ["x.sum", 0] and graph.lookup_node("sum") is b
    assert current() is None


def test_open_optional_section_accepts_any_input_name(nodes: Reg) -> None:
    reg, _ = nodes

    class AnyDict(dict):  # type: ignore[type-arg]
        def __contains__(self, key: object) -> bool:
            return True

        def __getitem__(self, key: Any) -> Any:
            return ("*",)

    class Collect:
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}, "optional": AnyDict()}

        def run(self, **kwargs: Any) -> dict[str, Any]:
            return {"ui": {"keys": sorted(kwargs)}}

    reg.register("Collect", Collect)
    result = run_graph(reg, {"1": {"class_type": "Collect", "inputs": {"alpha": 1, "beta": "x"}}})
    assert result.ui["1"] == {"keys": ["alpha", "beta"]}


def test_open_hidden_section_accepts_any_input_name(nodes: Reg) -> None:
    """VideoHelperSuite's VHS_VideoCombine reads its format widgets (crf, pix_fmt, ...) through a hidden section
    that contains every name: ComfyUI passes such inputs, with the hidden kinds still filled."""
    reg, _ = nodes

    class AnyHidden(dict):  # type: ignore[type-arg]
        def __contains__(self, key: object) -> bool:
            return True

    class Collect:
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"a": ("INT",)}, "hidden": AnyHidden({"uid": "UNIQUE_ID"})}

        def run(self, **kwargs: Any) -> dict[str, Any]:
            return {"ui": {"items": sorted(f"{k}={v}" for k, v in kwargs.items())}}

    reg.register("Collect", Collect)
    result = run_graph(reg, {"7": {"class_type": "Collect", "inputs": {"a": 1, "crf": 19}}})
    assert result.ui["7"] == {"items": ["a=1", "crf=19", "uid=7"]}


def test_execute_never_raises(nodes: Reg) -> None:
    reg, _ = nodes
    executor = PromptExecutor(reg)
    for bad in ([1, 2], {"1": "nope"}, {"1": {"class_type": "Show", "inputs": {"value": ["zz", 0]}}}):
        sink = CollectingSink()
        outcome = executor.execute(bad, "p", {}, ["1"], sink=sink)  # type: ignore[arg-type]
        assert outcome.status in {"error", "success"}
        assert sink.names()[0] == "execution_start"
    ok = executor.execute({"1": {"class_type": "Show", "inputs": {"value": 1}}}, "p", {}, None)
    assert ok.status == "success" and ok.outputs == {"1": {"value": [1]}}


def test_none_policy_creates_fresh_instances(nodes: Reg) -> None:
    reg, _ = nodes
    made: list[int] = []

    class Counted:
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        def __init__(self) -> None:
            made.append(1)

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        def run(self) -> dict[str, Any]:
            ctx = current()
            assert ctx is not None and ctx.node_id == "1" and ctx.prompt_id == "p"
            return {"ui": {"ok": [True]}}

    reg.register("Counted", Counted)
    executor = PromptExecutor(reg, cache=CachePolicy.none())
    for _ in range(3):
        executor.execute({"1": {"class_type": "Counted", "inputs": {}}}, "p", {}, None)
    assert len(made) == 3


def test_lru_evicts_oldest_generation_first(nodes: Reg) -> None:
    reg, log = nodes
    executor = PromptExecutor(reg, cache=CachePolicy.lru(2))

    def prompt(v: int) -> dict[str, Any]:
        return {"1": {"class_type": "Const", "inputs": {"value": v}},
                "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}

    for v in (1, 2, 3):
        executor.execute(prompt(v), "p", {}, None)
    assert len(executor.cache) == 2  # generation 3 holds 2 entries; older ones evicted
    log.calls.clear()
    executor.execute(prompt(3), "p", {}, None)
    assert log.calls == []
    executor.execute(prompt(1), "p", {}, None)
    assert sorted(log.calls) == ["1", "2"]


def test_add_graph_prefix_relinks_internal_links_only() -> None:
    from executor.graph_utils import add_graph_prefix

    graph = {"1": {"class_type": "Const", "inputs": {"value": 1}},
             "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["outside", 0]}}}
    new_graph, outputs = add_graph_prefix(graph, (["2", 0], 5), "p.")
    assert new_graph == {"p.1": {"class_type": "Const", "inputs": {"value": 1}},
                         "p.2": {"class_type": "Add", "inputs": {"a": ["p.1", 0], "b": ["outside", 0]}}}
    assert outputs == (["p.2", 0], 5)


def test_two_builders_in_one_call_get_distinct_prefixes(nodes: Reg) -> None:
    reg, _ = nodes

    class TwoGraphs:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        def run(self) -> dict[str, Any]:
            first, second = GraphBuilder(), GraphBuilder()
            a = first.node("Const", value=2)
            b = second.node("Add", a=a.out(0), b=3)
            return {"result": (b.out(0),), "expand": {**first.finalize(), **second.finalize()}}

    reg.register("TwoGraphs", TwoGraphs)
    result = run_graph(reg, {"1": {"class_type": "TwoGraphs", "inputs": {}},
                             "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}})
    assert result.ui["2"] == {"value": [5]}
    assert set(result.outputs) >= {"1.0.0.1", "1.0.1.1"}


def test_a_broken_sink_does_not_make_execute_raise(nodes: Reg) -> None:
    reg, _ = nodes

    class Broken(CollectingSink):
        def emit(self, event: str, data: dict[str, Any]) -> None:
            super().emit(event, data)
            if event in ("execution_success", "execution_error"):
                raise RuntimeError("socket closed")

    outcome = PromptExecutor(reg).execute({"1": {"class_type": "Show", "inputs": {"value": 1}}}, "p", {}, None,
                                          sink=Broken())
    assert outcome.status == "error" and outcome.error is not None
    assert "socket closed" in outcome.error["exception_message"]


def test_progress_preview_and_selected_outputs(nodes: Reg) -> None:
    reg, log = nodes

    class Previewer:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        def run(self) -> tuple[int]:
            ctx = current()
            assert ctx is not None
            ctx.progress(1, 2, preview="fake-image")
            return (1,)

    reg.register("Previewer", Previewer)
    prompt = {"1": {"class_type": "Previewer", "inputs": {}},
              "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Const", "inputs": {"value": 9}},
              "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}}}
    sink = CollectingSink()
    outcome = PromptExecutor(reg).execute(prompt, "pp", {}, ["2"], sink=sink)
    assert sink.previews == [("pp", "1", "fake-image")]
    assert list(outcome.outputs) == ["2"] and "3" not in log.calls and "4" not in log.calls
