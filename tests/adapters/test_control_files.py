"""ControlNet / T2I-Adapter files: layout, family and config detection (tiny files and the real full-size key
sets built on the meta device), the diffusers key map, diff ControlNets, pickles and clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from adapter_helpers import ADA, FIX

from engine.adapters.control_load import load_control, to_cldm_keys
from engine.adapters.detect import (
    LAYOUT_DIFFUSERS,
    LAYOUT_T2I_FULL,
    LAYOUT_T2I_LIGHT,
    LAYOUT_V10,
    LAYOUT_V11,
    ControlNetConfig,
    T2IConfig,
    control_family,
)
from engine.adapters.networks import ControlNet, build_t2i
from engine.device import DevicePolicy
from engine.errors import UnknownModelError
from engine.model_management import ModelManager
from engine.networks.configs import UNetConfig
from engine.unet_names import ldm_to_diffusers_modules

CONFIGS = json.loads((ADA / "adapters.config.json").read_text())
V11 = "tiny-control_v11p_sd15_canny_fp16.safetensors"
DIFFUSERS = "tiny-control_v11p_sd15_canny.diffusers.fp16.safetensors"
V10 = "tiny-control_sd15_canny_v10.safetensors"
SDXL = "tiny-controlnet-canny-sdxl-1.0.diffusers.fp16.safetensors"
T2I_FULL = "tiny-t2iadapter_depth_sd15v2.safetensors"
T2I_LIGHT = "tiny-t2iadapter_color_sd14v1.safetensors"

SD15_REAL = UNetConfig()  # 320, (1,2,4,4), 8 heads, context 768
SDXL_REAL = UNetConfig(channel_mult=(1, 2, 4), num_res_blocks=(2, 2, 2), transformer_depth=(0, 0, 2, 2, 10, 10),
                       transformer_depth_middle=10, context_dim=2048, num_head_channels=64,
                       use_linear_in_transformer=True, num_classes="sequential", adm_in_channels=2816)


@pytest.fixture(scope="module")
def manager() -> ModelManager:
    return ModelManager(DevicePolicy.cpu())


def _shapes(name: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v[0]) for k, v in CONFIGS[name]["keys"].items()}


@pytest.mark.parametrize(("name", "layout", "family"), [
    (V11, LAYOUT_V11, "sd15"), (DIFFUSERS, LAYOUT_DIFFUSERS, "sd15"), (V10, LAYOUT_V10, "sd15"),
    (SDXL, LAYOUT_DIFFUSERS, "sdxl"), (T2I_FULL, LAYOUT_T2I_FULL, "sd15"), (T2I_LIGHT, LAYOUT_T2I_LIGHT, "sd15")])
def test_tiny_files_load_with_the_metadata_config(name: str, layout: str, family: str, manager: ModelManager) -> None:
    spec = control_family(_shapes(name), name)
    assert (spec.layout, spec.family.name) == (layout, family)
    handle = load_control(ADA / name, manager)
    assert handle.spec.layout == layout and handle.family == family
    meta = CONFIGS[name]
    if isinstance(handle.config, ControlNetConfig):
        unet = handle.config.unet
        for key in ("model_channels", "context_dim", "num_heads", "num_head_channels", "adm_in_channels"):
            if key in meta["unet"]:
                assert getattr(unet, key) == meta["unet"][key], key
        assert list(unet.channel_mult) == meta["unet"]["channel_mult"]
        assert list(unet.transformer_depth) == meta["unet"]["transformer_depth"]
        assert unet.transformer_depth_middle == meta["unet"]["transformer_depth_middle"]
        assert handle.config.hint_widths == (16, 16, 32, 32, 96, 96, 256)
    else:
        assert isinstance(handle.config, T2IConfig)
        assert list(handle.config.channels) == meta["channels"] and handle.config.cin == meta["cin"]
        assert handle.config.nums_rb == meta["nums_rb"]
        assert handle.config.ksize == meta.get("ksize", 3)
    assert all(p.dtype == torch.float32 for p in handle.module.parameters())  # fp16 files upcast on load


def test_diffusers_and_v11_load_to_the_same_tensors(manager: ModelManager) -> None:
    a = load_control(ADA / V11, manager).module.state_dict()
    b = load_control(ADA / DIFFUSERS, manager).module.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_loaded_once_per_file_and_copies_share_the_network(manager: ModelManager) -> None:
    a, b = load_control(ADA / V11, manager), load_control(ADA / V11, manager)
    assert a is not b and a.module is b.module
    c = a.copy().set_cond_hint(torch.zeros(1, 3, 8, 8), 0.5, (0.1, 0.9))
    assert a.strength == 1.0 and c.strength == 0.5 and c.timestep_percent_range == (0.1, 0.9)


def _meta_cldm(unet: UNetConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = ControlNet(ControlNetConfig(unet=unet))
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _to_diffusers(shapes: dict[str, tuple[int, ...]], unet: UNetConfig) -> dict[str, tuple[int, ...]]:
    modules = sorted({k.rsplit(".", 1)[0] for k in shapes})
    names = ldm_to_diffusers_modules(unet, modules)
    out = {}
    for key, shape in shapes.items():
        module, param = key.rsplit(".", 1)
        parts = module.split(".")
        if parts[0] == "zero_convs":
            new = f"controlnet_down_blocks.{parts[1]}"
        elif parts[0] == "middle_block_out":
            new = "controlnet_mid_block"
        elif parts[0] == "input_hint_block":
            i = int(parts[1])
            new = ("controlnet_cond_embedding.conv_in" if i == 0 else "controlnet_cond_embedding.conv_out"
                   if i == 14 else f"controlnet_cond_embedding.blocks.{i // 2 - 1}")
        else:
            head = next(m for m in sorted(names, key=len, reverse=True) if module == m or module.startswith(m + "."))
            new = names[head] + module[len(head):]
        out[f"{new}.{param}"] = shape
    return out


@pytest.mark.parametrize(("unet", "family"), [(SD15_REAL, "sd15"), (SDXL_REAL, "sdxl")])
def test_real_full_size_key_sets(unet: UNetConfig, family: str) -> None:
    """The real SD1.5 / SDXL ControlNet key and shape sets in all three layouts (built on the meta device)."""
    from engine.adapters.control_load import control_net_config

    cldm = _meta_cldm(unet)
    layouts = {LAYOUT_V11: cldm, LAYOUT_V10: {"control_model." + k: v for k, v in cldm.items()} | {"betas": (1000,)},
               LAYOUT_DIFFUSERS: _to_diffusers(cldm, unet)}
    for layout, shapes in layouts.items():
        spec = control_family(shapes)
        assert (spec.layout, spec.family.name) == (layout, family)
        renamed = to_cldm_keys(shapes, layout)
        assert set(renamed) == set(cldm), layout
        cfg = control_net_config(renamed, spec, None)
        assert cfg.unet.channel_mult == unet.channel_mult and cfg.unet.context_dim == unet.context_dim
        assert cfg.unet.transformer_depth == unet.transformer_depth
        assert cfg.unet.heads_for(640) == unet.heads_for(640)  # family heads: 8 for SD1.x, 64 ch/head for SDXL


def test_real_t2i_key_sets() -> None:
    for cfg, layout in ((T2IConfig("full", (320, 640, 1280, 1280), 2, 192, ksize=1, skep=False), LAYOUT_T2I_FULL),
                        (T2IConfig("light", (320, 640, 1280, 1280), 4, 192, ksize=3), LAYOUT_T2I_LIGHT),
                        (T2IConfig("full", (320, 640, 1280, 1280), 2, 768, ksize=1, use_conv=True, xl=True),
                         LAYOUT_T2I_FULL)):
        with torch.device("meta"):
            net = build_t2i(cfg)
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        spec = control_family(shapes)
        assert spec.layout == layout and spec.family.name == ("sdxl" if cfg.xl else "sd15")
        found = spec.found["t2i"]
        assert (found.channels, found.cin, found.nums_rb, found.use_conv) == (cfg.channels, cfg.cin, cfg.nums_rb,
                                                                             cfg.use_conv)


def test_unknown_and_union_layouts_fail_naming_the_keys() -> None:
    with pytest.raises(UnknownModelError, match="not a ControlNet or T2I-Adapter.*lora_unet"):
        control_family({"lora_unet_down.weight": (4, 4)}, "x.safetensors")
    with pytest.raises(UnknownModelError, match="union ControlNet"):
        control_family({"task_embedding": (8, 320), "zero_convs.0.0.weight": (320, 320, 1, 1)})


def test_diff_controlnet_adds_the_model_weights(tmp_path: Path, manager: ModelManager) -> None:
    from safetensors.torch import load_file, save_file

    from engine.loading import load_checkpoint

    model, _, _ = load_checkpoint(FIX / "tiny-sd15" / "tiny-sd15.safetensors", manager)
    base = model.diffusion_model.state_dict()
    sd = load_file(str(ADA / V10))
    diff = {}
    for k, v in sd.items():
        inner = k.removeprefix("control_model.")
        diff[k] = (v.float() - base[inner]).contiguous() if k != inner and inner in base else v
    diff["difference"] = torch.tensor([0.0])
    path = tmp_path / "diff.safetensors"
    save_file(diff, str(path))
    with pytest.raises(Exception, match="diff ControlNet"):
        load_control(path, manager)
    loaded = load_control(path, manager, model).module.state_dict()
    plain = load_control(ADA / V10, manager).module.state_dict()
    assert max(float((loaded[k] - plain[k]).abs().max()) for k in plain) < 2e-3  # fp16 rounding of the file


def test_weights_only_pickle_loads_like_the_safetensors(tmp_path: Path, manager: ModelManager) -> None:
    from safetensors.torch import load_file

    path = tmp_path / "control_v11p_sd15_canny.pth"
    torch.save(load_file(str(ADA / V11)), path)
    a = load_control(path, manager).module.state_dict()
    b = load_control(ADA / V11, manager).module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)
