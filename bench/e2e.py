"""End to end through the real server, per server configuration: e.g. fp32 against ``--bf16-unet --bf16-vae``.

Run: ``.venv/bin/python bench/e2e.py --checkpoint FILE [--size 512] [--steps 4] [--prompts 2] [--runs 1]
[--config "fp32=" --config "bf16=--bf16-unet --bf16-vae"]``.

Each run starts ``server.py --cpu <flags>`` per configuration (alternating, run by run) over a throw-away base
directory holding ``--checkpoint`` (a full-size layout: ``bench/load.py --make-fullsize``), waits until it
answers, then times ``workflows/txt2img.json`` at ``--size`` with ``--steps``: the first prompt (checkpoint load
included), then ``--prompts`` more, each with a new seed (POST -> in /history). Prints min / median per
configuration, the server's peak RSS, and each against the first configuration's new prompt, same run.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import Row, peak_rss_bytes, print_table  # noqa: E402
from bench.startup import REPO, server, until_done, wait_ready  # noqa: E402


def timed_prompts(checkpoint: Path, flags: tuple[str, ...], prompt: dict[str, object],
                  prompts: int) -> tuple[float, list[float], float]:
    """(first prompt, the `prompts` new-seed prompts after it) in seconds, and the server's peak RSS in GB,
    on one server start."""
    with server(REPO, checkpoint, flags) as (url, proc, _):
        wait_ready(url, proc)
        first = until_done(url, prompt)
        later = []
        for i in range(prompts):
            p = json.loads(json.dumps(prompt))
            p["3"]["inputs"]["seed"] += 1 + i
            later.append(until_done(url, p))
        return first, later, peak_rss_bytes(proc.pid) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--size", type=int, nargs="+", default=[512], metavar="PX", help="width [height]")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=2, help="new-seed prompts after the first, per server start")
    ap.add_argument("--runs", type=int, default=1, help="server starts per configuration")
    ap.add_argument("--config", action="append", default=None, metavar="NAME=FLAGS",
                    help='a configuration, e.g. "bf16=--bf16-unet --bf16-vae" (default: fp32 and that one)')
    args = ap.parse_args()
    configs = [c.split("=", 1) for c in (args.config or ["fp32=", "bf16=--bf16-unet --bf16-vae"])]
    prompt = json.loads((REPO / "workflows" / "txt2img.json").read_text())
    prompt["4"]["inputs"]["ckpt_name"] = args.checkpoint.name
    prompt["3"]["inputs"]["steps"] = args.steps
    width, height = args.size[0], args.size[-1]
    prompt["5"]["inputs"].update(width=width, height=height)
    firsts: dict[str, list[float]] = {name: [] for name, _ in configs}
    news: dict[str, list[float]] = {name: [] for name, _ in configs}
    rss: dict[str, list[float]] = {name: [] for name, _ in configs}
    for _ in range(args.runs):
        for name, flags in configs:
            first, later, peak = timed_prompts(args.checkpoint, tuple(shlex.split(flags)), prompt, args.prompts)
            firsts[name].append(first)
            news[name].extend(later)
            rss[name].append(peak)
            print(f"{name}: first {first:.2f} s, new prompts {', '.join(f'{t:.2f}' for t in later)} s, "
                  f"server peak RSS {peak:.2f} GB", flush=True)
    rows: list[Row] = []
    for name, flags in configs:
        rows += [Row(f"{name} ({flags or 'no flags'}): first prompt, load included", firsts[name],
                     **{"server peak RSS": f"{max(rss[name]):.2f} GB"}),
                 Row(f"{name}: new prompt", news[name])]
    print_table(f"{args.checkpoint.name}, {width}x{height}, {args.steps} steps, txt2img through "
                f"server.py --cpu", rows, reference=rows[1], unit="s")


if __name__ == "__main__":
    main()
