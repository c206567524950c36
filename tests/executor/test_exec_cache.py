"""Output cache: signatures, hits and misses, IS_CHANGED, NOT_IDEMPOTENT, and each cache policy."""
from __future__ import annotations

import copy
from typing import Any

from executor_fixture_nodes import CallLog

from executor import CachePolicy, CollectingSink, NodeRegistry, PromptExecutor
from executor.cache import estimate_size

Reg = tuple[NodeRegistry, CallLog]

GRAPH = {"1": {"class_type": "Const", "inputs": {"value": 1}},
         "2": {"class_type": "Const", "inputs": {"value": 2}},
         "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 10}},
         "4": {"class_type": "Add", "inputs": {"a": ["3", 0], "b": ["2", 0]}},
         "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}},
         "6": {"class_type": "Show", "inputs": {"value": ["3", 0]}}}


def _run(executor: PromptExecutor, prompt: dict[str, Any]) -> CollectingSink:
    sink = CollectingSink()
    outcome = executor.execute(prompt, "p", {}, None, sink=sink)
    assert outcome.status == "success", outcome.error
    return sink


def test_identical_rerun_executes_nothing_and_replays_outputs(nodes: Reg) -> None:
    reg, log = nodes
    executor = PromptExecutor(reg)
    _run(executor, GRAPH)
    assert sorted(log.calls) == ["1", "2", "3", "4", "5", "6"]
    log.calls.clear()
    sink = _run(executor, GRAPH)
    assert log.calls == []
    assert sorted(sink.of("execution_cached")[0]["nodes"]) == ["1", "2", "3", "4", "5", "6"]
    assert sink.of("executing") == []
    assert sorted(e["node"] for e in sink.of("executed")) == ["5", "6"]
    assert {e["node"]: e["output"] for e in sink.of("executed")} == {"5": {"value": [13]}, "6": {"value": [11]}}


def test_changing_one_literal_reruns_only_downstream(nodes: Reg) -> None:
    reg, log = nodes
    executor = PromptExecutor(reg)
    _run(executor, GRAPH)
    log.calls.clear()
    changed = copy.deepcopy(GRAPH)
    changed["2"]["inputs"]["value"] = 5  # like a new seed
    sink = _run(executor, changed)
    assert sorted(log.calls) == ["2", "4", "5"]
    assert sorted(sink.of("execution_cached")[0]["nodes"]) == ["1", "3", "6"]


def test_node_ids_do_not_matter_but_not_idempotent_does(nodes: Reg) -> None:
    reg, log = nodes
    executor = PromptExecutor(reg)
    twins = {"a": {"class_type": "Const", "inputs": {"value": 7}},
             "b": {"class_type": "Const", "inputs": {"value": 7}},
             "c": {"class_type": "Add", "inputs": {"a": ["a", 0], "b": ["b", 0]}},
             "d": {"class_type": "Show", "inputs": {"value": ["c", 0]}}}
    _run(executor, twins)
    assert log.count("a") + log.count("b") == 1
    log.calls.clear()
    unique = copy.deepcopy(twins)
    unique["a"]["class_type"] = unique["b"]["class_type"] = "Unique"
    _run(PromptExecutor(reg), unique)
    assert log.count("a") == 1 and log.count("b") == 1


def test_is_changed_nan_always_reruns_and_fingerprint_changes(nodes: Reg) -> None:
    reg, log = nodes
    executor = PromptExecutor(reg)
    prompt = {"1": {"class_type": "Volatile", "inputs": {"value": 1}},
              "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Fingerprint", "inputs": {"value": 1}},
              "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}}}
    _run(executor, prompt)
    log.calls.clear()
    _run(executor, prompt)
    assert sorted(log.calls) == ["1", "2"]
    log.calls.clear()
    reg.get("Fingerprint").version = "v2"  # type: ignore[attr-defined]
    _run(executor, prompt)
    assert sorted(log.calls) == ["1", "2", "3", "4"]


def test_is_changed_exception_means_rerun(nodes: Reg) -> None:
    reg, log = nodes

    class Broken:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        @classmethod
        def IS_CHANGED(cls) -> str:
            raise OSError("file gone")

        def run(self) -> tuple[int]:
            log.calls.append("broken")
            return (1,)

    reg.register("Broken", Broken)
    executor = PromptExecutor(reg)
    prompt = {"1": {"class_type": "Broken", "inputs": {}}, "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    _run(executor, prompt)
    _run(executor, prompt)
    assert log.count("broken") == 2


def test_classic_drops_entries_the_new_prompt_cannot_use(nodes: Reg) -> None:
    reg, log = nodes
    executor = PromptExecutor(reg, cache=CachePolicy.classic())
    other = {"9": {"class_type": "Const", "inputs": {"value": 99}},
             "10": {"class_type": "Show", "inputs": {"value": ["9", 0]}}}
    _run(executor, GRAPH)
    _run(executor, other)
    log.calls.clear()
    _run(executor, GRAPH)
    assert sorted(log.calls) == ["1", "2", "3", "4", "5", "6"]


def test_lru_keeps_entries_across_prompts_within_its_size(nodes: Reg) -> None:
    reg, log = nodes
    executor = PromptExecutor(reg, cache=CachePolicy.lru(100))
    other = {"9": {"class_type": "Const", "inputs": {"value": 99}},
             "10": {"class_type": "Show", "inputs": {"value": ["9", 0]}}}
    _run(executor, GRAPH)
    _run(executor, other)
    log.calls.clear()
    _run(executor, GRAPH)
    assert log.calls == []
    small = PromptExecutor(reg, cache=CachePolicy.lru(2))
    _run(small, GRAPH)
    _run(small, other)
    assert len(small.cache) <= 2 + 2  # the current generation is never evicted
    log.calls.clear()
    _run(small, GRAPH)
    assert sorted(log.calls) == ["1", "2", "3", "4", "5", "6"]


def test_none_policy_runs_everything_every_time(nodes: Reg) -> None:
    reg, log = nodes
    executor = PromptExecutor(reg, cache=CachePolicy.none())
    _run(executor, GRAPH)
    log.calls.clear()
    sink = _run(executor, GRAPH)
    assert sorted(log.calls) == ["1", "2", "3", "4", "5", "6"]
    assert sink.of("execution_cached")[0]["nodes"] == []


class FakeTensor:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def element_size(self) -> int:
        return 4

    def nelement(self) -> int:
        return self.nbytes // 4


def test_estimate_size_duck_types_tensors() -> None:
    assert estimate_size([[FakeTensor(400)], {"samples": FakeTensor(40)}, "x"]) == 440


def test_ram_pressure_evicts_when_free_ram_is_low(nodes: Reg) -> None:
    reg, log = nodes
    free_now: list[Any] = [lambda: 10 * 1024**3]
    policy = CachePolicy.ram_pressure(1.0, available_bytes=lambda: int(free_now[0]()))
    executor = PromptExecutor(reg, cache=policy)
    _run(executor, GRAPH)
    assert len(executor.cache) == 6  # plenty of RAM: everything kept
    other = {"9": {"class_type": "Const", "inputs": {"value": 99}},
             "10": {"class_type": "Show", "inputs": {"value": ["9", 0]}}}
    _run(executor, other)
    assert len(executor.cache) == 8  # kept across prompts like LRU

    def free() -> int:  # RAM frees up as entries leave the cache
        return (2 * 1024**3) if len(executor.cache) <= 3 else (512 * 1024**2)

    free_now[0] = free
    log.calls.clear()
    _run(executor, {"11": {"class_type": "Const", "inputs": {"value": 5}},
                    "12": {"class_type": "Show", "inputs": {"value": ["11", 0]}}})
    assert len(executor.cache) <= 3


def test_cached_output_node_replays_without_running(nodes: Reg) -> None:
    reg, log = nodes
    executor = PromptExecutor(reg)
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 3}},
              "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    executor.execute(prompt, "a", {}, None)
    log.calls.clear()
    outcome = executor.execute(prompt, "b", {}, None)
    assert log.calls == [] and outcome.outputs == {"2": {"value": [3]}} and outcome.cached == ["2"]


def test_unique_id_hidden_input_keys_the_cache_by_node_id(nodes: Reg) -> None:
    reg, log = nodes
    prompt = {"a": {"class_type": "Hidden", "inputs": {}}, "b": {"class_type": "Hidden", "inputs": {}},
              "c": {"class_type": "Show", "inputs": {"value": ["a", 0]}},
              "d": {"class_type": "Show", "inputs": {"value": ["b", 0]}}}
    outcome = PromptExecutor(reg).execute(prompt, "p", {}, None)
    assert outcome.outputs["c"]["value"][0].startswith("a:") and outcome.outputs["d"]["value"][0].startswith("b:")
    assert log.count("a") == 1 and log.count("b") == 1


def test_outcome_lists_what_ran_and_what_came_from_the_cache(nodes: Reg) -> None:
    reg, _ = nodes
    executor = PromptExecutor(reg)
    first = executor.execute(GRAPH, "a", {}, None)
    assert sorted(first.executed) == ["1", "2", "3", "4", "5", "6"] and first.cached == []
    changed = copy.deepcopy(GRAPH)
    changed["2"]["inputs"]["value"] = 5
    second = executor.execute(changed, "b", {}, None)
    assert sorted(second.executed) == ["2", "4", "5"] and sorted(second.cached) == ["3", "6"]
    third = executor.execute(changed, "c", {}, None)
    assert third.executed == [] and sorted(third.cached) == ["5", "6"]
