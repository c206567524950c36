"""Score the demo model through Loom's nodes and print the table (`python -m bench.demo`).

Runs the shipped txt2img workflow for every scene of the score set (every colour x shape, held-out and
seen colour/background pairs) with two seeds, reads each image with the pixel scorer, and prints accuracy
for seen and held-out scenes plus the time per image. `--sheet PATH` also writes a captioned sample sheet.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent


def _sheet(items: list[tuple[str, np.ndarray]], columns: int, scale: int) -> Image.Image:
    size = items[0][1].shape[0] * scale
    cell_w, cell_h = size, size + 24
    rows = (len(items) + columns - 1) // columns
    sheet = Image.new("RGB", (cell_w * columns, cell_h * rows), (255, 255, 255))
    pen = ImageDraw.Draw(sheet)
    for i, (caption, image) in enumerate(items):
        x, y = (i % columns) * cell_w, (i // columns) * cell_h
        pil = Image.fromarray((image * 255).astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST)
        sheet.paste(pil, (x, y))
        words = caption.replace(" on a", "\non a").replace(" on an", "\non an")
        pen.multiline_text((x + 2, y + size), words, fill=(0, 0, 0), spacing=0)
    return sheet


def main(argv: list[str] | None = None) -> int:
    """Run the score set; print JSON table and timing."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sheet", type=Path, default=None, help="write a sample sheet PNG here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cfg", type=float, default=None, help="override the workflow's cfg")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO / "tests" / "demo"))  # the graph harness lives with the tests
    from demo_harness import DemoGraphRunner

    from engine.demo.score import score_table
    from engine.demo.world import scoring_scenes

    with tempfile.TemporaryDirectory() as tmp:
        runner = DemoGraphRunner(Path(tmp))
        start = time.perf_counter()
        rows = []
        shown: list[tuple[str, np.ndarray]] = []
        for scene in scoring_scenes():
            for seed in args.seeds:
                overrides = {} if args.cfg is None else {"cfg": args.cfg}
                image = runner.txt2img(scene.caption(), seed, **overrides)
                from engine.demo.score import read_image

                reading = read_image(image)
                rows.append((scene, reading))
                mark = "".join("." if ok else "x" for ok in reading.matches(scene).values())
                print(f"{scene.caption():45s} seed {seed}  read {reading.colour}/{reading.shape}/"
                      f"{reading.background} fill {reading.fill:.2f}  {mark}{'  held-out' if scene.held_out else ''}")
                if seed == args.seeds[0]:
                    shown.append((scene.caption() + (" *" if scene.held_out else ""), image))
        total = time.perf_counter() - start
        table = score_table(rows)
        print(json.dumps(table, indent=1))
        per = float(np.median(runner.seconds[1:]))
        print(f"images: {len(rows)} in {total:.1f} s; median {per:.2f} s per native-size image "
              f"(txt2img workflow: euler, 20 steps, cfg {args.cfg or 'of the workflow'}, {args.threads} thread)")
        if args.sheet is not None:
            _sheet(shown, columns=6, scale=1).save(args.sheet)
            print(f"wrote {args.sheet}")
        runner.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
