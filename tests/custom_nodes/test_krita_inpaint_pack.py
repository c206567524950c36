"""Acly/comfyui-inpaint-nodes' Fooocus inpaint patch on Loom's MODEL handle: the pack's own loader and apply node,
a tiny patch file in Fooocus' layout (`diffusion_model.<parameter>` -> (uint8 weights, min, max)) and head file.

The real patch belongs to SDXL (its head has 320 channels, the width of SDXL's first block), so the tiny SD1.5 model is
not sampled with it; what is checked is the part that runs on Loom: the pack's key mapping (`model.model.state_dict()`,
`comfy.lora.model_lora_keys_unet(model.model)`), `add_patches` with its `("fooocus", ...)` values, and the weights its
replacement of `comfy.lora.calculate_weight` computes (dequantised patch added to the weight).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import real_packs
import torch

PIN = real_packs.pin("comfyui-inpaint-nodes")
pytestmark = real_packs.skip_unless_staged(PIN)

PATCHED = ("input_blocks.1.0.in_layers.2.weight", "middle_block.1.proj_in.weight", "out.2.bias")


def _run(cls: type, **inputs: Any) -> Any:
    result = getattr(cls(), cls.FUNCTION)(**inputs)  # type: ignore[attr-defined]
    return result["result"] if isinstance(result, dict) else result


def test_fooocus_patch_through_the_pack(packs: Any, tiny_sd15: Any) -> None:
    model, _ = tiny_sd15
    real_packs.stage(PIN, packs.root)
    reports = packs.load()
    assert reports[PIN.name].status == "loaded", reports[PIN.name].error
    import folder_paths

    inpaint = Path(folder_paths.models_dir) / "inpaint"
    inpaint.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    torch.save({"head": torch.randn(320, 5, 3, 3, generator=generator)}, inpaint / "head.pth")
    params = dict(model.diffusion_model.named_parameters())
    patch: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    expected: dict[str, torch.Tensor] = {}
    for name in PATCHED:
        shape = params[name].shape
        quantised = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
        low, high = torch.full((shape[0],) + (1,) * (len(shape) - 1), -0.01), torch.full((1,), 0.02)
        patch["diffusion_model." + name] = (quantised, low, high)
        expected[name] = params[name].detach().float() + quantised.float() / 255.0 * (high - low) + low
    patch["diffusion_model.not_a_weight"] = (torch.zeros(1, dtype=torch.uint8), torch.zeros(1), torch.ones(1))
    torch.save(patch, inpaint / "tiny.patch")

    (loaded,) = _run(packs.registry.get("INPAINT_LoadFooocusInpaint"), head="head.pth", patch="tiny.patch")
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1.0
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=generator), "noise_mask": mask}
    (patched,) = _run(packs.registry.get("INPAINT_ApplyFooocusInpaint"), model=model, patch=loaded, latent=latent)

    assert patched is not model and sorted(patched.patches) == sorted(PATCHED)
    assert not model.patches  # the input model is untouched (clone semantics)
    blocks = patched.model_options["transformer_options"]["patches"]["input_block_patch"]
    assert len(blocks) == 1 and blocks[0].inpaint_head_feature.shape == (1, 320, 8, 8)
    weights = patched.patched_state_dict()
    for name in PATCHED:
        assert torch.allclose(weights[name].float(), expected[name], atol=1e-6), name
    untouched = "input_blocks.0.0.weight"
    assert torch.equal(weights[untouched], params[untouched].detach())
