"""Score the demo's 9-channel inpainting variant through Loom's nodes (`python -m bench.demo_inpaint`).

Composes the checkpoint the installer writes (demo text encoder + VAE + `engine/demo/loom-demo-inpaint-unet
.safetensors`), or with `--zero` the untrained starting point (the demo UNet widened with zero channels), and
runs the shipped `workflows/inpaint_model.json` on the inpaint score cases (`engine.demo.inpaint_score`: every
scene of the txt2img score set, once beside another shape with the right half masked, once replacing a shape
in the middle), then prints inside-mask accuracy and outside-mask difference per group and the time per image.
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


def _sheet(rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: Path) -> None:
    """One row per case: source, mask, result, with the prompt under it."""
    size = rows[0][1].shape[0]
    sheet = Image.new("RGB", (3 * size, len(rows) * (size + 14)), (255, 255, 255))
    pen = ImageDraw.Draw(sheet)
    for i, (prompt, source, mask, result) in enumerate(rows):
        y = i * (size + 14)
        for j, image in enumerate((source, np.repeat(mask[..., None], 3, axis=2), result)):
            sheet.paste(Image.fromarray(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)), (j * size, y))
        pen.text((2, y + size), prompt, fill=(0, 0, 0))
    sheet.save(path)


def main(argv: list[str] | None = None) -> int:
    """Run the cases; print the JSON table and timing."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zero", action="store_true", help="score the zero-initialised widening instead")
    parser.add_argument("--unet", type=Path, default=None, help="an inpainting UNet file (default: the shipped one)")
    parser.add_argument("--no-noise-mask", action="store_true", help="InpaintModelConditioning noise_mask=false")
    parser.add_argument("--raw", action="store_true",
                        help="score the VAE decode itself, not the workflow's paste-back through the mask")
    parser.add_argument("--every", type=int, default=1, help="score every n-th scene only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="override the workflow's steps")
    parser.add_argument("--cfg", type=float, default=None, help="override the workflow's cfg")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sheet", type=Path, default=None, help="write a source/mask/result sheet of 8 cases")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO / "tests" / "demo"))  # the graph harness lives with the tests
    from demo_harness import DEMO_CHECKPOINT, DemoGraphRunner
    from inpaint_harness import run_case

    from app.demo_install import DEMO_INPAINT_NAME
    from engine.demo.export import compose_inpaint_checkpoint, save_zero_init_inpaint_unet
    from engine.demo.files import INPAINT_UNET
    from engine.demo.inpaint_score import inpaint_cases, inpaint_table

    with tempfile.TemporaryDirectory() as tmp:
        unet_file = args.unet or INPAINT_UNET
        if args.zero:
            unet_file = save_zero_init_inpaint_unet(DEMO_CHECKPOINT, Path(tmp) / "zero-unet.safetensors")
        ckpt = compose_inpaint_checkpoint(DEMO_CHECKPOINT, unet_file, Path(tmp) / "inpaint.safetensors")
        runner = DemoGraphRunner(Path(tmp) / "base")
        runner.add_checkpoint(DEMO_INPAINT_NAME, ckpt)
        options: dict[str, object] = {"noise_mask": not args.no_noise_mask, "paste_back": not args.raw}
        if args.steps is not None:
            options["steps"] = args.steps
        if args.cfg is not None:
            options["cfg"] = args.cfg
        # both kinds of every n-th scene (the list holds each scene's two kinds in a row)
        cases = [c for i, c in enumerate(inpaint_cases()) if (i // 2) % args.every == 0]
        start = time.perf_counter()
        rows, shown = [], []
        for i, case in enumerate(cases):
            image, reading = run_case(runner, case, args.seed, **options)
            rows.append((case, reading))
            marks = "".join("." if ok else "x" for ok in reading.matches(case).values())
            print(f"{case.kind:8s} {case.prompt:45s} read {reading.inside.colour}/{reading.inside.shape}/"
                  f"{reading.inside.background}  {marks}  outside mad {reading.outside_mad:.3f} "
                  f"psnr {reading.outside_psnr:.1f}{'  held-out' if case.scene.held_out else ''}", flush=True)
            if i % max(1, len(cases) // 8) == 0 and len(shown) < 8:
                shown.append((f"{case.prompt}", case.source, case.mask, image))
        total = time.perf_counter() - start
        table = inpaint_table(rows)
        print(json.dumps({g: {k: round(v, 4) for k, v in row.items()} for g, row in table.items()}, indent=1))
        per = float(np.median(runner.seconds[1:])) if len(runner.seconds) > 1 else float("nan")
        print(f"images: {len(rows)} in {total:.1f} s; median {per:.2f} s per image (inpaint_model workflow, "
              f"{'zero-init' if args.zero else 'trained'}, noise_mask={not args.no_noise_mask}, "
              f"{'raw decode' if args.raw else 'pasted back'}, seed {args.seed}, "
              f"{args.threads} thread)")
        if args.sheet is not None:
            _sheet(shown, args.sheet)
            print(f"wrote {args.sheet}")
        runner.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
