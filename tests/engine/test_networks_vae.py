"""AutoencoderKL against diffusers' AutoencoderKL on a tiny random config (weights renamed in the test)."""
from __future__ import annotations

import pytest
import torch

from engine.networks.vae import AutoencoderKL, VAEConfig

diffusers = pytest.importorskip("diffusers")


def diffusers_vae_to_ldm(sd: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """Rename a diffusers AutoencoderKL state dict to LDM keys. Test-only helper."""
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        p = k.split(".")
        if p[0] in ("quant_conv", "post_quant_conv"):
            out[k] = v
            continue
        side, rest = p[0], p[1:]
        if rest[0] in ("down_blocks", "up_blocks"):
            i = int(rest[1]) if rest[0] == "down_blocks" else levels - 1 - int(rest[1])
            stage = "down" if rest[0] == "down_blocks" else "up"
            if rest[2] == "resnets":
                name = rest[4].replace("conv_shortcut", "nin_shortcut")
                n = f"{side}.{stage}.{i}.block.{rest[3]}.{name}.{rest[-1]}"
            else:
                n = f"{side}.{stage}.{i}.{'downsample' if stage == 'down' else 'upsample'}.conv.{rest[-1]}"
        elif rest[0] == "mid_block":
            if rest[1] == "resnets":
                n = f"{side}.mid.block_{int(rest[2]) + 1}.{rest[3]}.{rest[-1]}"
            else:
                n = f"{side}.mid.attn_1.{attn[rest[3]]}.{rest[-1]}"
                if v.ndim == 2:
                    v = v[:, :, None, None]
        else:
            n = f"{side}.{ {'conv_norm_out': 'norm_out'}.get(rest[0], rest[0]) }.{rest[-1]}"
        out[n] = v
    return out


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, AutoencoderKL]:
    torch.manual_seed(0)
    types = 3
    ref = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32, 64),
        down_block_types=("DownEncoderBlock2D",) * types, up_block_types=("UpDecoderBlock2D",) * types,
        layers_per_block=2, norm_num_groups=32,
    ).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    ours = AutoencoderKL(VAEConfig(ch=32, ch_mult=(1, 1, 2), num_res_blocks=2)).eval()
    ours.load_state_dict(diffusers_vae_to_ldm(ref.state_dict(), 3), strict=True)
    return ref, ours


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_encoder_mean_matches_diffusers(pair: tuple[torch.nn.Module, AutoencoderKL]) -> None:
    ref, ours = pair
    x = torch.rand(2, 3, 32, 24) * 2 - 1
    with torch.no_grad():
        expected = ref.encode(x).latent_dist.mean
        got = ours.encode(x)
    assert got.shape == (2, 4, 8, 6)
    assert _rel(got, expected) <= 1e-5


def test_decoder_matches_diffusers(pair: tuple[torch.nn.Module, AutoencoderKL]) -> None:
    ref, ours = pair
    z = torch.randn(1, 4, 6, 5)
    with torch.no_grad():
        expected = ref.decode(z).sample
        got = ours.decode(z)
    assert _rel(got, expected) <= 1e-5


def test_shortcut_conv_exactly_when_channels_differ() -> None:
    keys = AutoencoderKL(VAEConfig(ch=32, ch_mult=(1, 1, 2, 2))).state_dict().keys()
    shortcuts = sorted(k for k in keys if "nin_shortcut.weight" in k)
    assert shortcuts == ["decoder.up.1.block.0.nin_shortcut.weight", "encoder.down.2.block.0.nin_shortcut.weight"]
