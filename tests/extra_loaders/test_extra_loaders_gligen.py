"""GLIGEN text boxes on tiny-sd15: the fixture loads with the spec's shapes, the fusers and position net follow
ComfyUI's maths, the patch is gated by alpha, runs one fuser per transformer in UNet order, and the negative shares
the positive's boxes."""
from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from catalogue_derive import CAT, call  # type: ignore[import-not-found]

from engine.sampling import sample

SPEC = json.loads((CAT / "tiny-gligen-sd15.spec.json").read_text())
SHAPE = (1, 4, 8, 16)


@pytest.fixture(scope="module")
def gligen(registry: Any) -> Any:
    (g,) = call(registry, "GLIGENLoader", gligen_name="tiny-gligen-sd15-textbox.safetensors")
    return g


@pytest.fixture(scope="module")
def sd15(registry: Any) -> Any:
    return call(registry, "CheckpointLoaderSimple", ckpt_name="tiny-sd15.safetensors")


def test_object_info_matches_comfyui(registry: Any) -> None:
    info = registry.object_info()
    loader = info["GLIGENLoader"]
    assert loader["input"]["required"] == {"gligen_name": [["tiny-gligen-sd15-textbox.safetensors"]]}
    assert loader["output"] == ["GLIGEN"] and loader["category"] == "loaders"
    apply = info["GLIGENTextBoxApply"]
    size = {"min": 8, "max": 16384, "step": 8}
    assert apply["input"]["required"] == {
        "conditioning_to": ["CONDITIONING"], "clip": ["CLIP"], "gligen_textbox_model": ["GLIGEN"],
        "text": ["STRING", {"multiline": True, "dynamicPrompts": True}],
        "width": ["INT", {"default": 64, **size}], "height": ["INT", {"default": 64, **size}],
        "x": ["INT", {"default": 0, "min": 0, "max": 16384, "step": 8}],
        "y": ["INT", {"default": 0, "min": 0, "max": 16384, "step": 8}]}
    assert apply["output"] == ["CONDITIONING"] and apply["category"] == "conditioning/gligen"


def test_loads_with_the_spec_layout(gligen: Any) -> None:
    cfg = SPEC["config"]
    assert [int(f.linear.weight.shape[0]) for f in gligen.module_list] == cfg["query_dims"]
    assert gligen.key_dim == cfg["key_dim"] == 32
    for f in gligen.module_list:
        assert f.attn.heads == 8 and f.linear.weight.dtype == torch.float32
        assert float(f.alpha_attn) == 2.0 and float(f.alpha_dense) == 1.5
    state = {k: tuple(v.shape) for k, v in gligen.state_dict().items()}
    assert state["position_net.linears.0.weight"] == (512, 96) and state["position_net.linears.4.weight"] == (32, 512)
    n_fuser = sum(1 for k in state if k.startswith("module_list."))
    assert n_fuser == sum(1 for k, _, _ in SPEC["tensors"] if ".fuser." in k)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, c = q.shape
    q, k, v = (z.reshape(b, -1, heads, c // heads).transpose(1, 2) for z in (q, k, v))
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // heads), dim=-1)
    return (w @ v).transpose(1, 2).reshape(b, t, c)


def test_fuser_matches_the_written_out_maths(gligen: Any) -> None:
    f = gligen.module_list[4]  # a 128-wide fuser
    sd = {k: v for k, v in f.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    x, objs = torch.randn(2, 6, 128, generator=g), torch.randn(2, 30, 32, generator=g)
    with torch.no_grad():
        got = f(x, objs)
        o = F.linear(objs, sd["linear.weight"], sd["linear.bias"])
        h = F.layer_norm(torch.cat([x, o], 1), (128,), sd["norm1.weight"], sd["norm1.bias"])
        a = _attention(F.linear(h, sd["attn.to_q.weight"]), F.linear(h, sd["attn.to_k.weight"]),
                       F.linear(h, sd["attn.to_v.weight"]), 8)
        a = F.linear(a, sd["attn.to_out.0.weight"], sd["attn.to_out.0.bias"])[:, :6]
        y = x + math.tanh(2.0) * a
        value, gate = F.linear(F.layer_norm(y, (128,), sd["norm2.weight"], sd["norm2.bias"]),
                               sd["ff.net.0.proj.weight"], sd["ff.net.0.proj.bias"]).chunk(2, dim=-1)
        want = y + math.tanh(1.5) * F.linear(value * F.gelu(gate), sd["ff.net.2.weight"], sd["ff.net.2.bias"])
    assert float((got - want).abs().max()) < 1e-5 * float(want.abs().max())


def _fourier(box: torch.Tensor) -> torch.Tensor:
    parts = []
    for k in range(8):
        f = 100.0 ** (k / 8)
        parts += [torch.sin(f * box), torch.cos(f * box)]
    return torch.cat(parts, -1)


def test_tokens_put_the_box_in_latent_fractions_and_pad_with_null_features(gligen: Any) -> None:
    pn = gligen.position_net
    pooled = torch.randn(1, 32, generator=torch.Generator().manual_seed(1))
    # GLIGENTextBoxApply's (pooled, height // 8, width // 8, y // 8, x // 8) for a 64x32 box at (16, 8)
    tokens = gligen.tokens((2, 4, 8, 16), [(pooled, 4, 8, 1, 2)], torch.device("cpu"))
    assert tokens.shape == (2, 30, 32) and torch.equal(tokens[0], tokens[1])
    with torch.no_grad():
        box = torch.tensor([2 / 16, 1 / 8, 10 / 16, 5 / 8])
        first = pn.linears(torch.cat([pooled[0], _fourier(box)]))
        null = pn.linears(torch.cat([pn.null_positive_feature, pn.null_position_feature]))
    assert torch.allclose(tokens[0, 0], first, rtol=1e-5, atol=1e-6)
    assert torch.allclose(tokens[0, 1:], null.expand(29, -1), rtol=1e-5, atol=1e-6)
    empty = gligen.tokens((1, 4, 8, 16), None, torch.device("cpu"))
    assert torch.allclose(empty[0], null.expand(30, -1), rtol=1e-5, atol=1e-6)


def test_text_box_apply_appends_boxes(registry: Any, gligen: Any, sd15: Any) -> None:
    clip = sd15[1]
    (cond,) = call(registry, "CLIPTextEncode", clip=clip, text="a photo of a cat")
    (one,) = call(registry, "GLIGENTextBoxApply", conditioning_to=cond, clip=clip, gligen_textbox_model=gligen,
                  text="a dog", width=64, height=32, x=16, y=8)
    (two,) = call(registry, "GLIGENTextBoxApply", conditioning_to=one, clip=clip, gligen_textbox_model=gligen,
                  text="a hat", width=24, height=40, x=0, y=0)
    assert "gligen" not in cond[0][1] and one[0][0] is cond[0][0]
    kind, model, params = two[0][1]["gligen"]
    assert kind == "position" and model is gligen and len(params) == 2
    _, pooled = clip.encode_from_tokens(clip.tokenize("a dog"), return_pooled=True)
    assert torch.equal(params[0][0], pooled) and params[0][1:] == (4, 8, 1, 2)
    assert params[1][1:] == (5, 3, 0, 0)


def _conds(gligen_entry: Any = None) -> tuple[list[Any], list[Any]]:
    g = torch.Generator().manual_seed(9)
    pos_opts = {} if gligen_entry is None else {"gligen": gligen_entry}
    return [[torch.randn(1, 77, 32, generator=g), pos_opts]], [[torch.randn(1, 77, 32, generator=g), {}]]


def _run(model: Any, gligen_entry: Any = None) -> torch.Tensor:
    pos, neg = _conds(gligen_entry)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(8))
    return sample(model, noise, 3, 6.0, "euler", "normal", pos, neg, torch.zeros(SHAPE), seed=8)


def _box(gligen: Any) -> Any:
    pooled = torch.randn(1, 32, generator=torch.Generator().manual_seed(3))
    return ("position", gligen, [(pooled, 4, 8, 2, 4)])


def test_gated_by_alpha_and_changes_the_result(gligen: Any, sd15: Any, one_thread: None) -> None:
    model = sd15[0]
    plain = _run(model)
    closed = copy.deepcopy(gligen)
    with torch.no_grad():
        for f in closed.module_list:
            f.alpha_attn.zero_()
            f.alpha_dense.zero_()
    # equal up to summation order: with GLIGEN the positive and negative run as separate calls (as in ComfyUI)
    gated = _run(model, _box(closed))
    assert float((gated - plain).abs().max()) < 1e-5 * float(plain.abs().max())
    grounded = _run(model, _box(gligen))
    assert torch.isfinite(grounded).all()
    assert float((grounded - plain).abs().max()) > 1e-3 * float(plain.abs().max())


def test_one_fuser_per_transformer_in_unet_order_for_both_sides(gligen: Any, sd15: Any, one_thread: None) -> None:
    seen: list[tuple[int, int, int]] = []
    spy = copy.deepcopy(gligen)
    fuser = spy.fuser

    def record(index: int, like: torch.Tensor) -> Any:
        seen.append((index, int(like.shape[-1]), int(like.shape[0])))
        return fuser(index, like)

    spy.fuser = record
    pos, neg = _conds(_box(spy))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(8))
    sample(sd15[0], noise, 2, 6.0, "euler", "normal", pos, neg, torch.zeros(SHAPE), seed=8)
    per_call = [(i, q, 1) for i, q in enumerate(SPEC["config"]["query_dims"])]
    # 2 steps x (positive, negative with the positive's boxes), each its own call of batch 1
    assert seen == per_call * 4


def test_negative_takes_the_positive_boxes_unless_it_has_its_own(gligen: Any) -> None:
    from engine.gligen import share_gligen
    from engine.sampling.conditioning import Cond

    box = _box(gligen)
    pos = [Cond(torch.zeros(1, 77, 32), extra={"gligen": box})]
    neg = [Cond(torch.zeros(1, 77, 32), extra={}), Cond(torch.zeros(1, 77, 32), area=(2, 2, 0, 0), extra={"area": (2, 2, 0, 0)})]
    share_gligen(pos, neg)
    assert neg[0].extra["gligen"] is box and "gligen" not in neg[1].extra
    own = ("position", gligen, [])
    neg2 = [Cond(torch.zeros(1, 77, 32), extra={"gligen": own}), Cond(torch.zeros(1, 77, 32), extra={})]
    share_gligen(pos, neg2)
    assert neg2[0].extra["gligen"] is own and "gligen" not in neg2[1].extra


def test_too_many_boxes_and_wrong_width_are_clear_errors(gligen: Any) -> None:
    pooled = torch.zeros(1, 32)
    with pytest.raises(ValueError, match="31 text boxes"):
        gligen.tokens((1, 4, 8, 8), [(pooled, 1, 1, 0, 0)] * 31, torch.device("cpu"))
    with pytest.raises(ValueError, match="768-wide text embedding"):
        gligen.tokens((1, 4, 8, 8), [(torch.zeros(1, 768), 1, 1, 0, 0)], torch.device("cpu"))
