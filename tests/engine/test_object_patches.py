"""ComfyUI's object patches on a MODEL clone (ModelHandle.add_object_patch / get_model_object): a block's forward
replaced while that clone samples and put back after, the noise schedule replaced on the clone only, and patches
the network has no place for refused by name."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine.device import DevicePolicy
from engine.loading import load_checkpoint
from engine.model_management import ModelManager
from engine.sampling import sample

FIX = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def tiny() -> Any:
    model, clip, _ = load_checkpoint(FIX / "tiny-sd15" / "tiny-sd15.safetensors", ModelManager(DevicePolicy.cpu()))
    assert clip is not None
    return model, clip.encode("a red circle"), clip.encode("")


def _run(model: Any, pos: Any, neg: Any) -> torch.Tensor:
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    return sample(model, noise, 3, 5.0, "euler", "normal", pos, neg, torch.zeros(1, 4, 8, 8), seed=1)


def test_a_patched_forward_runs_for_the_clone_only_and_is_put_back(tiny: Any) -> None:
    model, pos, neg = tiny
    plain = _run(model, pos, neg)
    block = model.diffusion_model.get_submodule("output_blocks.0.0")
    original = block.forward
    calls: list[tuple[int, ...]] = []

    def doubled(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:  # how packs write them
        calls.append(tuple(x.shape))
        return original(x, *args, **kwargs) * 2

    clone = model.clone()
    clone.add_object_patch("diffusion_model.output_blocks.0.0.forward", doubled)
    assert clone.get_model_object("diffusion_model.output_blocks.0.0.forward") is doubled
    assert model.get_model_object("diffusion_model.output_blocks.0.0") is block
    out = _run(clone, pos, neg)
    assert len(calls) == 3 and not torch.equal(out, plain)  # one batched call (cond + uncond) per euler step
    assert "forward" not in block.__dict__  # put back: the class's forward again
    assert torch.equal(_run(model, pos, neg), plain) and len(calls) == 3
    again = clone.clone()  # clones keep the patch
    assert torch.equal(_run(again, pos, neg), out) and len(calls) == 6


def test_model_sampling_patch_replaces_the_clone_s_schedule(tiny: Any) -> None:
    from engine.sampling.model_sampling import ModelSamplingDiscrete

    model, pos, neg = tiny
    clone = model.clone()
    v = ModelSamplingDiscrete(prediction="v")
    clone.add_object_patch("model_sampling", v)
    assert clone.get_model_object("model_sampling") is v and model.get_model_object("model_sampling") is not v
    reference = model.clone()
    reference.model_sampling = v  # what Loom's own ModelSamplingDiscrete node does
    assert torch.equal(_run(clone, pos, neg), _run(reference, pos, neg))


def test_patches_the_network_has_no_place_for_are_refused(tiny: Any) -> None:
    clone = tiny[0].clone()
    with pytest.raises(ValueError, match="not the whole network"):
        clone.add_object_patch("diffusion_model", torch.nn.Identity())
    with pytest.raises(ValueError, match="no submodule 'output_blocks.99'"):
        clone.add_object_patch("diffusion_model.output_blocks.99.forward", print)
