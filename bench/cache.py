"""Executor cache: a full txt2img run vs a seed-only re-run vs an identical re-run, on the tiny checkpoint.

Run: ``.venv/bin/python bench/cache.py [--runs 3] [--steps 20]``. In process through the executor (same path
as the server's worker): run 1 of each round uses a fresh runtime (load included), then the seed changes
(only KSampler, VAEDecode and SaveImage run again), then the same prompt again (nothing runs).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import Row, print_table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors"


class _Quiet:
    def emit(self, event: str, data: dict[str, Any]) -> None:
        return None

    def preview(self, prompt_id: str, node_id: str, image: Any) -> None:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from app.runner import apply_overrides, build_runtime, load_prompt, run_graph

    times: dict[str, list[float]] = {"full run (fresh runtime)": [], "seed-only re-run": [], "identical re-run": []}
    executed: dict[str, int] = {}
    tmp = Path(tempfile.mkdtemp(prefix="loom-bench-cache-"))
    try:
        (tmp / "models" / "checkpoints").mkdir(parents=True)
        (tmp / "models" / "checkpoints" / TINY.name).symlink_to(TINY)
        for i in range(args.runs):
            runtime = build_runtime(tmp, tmp / "out", cpu=True)
            try:
                prompt, _ = load_prompt(REPO / "workflows" / "txt2img.json", runtime.registry)
                base = [f"4.ckpt_name={TINY.name}", f"KSampler.steps={args.steps}", "EmptyLatentImage.width=128"]
                for label, seed in zip(times, (i, i + 1000, i + 1000), strict=True):
                    p = apply_overrides(prompt, [*base, f"KSampler.seed={seed}"])
                    t0 = time.perf_counter()
                    res = run_graph(runtime, p, sink=_Quiet())
                    times[label].append(time.perf_counter() - t0)
                    assert res.status == "success", res.error
                    executed[label] = len(res.outcome.executed)
            finally:
                runtime.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [Row(k, v, **{"nodes executed": f"{executed[k]} of 7"}) for k, v in times.items()]
    print(f"executor cache, txt2img 128x64 {args.steps} steps on the tiny checkpoint, {args.runs} rounds, "
          f"torch threads {torch.get_num_threads()}")
    print_table("cache", rows, reference=rows[0])


if __name__ == "__main__":
    main()
