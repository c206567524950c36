"""The UNet / attention patch nodes on the tiny SD1.5 model: ComfyUI's ids, inputs, defaults and categories; each
returns a patched clone (the input untouched); neutral settings reproduce the unpatched prediction and enabled
ones change it; PAG, SAG and the attention multipliers equal independent computations written here; the UNet's
emb_patch / forward_timestep_embed_patch hooks. The FreeU_V2 golden runs in tests/workflows/test_catalogue_goldens.py."""
from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.sampling.conditioning import Cond, resolve_conds
from engine.sampling.guider import CFGDenoiser, calc_cond_batch

pytestmark = pytest.mark.usefixtures("one_thread")
SIGMA = 8.0  # inside PatchModelAddDownscale's default window (sigma at 35 % is about 3.6 for SD1)
SHAPE = (1, 4, 16, 16)  # the middle block is 2 x 2 tokens: SAG's map has a grid, the blur its padding


@pytest.fixture(scope="module")
def tiny(fixtures_dir: Path) -> Iterator[tuple[Any, Any]]:
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    manager = ModelManager(DevicePolicy.detect(cpu_only=True, force_fp32=True))
    model, clip, _ = load_checkpoint(fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors", manager)
    yield model, clip


@pytest.fixture(scope="module")
def conds(tiny: tuple[Any, Any]) -> tuple[list[Cond], list[Cond]]:
    model, clip = tiny
    pos = resolve_conds(clip.encode("a photo of a cat"), torch.Size(SHAPE), model.model_sampling,
                        torch.device("cpu"), "positive")
    neg = resolve_conds(clip.encode("blurry"), torch.Size(SHAPE), model.model_sampling, torch.device("cpu"),
                        "negative")
    return pos, neg


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(11)) * SIGMA


def denoise(model: Any, conds: tuple[list[Cond], list[Cond]], x: torch.Tensor, cfg: float = 5.0) -> torch.Tensor:
    """One guided x0 prediction (every CFG hook of the handle runs)."""
    return CFGDenoiser(model, conds[0], conds[1], cfg)(x, torch.tensor([SIGMA]))


@pytest.fixture(scope="module")
def plain(tiny: tuple[Any, Any], conds: Any, x: torch.Tensor) -> torch.Tensor:
    return denoise(tiny[0], conds, x)


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    return float((a - b).abs().max()) <= rel * float(b.abs().max())


# ---------------------------------------------------------------------------------------------- catalogue
def test_catalogue_entries_match_comfyui(registry: Any) -> None:
    info = registry.object_info()
    expect = {  # node: (category, display name, experimental)
        "FreeU": ("model_patches/unet", "FreeU", False), "FreeU_V2": ("model_patches/unet", "FreeU_V2", False),
        "PerturbedAttentionGuidance": ("model_patches/unet", "PerturbedAttentionGuidance", False),
        "SelfAttentionGuidance": ("_for_testing", "Self-Attention Guidance", True),
        "HyperTile": ("model_patches/unet", "HyperTile", False),
        "PatchModelAddDownscale": ("model_patches/unet", "PatchModelAddDownscale (Kohya Deep Shrink)", False),
        "TomePatchModel": ("model_patches/unet", "TomePatchModel", False),
        "UNetSelfAttentionMultiply": ("_for_testing/attention_experiments", "UNetSelfAttentionMultiply", True),
        "UNetCrossAttentionMultiply": ("_for_testing/attention_experiments", "UNetCrossAttentionMultiply", True),
        "CLIPAttentionMultiply": ("_for_testing/attention_experiments", "CLIPAttentionMultiply", True),
        "UNetTemporalAttentionMultiply": ("_for_testing/attention_experiments", "UNetTemporalAttentionMultiply",
                                          True),
    }
    for node, (category, display, experimental) in expect.items():
        entry = info[node]
        assert (entry["category"], entry["display_name"], bool(entry.get("experimental"))) == (
            category, display, experimental), node
        assert entry["output"] == (["CLIP"] if node == "CLIPAttentionMultiply" else ["MODEL"])
    req = {n: info[n]["input"]["required"] for n in expect}
    assert {k: v[1]["default"] for k, v in req["FreeU"].items() if k != "model"} == {
        "b1": 1.1, "b2": 1.2, "s1": 0.9, "s2": 0.2}
    assert {k: v[1]["default"] for k, v in req["FreeU_V2"].items() if k != "model"} == {
        "b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}
    assert req["PerturbedAttentionGuidance"]["scale"][1] == {"default": 3.0, "min": 0.0, "max": 100.0,
                                                             "step": 0.01, "round": 0.01}
    assert req["SelfAttentionGuidance"]["scale"][1] == {"default": 0.5, "min": -2.0, "max": 5.0, "step": 0.01}
    assert req["SelfAttentionGuidance"]["blur_sigma"][1] == {"default": 2.0, "min": 0.0, "max": 10.0, "step": 0.1}
    assert [(k, v[1]["default"]) for k, v in req["HyperTile"].items() if k != "model"] == [
        ("tile_size", 256), ("swap_size", 2), ("max_depth", 0), ("scale_depth", False)]
    down = req["PatchModelAddDownscale"]
    assert [down[k][1]["default"] for k in ("block_number", "downscale_factor", "start_percent", "end_percent",
                                           "downscale_after_skip")] == [3, 2.0, 0.0, 0.35, True]
    assert down["downscale_method"][0] == down["upscale_method"][0] == [
        "bicubic", "nearest-exact", "bilinear", "area", "bislerp"]
    assert req["TomePatchModel"]["ratio"][1] == {"default": 0.3, "min": 0.0, "max": 1.0, "step": 0.01}
    assert list(req["UNetSelfAttentionMultiply"]) == ["model", "q", "k", "v", "out"]
    assert list(req["CLIPAttentionMultiply"]) == ["clip", "q", "k", "v", "out"]
    assert list(req["UNetTemporalAttentionMultiply"]) == ["model", "self_structural", "self_temporal",
                                                          "cross_structural", "cross_temporal"]


# ------------------------------------------------------------------------------------ neutral and enabled
MULTIPLY_ONES = {"q": 1.0, "k": 1.0, "v": 1.0, "out": 1.0}
CASES = [  # node, neutral inputs, enabled inputs, exact equality at neutral
    ("FreeU", {"b1": 1.0, "b2": 1.0, "s1": 1.0, "s2": 1.0}, {"b1": 1.1, "b2": 1.2, "s1": 0.9, "s2": 0.2}, False),
    ("FreeU_V2", {"b1": 1.0, "b2": 1.0, "s1": 1.0, "s2": 1.0}, {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}, False),
    ("PerturbedAttentionGuidance", {"scale": 0.0}, {"scale": 3.0}, True),
    ("SelfAttentionGuidance", {"scale": 0.0, "blur_sigma": 2.0}, {"scale": 0.5, "blur_sigma": 2.0}, False),
    ("HyperTile", {"tile_size": 256, "swap_size": 2, "max_depth": 0, "scale_depth": False},
     {"tile_size": 32, "swap_size": 2, "max_depth": 1, "scale_depth": False}, False),
    ("TomePatchModel", {"ratio": 0.0}, {"ratio": 0.5}, False),
    ("PatchModelAddDownscale",
     {"block_number": 3, "downscale_factor": 2.0, "start_percent": 0.9, "end_percent": 1.0,
      "downscale_after_skip": True, "downscale_method": "bicubic", "upscale_method": "bicubic"},
     {"block_number": 3, "downscale_factor": 2.0, "start_percent": 0.0, "end_percent": 0.35,
      "downscale_after_skip": True, "downscale_method": "bicubic", "upscale_method": "bicubic"}, True),
    ("PatchModelAddDownscale",
     {"block_number": 3, "downscale_factor": 2.0, "start_percent": 0.9, "end_percent": 1.0,
      "downscale_after_skip": False, "downscale_method": "area", "upscale_method": "bislerp"},
     {"block_number": 1, "downscale_factor": 2.0, "start_percent": 0.0, "end_percent": 0.35,
      "downscale_after_skip": False, "downscale_method": "area", "upscale_method": "bislerp"}, True),
    ("UNetSelfAttentionMultiply", MULTIPLY_ONES, {**MULTIPLY_ONES, "k": 1.5}, True),
    ("UNetCrossAttentionMultiply", MULTIPLY_ONES, {**MULTIPLY_ONES, "v": 0.5}, True),
    ("UNetTemporalAttentionMultiply",
     {"self_structural": 1.0, "self_temporal": 1.0, "cross_structural": 1.0, "cross_temporal": 1.0},
     {"self_structural": 1.0, "self_temporal": 1.0, "cross_structural": 0.7, "cross_temporal": 1.0}, True),
]


@pytest.mark.parametrize(("node", "neutral", "enabled", "exact"), CASES, ids=[c[0] for c in CASES])
def test_neutral_is_identity_and_enabled_changes(registry: Any, tiny: Any, conds: Any, x: torch.Tensor,
                                                 plain: torch.Tensor, node: str, neutral: dict[str, Any],
                                                 enabled: dict[str, Any], exact: bool) -> None:
    model = tiny[0]
    before = copy.deepcopy(model.model_options)
    (off,) = call(registry, node, model=model, **neutral)
    (on,) = call(registry, node, model=model, **enabled)
    assert off is not model and on is not model
    assert model.model_options == before and not model.patches  # the input handle is untouched
    got_off = denoise(off, conds, x)
    assert torch.equal(got_off, plain) if exact else close(got_off, plain), float((got_off - plain).abs().max())
    got_on = denoise(on, conds, x)
    assert float((got_on - plain).abs().max()) > 1e-3 * float(plain.abs().max())


def test_deep_shrink_only_inside_its_sigma_window(registry: Any, tiny: Any, conds: Any, x: torch.Tensor) -> None:
    model = tiny[0]
    (on,) = call(registry, "PatchModelAddDownscale", model=model, block_number=3, downscale_factor=2.0,
                 start_percent=0.0, end_percent=0.35, downscale_after_skip=True, downscale_method="bicubic",
                 upscale_method="bicubic")
    low = torch.tensor([1.0])  # below sigma(35 %): the plain prediction
    pos, neg = conds
    assert torch.equal(CFGDenoiser(on, pos, neg, 5.0)(x / SIGMA, low), CFGDenoiser(model, pos, neg, 5.0)(x / SIGMA, low))


# --------------------------------------------------------------------------------- independent numerics
def test_pag_equals_cfg_plus_identity_attention_difference(registry: Any, tiny: Any, conds: Any,
                                                           x: torch.Tensor, plain: torch.Tensor) -> None:
    model = tiny[0]
    pos, neg = conds
    (pag,) = call(registry, "PerturbedAttentionGuidance", model=model, scale=2.5)
    got = denoise(pag, conds, x)
    sigma = torch.tensor([SIGMA])
    cond_pred = model.apply_model(x, sigma, pos[0].cross_attn)
    attn1 = model.diffusion_model.middle_block[1].transformer_blocks[0].attn1

    def identity_attention(module: Any, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        return module.to_out(module.to_v(args[0]))  # softmax(QK^T) replaced by the identity: out = to_out(V)

    hook = attn1.register_forward_hook(identity_attention)
    try:
        perturbed = model.apply_model(x, sigma, pos[0].cross_attn)
    finally:
        hook.remove()
    assert not torch.allclose(perturbed, cond_pred)
    assert close(got, plain + (cond_pred - perturbed) * 2.5)


def test_sag_records_the_negative_map_and_guides_with_it(registry: Any, tiny: Any, conds: Any,
                                                         x: torch.Tensor) -> None:
    from engine.patches.attention_guidance import blur_by_attention

    model = tiny[0]
    pos, neg = conds
    (sag,) = call(registry, "SelfAttentionGuidance", model=model, scale=0.8, blur_sigma=1.5)
    post = sag.model_options["sampler_post_cfg_function"][0]
    assert sag.model_options["disable_cfg1_optimization"] is True
    assert list(sag.model_options["transformer_options"]["patches_replace"]["attn1"]) == [("middle", 0, 0)]
    block = model.diffusion_model.middle_block[1].transformer_blocks[0]
    seen: list[torch.Tensor] = []
    hook = block.attn1.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    sigma = torch.tensor([SIGMA])
    try:
        uncond_pred = model.apply_model(x, sigma, neg[0].cross_attn)  # the plain path calls attn1(norm1(x))
    finally:
        hook.remove()
    n = seen[0]  # [1, 4, 128] middle-block tokens of the negative row
    heads = block.attn1.heads
    q, k = (t.view(1, 4, heads, -1).transpose(1, 2) for t in (block.attn1.to_q(n), block.attn1.to_k(n)))
    want_map = torch.softmax(q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5), dim=-1).reshape(heads, 4, 4)
    got = denoise(sag, conds, x, cfg=1.0)  # cfg 1 still evaluates the negative side (disable_cfg1_optimization)
    recorded = post.__self__.uncond_attn
    assert recorded is not None and torch.allclose(recorded, want_map, atol=1e-5)
    cond_pred = model.apply_model(x, sigma, pos[0].cross_attn)
    degraded = blur_by_attention(uncond_pred, want_map, 1.5)
    again = model.apply_model(degraded + x - uncond_pred, sigma, neg[0].cross_attn)
    assert close(got, cond_pred + (degraded - again) * 0.8, rel=1e-4)


def test_attention_multiply_equals_hand_scaled_weights(registry: Any, tiny: Any, x: torch.Tensor,
                                                       conds: Any) -> None:
    from engine.handles import ModelHandle

    model = tiny[0]
    factors = {"q": 2.0, "k": 0.5, "v": 1.5, "out": 0.7}
    (patched,) = call(registry, "UNetSelfAttentionMultiply", model=model, **factors)
    (both,) = call(registry, "UNetCrossAttentionMultiply", model=patched, q=1.0, k=1.0, v=1.0, out=3.0)
    net = copy.deepcopy(model.diffusion_model)
    suffix = {"to_q": 2.0, "to_k": 0.5, "to_v": 1.5, "to_out.0": 0.7}
    scaled = 0
    with torch.no_grad():
        for name, p in net.named_parameters():
            for proj, f in suffix.items():
                if f".attn1.{proj}." in name:
                    p.mul_(f)
                    scaled += 1
            if ".attn2.to_out.0." in name:
                p.mul_(3.0)
    assert scaled == 16 * 5  # 16 transformer blocks: q, k, v weights, out weight and bias
    by_hand = ModelHandle(net, model.model_sampling, model.latent_format, model.family, model.manager)
    sigma, ctx = torch.tensor([SIGMA]), conds[0][0].cross_attn
    assert close(both.apply_model(x, sigma, ctx), by_hand.apply_model(x, sigma, ctx), rel=1e-6)


def test_clip_attention_multiply(registry: Any, tiny: Any) -> None:
    clip = tiny[1]
    base = clip.encode("a photo of a cat")[0][0]
    (same,) = call(registry, "CLIPAttentionMultiply", clip=clip, q=1.0, k=1.0, v=1.0, out=1.0)
    (changed,) = call(registry, "CLIPAttentionMultiply", clip=clip, q=1.0, k=1.0, v=0.5, out=1.0)
    assert not clip.patches and same is not clip
    assert torch.equal(same.encode("a photo of a cat")[0][0], base)
    layers = sum(1 for n, _ in clip.encoders.named_parameters() if n.endswith("self_attn.v_proj.weight"))
    assert layers > 0 and sorted({n.rsplit(".", 1)[-1] for n in changed.patches}) == ["bias", "weight"]
    assert len(changed.patches) == 2 * layers
    assert not torch.allclose(changed.encode("a photo of a cat")[0][0], base, atol=1e-4)
    with pytest.raises(ValueError, match="CLIPAttentionMultiply.*clip"):
        call(registry, "CLIPAttentionMultiply", clip="nope", q=1.0, k=1.0, v=1.0, out=1.0)


# ---------------------------------------------------------------------------------------- UNet hooks
def test_unet_emb_and_forward_timestep_embed_patches(tiny: Any, conds: Any, x: torch.Tensor) -> None:
    from engine.networks.unet import Downsample

    model = tiny[0]
    pos = conds[0]
    sigma = torch.tensor([SIGMA])
    (ref,) = calc_cond_batch(model, [pos], x, sigma)
    widths: list[int] = []
    calls: list[str] = []

    def emb_identity(emb: torch.Tensor, channels: int, options: dict[str, Any]) -> torch.Tensor:
        widths.append(channels)
        return emb

    def run_layer(layer: Any, h: torch.Tensor, *rest: Any) -> torch.Tensor:
        calls.append(type(layer).__name__)
        return layer(h)

    m = model.clone()
    m.set_model_emb_patch(emb_identity)
    m.set_model_forward_timestep_embed_patch((Downsample, run_layer))
    assert torch.equal(calc_cond_batch(m, [pos], x, sigma)[0], ref)
    assert widths == [32] and calls == ["Downsample"] * 3
    zeroed = model.clone()
    zeroed.set_model_emb_patch(lambda emb, channels, options: emb * 0)
    assert not torch.allclose(calc_cond_batch(zeroed, [pos], x, sigma)[0], ref, atol=1e-3)
    assert "transformer_options" not in model.model_options or not model.model_options["transformer_options"]


def test_stacked_patches_sample_through_ksampler(registry: Any, tiny: Any) -> None:
    model, clip = tiny
    chain = [("TomePatchModel", {"ratio": 0.3}),
             ("HyperTile", {"tile_size": 32, "swap_size": 2, "max_depth": 0, "scale_depth": False}),
             ("FreeU", {"b1": 1.1, "b2": 1.2, "s1": 0.9, "s2": 0.2}),
             ("PerturbedAttentionGuidance", {"scale": 3.0}),
             ("SelfAttentionGuidance", {"scale": 0.5, "blur_sigma": 2.0}),
             ("PatchModelAddDownscale", {"block_number": 3, "downscale_factor": 2.0, "start_percent": 0.0,
                                         "end_percent": 0.35, "downscale_after_skip": True,
                                         "downscale_method": "bicubic", "upscale_method": "bicubic"})]
    patched = model
    for node, inputs in chain:
        (patched,) = call(registry, node, model=patched, **inputs)
    assert len(patched.model_options["sampler_post_cfg_function"]) == 2

    def run(m: Any) -> torch.Tensor:
        (out,) = call(registry, "KSampler", model=m, seed=5, steps=3, cfg=6.0, sampler_name="euler",
                      scheduler="normal", positive=clip.encode("a cat"), negative=clip.encode("blurry"),
                      latent_image={"samples": torch.zeros(SHAPE)}, denoise=1.0)
        samples: torch.Tensor = out["samples"]
        return samples

    plain, got = run(model), run(patched)
    assert got.shape == plain.shape and bool(torch.isfinite(got).all())
    assert float((got - plain).abs().max()) > 1e-2
    assert torch.equal(run(patched), got)  # per-call generators: the same prompt samples the same
