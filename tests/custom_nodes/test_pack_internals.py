"""The ComfyUI internals ADV_CLIP_emb, Cutoff, TiledKSampler and AutomaticCFG use (word ids, comfy.controlnet,
the attention functions, KSampler.sigmas, BaseModel views, supported_models), through a fixture pack that imports
them the way those packs do, on the tiny SD1.5 checkpoint and tiny control files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIX = Path(__file__).resolve().parents[1] / "fixtures"
CHECKPOINT = FIX / "tiny-sd15" / "tiny-sd15.safetensors"
CONTROLNET = FIX / "adapters" / "tiny-control_v11p_sd15_canny_fp16.safetensors"
T2I = FIX / "adapters" / "tiny-t2iadapter_depth_sd15v2.safetensors"


@pytest.fixture
def loaded(packs):
    report = packs.load("pack_internals_pack")["pack_internals_pack"]
    assert report.status == "loaded", report.error or report.refused
    import comfy.sd

    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(CHECKPOINT), output_vae=False)
    return packs.registry, model, clip


def test_tokens_with_word_ids_encode_like_pairs(loaded) -> None:
    registry, _, clip = loaded
    cond, facts = registry.get("WordIdEncode")().run(clip, "a (red:1.5) circle")
    assert facts["sd1"] and not facts["sdxl"]
    # start token, "a", "red", "circle", end, padding: one word id per prompt segment, 0 for the rest
    assert facts["word_ids"] == [0, 1, 2, 3, 0, 0]
    assert facts["weights"] == {1: 1.0, 2: 1.5, 3: 1.0}
    assert facts["same_encoding"], "triples and pairs encode to the same tensor"
    assert facts["end_token"] == 49407 and facts["max_length"] == 77 and not facts["has_clip_g"]
    assert [len(p) for p in facts["plain_window"]] == [2, 2, 2, 2], "without word ids: (token, weight) pairs"
    assert facts["bpe_ids"][0] == 49406 and facts["bpe_ids"][-1] == 49407 and len(facts["bpe_ids"]) == 3
    reference = clip.encode_from_tokens(clip.tokenize("a (red:1.5) circle"))
    assert torch.equal(cond[0][0], reference)
    assert facts["pooled_shape"][0] == 1


def test_word_ids_count_segments_across_windows() -> None:
    from engine.tokenizer import PromptTokenizer

    windows = PromptTokenizer().tokenize_with_weights("one, " * 40 + "(two:1.2)", return_word_ids=True)
    assert len(windows) == 2 and all(len(w) == 77 for w in windows)
    ids = [wid for w in windows for _, _, wid in w if wid]
    assert ids[0] == 1 and max(ids) == 2, "the plain text is one segment, the weighted word the next"
    assert [w for _, w, wid in windows[1] if wid == 2] == [1.2]


def test_comfy_controlnet_classes_and_loader(loaded) -> None:
    registry, _, _ = loaded
    (facts,) = registry.get("ControlFacts")().run(str(CONTROLNET), str(T2I))
    assert facts["cnet"] == [True, False, True, False]
    assert facts["t2i"] == [False, True]
    assert facts["string"] is False
    assert facts["broadcast_one"] == [1, 1, 1, 1], "a batch-1 hint stays batch 1 (it broadcasts)"
    assert facts["broadcast"] == [0.0, 1.0, 0.0, 1.0], "per-cond rows, repeated for each cond group"
    import comfy.controlnet

    # real classes with ComfyUI's contract (packs subclass them); Loom's own handles still pass isinstance
    bare = comfy.controlnet.ControlNet()
    assert isinstance(bare, comfy.controlnet.ControlBase) and not isinstance(bare, comfy.controlnet.T2IAdapter)
    assert bare.extra_conds == ["y"] and bare.timestep_percent_range == (0.0, 1.0)
    with pytest.raises(NotImplementedError, match="Control-LoRA"):
        comfy.controlnet.ControlLora({})


def test_model_internals_answer_from_the_handle(loaded) -> None:
    registry, model, clip = loaded
    positive = clip.encode("a red circle")
    (facts,) = registry.get("ModelInternals")().run(model, positive, clip.encode(""))
    assert facts["sigmas_len"] == 5 and facts["sigmas_tail"], "denoise 0.5: the tail of an 8-step schedule"
    assert facts["dtype"] == str(model.dtype) and facts["memory"] > 0
    assert facts["latent_roundtrip"] and facts["scale"] == pytest.approx(0.18215)
    assert facts["apply_model"], "BaseModel.apply_model(x, sigma, c_crossattn=...) is the handle's apply_model"
    assert facts["attention"] == [True] * 6
    assert len(facts["configs"]) == 60 and facts["configs"][:4] == ["LotusD", "Stable_Zero123", "SD15_instructpix2pix",
                                                                    "SD15"]  # ComfyUI's list and order
    assert facts["sd15_latent"] == pytest.approx(0.18215) and facts["is_base"]


def test_model_config_is_the_family_s_and_isinstance_chains_run_through(loaded) -> None:
    """Easy-Use's get_sd_version: isinstance(model.model.model_config, ...) down ComfyUI's family classes, those
    Loom does not load included."""
    _, model, _ = loaded
    import comfy.supported_models as sm
    import comfy.supported_models_base

    config = model.model.model_config
    assert isinstance(config, sm.SD15) and isinstance(config, comfy.supported_models_base.BASE)
    assert not isinstance(config, (sm.SDXL, sm.SVD_img2vid, sm.HunyuanDiT, sm.GenmoMochi, sm.Flux))
    assert issubclass(sm.SSD1B, sm.SDXL) and issubclass(sm.SV3D_p, sm.SVD_img2vid)
    assert sm.SD15.latent_format.scale_factor == pytest.approx(0.18215)
    flux = model.clone()
    from engine.families import FLUX_SCHNELL

    flux.family = FLUX_SCHNELL
    assert isinstance(flux.model.model_config, sm.FluxSchnell) and isinstance(flux.model.model_config, sm.Flux)


def test_sampling_function_runs_loom_cfg_with_the_model_hook(loaded) -> None:
    _, model, clip = loaded
    import comfy.samplers

    from engine.sampling.conditioning import resolve_conds

    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([2.0])
    pos, neg = (resolve_conds(clip.encode(t), x.shape, model.model_sampling, torch.device("cpu"), n)
                for t, n in (("a red circle", "positive"), ("", "negative")))
    cond_x0, uncond_x0 = comfy.samplers.calc_cond_batch(model, [pos, neg], x, sigma)
    plain = comfy.samplers.sampling_function(model, x, sigma, neg, pos, 4.0)
    assert torch.allclose(plain, uncond_x0 + (cond_x0 - uncond_x0) * 4.0, atol=1e-5)
    hooked = model.clone()
    hooked.set_model_sampler_cfg_function(lambda args: args["input"] - args["cond_denoised"])  # cond only
    assert torch.allclose(comfy.samplers.sampling_function(hooked, x, sigma, neg, pos, 4.0,
                                                          hooked.model_options), cond_x0, atol=1e-5)


def test_model_function_wrapper_and_tiled_diffusion_internals(loaded) -> None:
    registry, model, clip = loaded
    import comfy.samplers
    import comfy.sd

    from engine.sampling.conditioning import resolve_conds

    _, _, vae, _ = comfy.sd.load_checkpoint_guess_config(str(CHECKPOINT), output_clip=False)
    (facts,) = registry.get("TiledInternals")().run(model, vae, clip.encode("a red circle"), clip.encode(""))
    x, sigma, wrapped, seen = facts["x"], facts["sigma"], facts["wrapped"], facts["seen"]
    assert "model_function_wrapper" not in model.model_options, "set on the clone only"
    pos, neg = (resolve_conds(clip.encode(t), x.shape, model.model_sampling, torch.device("cpu"), n)
                for t, n in (("a red circle", "positive"), ("", "negative")))
    cond_x0, _ = comfy.samplers.calc_cond_batch(wrapped, [pos, neg], x, sigma)
    # one batched call (negative and positive rows together) went through the wrapper
    assert seen == [(["c_crossattn", "transformer_options"], [1, 0], 2)]
    assert torch.allclose(cond_x0[..., :8], facts["left"], atol=1e-5), "each half ran on its own"
    plain, _ = comfy.samplers.calc_cond_batch(model, [pos, neg], x, sigma)
    assert not torch.allclose(plain[..., :8], facts["left"], atol=1e-4), "unwrapped, the halves see each other"
    assert facts["blur_sum"] == pytest.approx(1.0) and facts["blur_symmetric"] and facts["blur_flat"]
    assert facts["ldm"][:4] == [len(vae.vae.config.ch_mult), vae.vae.config.num_res_blocks, False, False]
    assert facts["ldm"][6] is False and facts["ldm"][4] > 0
    assert facts["vae_attention"] == [1, 4, 2, 3] and facts["gligen"] is False
    with pytest.raises(NotImplementedError, match="KSAMPLER.sample"):
        comfy.samplers.KSAMPLER("euler").sample(None, None, None, None, None)
    with pytest.raises(NotImplementedError, match="get_area_and_mult"):
        comfy.samplers.get_area_and_mult([], x, sigma)


def test_a_clip_s_tower_encoder_answers_sd_clip_model_checks(loaded) -> None:
    _, _, clip = loaded
    import comfy.sd1_clip

    assert isinstance(clip.cond_stage_model, comfy.sd1_clip.SD1ClipModel)
    assert isinstance(clip.cond_stage_model.clip_l, comfy.sd1_clip.SDClipModel)
