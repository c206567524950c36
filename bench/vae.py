"""VAE decode (latent -> pixels) and encode: Loom's AutoencoderKL vs diffusers', same random weights.

Run: ``.venv/bin/python bench/vae.py [--size 64] [--runs 3] [--small] [--tiled]``. Full-size SD VAE
(ch 128, mult 1,2,4,4), batch 1; ``--size`` is the latent side (64 = 512x512 image). ``--tiled`` also times
Loom's tiled decode through VaeHandle (64-cell tiles) and reports its peak extra memory vs the whole decode.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench._timing import Row, alternate, count_flops, device_name, parse_args_keeping_heap, print_table  # noqa: E402
from engine.networks.vae import AutoencoderKL, VAEConfig  # noqa: E402
from tests.engine.test_networks_vae import diffusers_vae_to_ldm  # noqa: E402


def build_pair(small: bool) -> tuple[Any, AutoencoderKL]:
    """diffusers' AutoencoderKL and Loom's holding the same random weights."""
    import diffusers

    torch.manual_seed(0)
    ch = 32 if small else 128
    mult = (1, 2, 4, 4)
    ref = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=tuple(ch * m for m in mult),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2, norm_num_groups=32,
    ).eval()
    ours = AutoencoderKL(VAEConfig(ch=ch, ch_mult=mult)).eval()
    ours.load_state_dict(diffusers_vae_to_ldm(ref.state_dict(), 4), strict=True)
    return ref, ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="latent side; the image is 8x larger")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="ch 32 instead of 128 (development)")
    ap.add_argument("--tiled", action="store_true", help="also time Loom's tiled decode")
    ap.add_argument("--threads", type=int, default=None)
    args = parse_args_keeping_heap(ap)
    if args.threads:
        torch.set_num_threads(args.threads)
    ref, ours = build_pair(args.small)
    s = args.size
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 4, s, s, generator=g)
    px = torch.rand(1, 3, 8 * s, 8 * s, generator=g) * 2 - 1
    print(f"VAE {'small (ch 32)' if args.small else 'SD (ch 128)'}, batch 1, {s}x{s} latent <-> {8 * s}x{8 * s} "
          f"image, fp32, {device_name()}, torch {torch.__version__}, {args.runs} timed runs, alternating")
    with torch.inference_mode():
        dec_flops = count_flops(lambda: ours.decode(z))
        enc_flops = count_flops(lambda: ours.encode(px))
        calls = [lambda: ref.decode(z).sample, lambda: ours.decode(z)]
        names = ["diffusers decode", "loom decode"]
        if args.tiled:
            from engine.device import DevicePolicy
            from engine.handles import VaeHandle
            from engine.model_management import ModelManager

            handle = VaeHandle(ours, ModelManager(DevicePolicy.cpu()))
            calls.append(lambda: handle.decode_tiled(z, tile=32, overlap=8))
            names.append("loom tiled decode (32, overlap 8)")
        times = alternate(calls, args.runs)
        rel = float((calls[1]() - calls[0]()).abs().max() / calls[0]().abs().max())
        rows = [Row(n, ts, **{"GFLOP/s": f"{dec_flops / min(ts) / 1e9:.0f}"}) for n, ts in zip(names, times, strict=True)]
        print_table(f"decode: {dec_flops / 1e12:.3f} TFLOP, max rel diff loom vs diffusers {rel:.1e}", rows, rows[0])
        enc_calls = [lambda: ref.encode(px).latent_dist.mode(), lambda: ours.encode(px)]
        times = alternate(enc_calls, args.runs)
        rel = float((enc_calls[1]() - enc_calls[0]()).abs().max() / enc_calls[0]().abs().max())
        rows = [Row(n, ts, **{"GFLOP/s": f"{enc_flops / min(ts) / 1e9:.0f}"})
                for n, ts in zip(["diffusers encode", "loom encode"], times, strict=True)]
        print_table(f"encode: {enc_flops / 1e12:.3f} TFLOP, max rel diff {rel:.1e}", rows, rows[0])


if __name__ == "__main__":
    main()
