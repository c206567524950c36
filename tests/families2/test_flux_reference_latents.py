"""Flux Kontext reference latents (ReferenceLatent, FluxKontextMultiReferenceLatentMethod): the network appends each
reference as extra image tokens with ComfyUI's position ids and drops their outputs; the sampler carries them from
the conditioning in model space; models that cannot read them refuse them."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import torch
from families2_support import FAM2, GOLDEN2

DEV = "comfy__flux_dev__txt2img__euler__simple__128x128"


@pytest.fixture(scope="module")
def model() -> Any:
    from engine.device import DevicePolicy
    from engine.loading import load_unet
    from engine.model_management import ModelManager

    torch.set_num_threads(1)
    return load_unet(FAM2 / "tiny-flux1-dev.safetensors", ModelManager(DevicePolicy.cpu()))


@pytest.fixture(scope="module")
def net(model: Any) -> Any:
    """The tiny Flux in float32 (the file keeps bf16 matrices; fp32 makes the comparisons exact)."""
    from engine.networks.flux import Flux

    out = Flux(model.diffusion_model.config)
    out.load_state_dict({k: v.float() for k, v in model.diffusion_model.state_dict().items()})
    return out.eval()


def comfy_ids(hl: int, wl: int, sizes: list[tuple[int, int]], method: str) -> list[tuple[float, int, int]]:
    """ComfyUI's Flux._forward loop, written out again: (index, h_offset, w_offset) per reference, latent pixels."""
    h = w = 0
    index = 0.0
    out = []
    for rh, rw in sizes:
        if method == "index":
            index += 1
            h_offset = w_offset = 0
        elif method == "uxo":
            index = 0
            h_offset, w_offset = hl * 2 + h, wl * 2 + w
            h += rh
            w += rw
        else:
            index, h_offset, w_offset = 1, 0, 0
            if rh + h > rw + w:
                w_offset = w
            else:
                h_offset = h
            h = max(h, rh + h_offset)
            w = max(w, rw + w_offset)
        out.append((float(index), h_offset, w_offset))
    return out


def patches(x: torch.Tensor, index: float, h_offset: int, w_offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI's process_img for patch 2: 'b c (h ph) (w pw) -> b (h w) (c ph pw)' and (index, row, column) ids."""
    b, c, h, w = x.shape
    x = torch.nn.functional.pad(x, (0, w % 2, 0, h % 2), mode="circular")
    hl, wl = (h + 1) // 2, (w + 1) // 2
    tokens = torch.stack([x[:, :, i::2, j::2] for i in range(2) for j in range(2)], dim=2)  # b c (ph pw) hl wl
    tokens = tokens.permute(0, 3, 4, 1, 2).reshape(b, hl * wl, c * 4)
    h0, w0 = (h_offset + 1) // 2, (w_offset + 1) // 2
    rows = torch.arange(hl, dtype=torch.float32)[:, None].expand(hl, wl) + h0
    cols = torch.arange(wl, dtype=torch.float32)[None, :].expand(hl, wl) + w0
    ids = torch.stack([torch.full((hl, wl), index), rows, cols], dim=-1).reshape(1, hl * wl, 3).expand(b, -1, -1)
    return tokens, ids


def by_hand(net: Any, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor, y: torch.Tensor,
            refs: list[torch.Tensor], method: str) -> torch.Tensor:
    """Loom's Flux blocks run on the token sequence built here: [text, image, references], image output only."""
    from engine.networks.flux import flux_timestep_embedding

    b, c, h, w = x.shape
    img, ids = patches(x, 0.0, 0, 0)
    n_img = img.shape[1]
    places = comfy_ids((h + 1) // 2, (w + 1) // 2, [(r.shape[-2], r.shape[-1]) for r in refs], method)
    for ref, (index, h_off, w_off) in zip(refs, places, strict=True):
        tok, rid = patches(ref, index, h_off, w_off)
        img, ids = torch.cat([img, tok], 1), torch.cat([ids, rid], 1)
    cfg = net.config
    vec = net.time_in(flux_timestep_embedding(t, 256))
    vec = vec + net.guidance_in(flux_timestep_embedding(y[:, cfg.vec_in_dim], 256))
    vec = vec + net.vector_in(y[:, :cfg.vec_in_dim])
    txt, img = net.txt_in(ctx), net.img_in(img)
    pe = net._pe(torch.cat([torch.zeros(b, ctx.shape[1], 3), ids], 1))
    for block in net.double_blocks:
        img, txt = block(img, txt, vec, pe)
    joint = torch.cat([txt, img], 1)
    for block in net.single_blocks:
        joint = block(joint, vec, pe)
    out = net.final_layer(joint[:, txt.shape[1]:txt.shape[1] + n_img], vec)
    hl, wl = (h + 1) // 2, (w + 1) // 2
    result: torch.Tensor = out.reshape(b, hl, wl, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, hl * 2, wl * 2)
    return result[:, :, :h, :w]


def inputs(net: Any, shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    ctx = torch.randn(shape[0], 6, net.config.context_dim, generator=g)
    y = torch.cat([torch.randn(shape[0], net.config.vec_in_dim, generator=g), torch.full((shape[0], 1), 3.5)], 1)
    return x, torch.full((shape[0],), 0.6), ctx, y


def test_without_references_matches_the_blocks_by_hand(net: Any) -> None:
    for shape in ((1, 16, 8, 12), (2, 16, 7, 9)):
        x, t, ctx, y = inputs(net, shape)
        with torch.no_grad():
            plain = net(x, t, ctx, y)
            assert torch.equal(plain, by_hand(net, x, t, ctx, y, [], "offset"))
            assert torch.equal(plain, net(x, t, ctx, y, ref_latents=[]))


@pytest.mark.parametrize("method", ["offset", "index", "uxo"])
def test_references_match_comfyui_positions_by_hand(net: Any, method: str) -> None:
    x, t, ctx, y = inputs(net, (2, 16, 8, 12))
    g = torch.Generator().manual_seed(5)
    refs = [torch.randn(2, 16, 10, 6, generator=g), torch.randn(2, 16, 7, 9, generator=g),
            torch.randn(2, 16, 4, 14, generator=g)]
    with torch.no_grad():
        out = net(x, t, ctx, y, ref_latents=refs, ref_latents_method=method)
        expected = by_hand(net, x, t, ctx, y, refs, method)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_placements_follow_comfyui() -> None:
    from engine.networks.flux import reference_placements

    sizes = [(10, 6), (7, 9), (4, 14), (8, 8)]
    for method in ("offset", "index", "uxo"):
        assert reference_placements(4, 6, 2, sizes, method) == comfy_ids(4, 6, sizes, method)
    # offset: the first at the origin; the second right of it, since stacking it below (10 + 7) would be taller
    # than placing it beside (6 + 9) is wide
    assert reference_placements(4, 6, 2, sizes, "offset")[:2] == [(1.0, 0, 0), (1.0, 0, 6)]
    with pytest.raises(ValueError, match="unknown reference latents method 'uno'"):
        reference_placements(4, 6, 2, sizes, "uno")


def test_methods_differ_where_they_should(net: Any) -> None:
    x, t, ctx, y = inputs(net, (1, 16, 8, 8))
    g = torch.Generator().manual_seed(9)
    one = [torch.randn(1, 16, 8, 8, generator=g)]
    two = [*one, torch.randn(1, 16, 6, 8, generator=g)]
    with torch.no_grad():
        plain = net(x, t, ctx, y)
        res = {(n, m): net(x, t, ctx, y, ref_latents=refs, ref_latents_method=m)
               for n, refs in ((1, one), (2, two)) for m in ("offset", "index", "uxo")}
    assert float((res[1, "offset"] - plain).abs().max()) > 1e-4  # a reference changes the prediction
    assert torch.equal(res[1, "offset"], res[1, "index"])  # one reference: both at index 1, offset 0
    assert torch.equal(net(x, t, ctx, y, ref_latents=one), res[1, "offset"])  # offset is the default
    assert float((res[1, "uxo"] - res[1, "offset"]).abs().max()) > 1e-4
    for a, b in (("offset", "index"), ("offset", "uxo"), ("index", "uxo")):
        assert float((res[2, a] - res[2, b]).abs().max()) > 1e-4, (a, b)


def test_sampler_passes_references_in_model_space(model: Any) -> None:
    """One Euler step of sample() equals the handle's own prediction with the process_in'd reference."""
    from engine.sampling.ksampler import sample

    g = torch.Generator().manual_seed(3)
    ref = torch.randn(1, 16, 6, 10, generator=g)
    cond, pooled = torch.randn(1, 4, model.context_dim, generator=g), torch.randn(1, 768, generator=g)
    noise = torch.randn(1, 16, 8, 8, generator=g)
    pos = [[cond, {"pooled_output": pooled, "reference_latents": [ref], "reference_latents_method": "uxo"}]]
    out = sample(model, noise, 1, 1.0, "euler", "simple", pos, [], torch.zeros(1, 16, 8, 8), seed=0)
    sigma = model.model_sampling.sigma_max.reshape(1)
    x = model.model_sampling.noise_scaling(sigma, noise, torch.zeros_like(noise), True)
    from engine.adm import flux_vector

    x0 = model.apply_model(x, sigma, cond, y=flux_vector({"pooled_output": pooled}),
                           extra_inputs={"ref_latents": [model.latent_format.process_in(ref)],
                                         "ref_latents_method": "uxo"})
    assert torch.equal(out, model.latent_format.process_out(x0))
    plain = sample(model, noise, 1, 1.0, "euler", "simple", [[cond, {"pooled_output": pooled}]], [],
                   torch.zeros(1, 16, 8, 8), seed=0)
    assert float((plain - out).abs().max()) > 1e-4


def test_reference_nodes_set_comfyui_options() -> None:
    from nodes.flow_families import FluxKontextMultiReferenceLatentMethod, ReferenceLatent

    base: list[list[Any]] = [[torch.zeros(1, 2, 3), {"guidance": 2.0}]]
    a, b = torch.zeros(1, 16, 4, 4), torch.ones(1, 16, 2, 2)
    (one,) = ReferenceLatent().execute(base, {"samples": a})
    (two,) = ReferenceLatent().execute(one, {"samples": b})
    assert two[0][1]["reference_latents"][0] is a and two[0][1]["reference_latents"][1] is b
    assert len(one[0][1]["reference_latents"]) == 1 and "reference_latents" not in base[0][1]
    assert ReferenceLatent().execute(base)[0] is base
    (m,) = FluxKontextMultiReferenceLatentMethod().execute(two, "uxo/uno")
    assert m[0][1]["reference_latents_method"] == "uxo" and m[0][1]["guidance"] == 2.0
    assert FluxKontextMultiReferenceLatentMethod().execute(two, "index")[0][0][1]["reference_latents_method"] == "index"
    choices = FluxKontextMultiReferenceLatentMethod.INPUT_TYPES()["required"]["reference_latents_method"][0]
    assert choices == ["offset", "index", "uxo/uno", "index_timestep_zero"]


def test_index_timestep_zero_is_refused_on_flux1(model: Any) -> None:
    from engine.sampling.ksampler import sample

    opts = {"pooled_output": torch.zeros(1, 768), "reference_latents": [torch.zeros(1, 16, 4, 4)],
            "reference_latents_method": "index_timestep_zero"}
    with pytest.raises(ValueError, match="index_timestep_zero.*flux1_dev|flux1_dev.*index_timestep_zero"):
        sample(model, torch.zeros(1, 16, 4, 4), 1, 1.0, "euler", "simple", [[torch.zeros(1, 2, model.context_dim),
               opts]], [], torch.zeros(1, 16, 4, 4), seed=0)


def _kontext_graph() -> dict[str, Any]:
    case = json.loads((GOLDEN2 / f"{DEV}.json").read_text())
    graph: dict[str, Any] = copy.deepcopy(case["graph"])
    graph["5"]["inputs"].update(steps=2)
    graph["4"]["inputs"].update(width=64, height=64)
    graph["30"] = {"class_type": "LoadImage", "inputs": {"image": "init_128x64.png"}}
    graph["31"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["30", 0], "vae": ["42", 0]}}
    graph["32"] = {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["2", 0], "latent": ["31", 0]}}
    graph["21"]["inputs"]["conditioning"] = ["32", 0]
    return graph


def test_kontext_graph_runs_through_the_executor(run2: Any) -> None:
    def latent(graph: dict[str, Any], pid: str) -> torch.Tensor:
        out = run2(graph, pid)
        assert out.status == "success", out.error
        samples: torch.Tensor = out.values["5"][0][0]["samples"]
        return samples

    graph = _kontext_graph()
    ref = latent(graph, "kontext")
    plain = copy.deepcopy(graph)
    plain["21"]["inputs"]["conditioning"] = ["2", 0]
    assert float((latent(plain, "kontext_plain") - ref).abs().max()) > 1e-4
    uxo = copy.deepcopy(graph)
    uxo["33"] = {"class_type": "FluxKontextMultiReferenceLatentMethod",
                 "inputs": {"conditioning": ["32", 0], "reference_latents_method": "uxo/uno"}}
    uxo["21"]["inputs"]["conditioning"] = ["33", 0]
    assert float((latent(uxo, "kontext_uxo") - ref).abs().max()) > 1e-4


def test_a_model_without_reference_support_refuses_them(run2: Any) -> None:
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd35m-aio.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
        "3": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["2", 0], "latent": ["3", 0]}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 1, "steps": 1, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "simple",
                                                   "positive": ["4", 0], "negative": ["2", 0],
                                                   "latent_image": ["3", 0], "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }
    out = run2(graph, "refuse")
    assert out.status != "success"
    message = json.dumps(out.error, default=str)
    print(message)
    assert "reference latents" in message and "sd3" in message and "Flux" in message, message


def test_entries_with_references_batch_in_call_order(model: Any) -> None:
    """Positive and negative entries with equal-shaped references share one model call; each keeps its own."""
    from engine.sampling.conditioning import resolve_conds
    from engine.sampling.guider import calc_cond_batch
    from engine.sampling.ksampler import _add_adm

    g = torch.Generator().manual_seed(11)
    x = torch.randn(1, 16, 8, 8, generator=g)
    sigma = torch.tensor([0.8])

    def side(name: str, extra: dict[str, Any]) -> list[Any]:
        entry = [[torch.randn(1, 4, model.context_dim, generator=g),
                  {"pooled_output": torch.randn(1, 768, generator=g), **extra}]]
        conds = resolve_conds(entry, x.shape, model.model_sampling, x.device, name)
        _add_adm(model, conds, x.shape, name)
        return conds

    pos = side("positive", {"reference_latents": [torch.randn(1, 16, 6, 4, generator=g)]})
    neg = side("negative", {"reference_latents": [torch.randn(1, 16, 6, 4, generator=g)]})
    together = calc_cond_batch(model, [pos, neg], x, sigma)
    alone = [calc_cond_batch(model, [pos], x, sigma)[0], calc_cond_batch(model, [neg], x, sigma)[0]]
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert float((alone[0] - alone[1]).abs().max()) > 1e-4


def test_a_model_function_wrapper_sees_and_passes_the_references(model: Any) -> None:
    """ComfyUI's ``model_function_wrapper`` gets ``ref_latents`` / ``ref_latents_method`` in ``args["c"]`` and its
    ``apply_model(**c)`` gives them back to the network."""
    from engine.sampling.ksampler import sample

    g = torch.Generator().manual_seed(4)
    ref = torch.randn(1, 16, 8, 6, generator=g)
    opts: dict[str, Any] = {"pooled_output": torch.randn(1, 768, generator=g),
            "reference_latents": [ref], "reference_latents_method": "index"}
    pos = [[torch.randn(1, 4, model.context_dim, generator=g), opts]]
    noise = torch.randn(1, 16, 8, 8, generator=g)
    seen: list[dict[str, Any]] = []

    def wrapper(apply_model: Any, args: dict[str, Any]) -> torch.Tensor:
        seen.append(args["c"])
        out: torch.Tensor = apply_model(args["input"], args["timestep"], **args["c"])
        return out

    wrapped = model.clone()
    wrapped.set_model_unet_function_wrapper(wrapper)
    def run(m: Any) -> torch.Tensor:
        return sample(m, noise, 2, 1.0, "euler", "simple", pos, [], torch.zeros(1, 16, 8, 8), seed=0)

    assert torch.equal(run(wrapped), run(model))
    assert seen and seen[0]["ref_latents_method"] == "index" and len(seen[0]["ref_latents"]) == 1
    torch.testing.assert_close(seen[0]["ref_latents"][0], model.latent_format.process_in(ref))
