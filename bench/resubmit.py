"""Fully cached resubmit through the real server, in process: where does the time go?

    python bench/resubmit.py [--runs 30] [--profile] [--checkpoint FILE --size 512 --steps 1]

Builds the real Loom (`app.loom.build_loom`, real nodes, real SQLite queue) over a throw-away base directory
with the tiny checkpoint (or ``--checkpoint``: e.g. a full-size layout from ``bench/load.py --make-fullsize``;
``--size`` / ``--steps`` keep its one cold run short, the resubmits execute nothing either way), serves it with aiohttp's test server on a loopback port, runs the graph once (cold),
then resubmits the identical graph ``--runs`` times: each is POST /prompt, then GET /history/{id} polled until
it is done (every node cached). Prints min / median / p90 of the POST alone and of POST -> done; ``--profile``
adds a cProfile of the resubmits (the event loop's thread only). ``--seconds S`` then resubmits for S seconds
twice, in the same run: first with the worker's periodic full gc.collect() forced as it was before issue 26
(every 10 s after any prompt), then as it is now (skipped after fully cached prompts); it prints max / p99.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors"

GRAPH: dict[str, Any] = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 64, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "cfg": 7.5, "sampler_name": "euler",
                                               "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                               "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "bench", "images": ["8", 0]}},
}


PHASES = (("gc only after executed nodes (now)", False), ("gc after every prompt (before)", True))


async def _wait_done(client: Any, prompt_id: str, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        resp = await client.get(f"/history/{prompt_id}")
        data = await resp.json()
        if prompt_id in data:
            status = data[prompt_id]["status"]["status_str"]
            if status != "success":
                raise RuntimeError(f"prompt {prompt_id} ended {status}: {data[prompt_id]['status']}")
            return
        await asyncio.sleep(0.0005)
    raise TimeoutError(prompt_id)


def _stats(label: str, xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
    return f"| {label} | {xs[0] * 1e3:.2f} | {statistics.median(xs) * 1e3:.2f} | {p90 * 1e3:.2f} |"


def graph(checkpoint: str, size: tuple[int, int], steps: int) -> dict[str, Any]:
    """The txt2img graph on `checkpoint` at `size` (width, height) with `steps` sampling steps."""
    g = {k: {"class_type": v["class_type"], "inputs": dict(v["inputs"])} for k, v in GRAPH.items()}
    g["4"]["inputs"]["ckpt_name"] = checkpoint
    g["5"]["inputs"].update(width=size[0], height=size[1])
    g["3"]["inputs"]["steps"] = steps
    return g


async def run(runs: int, profile: bool, seconds: float = 0.0, checkpoint: Path = TINY,
              size: tuple[int, int] = (128, 64), steps: int = 20) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from app.config import Config
    from app.loom import build_loom
    from server import create_app

    base = Path(tempfile.mkdtemp(prefix="loom-resubmit-"))
    (base / "models" / "checkpoints").mkdir(parents=True)
    os.symlink(checkpoint.resolve(), base / "models" / "checkpoints" / checkpoint.name)
    loom = build_loom(Config(base_directory=base, cpu=True, custom_node_dirs=(base / "none",)))
    client = TestClient(TestServer(create_app(loom, web_root=None, load_custom_nodes=False)))
    await client.start_server()
    try:
        body = {"prompt": graph(checkpoint.name, size, steps)}
        first = await (await client.post("/prompt", json=body)).json()
        await _wait_done(client, first["prompt_id"])
        post_t: list[float] = []
        done_t: list[float] = []
        prof = cProfile.Profile() if profile else None
        if prof is not None:
            prof.enable()
        for _ in range(runs):
            t0 = time.perf_counter()
            resp = await client.post("/prompt", json=body)
            data = await resp.json()
            post_t.append(time.perf_counter() - t0)
            await _wait_done(client, data["prompt_id"])
            done_t.append(time.perf_counter() - t0)
        if prof is not None:
            prof.disable()
        print(f"fully cached resubmit of the txt2img graph on {checkpoint.name} ({checkpoint.stat().st_size / 1e6:.0f} MB),"
              f" {size[0]}x{size[1]}, {runs} runs, in process (aiohttp test server)")
        print("| measure | min ms | median ms | p90 ms |\n|---|---|---|---|")
        print(_stats("POST /prompt answered", post_t))
        print(_stats("POST -> /history shows success", done_t))
        if seconds > 0:
            import gc
            import threading

            worker = loom.backend
            fulls: list[float] = []
            gc.callbacks.append(lambda phase, info: fulls.append(1.0) if phase == "start" and info.get(
                "generation") == 2 and threading.current_thread().name == "loom-worker" else None)
            for label, force in PHASES:
                lat: list[float] = []
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    if force:
                        worker._executed_since_gc = True  # type: ignore[attr-defined]
                    t0 = time.perf_counter()
                    data = await (await client.post("/prompt", json=body)).json()
                    await _wait_done(client, data["prompt_id"])
                    lat.append(time.perf_counter() - t0)
                lat.sort()
                print(f"| {label}, {seconds:.0f} s, {len(lat)} resubmits | median {statistics.median(lat) * 1e3:.2f} ms"
                      f" | p99 {lat[int(0.99 * (len(lat) - 1))] * 1e3:.2f} ms | max {lat[-1] * 1e3:.1f} ms"
                      f" | over 100 ms: {sum(x > 0.1 for x in lat)} | full collections on the worker: {len(fulls)} |")
                fulls.clear()
        if prof is not None:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(40)
            print(out.getvalue())
    finally:
        await client.close()
        loom.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--seconds", type=float, default=0.0, help="also resubmit for S s per gc policy (max / p99)")
    ap.add_argument("--checkpoint", type=Path, default=TINY, help="the checkpoint file (default: the tiny SD1.5)")
    ap.add_argument("--size", type=int, nargs="+", default=[128, 64], metavar="PX", help="width [height]")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps of the graph (its one cold run)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    size = (args.size[0], args.size[-1])
    asyncio.run(run(args.runs, args.profile, args.seconds, args.checkpoint, size, args.steps))


if __name__ == "__main__":
    main()
