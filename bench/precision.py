"""bf16 vs fp32 on the CPU, in the same run: per operator, the full-size UNet, the VAE decode, image quality.

Run: ``.venv/bin/python bench/precision.py [--threads 1] [--runs 2] [--skip-unet] [--skip-vae] [--skip-demo]
[--malloc keep|default]`` (keep: the server's heap settings, engine.cpu_heap).

1. Operators at SD1.5 shapes, fp32 vs bf16 (input cast to bf16, result back to fp32, as ``CpuBf16`` layers do):
   the measurement that decides which operators ``--bf16-unet`` / ``--bf16-vae`` run in bf16 (engine.precision).
2. The full-size SD1.5 UNet (built on the meta device, random weights), batch 2 (cond + uncond), 32x32 and 64x64
   latents: fp32 (``Plain``) vs ``--bf16-unet`` (bf16 conv/linear weights, fp32 norms, attention, activations);
   relative error of the bf16 output against fp32.
3. The full-size SD VAE decode (random weights), fp32 vs ``--bf16-vae``.
4. The demo model (``engine/demo``, trained): txt2img 128x128, 20 euler steps, the same noise, fp32 vs bf16 UNet
   + VAE; PSNR of the decoded image against fp32 (goal >= 35 dB).

The CPU's flags decide whether bf16 can pay: without AVX512_BF16 / AMX the bench says so (bf16 is emulated).
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from bench._timing import Row, alternate, device_name, parse_args_keeping_heap, print_table  # noqa: E402
from engine.loading import build_assign  # noqa: E402
from engine.networks.unet import UNetConfig, UNetModel  # noqa: E402
from engine.networks.vae import AutoencoderKL, VAEConfig  # noqa: E402
from engine.precision import BF16_CPU_FLAGS, cpu_flags, cpu_has_bf16  # noqa: E402

BF16 = torch.bfloat16
REPO = Path(__file__).resolve().parent.parent


def _bf(fn: Callable[..., torch.Tensor], *xs: torch.Tensor, **kw: Any) -> Callable[[], torch.Tensor]:
    """``fn`` on bf16 copies of ``xs``, result back to fp32 (the conversions are part of the cost)."""
    return lambda: fn(*(x.to(BF16) for x in xs), **kw).float()


def bench_ops(runs: int) -> None:
    """Per-operator fp32 vs bf16 at SD1.5 shapes (64x64 latent, batch 2)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    x_tok, w320 = r(2, 4096, 320), r(320, 320) * 0.05
    x_ff, w_ff = r(2, 1024, 640), r(5120, 640) * 0.05
    x_conv, w_conv = r(2, 320, 64, 64), r(320, 320, 3, 3) * 0.02
    x_deep, w_deep = r(2, 1280, 8, 8), r(1280, 1280, 3, 3) * 0.01
    q, kv = r(2, 8, 4096, 40), r(2, 8, 77, 40)
    gn = nn.GroupNorm(32, 320)
    gn_bf = nn.GroupNorm(32, 320).to(BF16)
    ln = nn.LayerNorm(320)
    ln_bf = nn.LayerNorm(320).to(BF16)
    cases: list[tuple[str, Callable[[], torch.Tensor], Callable[[], torch.Tensor]]] = [
        ("linear 8192x320 -> 320", lambda: F.linear(x_tok, w320), _bf(F.linear, x_tok, w320)),
        ("linear 2048x640 -> 5120 (GEGLU)", lambda: F.linear(x_ff, w_ff), _bf(F.linear, x_ff, w_ff)),
        ("conv3x3 320ch 64x64", lambda: F.conv2d(x_conv, w_conv, padding=1), _bf(F.conv2d, x_conv, w_conv, padding=1)),
        ("conv3x3 1280ch 8x8", lambda: F.conv2d(x_deep, w_deep, padding=1), _bf(F.conv2d, x_deep, w_deep, padding=1)),
        ("self-attention 4096 tok, 8x40", lambda: F.scaled_dot_product_attention(q, q, q),
         _bf(F.scaled_dot_product_attention, q, q, q)),
        ("cross-attention 4096x77", lambda: F.scaled_dot_product_attention(q, kv, kv),
         _bf(F.scaled_dot_product_attention, q, kv, kv)),
        ("GroupNorm 320ch 64x64", lambda: gn(x_conv), _bf(gn_bf, x_conv)),
        ("LayerNorm 8192x320", lambda: ln(x_tok), _bf(ln_bf, x_tok)),
    ]
    print("| operator | fp32 ms | bf16 ms | bf16 speed-up | max rel. error |\n|---|---|---|---|---|")
    with torch.inference_mode():
        for label, f32, bf in cases:
            t32, t16 = alternate([f32, bf], runs)
            ref, got = f32(), bf()
            err = float((got - ref).abs().max() / ref.abs().max())
            print(f"| {label} | {min(t32) * 1e3:.1f} | {min(t16) * 1e3:.1f} | {min(t32) / min(t16):.2f}x | {err:.1e} |")
    print()


def _random_state(cls: type[nn.Module], cfg: Any, seed: int) -> dict[str, torch.Tensor]:
    """A network's state dict with torch's default random init (built on the meta device, then materialised)."""
    with torch.device("meta"):
        net = cls(cfg)
    net.to_empty(device="cpu")
    torch.manual_seed(seed)
    for m in net.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
    return {k: v.detach() for k, v in net.state_dict().items()}


def _pair(cls: type[nn.Module], cfg: Any, sd: dict[str, torch.Tensor]) -> tuple[nn.Module, nn.Module]:
    """(fp32 network, network as --bf16-unet / --bf16-vae load it) over the same weights."""
    path = Path(f"<random {cls.__name__}>")
    f32 = build_assign(cls, cfg, sd, torch.float32, cls.__name__, path)
    bf = build_assign(cls, cfg, sd, torch.float32, cls.__name__, path, storage_dtype=BF16, bf16_ops=True)
    return f32, bf


def _rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.float() - ref.float()).norm() / ref.float().norm())


def bench_unet(runs: int, sizes: list[int]) -> None:
    """Full-size SD1.5 UNet call, fp32 vs bf16, same weights, alternating."""
    cfg = UNetConfig()
    f32, bf = _pair(UNetModel, cfg, _random_state(UNetModel, cfg, 0))
    n = sum(p.numel() for p in f32.parameters())
    g = torch.Generator().manual_seed(1)
    ctx = torch.randn(2, 77, 768, generator=g)
    t = torch.tensor([500.0, 500.0])
    for side in sizes:
        x = torch.randn(2, 4, side, side, generator=g)
        with torch.inference_mode():
            t32, t16 = alternate([partial(f32, x, t, ctx), partial(bf, x, t, ctx)], runs)
            rel = _rel(bf(x, t, ctx), f32(x, t, ctx))
        rows = [Row("fp32", t32), Row("bf16 conv/linear (--bf16-unet)", t16, rel_err=f"{rel:.2e}")]
        print_table(f"SD1.5 UNet ({n / 1e6:.0f}M params), batch 2, {side}x{side} latent, {device_name()}", rows,
                    reference=rows[0])


def bench_vae(runs: int, side: int) -> None:
    """Full-size SD VAE decode, fp32 vs bf16."""
    cfg = VAEConfig()
    f32, bf = _pair(AutoencoderKL, cfg, _random_state(AutoencoderKL, cfg, 0))
    z = torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        t32, t16 = alternate([lambda: f32.decode(z), lambda: bf.decode(z)], runs)
        rel = _rel(bf.decode(z), f32.decode(z))
    rows = [Row("fp32", t32), Row("bf16 conv (--bf16-vae)", t16, rel_err=f"{rel:.2e}")]
    print_table(f"SD VAE decode, {side}x{side} latent ({side * 8}x{side * 8} image), {device_name()}", rows,
                reference=rows[0])


def bench_demo(prompts: list[str], steps: int) -> None:
    """txt2img on the trained demo model: PSNR of bf16 (UNet + VAE) against fp32, same noise."""
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager
    from engine.precision import PrecisionFlags
    from engine.sampling.ksampler import sample

    ckpt = REPO / "engine" / "demo" / "loom-demo-shapes.safetensors"
    loaded = {}
    for name, flags in (("fp32", PrecisionFlags()), ("bf16", PrecisionFlags(unet="bf16", vae="bf16"))):
        loaded[name] = load_checkpoint(ckpt, ModelManager(DevicePolicy.detect(cpu_only=True, flags=flags)))
    print(f"| demo model, 128x128, {steps} euler steps, cfg 6 | PSNR bf16 vs fp32 | latent rel. error |")
    print("|---|---|---|")
    for i, text in enumerate(prompts):
        images, latents = {}, {}
        for name, (model, clip, vae) in loaded.items():
            assert clip is not None and vae is not None
            pos, neg = clip.encode(text), clip.encode("")
            noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(100 + i))
            latents[name] = sample(model, noise, steps, 6.0, "euler", "normal", pos, neg, torch.zeros(1, 4, 16, 16))
            images[name] = vae.decode(latents[name])
        mse = float(torch.mean((images["bf16"] - images["fp32"]) ** 2))
        psnr = math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
        print(f"| {text!r} | {psnr:.1f} dB | {_rel(latents['bf16'], latents['fp32']):.2e} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--unet-sizes", default="32,64", help="latent sides for the UNet (comma separated)")
    ap.add_argument("--vae-size", type=int, default=32, help="latent side of the VAE decode (64 = 512x512)")
    ap.add_argument("--demo-steps", type=int, default=20)
    for part in ("ops", "unet", "vae", "demo"):
        ap.add_argument(f"--skip-{part}", action="store_true")
    args = parse_args_keeping_heap(ap)
    torch.set_num_threads(args.threads)
    native = sorted(set(BF16_CPU_FLAGS) & cpu_flags())
    print(f"machine: {device_name()}, torch {torch.__version__}; CPU flags: "
          f"{' '.join(sorted(f for f in cpu_flags() if f.startswith(('avx512', 'amx', 'avx2'))))}")
    if cpu_has_bf16():
        print(f"bf16: native ({', '.join(native)}): oneDNN runs bf16 dot products with fp32 accumulation\n")
    else:
        print("bf16: this CPU has NO AVX512_BF16 / AMX: bf16 is emulated and expected to be SLOWER than fp32\n")
    if not args.skip_ops:
        bench_ops(max(args.runs, 3))
    if not args.skip_unet:
        bench_unet(args.runs, [int(s) for s in args.unet_sizes.split(",")])
    if not args.skip_vae:
        bench_vae(args.runs, args.vae_size)
    if not args.skip_demo:
        bench_demo(["a red circle", "a yellow square on a blue background", "a green triangle"], args.demo_steps)


if __name__ == "__main__":
    main()
