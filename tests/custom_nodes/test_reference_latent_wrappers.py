"""A pack's ``apply_model`` wrapper (comfy.patcher_extension) on a Flux model sees the reference latents of a
ReferenceLatent conditioning among the keyword arguments, and what it passes on is what the network gets."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

FLUX = Path(__file__).resolve().parents[1] / "fixtures" / "families2" / "tiny-flux1-dev.safetensors"


def test_an_apply_model_wrapper_passes_reference_latents_on(packs: Any) -> None:
    from engine.device import DevicePolicy
    from engine.loading import load_unet
    from engine.model_management import ModelManager
    from engine.sampling import sample

    packs.load("good_pack")
    import comfy.patcher_extension as pe

    model = load_unet(FLUX, ModelManager(DevicePolicy.cpu()))
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(1, 16, 6, 8, generator=g)
    opts = {"pooled_output": torch.randn(1, 768, generator=g), "reference_latents": [ref],
            "reference_latents_method": "uxo"}
    pos = [[torch.randn(1, 4, model.context_dim, generator=g), opts]]
    noise = torch.randn(1, 16, 8, 8, generator=g)
    seen: list[dict[str, Any]] = []

    def passthrough(executor: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append(kwargs)
        out: torch.Tensor = executor(*args, **kwargs)
        return out

    wrapped = model.clone()
    wrapped.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "see", passthrough)

    def run(m: Any) -> torch.Tensor:
        return sample(m, noise, 2, 1.0, "euler", "simple", pos, [], torch.zeros(1, 16, 8, 8), seed=0)

    assert torch.equal(run(wrapped), run(model))
    assert len(seen) == 2 and seen[0]["ref_latents_method"] == "uxo"
    torch.testing.assert_close(seen[0]["ref_latents"][0], model.latent_format.process_in(ref))

    def drop(executor: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        out: torch.Tensor = executor(*args, **{k: v for k, v in kwargs.items() if not k.startswith("ref_latents")})
        return out

    dropping = model.clone()
    dropping.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "drop", drop)
    plain = [[pos[0][0], {"pooled_output": opts["pooled_output"]}]]
    expected = sample(model, noise, 2, 1.0, "euler", "simple", plain, [], torch.zeros(1, 16, 8, 8), seed=0)
    assert torch.equal(run(dropping), expected)  # what the wrapper passes on is what the network gets
