"""Checkpoint load time and peak memory: Loom's load_checkpoint vs a raw safetensors read of the same file.

Run: ``.venv/bin/python bench/load.py [PATH] [--runs 3]`` (default: the tiny fixture checkpoint). Each
measurement runs in a fresh subprocess (the file already in the page cache), alternating raw / Loom / Loom
new architecture / Loom cold. "loom" has its lazy imports done by an earlier load of the tiny file and SD1.5's
network skeletons built as server.py's start-up thread builds them (engine.meta_build), so it is also what
switching between two checkpoints of one architecture costs; "loom, first network of this architecture"
skips the skeletons; "loom cold" is the first load of the process. Peak RSS growth = peak RSS (sampled every 2 ms) during the load minus RSS before it, compared
to the file size. ``--make-fullsize OUT`` first writes a full-size SD1.5-layout checkpoint (random fp32
weights, about 4 GB; ``--half``: fp16, 2 GB, which the CPU then widens to fp32) to OUT to measure with.
``--compare DIR`` adds DIR's loader (another checkout, e.g. ``git worktree add /tmp/base HEAD~3``), measured
by DIR's own bench/load.py child in the same alternation.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import Row, print_table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors"


class _PeakRss:
    """Samples this process's RSS every few milliseconds in a thread; ``peak`` is the highest seen."""

    def __init__(self) -> None:
        import threading

        import psutil

        self._proc = psutil.Process()
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def child(kind: str, path: str) -> None:
    """Measure one load in this process and print JSON (seconds, rss_before, rss_peak)."""
    import gc

    import psutil
    import torch

    torch.set_num_threads(1)
    from safetensors.torch import load_file

    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    if kind in ("loom", "loom-newarch"):  # lazy imports (tokenizer, ...) done by a first load of the tiny file
        load_checkpoint(TINY, ModelManager(DevicePolicy.cpu()))
        gc.collect()
    from engine.meta_build import clear_skeletons, prewarm_skeletons

    if kind == "loom":  # what server.py's start-up thread does: SD1.5's network skeletons built once
        prewarm_skeletons()
    elif kind == "loom-newarch":  # the warm-up's skeletons forgotten: every network is constructed
        clear_skeletons()
    manager = ModelManager(DevicePolicy.cpu())
    before = psutil.Process().memory_info().rss
    with _PeakRss() as peak:
        t0 = time.perf_counter()
        if kind == "raw":
            sd = load_file(path)
            n = sum(t.numel() for t in sd.values())
        else:
            model, clip, vae = load_checkpoint(path, manager)
            n = sum(p.numel() for m in (model.diffusion_model, vae.vae) for p in m.parameters())
        secs = time.perf_counter() - t0
    print(json.dumps({"seconds": secs, "rss_before": before, "rss_peak": peak.peak, "numel": n}))


def make_fullsize(out: Path, half: bool) -> None:
    """Write a full-size SD1.5-layout checkpoint with random weights (for load benchmarks only)."""
    import torch
    from safetensors.torch import save_file

    from engine.networks.text_encoders import ClipTextConfig, ClipTextEncoder
    from engine.networks.unet import UNetConfig, UNetModel
    from engine.networks.vae import AutoencoderKL, VAEConfig

    sd: dict[str, torch.Tensor] = {}
    dt = torch.float16 if half else torch.float32
    for prefix, module in (("model.diffusion_model.", UNetModel(UNetConfig(), dtype=dt)),
                           ("first_stage_model.", AutoencoderKL(VAEConfig(), dtype=dt)),
                           ("cond_stage_model.", ClipTextEncoder(ClipTextConfig(), dtype=dt))):
        for k, v in module.state_dict().items():
            sd[prefix + k] = v.contiguous()
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    save_file(sd, str(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", type=Path, default=TINY)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--child", choices=["raw", "loom", "loom-newarch", "loom-cold"], help=argparse.SUPPRESS)
    ap.add_argument("--make-fullsize", type=Path, default=None, metavar="OUT")
    ap.add_argument("--half", action="store_true", help="--make-fullsize writes fp16 (2 GB) instead of fp32")
    ap.add_argument("--compare", type=Path, default=None, metavar="DIR",
                    help="also measure DIR's load_checkpoint (another checkout), alternating with this one")
    args = ap.parse_args()
    if args.child:
        child(args.child, str(args.path))
        return
    path = args.path
    if args.make_fullsize is not None:
        make_fullsize(args.make_fullsize, args.half)
        path = args.make_fullsize
    size = path.stat().st_size
    with path.open("rb") as f:  # into the page cache, so every run reads from memory
        while f.read(1 << 24):
            pass
    results: dict[str, list[dict[str, float]]] = {"raw": [], "loom": [], "loom-newarch": [], "loom-cold": []}
    compare = args.compare.resolve() if args.compare else None
    if compare is not None:
        results["compare"] = []
    for _ in range(args.runs):
        for kind in results:
            repo, child_kind = (compare, "loom") if kind == "compare" else (REPO, kind)
            assert repo is not None
            out = subprocess.run([sys.executable, str(repo / "bench" / "load.py"), str(path), "--child", child_kind],
                                 capture_output=True, text=True, check=True, cwd=repo,
                                 env={**os.environ, "PYTHONPATH": str(repo)})
            results[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = []
    labels = [("raw", "safetensors load_file"), ("loom", "loom load_checkpoint (server: SD1.5 skeletons prewarmed)"),
              ("loom-newarch", "loom, first network of this architecture in the process"),
              ("loom-cold", "loom, first load in process (lazy imports)")]
    if compare is not None:
        labels.append(("compare", f"loom load_checkpoint [{compare}]"))
    for kind, label in labels:
        rs = results[kind]
        grow = max(r["rss_peak"] - r["rss_before"] for r in rs)
        rows.append(Row(label, [r["seconds"] for r in rs], **{"peak RSS growth MiB": f"{grow / 2**20:.0f}",
                                                             "x file size": f"{grow / size:.2f}"}))
    print(f"checkpoint {path.name}: {size / 2**20:.0f} MiB, {args.runs} runs each, fresh process per run")
    print_table("load time", rows, reference=rows[0])


if __name__ == "__main__":
    main()
