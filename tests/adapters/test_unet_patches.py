"""ComfyUI's transformer_options patch machinery on Loom's UNet: setters with clone copy semantics, what the
patches receive (block, transformer_index, cond_or_uncond, sigmas, original_shape, n_heads), replace patches."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from adapter_helpers import FIX

from engine.device import DevicePolicy
from engine.loading import load_checkpoint
from engine.model_management import ModelManager
from engine.networks.attention import attention, multihead_attention
from engine.sampling import sample


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    torch.set_num_threads(1)
    model, clip, _ = load_checkpoint(FIX / "tiny-sd15" / "tiny-sd15.safetensors", ModelManager(DevicePolicy.cpu()))
    return model, clip


def _run(model: Any, clip: Any, steps: int = 2) -> torch.Tensor:
    pos, neg = clip.encode("a cat"), clip.encode("blurry")
    latent = torch.zeros(1, 4, 8, 16)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(3))
    return sample(model, noise, steps, 7.0, "euler", "normal", pos, neg, latent, seed=3)


def test_setters_copy_on_clone(tiny: tuple[Any, Any]) -> None:
    model, _ = tiny
    a = model.clone()
    a.set_model_attn2_replace(lambda q, k, v, extra: attention(q, k, v, extra["n_heads"]), "input", 1)
    a.set_model_attn1_patch(lambda n, c, v, extra: (n, c, v))
    b = a.clone()
    b.set_model_attn2_replace(lambda q, k, v, extra: q, "output", 3, 0)
    b.set_model_output_block_patch(lambda h, skip, extra: (h, skip))
    assert "patches_replace" not in model.model_options["transformer_options"]
    assert list(a.model_options["transformer_options"]["patches_replace"]["attn2"]) == [("input", 1)]
    assert set(b.model_options["transformer_options"]["patches_replace"]["attn2"]) == {("input", 1), ("output", 3, 0)}
    assert "output_block_patch" not in a.model_options["transformer_options"]["patches"]


def test_identity_replace_matches_the_builtin_path_and_sees_comfy_options(tiny: tuple[Any, Any]) -> None:
    model, clip = tiny
    seen: list[dict[str, Any]] = []

    def replace(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra: dict[str, Any]) -> torch.Tensor:
        seen.append({key: extra[key] for key in ("block", "block_index", "transformer_index", "cond_or_uncond",
                                                 "original_shape", "n_heads", "dim_head")}
                    | {"sigma": float(extra["sigmas"][0])})
        return multihead_attention(q, k, v, extra["n_heads"])

    patched = model.clone()
    blocks = [("input", i) for i in (1, 2, 4, 5, 7, 8)] + [("middle", 0)] + [("output", i) for i in range(3, 12)]
    for kind, number in blocks:
        patched.set_model_attn2_replace(replace, kind, number)
    plain = _run(model, clip)
    out = _run(patched, clip)
    assert torch.equal(plain, out)
    first_call = seen[:16]
    assert [s["transformer_index"] for s in first_call] == list(range(16))
    assert [s["block"] for s in first_call] == blocks
    assert all(s["block_index"] == 0 and s["n_heads"] == 8 for s in first_call)
    assert first_call[0]["cond_or_uncond"] == [1, 0] and first_call[0]["original_shape"] == [2, 4, 8, 16]
    assert first_call[0]["sigma"] == pytest.approx(14.6146, rel=1e-4)
    assert first_call[0]["dim_head"] == 4  # 32 channels / 8 heads at level 0


def test_patches_change_the_output_where_they_act(tiny: tuple[Any, Any]) -> None:
    model, clip = tiny
    calls: dict[str, int] = {"attn1": 0, "in": 0, "out": 0}

    def attn1(n: torch.Tensor, c: torch.Tensor, v: torch.Tensor, extra: dict[str, Any]) -> Any:
        calls["attn1"] += 1
        return n, c, v

    def inp(h: torch.Tensor, extra: dict[str, Any]) -> torch.Tensor:
        calls["in"] += 1
        return h

    def out(h: torch.Tensor, skip: torch.Tensor, extra: dict[str, Any]) -> Any:
        calls["out"] += 1
        return h, skip * 0.5 if extra["block"] == ("output", 0) else skip

    patched = model.clone()
    patched.set_model_attn1_patch(attn1)
    patched.set_model_input_block_patch(inp)
    patched.set_model_output_block_patch(out)
    result = _run(patched, clip, steps=1)
    assert calls == {"attn1": 16, "in": 12, "out": 12}
    assert not torch.equal(result, _run(model, clip, steps=1))


def test_masked_optimized_attention_contract() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 5, 8, generator=g) for _ in range(3))
    plain = multihead_attention(q, k, v, 2)
    assert torch.equal(plain, attention(q, k, v, 2))
    assert torch.allclose(multihead_attention(q, k, v, 2, mask=torch.zeros(5, 5)), plain, atol=1e-6)
    split = multihead_attention(q.view(2, 5, 2, 4).transpose(1, 2), k.view(2, 5, 2, 4).transpose(1, 2),
                                v.view(2, 5, 2, 4).transpose(1, 2), 2, skip_reshape=True)
    assert torch.allclose(split, plain, atol=1e-6)
