"""One Flux / SD3.5 MMDiT model call: Loom's network vs diffusers' FluxTransformer2DModel / SD3Transformer2DModel
with the same weights (the tiny fixtures, converted with diffusers' own single-file converters), same inputs, same
run. Prints the max relative difference of the velocity and the time per call of each.

Run: ``.venv/bin/python bench/flow_step.py [--size 16] [--runs 5]`` (latent side; 16 = 128 px). CPU, float32.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FIX = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "families2"


def _time(fn, runs: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    out = fn()
    t0 = time.perf_counter()
    for _ in range(runs):
        out = fn()
    return (time.perf_counter() - t0) / runs, out


def _flux_converter():  # type: ignore[no-untyped-def]
    """diffusers' single-file Flux converter with its width read from the file (it hard-codes 3072, the real
    width, in one place: the single blocks' linear1 split)."""
    import inspect

    from diffusers.loaders import single_file_utils

    src = inspect.getsource(single_file_utils.convert_flux_transformer_checkpoint_to_diffusers)
    assert src.count("inner_dim = 3072") == 1
    namespace = dict(vars(single_file_utils))
    exec(src.replace("inner_dim = 3072", "inner_dim = checkpoint['img_in.weight'].shape[0]"), namespace)  # noqa: S102
    return namespace["convert_flux_transformer_checkpoint_to_diffusers"]


def flux(size: int, runs: int) -> None:
    import torch
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import load_file

    from engine.device import DevicePolicy
    from engine.loading import load_unet
    from engine.model_management import ModelManager

    model = load_unet(FIX / "tiny-flux1-dev.safetensors", ModelManager(DevicePolicy.cpu()))
    c = model.diffusion_model.config
    ref = FluxTransformer2DModel(patch_size=1, in_channels=c.in_channels * 4, num_layers=c.depth,
                                 num_single_layers=c.depth_single_blocks, attention_head_dim=c.hidden_size // c.num_heads,
                                 num_attention_heads=c.num_heads, joint_attention_dim=c.context_dim,
                                 pooled_projection_dim=c.vec_in_dim, guidance_embeds=True,
                                 axes_dims_rope=tuple(c.axes_dim))
    sd = {k: v.float() for k, v in load_file(str(FIX / "tiny-flux1-dev.safetensors")).items()}
    ref.load_state_dict(_flux_converter()(sd), strict=True)
    ref.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, c.in_channels, size, size, generator=g)
    ctx = torch.randn(1, 64, c.context_dim, generator=g)
    pooled = torch.randn(1, c.vec_in_dim, generator=g)
    sigma = torch.tensor([0.6])
    y = torch.cat([pooled, torch.tensor([[3.5]])], dim=1)
    with torch.no_grad():
        t_loom, v_loom = _time(lambda: model.diffusion_model(x, sigma, ctx, y), runs)
        h = w = size // 2
        img = x.reshape(1, c.in_channels, h, 2, w, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, h * w, -1)
        img_ids = torch.zeros(h, w, 3)
        img_ids[..., 1] = torch.arange(h)[:, None]
        img_ids[..., 2] = torch.arange(w)[None, :]
        call = lambda: ref(hidden_states=img, encoder_hidden_states=ctx, pooled_projections=pooled,  # noqa: E731
                           timestep=sigma, img_ids=img_ids.reshape(-1, 3), txt_ids=torch.zeros(64, 3),
                           guidance=torch.tensor([3.5]), return_dict=False)[0]
        t_ref, out = _time(call, runs)
    v_ref = out.reshape(1, h, w, c.in_channels, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, c.in_channels, size, size)
    err = float((v_loom - v_ref).abs().max() / v_ref.abs().max())
    print(f"  |v| max loom {float(v_loom.abs().max()):.4f}, diffusers {float(v_ref.abs().max()):.4f}")
    print(f"flux dev tiny  {size}x{size} latent: max rel diff {err:.2e}; loom {t_loom * 1e3:.1f} ms, "
          f"diffusers {t_ref * 1e3:.1f} ms per call")


def sd3(size: int, runs: int) -> None:
    import torch
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers
    from safetensors.torch import load_file

    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    model, _, _ = load_checkpoint(FIX / "tiny-sd35m.safetensors", ModelManager(DevicePolicy.cpu()), output_vae=False)
    c = model.diffusion_model.config
    ref = SD3Transformer2DModel(sample_size=size, patch_size=c.patch_size, in_channels=c.in_channels,
                                num_layers=c.depth, attention_head_dim=64, num_attention_heads=c.num_heads,
                                joint_attention_dim=c.context_dim, caption_projection_dim=c.hidden_size,
                                pooled_projection_dim=c.adm_in_channels, out_channels=c.in_channels,
                                pos_embed_max_size=c.pos_embed_max, dual_attention_layers=c.x_self_attn_layers,
                                qk_norm="rms_norm")
    full = load_file(str(FIX / "tiny-sd35m.safetensors"))
    sd = {k[len("model.diffusion_model."):]: v.float() for k, v in full.items()
          if k.startswith("model.diffusion_model.")}
    ref.load_state_dict(convert_sd3_transformer_checkpoint_to_diffusers(sd), strict=True)
    ref.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, c.in_channels, size, size, generator=g)
    ctx = torch.randn(1, 154, c.context_dim, generator=g)
    pooled = torch.randn(1, c.adm_in_channels, generator=g)
    t = torch.tensor([600.0])
    with torch.no_grad():
        t_loom, v_loom = _time(lambda: model.diffusion_model(x, t, ctx, pooled), runs)
        t_ref, v_ref = _time(lambda: ref(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled,
                                         timestep=t, return_dict=False)[0], runs)
    err = float((v_loom - v_ref).abs().max() / v_ref.abs().max())
    print(f"sd3.5m tiny    {size}x{size} latent: max rel diff {err:.2e}; loom {t_loom * 1e3:.1f} ms, "
          f"diffusers {t_ref * 1e3:.1f} ms per call")


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-flux", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if not a.skip_flux:
        flux(a.size, a.runs)
    sd3(a.size, a.runs)


if __name__ == "__main__":
    main()
