"""Full-size SD1.5 UNet call: Loom's UNetModel vs diffusers' UNet2DConditionModel, same random weights.

Run: ``.venv/bin/python bench/unet.py [--device cuda|cpu] [--dtype fp16|fp32] [--runs N]``. One call =
batch 2 (cond + uncond), 64x64 latent (512x512 image), 77-token context of width 768. Prints min and
median wall time per call over ``--runs`` timed calls after one warm-up (the two implementations
alternate call by call), and the max relative difference
between the two outputs (weights are copied from the diffusers model through the LDM key mapping).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from engine.networks.unet import UNetConfig, UNetModel  # noqa: E402
from tests.engine.test_networks_unet import diffusers_to_ldm  # noqa: E402


def _time_pair(fns: tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]], runs: int,
               device: torch.device) -> tuple[list[list[float]], list[torch.Tensor]]:
    """Time two callables, alternating them run by run so load changes on a shared machine hit both."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    outs = [fn() for fn in fns]  # warm-up (kernel selection, allocator)
    sync()
    times: list[list[float]] = [[], []]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            outs[i] = fn()
            sync()
            times[i].append(time.perf_counter() - t0)
    return times, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["fp16", "fp32", "bf16"], default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype_name = args.dtype or ("fp16" if device.type == "cuda" else "fp32")
    dtype = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    runs = args.runs or (10 if device.type == "cuda" else 3)
    if args.threads:
        torch.set_num_threads(args.threads)

    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    ref = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8, sample_size=64).eval()
    ours = UNetModel(UNetConfig()).eval()
    ours.load_state_dict(diffusers_to_ldm(ref.state_dict(), 2, 4), strict=True)
    ref.to(device, dtype)
    ours.to(device, dtype)
    n_params = sum(p.numel() for p in ours.parameters())

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 64, 64, generator=g).to(device, dtype)
    t = torch.tensor([981.0, 981.0], device=device)
    ctx = torch.randn(2, 77, 768, generator=g).to(device, dtype)

    with torch.inference_mode():
        (ours_times, ref_times), (ours_out, ref_out) = _time_pair(
            (lambda: ours(x, t, ctx), lambda: ref(x, t, encoder_hidden_states=ctx).sample), runs, device)
    rel = float((ours_out.float() - ref_out.float()).abs().max() / ref_out.float().abs().max())

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    print(f"SD1.5 UNet ({n_params / 1e6:.0f}M params), batch 2, 64x64 latent, {dtype_name}, {name}, "
          f"torch {torch.__version__}, {runs} timed runs")
    print(f"{'implementation':<34}{'min ms':>10}{'median ms':>12}")
    for label, times in (("loom UNetModel", ours_times), ("diffusers UNet2DConditionModel", ref_times)):
        print(f"{label:<34}{min(times) * 1e3:>10.1f}{statistics.median(times) * 1e3:>12.1f}")
    print(f"max relative difference of outputs: {rel:.2e}")


if __name__ == "__main__":
    main()
