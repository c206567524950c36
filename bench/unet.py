"""Full-size UNet call (SD1.5, SD2.1, SDXL): Loom's UNetModel vs diffusers' UNet2DConditionModel, same random weights.

Run: ``.venv/bin/python bench/unet.py [--model sd15|sd21|sdxl|all] [--device cuda|cpu] [--dtype fp16|fp32]
[--runs N]``. One call = batch 2 (cond + uncond), 64x64 latent, 77-token context of the model's width (SDXL:
plus the 2816-wide ADM vector, pooled text + size embeddings, given to diffusers as text_embeds / time_ids). Prints min and
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
from typing import Any

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
    ap.add_argument("--model", choices=["sd15", "sd21", "sdxl", "all"], default="sd15")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype_name = args.dtype or ("fp16" if device.type == "cuda" else "fp32")
    dtype = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    runs = args.runs or (10 if device.type == "cuda" else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in (["sd15", "sd21", "sdxl"] if args.model == "all" else [args.model]):
        _bench(name, device, dtype, dtype_name, runs)


def _configs(name: str) -> tuple[dict[str, Any], UNetConfig, int]:
    """diffusers UNet2DConditionModel kwargs, Loom's UNetConfig and the context width of a public model."""
    if name == "sd15":
        return {"cross_attention_dim": 768, "attention_head_dim": 8, "sample_size": 64}, UNetConfig(), 768
    if name == "sd21":
        return ({"cross_attention_dim": 1024, "attention_head_dim": (5, 10, 20, 20), "use_linear_projection": True,
                 "sample_size": 96},
                UNetConfig(context_dim=1024, num_head_channels=64, use_linear_in_transformer=True), 1024)
    if name == "sdxl":
        return ({"down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 "block_out_channels": (320, 640, 1280), "transformer_layers_per_block": (1, 2, 10),
                 "attention_head_dim": (5, 10, 20), "cross_attention_dim": 2048, "use_linear_projection": True,
                 "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
                 "projection_class_embeddings_input_dim": 2816, "sample_size": 128},
                UNetConfig(channel_mult=(1, 2, 4), num_res_blocks=(2, 2, 2), transformer_depth=(0, 0, 2, 2, 10, 10),
                           transformer_depth_output=(0, 0, 0, 2, 2, 2, 10, 10, 10), transformer_depth_middle=10,
                           context_dim=2048, num_head_channels=64, use_linear_in_transformer=True,
                           num_classes="sequential", adm_in_channels=2816), 2048)
    raise ValueError(f"unknown model {name!r}; expected sd15, sd21 or sdxl")


def _bench(name: str, device: torch.device, dtype: torch.dtype, dtype_name: str, runs: int) -> None:
    from diffusers import UNet2DConditionModel

    from engine.adm import size_embedding

    ref_kwargs, cfg, ctx_dim = _configs(name)
    torch.manual_seed(0)
    ref = UNet2DConditionModel(**ref_kwargs).eval()
    with torch.device("meta"):
        ours = UNetModel(cfg)
    ours.load_state_dict(diffusers_to_ldm(ref.state_dict(), 2, len(cfg.channel_mult)), strict=True, assign=True)
    ours.eval()
    ref.to(device, dtype)
    ours.to(device, dtype)
    n_params = sum(p.numel() for p in ours.parameters())

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 64, 64, generator=g).to(device, dtype)
    t = torch.tensor([981.0, 981.0], device=device)
    ctx = torch.randn(2, 77, ctx_dim, generator=g).to(device, dtype)
    ref_extra: dict[str, Any] = {}
    y = None
    if cfg.adm_in_channels:
        pooled = torch.randn(2, 1280, generator=g)
        time_ids = torch.tensor([[512.0, 512.0, 0.0, 0.0, 512.0, 512.0]] * 2)
        y = torch.cat([pooled, torch.stack([size_embedding(row.tolist()) for row in time_ids])], 1).to(device, dtype)
        ref_extra = {"added_cond_kwargs": {"text_embeds": pooled.to(device, dtype), "time_ids": time_ids.to(device)}}

    with torch.inference_mode():
        (ours_times, ref_times), (ours_out, ref_out) = _time_pair(
            (lambda: ours(x, t, ctx, y=y), lambda: ref(x, t, encoder_hidden_states=ctx, **ref_extra).sample),
            runs, device)
    rel = float((ours_out.float() - ref_out.float()).abs().max() / ref_out.float().abs().max())

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    print(f"{name.upper()} UNet ({n_params / 1e6:.0f}M params), batch 2, 64x64 latent, {dtype_name}, {dev_name}, "
          f"torch {torch.__version__}, {runs} timed runs")
    print(f"{'implementation':<34}{'min ms':>10}{'median ms':>12}")
    for label, times in (("loom UNetModel", ours_times), ("diffusers UNet2DConditionModel", ref_times)):
        print(f"{label:<34}{min(times) * 1e3:>10.1f}{statistics.median(times) * 1e3:>12.1f}")
    print(f"max relative difference of outputs: {rel:.2e}\n")
    if device.type == "cuda":
        torch.cuda.empty_cache()

if __name__ == "__main__":
    main()
