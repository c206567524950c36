"""What a ControlNet costs per sampling step: one SD1.5 denoiser call without, with one and with two ControlNets.

Run: ``.venv/bin/python bench/controlnet.py [--device cuda|cpu] [--dtype fp16|fp32] [--size 64] [--runs N]
[--tiny]``. One call = batch 2 (cond + uncond) at a ``size`` x ``size`` latent with a 77-token context: the UNet
alone, then each ControlNet on the same rows (hint = latent size x 8) and the UNet adding their residuals, as
sampling does. Full-size SD1.5 UNet and ControlNet configs with random weights (``--tiny``: the test fixtures'
widths). The three variants alternate call by call in the same run; the table gives min / median and the ratio
to the plain call, plus the parameter bytes each ControlNet adds and (CUDA) the peak memory of the call.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench._timing import Row, alternate, device_name, print_table  # noqa: E402
from engine.adapters.control import merge_residuals  # noqa: E402
from engine.adapters.detect import ControlNetConfig  # noqa: E402
from engine.adapters.networks import ControlNet  # noqa: E402
from engine.networks.configs import UNetConfig  # noqa: E402
from engine.networks.unet import UNetModel  # noqa: E402

TINY = UNetConfig(model_channels=32, context_dim=32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["fp16", "fp32", "bf16"], default=None)
    ap.add_argument("--size", type=int, default=64, help="latent side (64 = 512 px)")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tiny", action="store_true", help="the fixtures' widths instead of full-size SD1.5")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}[
        args.dtype or ("fp16" if device.type == "cuda" else "fp32")]
    runs = args.runs or (10 if device.type == "cuda" else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TINY if args.tiny else UNetConfig()
    torch.manual_seed(0)
    unet = UNetModel(cfg).to(device, dtype).eval()
    nets = [ControlNet(ControlNetConfig(unet=cfg)).to(device, dtype).eval() for _ in range(2)]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, args.size, args.size, generator=g).to(device, dtype)
    t = torch.tensor([500.0, 500.0], device=device)
    ctx = torch.randn(2, 77, cfg.context_dim, generator=g).to(device, dtype)
    hints = [torch.rand(1, 3, args.size * 8, args.size * 8, generator=g).to(device, dtype) for _ in nets]

    def call(n: int) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.no_grad():
                control = None
                for net, hint in zip(nets[:n], hints[:n], strict=True):
                    out = {k: [r * 0.8 for r in v] for k, v in net(x, hint, t, ctx).items()}
                    control = merge_residuals(out, control)  # type: ignore[arg-type]
                return unet(x, t, ctx, control=control)
        return run

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    peaks: list[str] = []
    for n in range(3):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            call(n)()
            torch.cuda.synchronize(device)
            peaks.append(f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
        else:
            peaks.append("-")
    times = alternate([call(0), call(1), call(2)], runs, sync=sync)
    cn_bytes = sum(p.numel() * p.element_size() for p in nets[0].parameters())
    rows = [Row("UNet only", times[0], peak=peaks[0], weights="-"),
            Row("UNet + 1 ControlNet", times[1], peak=peaks[1], weights=f"+{cn_bytes / 2**20:.0f} MiB"),
            Row("UNet + 2 ControlNets", times[2], peak=peaks[2], weights=f"+{2 * cn_bytes / 2**20:.0f} MiB")]
    title = (f"{'tiny' if args.tiny else 'SD1.5'} denoiser call, batch 2, latent {args.size}x{args.size}, "
             f"{dtype}, {device_name(device)}, {torch.get_num_threads()} threads, {runs} runs")
    print_table(title, rows, reference=rows[0])


if __name__ == "__main__":
    main()
