"""One prompt run: the loop over the execution list, node calls, expansion, events (spec 5)."""
from __future__ import annotations

import inspect
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from executor.async_calls import AsyncCalls, results_of
from executor.cache import CacheEntry
from executor.context import NodeContext, enter, leave
from executor.contract import HIDDEN_VALUES, ClassInfo
from executor.dynamic_inputs import dynamic_paths, fold
from executor.dynprompt import DynamicPrompt, hidden_value
from executor.errors import DependencyCycleError, ExecutionInterrupted, NodeContractError
from executor.events import EventSink, InterruptFlag, now_ms
from executor.graph_utils import ExecutionBlocker, is_link
from executor.node_call import (
    InputData,
    call_slices,
    collect_returns,
    find_blocker,
    format_value,
    merge_outputs,
    merge_ui,
)
from executor.outcome import ExecutionOutcome
from executor.progress import ProgressStates
from executor.prompt import unwrap_value
from executor.runlist import ExecutionList
from executor.signature import Signatures

if TYPE_CHECKING:
    from executor.execution import PromptExecutor

SUCCESS, PENDING = "success", "pending"


def full_type_name(cls: type) -> str:
    """``module.Class`` (just ``Class`` for builtins), as in ComfyUI's ``exception_type``."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class PromptRun:
    """The state of one ``execute`` call; also the ``ProgressReporter`` of its node contexts."""

    def __init__(self, executor: PromptExecutor, dyn: DynamicPrompt, prompt_id: str, extra_data: Mapping[str, Any],
                 sink: EventSink, interrupt: InterruptFlag) -> None:
        self.ex = executor
        self.dyn = dyn
        self.prompt_id = prompt_id
        self.extra_data = extra_data
        self.sink = sink
        self.interrupt = interrupt
        self.infos = executor.classes
        self.sigs = Signatures(self.infos, dyn, extra_data)
        self.results: dict[str, CacheEntry] = {}
        self.outcome = ExecutionOutcome(status="success")
        self.progress = ProgressStates(prompt_id, dyn, sink)
        self.pending_expansion: dict[str, tuple[list[tuple[Any, ...]], dict[str, Any] | None]] = {}
        self.current_inputs: dict[str, list[Any]] = {}
        self.runlist = ExecutionList(dyn, self.has_result, self.is_output, self.lazy_inputs, self.is_eager)
        self.calls = AsyncCalls(self.runlist, interrupt)
        self.node_reports: dict[str, dict[str, list[Any]]] = {}  # NodeContext.report, until the node's entry
        self.done: list[str] = []  # finished in this run, run or replayed from the cache (event payloads)
        self._started: dict[str, float] = {}

    # -- helpers the execution list uses -------------------------------------------------------------
    def lookup(self, node_id: str) -> CacheEntry | None:
        """Return the result of ``node_id`` from this run or the output cache."""
        entry = self.results.get(node_id)
        if entry is None and node_id not in self.pending_expansion:
            entry = self.ex.cache.get(self.sigs.key(node_id))
            if entry is not None:
                self.results[node_id] = entry
                self.outcome.cached.append(node_id)
        return entry

    def has_result(self, node_id: str) -> bool:
        """Whether ``node_id``'s outputs are known."""
        return self.lookup(node_id) is not None

    def info_of(self, node_id: str) -> ClassInfo | None:
        """``ClassInfo`` of ``node_id``'s class, or None if it is unknown or broken."""
        try:
            return self.infos(self.dyn.get_node(node_id)["class_type"])
        except Exception:
            return None

    def is_output(self, node_id: str) -> bool:
        """Whether ``node_id`` is an output node."""
        info = self.info_of(node_id)
        return info is not None and info.is_output

    def is_eager(self, node_id: str) -> bool:
        """Output nodes and async nodes run first among ready nodes."""
        info = self.info_of(node_id)
        return info is not None and (info.is_output or info.is_async)

    def lazy_inputs(self, node_id: str) -> frozenset[str]:
        """Names of ``node_id``'s inputs declared ``lazy``."""
        info = self.info_of(node_id)
        return info.lazy if info is not None else frozenset()

    # -- events -------------------------------------------------------------------------------------
    def emit(self, event: str, data: dict[str, Any], message: bool = False) -> None:
        """Send ``event`` to the sink (and record prompt-level ones for history)."""
        if message:
            self.outcome.messages.append((event, data))
        self.sink.emit(event, data)

    def report_progress(self, ctx: NodeContext, value: float, total: float, preview: Any) -> None:
        """``NodeContext.progress`` lands here: ``progress`` + ``progress_state`` (+ preview)."""
        self.sink.emit("progress", {"value": value, "max": total, "prompt_id": self.prompt_id,
                                    "node": ctx.node_id})
        self.progress.set(ctx.node_id, "running", value, total)
        if preview is not None:
            self.sink.preview(self.prompt_id, ctx.node_id, preview)

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, outputs: list[str]) -> ExecutionOutcome:
        """Execute ``outputs`` and everything they need; never raises for node failures."""
        node_id: str | None = None
        try:
            for output in outputs:
                self.runlist.add_node(output)
            while self.runlist:
                if not self.runlist.ready and self.calls.waiting:
                    node_id = next(iter(self.calls.waiting))
                    self.calls.wait()
                    continue
                node_id = self.runlist.stage_next()
                if self.execute_node(node_id) == SUCCESS:
                    self.runlist.complete(node_id)
                else:
                    self.runlist.requeue(node_id)
                if self.calls.waiting:
                    self.calls.poll()
        except ExecutionInterrupted:
            self.progress.flush()
            self._interrupted(node_id)
        except DependencyCycleError as err:
            self._error(self._cycle_blame(err.nodes), err, "graph.DependencyCycleError", [])
        except Exception as err:  # a node failed: report it fully, keep the executor alive
            self._error(node_id, err, full_type_name(type(err)), traceback.format_tb(err.__traceback__))
        else:
            self.progress.flush()
            self.emit("execution_success", {"prompt_id": self.prompt_id, "timestamp": now_ms()}, message=True)
        finally:
            self.calls.close()
        return self.outcome

    def _cycle_blame(self, cycle: list[str]) -> str:
        """The node a cycle is reported on: the one that expanded into it, else the cycle's first node."""
        for node_id in cycle:
            display = self.dyn.get_display_node_id(node_id)
            if display != node_id:
                return display
        return cycle[0]

    def _node_type(self, node_id: str | None) -> str | None:
        if node_id is None or not self.dyn.has_node(node_id):
            return None
        return str(self.dyn.get_node(node_id)["class_type"])

    def _formatted_inputs(self) -> dict[str, list[Any]]:
        return {k: [format_value(v) for v in vals] for k, vals in self.current_inputs.items()}

    def _interrupted(self, node_id: str | None) -> None:
        self.outcome.status = "interrupted"
        payload = {"prompt_id": self.prompt_id, "node_id": node_id, "node_type": self._node_type(node_id),
                   "executed": list(self.done), "timestamp": now_ms()}
        self.outcome.error = payload
        self.emit("execution_interrupted", payload, message=True)

    def _error(self, node_id: str | None, err: Exception, type_name: str, tb: list[str]) -> None:
        self.outcome.status = "error"
        if node_id is not None and self.dyn.has_node(node_id):
            self.progress.set(node_id, "error")
        else:
            self.progress.flush()
        payload = {
            "prompt_id": self.prompt_id, "node_id": node_id, "node_type": self._node_type(node_id),
            "executed": list(self.done), "exception_message": str(err), "exception_type": type_name,
            "traceback": tb, "current_inputs": self._formatted_inputs(), "current_outputs": list(self.results),
            "timestamp": now_ms()}
        self.outcome.error = payload
        self.emit("execution_error", payload, message=True)

    # -- one node -----------------------------------------------------------------------------------
    def execute_node(self, node_id: str) -> str:
        """Run (or replay from cache) one node; return SUCCESS or PENDING; raise on failure."""
        if self.interrupt.is_set():
            self.interrupt.clear()
            raise ExecutionInterrupted(f"Processing interrupted before node #{node_id}")
        node = self.dyn.get_node(node_id)
        class_type = node["class_type"]
        display = self.dyn.get_display_node_id(node_id)
        resuming = node_id in self.pending_expansion or node_id in self.calls.waiting
        if not resuming:
            cached = self.lookup(node_id)
            if cached is not None:
                self._finish(node_id, display, cached, ran=False)
                return SUCCESS
        info = self.infos(class_type)
        if node_id in self.pending_expansion:
            self.current_inputs = {}
            start = self._started.get(node_id, time.perf_counter())
            results, ui = self.pending_expansion.pop(node_id)
            entry = CacheEntry(merge_outputs(results, info.output_is_list, self._resolve_link), ui,
                               self.node_reports.pop(node_id, None) or None)
        else:
            if node_id in self.calls.waiting:
                returns, self.current_inputs, start = self.calls.resume(node_id)
            else:
                self.current_inputs = {}
                self.progress.set(node_id, "running")
                self.sink.emit("executing", {"node": node_id, "display_node": display, "prompt_id": self.prompt_id})
                start = time.perf_counter()
                data = self.input_data(node_id, node, info)
                obj = self.ex.instance(node_id, class_type, info.cls)
                if self._request_lazy(node_id, node, obj, data, info):
                    return PENDING
                returns = self.map_calls(node_id, getattr(obj, info.function), data, info)
                if self.calls.has_running(returns):
                    self.calls.hold(node_id, returns, self.current_inputs, start)
                    return PENDING
                returns = results_of(returns)
            collected = collect_returns(returns, node_id, class_type, info.n_outputs)
            ui = merge_ui(collected.uis)
            if collected.has_expansion:
                self._started[node_id] = start
                self.pending_expansion[node_id] = (collected.results, ui)
                self._expand(node_id, display, collected.expansions, collected.results)
                return PENDING
            entry = CacheEntry(merge_outputs(collected.results, info.output_is_list), ui,
                               self.node_reports.pop(node_id, None) or None)
        self.results[node_id] = entry
        self.ex.cache.put(self.sigs.key(node_id), entry)
        self.outcome.timings[node_id] = time.perf_counter() - start
        self._finish(node_id, display, entry, ran=True)
        self.ex.cache.after_node()
        return SUCCESS

    def _finish(self, node_id: str, display: str, entry: CacheEntry, ran: bool) -> None:
        if entry.ui:
            self.outcome.outputs[node_id] = entry.ui
            self.outcome.meta[node_id] = {
                "node_id": node_id, "display_node": display, "parent_node": self.dyn.get_parent_node_id(node_id),
                "real_node_id": self.dyn.get_real_node_id(node_id)}
            self.sink.emit("executed", {"node": node_id, "display_node": display, "output": entry.ui,
                                        "prompt_id": self.prompt_id})
        if entry.reports:
            self.outcome.reports[node_id] = entry.reports
        self.progress.set(node_id, "finished", emit=False)
        self.done.append(node_id)
        if ran:
            self.outcome.executed.append(node_id)
        if self.ex.keep_values:
            self.outcome.values[node_id] = entry.outputs

    def input_data(self, node_id: str, node: Mapping[str, Any], info: ClassInfo) -> InputData:
        """Assemble the input lists of one node (links, literals, hidden inputs)."""
        declared = info.declared
        data: InputData = {}
        for name, value in node["inputs"].items():
            if is_link(value) and name not in info.raw_links:
                entry = self.lookup(value[0])
                index = int(value[1])
                data[name] = entry.outputs[index] if entry is not None and index < len(entry.outputs) else [None]
            elif name in declared or name in info.hidden or ((info.open_sections or info.dynamic)
                                                              and info.declares(name)):
                data[name] = [unwrap_value(value)]
        self.current_inputs = data
        for name, kind in info.hidden.items():
            if kind in HIDDEN_VALUES:  # a hidden input of an ordinary type keeps what the prompt links or gives
                data = {**data, name: [hidden_value(kind, node_id, self.dyn, self.extra_data)]}
        return data

    def _missing(self, node: Mapping[str, Any], name: str) -> bool:
        value = node["inputs"].get(name)
        return is_link(value) and self.lookup(value[0]) is None

    def _request_lazy(self, node_id: str, node: Mapping[str, Any], obj: Any, data: InputData,
                      info: ClassInfo) -> bool:
        check = getattr(obj, "check_lazy_status", None)
        if check is None:
            return False
        names: list[str] = []
        answers = self.map_calls(node_id, check, data, info, blockers=False)
        for requested in self.calls.finish(answers):  # an `async def check_lazy_status` is awaited here
            if isinstance(requested, (list, tuple)):
                names.extend(n for n in requested if isinstance(n, str))
        wanted = [n for n in dict.fromkeys(names) if self._missing(node, n)]
        for name in wanted:
            self.runlist.add_strong_link(node["inputs"][name][0], node_id)
        return bool(wanted)

    def map_calls(self, node_id: str, func: Any, data: InputData, info: ClassInfo,
                  blockers: bool = True) -> list[Any]:
        """Call ``func`` once per list element (or once with whole lists for INPUT_IS_LIST)."""
        whole = info.input_is_list
        results: list[Any] = []
        for index, kwargs in enumerate(call_slices(data, whole)):
            blocker = find_blocker(kwargs, whole) if blockers else None
            if blocker is not None:
                results.append(self._on_blocker(node_id, blocker))
                continue
            if self.interrupt.is_set():
                self.interrupt.clear()
                raise ExecutionInterrupted(f"Processing interrupted at node #{node_id}")
            dyn = self.dyn
            ctx = NodeContext(prompt_id=self.prompt_id, node_id=node_id,
                              display_node_id=dyn.get_display_node_id(node_id), extra_data=self.extra_data,
                              reporter=self, interrupt=self.interrupt, call_index=index,
                              parent_node_id=dyn.get_parent_node_id(node_id),
                              real_node_id=dyn.get_real_node_id(node_id),
                              reports=self.node_reports.setdefault(node_id, {}))
            if info.dynamic:
                kwargs = fold(kwargs, dynamic_paths(info.input_types, kwargs))
            token = enter(ctx)
            try:
                result = func(**kwargs)
                if inspect.isawaitable(result):  # runs as a task (the context is copied in) beside other nodes
                    result = self.calls.start(result)
            finally:
                leave(token)
            results.append(result)
        return results

    def _on_blocker(self, node_id: str, blocker: ExecutionBlocker) -> ExecutionBlocker:
        if blocker.message is None:
            return blocker
        self.sink.emit("execution_error", {
            "prompt_id": self.prompt_id, "node_id": node_id, "node_type": self._node_type(node_id),
            "executed": list(self.done), "exception_message": f"Execution Blocked: {blocker.message}",
            "exception_type": "ExecutionBlocked", "traceback": [], "current_inputs": [], "current_outputs": [],
            "timestamp": now_ms()})
        return ExecutionBlocker(None)

    def _expand(self, node_id: str, display: str, graphs: list[dict[str, Any] | None],
                results: list[tuple[Any, ...]]) -> None:
        """Add the expansion graphs as ephemeral nodes; the parent waits for the nodes its results link."""
        for graph in graphs:
            if graph is None:
                continue
            for new_id, new_node in graph.items():
                if self.dyn.has_node(new_id):
                    raise NodeContractError(
                        f"Node '#{node_id}' expanded into a node id '{new_id}' that already exists; build "
                        "expansion graphs with executor.graph_utils.GraphBuilder() for unique ids")
                self.dyn.add_ephemeral_node(new_id, {**new_node, "inputs": dict(new_node.get("inputs") or {})},
                                            node_id, new_node.get("override_display_id") or display)
            for new_id in graph:
                if self.is_output(new_id):
                    self.runlist.add_node(new_id)
        for result in results:
            for value in result:
                if is_link(value) and self.dyn.has_node(value[0]):
                    self.runlist.add_strong_link(value[0], node_id)

    def _resolve_link(self, link: Any) -> list[Any]:
        entry = self.lookup(link[0])
        index = int(link[1])
        if entry is None or index >= len(entry.outputs):
            return [None]
        return list(entry.outputs[index])
