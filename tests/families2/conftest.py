"""A tmp ComfyUI models/ tree for the families2 fixtures; derived checkpoints are written at test time from the
stored tiny files and deltas in tests/fixtures/families2 (byte copies of stored tensors; README there)."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from families2_support import FAM2, FIX

SD15 = FIX / "tiny-sd15" / "tiny-sd15.safetensors"
INPAINT_KEY = "model.diffusion_model.input_blocks.0.0.weight"


def make_sd15_inpaint(target: Path) -> None:
    """tiny-sd15 with input_blocks.0.0.weight replaced by the 9-channel delta (the sd-v1-5-inpainting layout)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(SD15), "pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
    with safe_open(str(FAM2 / "tiny-sd15-inpaint.delta.safetensors"), "pt") as f:
        meta = dict(f.metadata() or {})
        delta = f.get_tensor(INPAINT_KEY)
    assert sd[INPAINT_KEY].shape[1] == 4 and bool((delta[:, :4] == sd[INPAINT_KEY]).all())
    sd[INPAINT_KEY] = delta
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(target), metadata={"format": "pt", **{k: v for k, v in meta.items() if k != "format"}})


def make_sd35m_aio(target: Path) -> None:
    """tiny-sd35m plus the three text encoders under text_encoders.{clip_l,clip_g,t5xxl}.transformer. (the layout
    of the SD3 all-in-one files); metadata carries each tower's config, as make_derived.py writes it."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(FAM2 / "tiny-sd35m.safetensors"), "pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
        cfg = json.loads(f.metadata()["tiny_sd35m_config"])
    towers = {}
    for name, key in (("tiny-clip_l", "clip_l"), ("tiny-clip_g", "clip_g"), ("tiny-t5xxl_fp16", "t5xxl")):
        with safe_open(str(FAM2 / f"{name}.safetensors"), "pt") as f:
            sd.update({f"text_encoders.{key}.transformer.{k}": f.get_tensor(k) for k in f.keys()})
            towers[key] = json.loads(next(v for k, v in f.metadata().items() if k.startswith("tiny_")))
    cfg["text_encoders"] = towers
    save_file({k: v.contiguous() for k, v in sd.items()}, str(target),
              metadata={"format": "pt", "tiny_sd35m_aio_config": json.dumps(cfg)})


def make_flux_aio(target: Path, variant: str = "dev") -> None:
    """model.diffusion_model.* <- tiny-flux1-<variant>, vae.* <- tiny-flux-ae, text_encoders.{clip_l,t5xxl}.transformer.*
    (Comfy-Org's flux1-dev-fp8 checkpoint layout, without fp8); metadata as make_derived.py writes it for dev: the
    Flux config only, no text-encoder config."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(FAM2 / f"tiny-flux1-{variant}.safetensors"), "pt") as f:
        sd = {f"model.diffusion_model.{k}": f.get_tensor(k) for k in f.keys()}
        cfg = json.loads(f.metadata()[f"tiny_flux1_{variant}_config"])
    with safe_open(str(FAM2 / "tiny-flux-ae.safetensors"), "pt") as f:
        sd.update({f"vae.{k}": f.get_tensor(k) for k in f.keys()})
    for name, key in (("tiny-clip_l", "clip_l"), ("tiny-t5xxl_fp16", "t5xxl")):
        with safe_open(str(FAM2 / f"{name}.safetensors"), "pt") as f:
            sd.update({f"text_encoders.{key}.transformer.{k}": f.get_tensor(k) for k in f.keys()})
    cfg["all_in_one"] = (f"model.diffusion_model.* <- tiny-flux1-{variant}, vae.* <- tiny-flux-ae, text_encoders."
                         "clip_l.transformer.* <- tiny-clip_l, text_encoders.t5xxl.transformer.* <- tiny-t5xxl_fp16 "
                         "(make_derived.py)")
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(target),
              metadata={"format": "pt", f"tiny_flux1_{variant}_aio_config": json.dumps(cfg)})


def make_sd35m_unet(target: Path) -> None:
    """tiny-sd35m's MMDiT alone, keys without prefix (the layout of a diffusion_models/ file)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    prefix = "model.diffusion_model."
    with safe_open(str(FAM2 / "tiny-sd35m.safetensors"), "pt") as f:
        sd = {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(target))


@pytest.fixture(scope="session")
def models2_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("families2")
    make_sd15_inpaint(base / "models" / "checkpoints" / "tiny-sd15-inpaint.safetensors")
    make_sd35m_aio(base / "models" / "checkpoints" / "tiny-sd35m-aio.safetensors")
    make_sd35m_unet(base / "models" / "diffusion_models" / "tiny-sd35m-unet.safetensors")
    make_flux_aio(base / "models" / "checkpoints" / "tiny-flux1-dev-aio.safetensors")
    make_flux_aio(base / "models" / "checkpoints" / "tiny-flux1-schnell-aio.safetensors", "schnell")
    for rel, name in FLOW_LINKS.items():
        target = base / "models" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(FAM2 / name, target)
    return base


@pytest.fixture(scope="session")
def runtime2(models2_base: Path) -> Iterator[Any]:
    import torch

    from app.runner import build_runtime

    torch.set_num_threads(1)
    rt = build_runtime(models2_base, cpu=True)
    for name in ("init_128x64.png", "mask_128x64.png"):
        shutil.copy(FIX / "tiny-sd15" / name, Path(rt.services.paths.input_dir) / name)
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def run2(runtime2: Any) -> Any:
    """run2(graph, prompt_id) -> ExecutionOutcome through the real nodes and the executor."""
    from executor import PromptExecutor, validate_prompt
    from nodes.checks import builtin_checks

    def _run(graph: dict[str, Any], prompt_id: str = "p") -> Any:
        valid = validate_prompt(runtime2.registry, graph, extra_checks=builtin_checks(runtime2.services))
        return PromptExecutor(runtime2.registry, keep_values=True).execute(valid.prompt, prompt_id, {},
                                                                           valid.outputs)
    return _run


FLOW_LINKS = {
    "diffusion_models/tiny-flux1-dev.safetensors": "tiny-flux1-dev.safetensors",
    "diffusion_models/tiny-flux1-schnell.safetensors": "tiny-flux1-schnell.safetensors",
    "vae/tiny-flux-ae.safetensors": "tiny-flux-ae.safetensors",
    "text_encoders/tiny-clip_l.safetensors": "tiny-clip_l.safetensors",
    "text_encoders/tiny-clip_g.safetensors": "tiny-clip_g.safetensors",
    "checkpoints/tiny-sd35m.safetensors": "tiny-sd35m.safetensors",
    "text_encoders/tiny-t5xxl_fp16.safetensors": "tiny-t5xxl_fp16.safetensors",
}
