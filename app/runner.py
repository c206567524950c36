"""Headless runner: `python -m app.runner run GRAPH [--set NODE.INPUT=VALUE]... [--out DIR] [--models DIR]`.

GRAPH is an API-format prompt, a UI-format workflow (converted with the registered node definitions) or a
PNG carrying `prompt` / `workflow` chunks. The graph is validated (with the built-in extra checks), run
in-process with a progress bar per sampling step, and the saved images are listed.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from app.config import Config
from app.engine_factory import Engine, ExecutorLike, build_engine
from app.workflow_format import GraphFormatError, load_graph_file, ui_to_api

if TYPE_CHECKING:
    from engine.paths import ModelPaths
    from executor import EventSink, ExecutionOutcome, NodeRegistry
    from nodes.services import NodeServices

__all__ = ["RunnerError", "Runtime", "RunResult", "apply_overrides", "build_runtime", "run_graph", "main"]



class RunnerError(Exception):
    """A usage problem (bad --set, unreadable graph, invalid prompt); the message says how to fix it."""


@dataclass
class Runtime:
    """One in-process engine (`app.engine_factory.build_engine`) and how to clean up after it."""

    engine: Engine
    closer: Callable[[], None] | None = None

    @property
    def registry(self) -> NodeRegistry:
        return self.engine.registry

    @property
    def executor(self) -> ExecutorLike:
        assert self.engine.executor is not None  # build_engine always makes one
        return self.engine.executor

    @property
    def services(self) -> NodeServices:
        assert self.engine.services is not None  # build_engine always makes them
        return self.engine.services

    def close(self) -> None:
        if self.closer is not None:
            self.closer()


@dataclass
class RunResult:
    """Outcome of one run: status, saved image paths, the executed prompt and the executor outcome."""

    status: str
    files: list[Path] = field(default_factory=list)
    prompt: dict[str, Any] = field(default_factory=dict)
    outcome: ExecutionOutcome | None = None
    error: str | None = None


# ------------------------------------------------------------------------------------------ overrides
def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(prompt: dict[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    """Apply `NODE.INPUT=VALUE` overrides; NODE is a node id, a class_type or a `_meta.title`."""
    out = copy.deepcopy(prompt)
    for expr in sets:
        left, sep, raw = expr.partition("=")
        target, dot, input_name = left.rpartition(".")
        if not sep or not dot or not target or not input_name:
            raise RunnerError(f"--set {expr!r}: expected NODE.INPUT=VALUE, e.g. KSampler.seed=5 or 3.steps=10")
        matches = [nid for nid, node in out.items()
                   if nid == target or node.get("class_type") == target
                   or (node.get("_meta") or {}).get("title") == target]
        if not matches:
            known = ", ".join(f"{nid} ({n.get('class_type')})" for nid, n in out.items())
            raise RunnerError(f"--set {expr!r}: no node with id, class or title {target!r}; nodes: {known}")
        value = _parse_value(raw)
        for nid in matches:
            out[nid].setdefault("inputs", {})[input_name] = value
    return out


# ------------------------------------------------------------------------------------------- runtime
def build_runtime(base_dir: Path, output_dir: Path | None = None, models_dir: Path | None = None,
                  cpu: bool = False, preview_method: str = "none",
                  precision: Mapping[str, Any] | None = None) -> Runtime:
    """An in-process engine over `base_dir`'s folders (the server's builder, without queue or HTTP);
    ``precision``: Config's precision fields (`app.config.precision_fields`)."""
    user_dir = Path(tempfile.mkdtemp(prefix="loom-run-"))
    config = Config(base_directory=base_dir.resolve(), output_directory=output_dir, cpu=cpu,
                    preview_method=preview_method, user_directory=user_dir, **dict(precision or {}))
    for d in (config.input_dir, config.output_dir, config.temp_dir):
        d.mkdir(parents=True, exist_ok=True)
    runtime = Runtime(build_engine(config), lambda: shutil.rmtree(user_dir, ignore_errors=True))
    if models_dir is not None:
        _add_models_dir(runtime.services.paths, models_dir)
    return runtime


def _add_models_dir(paths: ModelPaths, models_dir: Path) -> None:
    from engine.paths import FOLDER_TABLE

    for key, (subdirs, _) in FOLDER_TABLE.items():
        for sub in reversed(subdirs):
            paths.add_model_path(key, models_dir / sub, is_default=True)


# --------------------------------------------------------------------------------------------- events
class ConsoleSink:
    """Prints node starts and errors; one tqdm bar per node reporting progress (sampling steps)."""

    def __init__(self, stream: TextIO | None = None, progress: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.show_progress = progress
        self._bar: Any = None
        self._bar_node: str | None = None
        self.titles: dict[str, str] = {}

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._bar_node = None

    def emit(self, event: str, data: dict[str, Any]) -> None:
        if event == "executing":
            node = data.get("node")
            if node != self._bar_node:
                self._close_bar()
            if node is not None:
                print(f"-> node {node} ({self.titles.get(str(node), '?')})", file=self.stream)
        elif event == "progress" and self.show_progress:
            node = str(data.get("node"))
            if node != self._bar_node:
                self._close_bar()
                from tqdm import tqdm

                self._bar = tqdm(total=int(data.get("max", 0)), desc=f"node {node} {self.titles.get(node, '')}",
                                 file=self.stream, leave=True)
                self._bar_node = node
            self._bar.update(max(0, int(data.get("value", 0)) - self._bar.n))
        elif event == "execution_cached":
            cached = data.get("nodes") or []
            if cached:
                print(f"cached: {', '.join(map(str, cached))}", file=self.stream)
        elif event in ("execution_error", "execution_interrupted", "execution_success"):
            self._close_bar()

    def preview(self, prompt_id: str, node_id: str, image: Any) -> None:
        return None


# ------------------------------------------------------------------------------------------------ run
def _input_types(registry: NodeRegistry, name: str) -> Any:
    cls: Any = registry.find(name)  # a node class: INPUT_TYPES is the contract's, not `type`'s
    return cls.INPUT_TYPES() if cls is not None else None


def load_prompt(path: Path, registry: NodeRegistry) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The API prompt of a graph file (UI workflows converted) and the UI workflow if there is one."""
    try:
        prompt, workflow = load_graph_file(path)
        if prompt is None:
            assert workflow is not None
            prompt = ui_to_api(workflow, lambda name: _input_types(registry, name))
    except GraphFormatError as exc:
        raise RunnerError(str(exc)) from exc
    return prompt, workflow


def _substitute_demo(prompt: dict[str, Any], services: NodeServices, log: TextIO) -> None:
    from app.demo_install import DEMO_INPAINT_NAME, DEMO_NAME, STAND_IN_NAME

    names = services.paths.get_filename_list("checkpoints")
    if STAND_IN_NAME not in names:
        return
    for nid, node in prompt.items():
        wanted = node.get("inputs", {}).get("ckpt_name")
        if (node.get("class_type") == "CheckpointLoaderSimple" and wanted in (DEMO_NAME, DEMO_INPAINT_NAME)
                and wanted not in names):
            node["inputs"]["ckpt_name"] = STAND_IN_NAME
            print(f"note: node {nid}: {wanted} is not installed; using the random-weight stand-in "
                  f"{STAND_IN_NAME} (images will look like noise)", file=log)


def _format_validation(wire: dict[str, Any]) -> str:
    lines = [f"prompt is invalid: {wire['error'].get('message')}"]
    if wire["error"].get("details") and not wire.get("node_errors"):
        lines.append(f"  {wire['error']['details']}")
    for nid, entry in (wire.get("node_errors") or {}).items():
        for err in entry.get("errors", []):
            lines.append(f"  node {nid} ({entry.get('class_type')}): {err.get('message')}: {err.get('details')}")
    return "\n".join(lines)


def run_graph(runtime: Runtime, prompt: dict[str, Any], workflow: dict[str, Any] | None = None, *,
              sink: EventSink | None = None, log: TextIO | None = None) -> RunResult:
    """Validate (with the built-in extra checks) and execute one prompt; list the images it saved."""
    log = log if log is not None else sys.stderr
    from executor import PromptValidationError, validate_prompt
    from nodes.checks import builtin_checks

    prompt = copy.deepcopy(prompt)
    _substitute_demo(prompt, runtime.services, log)
    try:
        valid = validate_prompt(runtime.registry, prompt, extra_checks=builtin_checks(runtime.services))
    except PromptValidationError as exc:
        raise RunnerError(_format_validation(exc.to_wire())) from exc
    if sink is None:
        sink = ConsoleSink(log)
    if isinstance(sink, ConsoleSink):
        sink.titles = {nid: n.get("class_type", "?") for nid, n in valid.prompt.items()}
    extra: dict[str, Any] = {"extra_pnginfo": {"workflow": workflow}} if workflow else {}
    outcome = runtime.executor.execute(valid.prompt, str(uuid.uuid4()), extra, valid.outputs, sink=sink)
    files = []
    for ui in outcome.outputs.values():
        for image in ui.get("images", []) if isinstance(ui, dict) else []:
            folder = runtime.services.paths.get_directory_by_type(image.get("type", "output"))
            if folder is not None:
                files.append(Path(folder) / image.get("subfolder", "") / image["filename"])
    error = None
    if outcome.error:
        err = outcome.error
        error = (f"node {err.get('node_id')} ({err.get('node_type')}) failed: "
                 f"{err.get('exception_type', '')}: {err.get('exception_message', '')}".strip())
    return RunResult(outcome.status, files, valid.prompt, outcome, error)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="validate and run one graph file")
    run.add_argument("graph", type=Path, help="API prompt JSON, UI workflow JSON, or a PNG with metadata")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.INPUT=VALUE",
                     help="override an input; NODE = node id, class_type or title (repeatable)")
    run.add_argument("--out", type=Path, default=None, help="output folder (default: <base>/output)")
    run.add_argument("--models", type=Path, default=None,
                     help="extra models folder searched first (checkpoints/, vae/, loras/ ... under it)")
    run.add_argument("--base-directory", type=Path, default=Path.cwd(),
                     help="Loom base directory (input/, models/, temp/); default: cwd")
    run.add_argument("--cpu", action="store_true", help="run on the CPU")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 run failed, 2 usage / invalid prompt)."""
    args = _parser().parse_args(list(argv) if argv is not None else sys.argv[1:])
    runtime = None
    try:
        base = args.base_directory.resolve()
        out = args.out.resolve() if args.out else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        runtime = build_runtime(base, out, args.models.resolve() if args.models else None, cpu=args.cpu)
        from app.demo_install import copy_example_inputs

        copy_example_inputs(Path(runtime.services.paths.input_dir))
        prompt, workflow = load_prompt(args.graph, runtime.registry)
        prompt = apply_overrides(prompt, args.sets)
        result = run_graph(runtime, prompt, workflow, sink=ConsoleSink(progress=not args.no_progress))
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if runtime is not None:
            runtime.close()
    for f in result.files:
        print(f)
    if result.status != "success":
        print(f"error: run {result.status}: {result.error or ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
