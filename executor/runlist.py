"""The execution list: a staged topological dissolve with lazy inputs (spec 5.2)."""
from __future__ import annotations

from collections.abc import Callable, Set

from executor.dynprompt import DynamicPrompt
from executor.errors import DependencyCycleError
from executor.validation import find_cycles


class ExecutionList:
    """Nodes waiting to run, what blocks each, and which ready node runs next.

    ``has_result(id)`` says whether a producer's output is already known (cached or run), ``is_output(id)``
    marks output nodes, ``is_eager(id)`` the nodes run first when ready (output nodes and async nodes, so
    their work starts early) and ``lazy_inputs(id)`` names inputs that are not dependencies up-front.
    A node can be *held* (waiting for async work) until ``release``.
    """

    def __init__(self, dynprompt: DynamicPrompt, has_result: Callable[[str], bool],
                 is_output: Callable[[str], bool], lazy_inputs: Callable[[str], Set[str]],
                 is_eager: Callable[[str], bool] | None = None) -> None:
        self._dyn = dynprompt
        self._has_result = has_result
        self._is_output = is_output
        self._is_eager = is_eager or is_output
        self._lazy_inputs = lazy_inputs
        self.held: set[str] = set()
        self._order: dict[str, int] = {}
        self.pending: dict[str, None] = {}
        self.blocked_by: dict[str, set[str]] = {}
        self.blocking: dict[str, set[str]] = {}
        self.ready: dict[str, None] = {}

    def __bool__(self) -> bool:
        return bool(self.pending)

    def add_node(self, node_id: str) -> None:
        """Stage ``node_id`` and every producer it needs that has no result yet (non-lazy links)."""
        stack = [node_id]
        while stack:
            current = stack.pop()
            if current in self.pending:
                continue
            self.pending[current] = None
            self._order.setdefault(current, len(self._order))
            self.blocked_by.setdefault(current, set())
            self.blocking.setdefault(current, set())
            if self._has_result(current):  # a cached output node replays without its inputs
                self.ready[current] = None
                continue
            lazy = self._lazy_inputs(current)
            for name, producer, _ in self._dyn.links(current):
                if name in lazy:
                    continue
                if not self._dyn.has_node(producer) or self._has_result(producer):
                    continue
                self._link(producer, current)
                if producer not in self.pending:
                    stack.append(producer)
            if not self.blocked_by[current]:
                self.ready[current] = None

    def add_strong_link(self, producer: str, consumer: str) -> None:
        """Make ``consumer`` wait for ``producer`` (staged if needed) unless its result is known."""
        if self._has_result(producer):
            return
        self.add_node(producer)
        self._link(producer, consumer)

    def _link(self, producer: str, consumer: str) -> None:
        self.blocked_by.setdefault(consumer, set()).add(producer)
        self.blocking.setdefault(producer, set()).add(consumer)
        self.ready.pop(consumer, None)

    def _feeds_output(self, node_id: str, hops: int) -> bool:
        frontier = self.blocking.get(node_id, set())
        for _ in range(hops - 1):
            frontier = {c for n in frontier for c in self.blocking.get(n, set())}
        return any(self._is_output(c) for c in frontier)

    def stage_next(self) -> str:
        """Pick the next node to run; raise ``DependencyCycleError`` if nothing can run."""
        if not self.ready:
            deps = {n: sorted(self.blocked_by.get(n, set())) for n in self.pending}
            cycles = find_cycles(deps)
            raise DependencyCycleError(cycles[0] if cycles else list(self.pending))
        pick: str | None = None
        if len(self.ready) > 1:
            for test in (self._is_eager, lambda n: self._feeds_output(n, 1), lambda n: self._feeds_output(n, 2)):
                pick = next((n for n in self.ready if test(n)), None)
                if pick is not None:
                    break
            if pick is None:
                pick = min(self.ready, key=self._order.__getitem__)
        else:
            pick = next(iter(self.ready))
        del self.ready[pick]
        return pick

    def complete(self, node_id: str) -> None:
        """Mark ``node_id`` done and unblock its consumers."""
        self.pending.pop(node_id, None)
        self.ready.pop(node_id, None)
        for consumer in self.blocking.pop(node_id, set()):
            waiting = self.blocked_by.get(consumer)
            if waiting is None:
                continue
            waiting.discard(node_id)
            if not waiting and consumer in self.pending and consumer not in self.held:
                self.ready[consumer] = None
        self.blocked_by.pop(node_id, None)

    def requeue(self, node_id: str) -> None:
        """Put ``node_id`` back after it asked for more inputs or expanded; ready again once unblocked."""
        if not self.blocked_by.get(node_id) and node_id not in self.held:
            self.ready[node_id] = None

    def hold(self, node_id: str) -> None:
        """Keep ``node_id`` from running until ``release`` (its async calls are still running)."""
        self.held.add(node_id)
        self.ready.pop(node_id, None)

    def release(self, node_id: str) -> None:
        """Let a held node run again once nothing else blocks it."""
        self.held.discard(node_id)
        if node_id in self.pending and not self.blocked_by.get(node_id):
            self.ready[node_id] = None
