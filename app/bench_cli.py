"""`python -m app.bench_cli [GRAPH] [--runs N] [--set NODE.INPUT=VALUE]...`: time a workflow on this machine.

Runs GRAPH (API prompt, UI workflow or PNG with metadata; default: workflows/txt2img.json) N times in
process and prints per-node times (min / median over the runs that executed the node), sampler it/s, the
wall time of each run, peak memory and the device, so users can compare machines and settings. Run 1 is
cold (it loads the checkpoint); later runs change every seed (so sampling and decoding run again, the
executor cache keeps the rest) unless --same-seed; --no-cache clears the executor cache before each run.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.runner import RunnerError, Runtime, apply_overrides, build_runtime, load_prompt, run_graph

__all__ = ["BenchResult", "bench_prompt", "main"]

DEFAULT_GRAPH = Path(__file__).resolve().parent.parent / "workflows" / "txt2img.json"
SEED_INPUTS = ("seed", "noise_seed")


class _StepSink:
    """Records sampling progress per node (steps and the time between the first and last step)."""

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def emit(self, event: str, data: dict[str, Any]) -> None:
        if event == "progress":
            node, now = str(data.get("node")), time.perf_counter()
            self.first.setdefault(node, now)
            self.last[node] = now
            self.steps[node] = max(self.steps.get(node, 0), int(data.get("value", 0)))

    def preview(self, prompt_id: str, node_id: str, image: Any) -> None:
        return None


@dataclass
class BenchResult:
    """Timings of N runs: per-node seconds lists, sampler it/s lists, wall seconds per run, memory, device."""

    node_times: dict[str, list[float]] = field(default_factory=dict)
    node_class: dict[str, str] = field(default_factory=dict)
    its: dict[str, list[float]] = field(default_factory=dict)
    run_seconds: list[float] = field(default_factory=list)
    executed_per_run: list[int] = field(default_factory=list)
    peak_rss_bytes: int = 0
    peak_device_bytes: int | None = None
    device: str = ""

    def to_json(self) -> dict[str, Any]:
        """The raw numbers as a JSON-ready dict."""
        out: dict[str, Any] = {"device": self.device, "run_seconds": self.run_seconds, "node_seconds": self.node_times,
                "node_class": self.node_class, "it_per_s": self.its, "executed_per_run": self.executed_per_run,
                "peak_rss_bytes": self.peak_rss_bytes, "peak_device_bytes": self.peak_device_bytes}
        return out


def _bump_seeds(prompt: dict[str, Any], offset: int) -> dict[str, Any]:
    out: dict[str, Any] = copy.deepcopy(prompt)
    for node in out.values():
        inputs = node.get("inputs", {})
        for name in SEED_INPUTS:
            if isinstance(inputs.get(name), int):
                inputs[name] = (inputs[name] + offset) % 2**64
    return out


def _device_text(services: Any) -> str:
    models = services.models
    policy = models.policy
    dev = policy.device
    import torch

    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}, unet {policy.unet_dtype}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{dev.type}: {cpu}, {torch.get_num_threads()} threads, unet {policy.unet_dtype}, torch {torch.__version__}"


def bench_prompt(runtime: Runtime, prompt: dict[str, Any], runs: int, *, vary_seed: bool = True,
                 reset_cache: bool = False, workflow: dict[str, Any] | None = None) -> BenchResult:
    """Execute ``prompt`` ``runs`` times and collect timings; raises RunnerError when a run fails."""
    result = BenchResult()
    for i in range(runs):
        if reset_cache:
            runtime.executor.reset()
        sink = _StepSink()
        t0 = time.perf_counter()
        run = run_graph(runtime, _bump_seeds(prompt, i) if vary_seed else prompt, workflow, sink=sink,
                        log=sys.stderr)
        result.run_seconds.append(time.perf_counter() - t0)
        outcome = run.outcome
        if run.status != "success" or outcome is None:
            raise RunnerError(f"run {i + 1} {run.status}: {run.error or ''}")
        result.executed_per_run.append(len(outcome.executed))
        for nid, secs in outcome.timings.items():
            result.node_times.setdefault(nid, []).append(secs)
            result.node_class[nid] = run.prompt.get(nid, {}).get("class_type", "?")
            steps = sink.steps.get(nid, 0)
            if steps > 0 and secs > 0:
                result.its.setdefault(nid, []).append(steps / secs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result.peak_rss_bytes = int(peak if platform.system() == "Darwin" else peak * 1024)
    if "torch" in sys.modules:
        import torch

        if runtime.services.model_manager().policy.device.type == "cuda":
            result.peak_device_bytes = int(torch.cuda.max_memory_allocated())
    result.device = _device_text(runtime.services)
    return result


def format_result(result: BenchResult, graph: str) -> str:
    """The human-readable report: per-node table, it/s, runs, memory, device."""
    n = len(result.run_seconds)
    lines = [f"Loom bench: {graph}, {n} runs", f"device: {result.device}", "",
             "| node | class | runs executed | min ms | median ms |", "|---|---|---|---|---|"]
    for nid, times in sorted(result.node_times.items(), key=lambda kv: -statistics.median(kv[1])):
        lines.append(f"| {nid} | {result.node_class.get(nid, '?')} | {len(times)} | {min(times) * 1e3:.1f} | "
                     f"{statistics.median(times) * 1e3:.1f} |")
    for nid, its in result.its.items():
        lines.append(f"sampling: node {nid} ({result.node_class.get(nid)}): {max(its):.2f} it/s best, "
                     f"{statistics.median(its):.2f} it/s median")
    lines.append("runs (s): " + ", ".join(f"{s:.2f}" for s in result.run_seconds)
                 + f"  (nodes executed: {', '.join(map(str, result.executed_per_run))}; run 1 is cold)")
    if n > 1:
        warm = result.run_seconds[1:]
        lines.append(f"warm runs: min {min(warm):.2f} s, median {statistics.median(warm):.2f} s")
    mem = f"peak memory: RSS {result.peak_rss_bytes / 2**20:.0f} MiB"
    if result.peak_device_bytes is not None:
        mem += f", device allocated {result.peak_device_bytes / 2**20:.0f} MiB"
    lines.append(mem)
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app.bench_cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("graph", type=Path, nargs="?", default=DEFAULT_GRAPH, help="workflow (default: txt2img)")
    p.add_argument("--runs", type=int, default=3, help="number of runs (default 3)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input (NODE = id, class_type or title), e.g. KSampler.steps=10")
    p.add_argument("--models", type=Path, default=None, help="extra models folder (checkpoints/ ... under it)")
    p.add_argument("--base-directory", type=Path, default=Path.cwd(), help="Loom base directory; default: cwd")
    p.add_argument("--cpu", action="store_true", help="run on the CPU")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--same-seed", action="store_true", help="keep seeds (later runs are served from the cache)")
    p.add_argument("--no-cache", action="store_true", help="clear the executor cache before every run")
    p.add_argument("--json", type=Path, default=None, help="also write the raw numbers to this JSON file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; 0 ok, 1 a run failed, 2 usage error."""
    args = _parser().parse_args(list(argv) if argv is not None else sys.argv[1:])
    if args.runs < 1:
        print("error: --runs must be at least 1", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out_dir = Path(tempfile.mkdtemp(prefix="loom-bench-"))
    runtime = None
    try:
        runtime = build_runtime(args.base_directory.resolve(), out_dir,
                                args.models.resolve() if args.models else None, cpu=args.cpu)
        prompt, workflow = load_prompt(args.graph, runtime.registry)
        prompt = apply_overrides(prompt, args.sets)
        result = bench_prompt(runtime, prompt, args.runs, vary_seed=not args.same_seed,
                              reset_cache=args.no_cache, workflow=workflow)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if "run " in str(exc)[:8] else 2
    finally:
        if runtime is not None:
            runtime.close()
        shutil.rmtree(out_dir, ignore_errors=True)
    print(format_result(result, str(args.graph)))
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_json(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
