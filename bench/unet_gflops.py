"""UNet call throughput: Loom vs diffusers (same random weights), achieved GFLOP/s vs a same-run GEMM peak.

Run: ``.venv/bin/python bench/unet_gflops.py [--sizes 32 64] [--runs 5] [--small] [--variants ...]``.
One call = batch 2 (CFG cond + uncond), ``size`` x ``size`` latent, 77-token context. FLOPs are counted
once per size with torch.utils.flop_counter; the GEMM peak is the best n=2048 fp32 matmul measured in the
same run. Variants are Loom fast paths timed alternately with the plain fp32 call and diffusers:
``channels_last``, ``bf16`` (CPU autocast), ``compile`` (torch.compile; compile time reported separately).
``--small`` uses model_channels 64 (development on a busy machine); the issue's targets are for full size.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench._timing import (  # noqa: E402
    Row,
    alternate,
    count_flops,
    device_name,
    gemm_peak_gflops,
    parse_args_keeping_heap,
    print_table,
)
from engine.networks.unet import UNetConfig, UNetModel  # noqa: E402
from tests.engine.test_networks_unet import diffusers_to_ldm  # noqa: E402


def build_pair(small: bool) -> tuple[Any, UNetModel]:
    """diffusers' UNet2DConditionModel and Loom's UNetModel holding the same random weights."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    ch = 64 if small else 320
    ref = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8, sample_size=64,
                               block_out_channels=(ch, ch * 2, ch * 4, ch * 4)).eval()
    ours = UNetModel(UNetConfig(model_channels=ch)).eval()
    ours.load_state_dict(diffusers_to_ldm(ref.state_dict(), 2, 4), strict=True)
    return ref, ours


def variant_call(name: str, model: UNetModel, x: torch.Tensor, t: torch.Tensor,
                 ctx: torch.Tensor) -> tuple[Callable[[], torch.Tensor], float]:
    """A callable running Loom's UNet with one fast path, and its one-off set-up (compile) seconds."""
    if name == "fp32":
        return (lambda: model(x, t, ctx)), 0.0
    if name == "channels_last":
        cl = UNetModel(model.config).eval()
        cl.load_state_dict(model.state_dict())
        cl = cl.to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        return (lambda: cl(xc, t, ctx)), 0.0
    if name == "bf16":
        def run() -> torch.Tensor:
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return model(x, t, ctx)
        return run, 0.0
    if name == "compile":
        compiled = torch.compile(model)
        t0 = time.perf_counter()
        compiled(x, t, ctx)
        return (lambda: compiled(x, t, ctx)), time.perf_counter() - t0
    raise SystemExit(f"unknown variant {name!r}: choose fp32, channels_last, bf16, compile")


def bench_size(size: int, ref: Any, ours: UNetModel, variants: list[str], runs: int, peak: float) -> float:
    """Time diffusers and each Loom variant at one latent size, print the table; returns the GEMM peak."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, size, size, generator=g)
    t = torch.tensor([981.0, 981.0])
    ctx = torch.randn(2, 77, 768, generator=g)
    # Counted on diffusers' call (the same maths): Loom's CPU fast paths use out= / in-place matmuls
    # (addmm_, mm.out) that flop_counter does not count, which would under-count the call.
    flops = count_flops(lambda: ref(x, t, encoder_hidden_states=ctx))
    calls: list[Callable[[], Any]] = [lambda: ref(x, t, encoder_hidden_states=ctx).sample]
    setup: dict[str, float] = {}
    for v in variants:
        fn, secs = variant_call(v, ours, x, t, ctx)
        calls.append(fn)
        setup[v] = secs
    times = alternate(calls, runs)
    peak = max(peak, gemm_peak_gflops())
    out_ref = calls[0]().float()

    def gflops(ts: list[float]) -> dict[str, str]:
        rate = flops / min(ts) / 1e9
        return {"GFLOP/s (min)": f"{rate:.0f}", "% GEMM peak": f"{rate / peak:.0%}"}

    rows = [Row("diffusers", times[0], **gflops(times[0]))]
    for v, ts, fn in zip(variants, times[1:], calls[1:], strict=True):
        rel = float((fn().float() - out_ref).abs().max() / out_ref.abs().max())
        extra = {**gflops(ts), "max rel diff": f"{rel:.1e}"}
        if setup[v]:
            extra["compile s"] = f"{setup[v]:.1f}"
        rows.append(Row(f"loom {v}", ts, **extra))
    print_table(f"{size}x{size} latent: {flops / 1e12:.3f} TFLOP per call, GEMM peak {peak:.0f} GFLOP/s",
                rows, reference=rows[0])
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="latent sizes (64 = 512x512 image)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--small", action="store_true", help="model_channels 64 instead of 320")
    ap.add_argument("--variants", nargs="*", default=["fp32"],
                    help="Loom variants: fp32 channels_last bf16 compile (fp32 is always included)")
    ap.add_argument("--threads", type=int, default=None)
    args = parse_args_keeping_heap(ap)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = ["fp32", *[v for v in args.variants if v != "fp32"]]

    ref, ours = build_pair(args.small)
    n_params = sum(p.numel() for p in ours.parameters())
    print(f"UNet {'small (ch 64)' if args.small else 'SD1.5'} ({n_params / 1e6:.0f}M params), batch 2, fp32, "
          f"{device_name()}, torch {torch.__version__}, {args.runs} timed runs, alternating, malloc {args.malloc}")
    with torch.inference_mode():
        peak = gemm_peak_gflops()
        for size in args.sizes:
            peak = bench_size(size, ref, ours, variants, args.runs, peak)


if __name__ == "__main__":
    main()
