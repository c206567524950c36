"""HypernetworkLoader: A1111 hypernetworks on the attention key / value inputs (tiny-sd15, widths 32 / 64 / 128)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from catalogue_derive import SD15, call  # type: ignore[import-not-found]

SHAPE = (1, 4, 8, 16)


@pytest.fixture(scope="module")
def model(manager: Any) -> Any:
    from engine.loading import load_checkpoint

    return load_checkpoint(SD15, manager, output_clip=False, output_vae=False)[0]


def sample(model: Any) -> torch.Tensor:
    from engine.sampling import sample as run

    g = torch.Generator().manual_seed(11)
    pos, neg = [[torch.randn(1, 77, 32, generator=g), {}]], [[torch.randn(1, 77, 32, generator=g), {}]]
    noise = torch.randn(SHAPE, generator=g)
    return run(model, noise, 3, 6.0, "euler", "normal", pos, neg, torch.zeros(SHAPE), seed=1)


def test_object_info_matches_comfyui(registry: Any) -> None:
    info = registry.object_info()["HypernetworkLoader"]
    assert info["input"]["required"] == {
        "model": ["MODEL"], "hypernetwork_name": [["tiny-sd15-hypernetwork.pt"]],
        "strength": ["FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}]}
    assert info["output"] == ["MODEL"] and info["category"] == "loaders"


def test_strength_zero_equals_no_hypernetwork(registry: Any, model: Any, one_thread: None) -> None:
    (patched,) = call(registry, "HypernetworkLoader", model=model, hypernetwork_name="tiny-sd15-hypernetwork.pt",
                      strength=0.0)
    assert len(patched.model_options["transformer_options"]["patches"]["attn1_patch"]) == 1
    assert torch.equal(sample(patched), sample(model))


def test_strength_one_changes_the_result_and_leaves_the_input_model(registry: Any, model: Any, one_thread: None) -> None:
    (patched,) = call(registry, "HypernetworkLoader", model=model, hypernetwork_name="tiny-sd15-hypernetwork.pt",
                      strength=1.0)
    assert "patches" not in model.model_options["transformer_options"]
    a, b = sample(patched), sample(model)
    assert torch.isfinite(a).all() and not torch.allclose(a, b, rtol=1e-3, atol=1e-3)


def _module(x: torch.Tensor, sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """The A1111 module for layer_structure [1, 2, 1], swish, layer norm on, as ComfyUI builds it:
    Linear, Hardswish, LayerNorm, Linear, Hardswish, LayerNorm."""
    h = F.linear(x, sd["linear.0.weight"], sd["linear.0.bias"])
    h = F.hardswish(h)
    h = F.layer_norm(h, h.shape[-1:], sd["linear.2.weight"], sd["linear.2.bias"])
    h = F.linear(h, sd["linear.3.weight"], sd["linear.3.bias"])
    h = F.hardswish(h)
    return F.layer_norm(h, h.shape[-1:], sd["linear.4.weight"], sd["linear.4.bias"])


def _attention(attn: Any, q_in: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor) -> torch.Tensor:
    heads = attn.heads
    q, k, v = attn.to_q(q_in), attn.to_k(k_in), attn.to_v(v_in)
    b, t, c = q.shape
    q, k, v = (z.reshape(b, -1, heads, c // heads).transpose(1, 2) for z in (q, k, v))
    w = torch.softmax(q @ k.transpose(-1, -2) / (c // heads) ** 0.5, dim=-1)
    return attn.to_out((w @ v).transpose(1, 2).reshape(b, t, c))


@pytest.mark.parametrize(("block", "strength"), [(("input", 4), 1.0), (("output", 9), 0.6)])
def test_block_matches_an_independent_implementation(registry: Any, model: Any, derived: dict[str, Path],
                                                     block: tuple[str, int], strength: float) -> None:
    """One transformer block with the patch = the module maths written out on attn1 (k / v from x) and attn2
    (k / v from the 32-wide text context)."""
    (patched,) = call(registry, "HypernetworkLoader", model=model, hypernetwork_name="tiny-sd15-hypernetwork.pt",
                      strength=strength)
    unet = model.diffusion_model
    blocks = unet.input_blocks if block[0] == "input" else unet.output_blocks
    tb = blocks[block[1]][1].transformer_blocks[0]
    width = tb.attn1.to_q.in_features
    hn = torch.load(str(derived["hypernetwork"]), weights_only=True)
    g = torch.Generator().manual_seed(2)
    x, context = torch.randn(2, 24, width, generator=g), torch.randn(2, 77, 32, generator=g)
    options = {**patched.model_options["transformer_options"], "block": block, "block_index": 0,
               "transformer_index": 0}
    with torch.no_grad():
        got = tb(x, context, options)
        n = tb.norm1(x)
        k1, v1 = n + strength * _module(n, hn[width][0]), n + strength * _module(n, hn[width][1])
        h = _attention(tb.attn1, n, k1, v1) + x
        n2 = tb.norm2(h)
        k2, v2 = context + strength * _module(context, hn[32][0]), context + strength * _module(context, hn[32][1])
        h = _attention(tb.attn2, n2, k2, v2) + h
        want = tb.ff(tb.norm3(h)) + h
        plain = tb(x, context)
    assert float((got - want).abs().max()) < 1e-4 * float(want.abs().max())
    assert float((got - plain).abs().max()) > 1e-2 * float(plain.abs().max())


def test_unsupported_activation_is_a_clear_error(tmp_path: Path, derived: dict[str, Path]) -> None:
    from engine.errors import CheckpointError
    from engine.hypernetwork import load_hypernetwork

    hn = torch.load(str(derived["hypernetwork"]), weights_only=True)
    hn["activation_func"] = "gelu"
    path = tmp_path / "bad.pt"
    torch.save(hn, str(path))
    with pytest.raises(CheckpointError, match="unsupported activation_func 'gelu'"):
        load_hypernetwork(path, 1.0)


def test_missing_file_names_node_and_input(registry: Any, model: Any) -> None:
    from nodes._base import NodeInputError

    with pytest.raises(NodeInputError, match=r"HypernetworkLoader.*hypernetwork_name.*nope\.pt"):
        call(registry, "HypernetworkLoader", model=model, hypernetwork_name="nope.pt", strength=1.0)
