"""engine.meta_build: networks built as copies of a kept skeleton are independent, complete and identical."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from engine import meta_build
from engine.detect import detect
from engine.device import DevicePolicy
from engine.families import SD15
from engine.loading import load_checkpoint
from engine.model_management import ModelManager
from engine.networks.configs import ClipTextConfig, UNetConfig, VAEConfig
from engine.networks.ops import Plain
from engine.networks.text_encoders import ClipTextEncoder
from engine.networks.unet import UNetModel
from engine.networks.vae import AutoencoderKL


@pytest.fixture(scope="module")
def ckpt(fixtures_dir: Path) -> Path:
    return fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors"


def _containers(m: nn.Module) -> list[int]:
    return [id(v) for v in m.__dict__.values() if isinstance(v, (dict, set, list))]


def test_two_loads_share_no_module_parameter_or_container(ckpt: Path) -> None:
    meta_build.clear_skeletons()
    a = load_checkpoint(ckpt, ModelManager(DevicePolicy.cpu()))[0].diffusion_model
    b = load_checkpoint(ckpt, ModelManager(DevicePolicy.cpu()))[0].diffusion_model
    mods_a, mods_b = list(a.modules()), list(b.modules())
    assert len(mods_a) == len(mods_b) > 100
    assert not {id(m) for m in mods_a} & {id(m) for m in mods_b}
    assert not {id(p) for p in a.parameters()} & {id(p) for p in b.parameters()}
    assert not {c for m in mods_a for c in _containers(m)} & {c for m in mods_b for c in _containers(m)}
    assert all(not m.training for m in mods_b) and all(not p.requires_grad for p in b.parameters())
    # a hook on one network is not seen by the other, nor by the next copy
    calls: list[str] = []
    a.input_blocks[0].register_forward_hook(lambda *_: calls.append("a"))
    c = load_checkpoint(ckpt, ModelManager(DevicePolicy.cpu()))[0].diffusion_model
    x, t, ctx = torch.randn(1, 4, 8, 8), torch.tensor([10.0]), torch.randn(1, 77, 32)
    with torch.no_grad():
        out_b, out_c = b(x, t, ctx), c(x, t, ctx)
        assert calls == []
        a(x, t, ctx)
    assert calls == ["a"]
    assert torch.equal(out_b, out_c)


def test_copy_matches_a_fresh_construction() -> None:
    meta_build.clear_skeletons()
    ops = meta_build.meta_ops(Plain)
    cfg = UNetConfig(model_channels=32, context_dim=32)
    first = meta_build.meta_build(UNetModel, cfg, operations=ops)
    copy = meta_build.meta_build(UNetModel, cfg, operations=ops)
    assert copy is not first
    assert [type(m) for m in copy.modules()] == [type(m) for m in first.modules()]
    assert repr(copy) == repr(first)
    assert {k: v.shape for k, v in copy.state_dict().items()} == {k: v.shape for k, v in first.state_dict().items()}
    assert copy.config == cfg


class _Odd(nn.Module):
    """Keeps layers in a plain list outside ``_modules``: a copy would share them, so it must be rebuilt."""

    def __init__(self, width: int, device: object = None) -> None:
        super().__init__()
        self.layer = nn.Linear(width, width, device=device)
        self.extra = [nn.Linear(width, width, device=device)]


def test_network_with_shared_state_is_built_afresh_each_time() -> None:
    meta_build.clear_skeletons()
    one, two = meta_build.meta_build(_Odd, 4), meta_build.meta_build(_Odd, 4)
    assert one.extra[0] is not two.extra[0]
    assert one.layer is not two.layer


def test_prewarmed_skeletons_are_the_ones_sd15_detection_asks_for() -> None:
    """The configs ``prewarm_skeletons`` builds are exactly what detection gives for a full-size SD1.5 file."""
    meta_build.clear_skeletons()
    ops = meta_build.meta_ops(Plain)
    shapes: dict[str, tuple[int, ...]] = {}
    nets: list[tuple[str, nn.Module]] = [
        ("model.diffusion_model.", meta_build.meta_build(UNetModel, UNetConfig(), operations=ops)),
        ("first_stage_model.", meta_build.meta_build(AutoencoderKL, VAEConfig(), operations=ops)),
        ("cond_stage_model.", meta_build.meta_build(ClipTextEncoder, ClipTextConfig(), skip_init_mode=True)),
    ]
    for prefix, net in nets:
        shapes.update({prefix + k: tuple(v.shape) for k, v in net.state_dict().items()})
    cfg = detect(shapes, get_tensor=lambda key: torch.zeros(shapes[key]), source="full-size")
    assert cfg.family.name == SD15.name
    assert cfg.unet == UNetConfig() and cfg.vae == VAEConfig()
    assert list(cfg.text.values()) == [ClipTextConfig()]
    meta_build.clear_skeletons()
    meta_build.prewarm_skeletons()
    kept = set(meta_build._skeletons)
    built = meta_build.meta_build(UNetModel, cfg.unet, operations=ops)
    assert set(meta_build._skeletons) == kept and isinstance(built, UNetModel)  # a copy, nothing new built
