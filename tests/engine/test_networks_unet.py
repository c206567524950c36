"""The LDM UNet against diffusers' UNet2DConditionModel on tiny random configs (weights renamed in the test)."""
from __future__ import annotations

import pytest
import torch

from engine.networks.unet import UNetConfig, UNetModel, timestep_embedding

diffusers = pytest.importorskip("diffusers")


def diffusers_to_ldm(sd: dict[str, torch.Tensor], layers: int, levels: int) -> dict[str, torch.Tensor]:
    """Rename a diffusers UNet state dict to LDM (openaimodel) keys. Test-only helper."""
    res = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        p = k.split(".")
        if p[0] == "time_embedding":
            n = "time_embed." + {"linear_1": "0", "linear_2": "2"}[p[1]] + "." + p[2]
        elif p[0] == "add_embedding":
            n = "label_emb.0." + {"linear_1": "0", "linear_2": "2"}[p[1]] + "." + p[2]
        elif p[0] == "conv_in":
            n = "input_blocks.0.0." + p[1]
        elif p[0] == "conv_norm_out":
            n = "out.0." + p[1]
        elif p[0] == "conv_out":
            n = "out.2." + p[1]
        elif p[0] == "down_blocks":
            i, kind, j, rest = int(p[1]), p[2], int(p[3]), p[4:]
            if kind == "resnets":
                n = f"input_blocks.{(layers + 1) * i + j + 1}.0.{res[rest[0]]}.{rest[1]}"
            elif kind == "attentions":
                n = f"input_blocks.{(layers + 1) * i + j + 1}.1." + ".".join(rest)
            else:
                n = f"input_blocks.{(layers + 1) * (i + 1)}.0.op." + rest[-1]
        elif p[0] == "mid_block":
            kind, j, rest = p[1], int(p[2]), p[3:]
            if kind == "resnets":
                n = f"middle_block.{2 * j}.{res[rest[0]]}.{rest[1]}"
            else:
                n = "middle_block.1." + ".".join(rest)
        elif p[0] == "up_blocks":
            i, kind, j, rest = int(p[1]), p[2], int(p[3]), p[4:]
            if kind == "resnets":
                n = f"output_blocks.{(layers + 1) * i + j}.0.{res[rest[0]]}.{rest[1]}"
            elif kind == "attentions":
                n = f"output_blocks.{(layers + 1) * i + j}.1." + ".".join(rest)
            else:
                has_attn = any(x.startswith(f"up_blocks.{i}.attentions.") for x in sd)
                n = f"output_blocks.{(layers + 1) * i + layers}.{2 if has_attn else 1}.conv." + rest[-1]
        else:
            raise KeyError(k)
        out[n] = v
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _perturb(model: torch.nn.Module) -> None:
    """Random biases / norm gains so a mis-mapped affine shows up."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


def test_sd1_layout_matches_diffusers() -> None:
    torch.manual_seed(0)
    ref = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 64, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=24, attention_head_dim=4, norm_num_groups=32,
    ).eval()
    _perturb(ref)
    cfg = UNetConfig(model_channels=32, channel_mult=(1, 2, 2, 2), context_dim=24, num_heads=4)
    ours = UNetModel(cfg).eval()
    ours.load_state_dict(diffusers_to_ldm(ref.state_dict(), 2, 4), strict=True)
    x = torch.randn(2, 4, 16, 8)
    t = torch.tensor([999.0, 17.0])
    ctx = torch.randn(2, 77, 24)
    with torch.no_grad():
        expected = ref(x, t, encoder_hidden_states=ctx).sample
        got = ours(x, t, ctx)
    assert _rel(got, expected) <= 1e-5


def test_sdxl_like_linear_proj_and_adm_matches_diffusers() -> None:
    torch.manual_seed(0)
    ref = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2), cross_attention_dim=40, attention_head_dim=(2, 4, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24 + 6 * 8, norm_num_groups=32,
    ).eval()
    _perturb(ref)
    cfg = UNetConfig(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=(2, 2, 2),
                     transformer_depth=(0, 0, 1, 1, 2, 2), transformer_depth_output=(0, 0, 0, 1, 1, 1, 2, 2, 2),
                     transformer_depth_middle=2, context_dim=40, num_head_channels=16,
                     use_linear_in_transformer=True, num_classes="sequential", adm_in_channels=72)
    ours = UNetModel(cfg).eval()
    ours.load_state_dict(diffusers_to_ldm(ref.state_dict(), 2, 3), strict=True)
    x = torch.randn(2, 4, 8, 8)
    t = torch.tensor([500.0, 3.0])
    ctx = torch.randn(2, 77, 40)
    pooled = torch.randn(2, 24)
    time_ids = torch.tensor([[64.0, 64, 0, 0, 64, 64], [128.0, 96, 8, 0, 128, 96]])
    # diffusers: attention_head_dim is a head count (64 ch / 4 = 16 per head here); it embeds each size value with 8-wide sinusoids (cos first), flattened after the pooled vector
    y = torch.cat([pooled, timestep_embedding(time_ids.flatten(), 8).reshape(2, -1)], dim=1)
    with torch.no_grad():
        expected = ref(x, t, encoder_hidden_states=ctx,
                       added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        got = ours(x, t, ctx, y=y)
    assert _rel(got, expected) <= 1e-5


def test_adm_model_requires_y() -> None:
    cfg = UNetConfig(model_channels=32, channel_mult=(1,), num_res_blocks=(1,), transformer_depth=(0,),
                     transformer_depth_output=(0, 0), transformer_depth_middle=-1, context_dim=8,
                     num_classes="sequential", adm_in_channels=4)
    with pytest.raises(ValueError, match="pass y"):
        UNetModel(cfg)(torch.randn(1, 4, 8, 8), torch.tensor([1.0]), torch.randn(1, 3, 8))


def test_skip_connection_only_when_channels_change() -> None:
    cfg = UNetConfig(model_channels=32, channel_mult=(1, 1, 2), num_res_blocks=(1, 1, 1),
                     transformer_depth=(0, 0, 0), transformer_depth_output=(0,) * 6, transformer_depth_middle=-1,
                     context_dim=8)
    keys = UNetModel(cfg).state_dict().keys()
    assert "input_blocks.1.0.skip_connection.weight" not in keys
    assert "input_blocks.3.0.skip_connection.weight" not in keys
    assert "input_blocks.5.0.skip_connection.weight" in keys


def test_nine_channel_input_and_odd_latent_size() -> None:
    cfg = UNetConfig(model_channels=32, in_channels=9, channel_mult=(1, 2), num_res_blocks=(1, 1),
                     transformer_depth=(1, 0), transformer_depth_output=(1, 1, 0, 0), context_dim=16, num_heads=2)
    out = UNetModel(cfg)(torch.randn(1, 9, 9, 7), torch.tensor([10.0]), torch.randn(1, 5, 16))
    assert out.shape == (1, 4, 9, 7)
