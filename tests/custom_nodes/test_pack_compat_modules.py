"""The ComfyUI modules added for popular packs (issue 25), imported by a fixture pack the way real packs do."""
from __future__ import annotations

import pytest
import torch

from nodes import bind, builtin_node_classes


@pytest.fixture
def facts(packs) -> dict:
    # comfy_extras.* modules expose the registry's built-ins; register the one the pack reads.
    packs.registry.register("InvertMask", bind(builtin_node_classes()["InvertMask"], None), source="builtin")
    report = packs.load("comfy_modules_pack")["comfy_modules_pack"]
    assert report.status == "loaded", report.error or report.refused
    packs.report = report
    return packs.registry.get("ModuleFacts")().run()[0]


def test_modules_import_and_answer_from_loom(facts) -> None:
    assert facts["samplers_loaded"], "`import comfy` brings comfy.samplers and comfy.sd, as in ComfyUI"
    assert facts["sdxl_scale"] == pytest.approx(0.13025) and facts["sd15_channels"] == 4
    assert len(facts["karras"]) == 5 and facts["karras"][-1] == 0.0
    assert facts["karras"][0] == pytest.approx(10.0) and facts["karras"][3] == pytest.approx(0.1)
    assert facts["append_dims"] == [2, 1, 1, 1]
    assert facts["to_d"] == [1.0]
    assert facts["noise_shape"] == [1, 4, 8, 8] and facts["noise_same_seed"] and facts["empty_noise_zero"]
    assert facts["invert_mask"]
    assert facts["convert_cond"] == 0.5 and facts["additional_models"] == ([], 0)
    assert facts["mask_shape"] == [2, 4, 8, 8]
    assert facts["linear_type"] == "Linear"
    assert facts["full_type_name"].endswith("comfy_modules_pack.ModuleFacts")
    assert facts["unet_is_loom"] == "engine.networks.unet"
    assert facts["clip_sets"] == [True, True, True, False]
    assert facts["flow_clip_sets"] == [True, True, False, False, False]
    assert facts["lora_keys"]


def test_comfy_extras_classes_are_the_registered_builtins(facts, packs) -> None:
    import comfy_extras.nodes_mask as nodes_mask

    assert nodes_mask.InvertMask is packs.registry.get("InvertMask")
    with pytest.raises(ImportError):
        exec("from comfy_extras.nodes_mask import SolidMask", {})  # listed by ComfyUI, not registered here
    with pytest.raises(ModuleNotFoundError):
        exec("import comfy_extras.nodes_not_a_module", {})


def test_short_output_tooltips_are_a_warning_not_a_refusal(facts, packs) -> None:
    cls = packs.registry.get("ModuleFacts")
    assert cls.OUTPUT_TOOLTIPS == ("only one tooltip, as some real packs declare", "")
    info = packs.registry.node_info("ModuleFacts")
    assert info["output_tooltips"] == ["only one tooltip, as some real packs declare", ""]
    assert "UNIQUE_ID" in str(info["input"]["hidden"]), "unknown hidden entries are kept, not refused"


def test_patch_replace_adds_to_a_copied_table(facts, packs) -> None:
    # ComfyUI's semantics: the dict passed is returned with new transformer_options; a shallow copy made before
    # the call keeps the old attention-replacement table
    result = packs.registry.get("PatchReplace")().run()[0]
    assert result == repr((True, {("input", 1): "old", ("middle", 0, 0): "new"}, {("input", 1): "old"}))


def test_flow_latent_formats_and_calc_cond_batch(facts) -> None:
    import comfy.latent_formats as formats
    import comfy.samplers
    import torch

    from engine import latent_formats

    x = torch.randn(1, 16, 2, 2)
    for cls, fmt in ((formats.SD3, latent_formats.SD3), (formats.Flux, latent_formats.FLUX)):
        assert cls().latent_channels == 16 and len(cls().latent_rgb_factors) == 16
        assert torch.equal(cls().process_in(x), (x - fmt.shift_factor) * fmt.scale_factor)
        assert torch.equal(cls().process_out(cls().process_in(x)), fmt.process_out(fmt.process_in(x)))
    from engine.sampling.guider import calc_cond_batch

    assert comfy.samplers.calc_cond_batch.__module__ == "comfy.samplers" and callable(calc_cond_batch)


def test_execution_validate_prompt_uses_loom_validation(facts, packs) -> None:
    import asyncio  # noqa: F401 (the node runs asyncio.run)

    node = packs.registry.get("ValidatePrompt")()
    ok = node.run({"1": {"class_type": "CoreNode", "inputs": {"value": 3}},
                   "2": {"class_type": "ModuleFacts", "inputs": {}}})[0]
    assert ok == (True, None, ["2"], {})
    bad = node.run({"1": {"class_type": "NoSuchNode", "inputs": {}}})[0]
    assert bad[0] is False and bad[1]["type"] and "NoSuchNode" in str(bad)


def test_k_diffusion_samplers_are_loom_functions(facts) -> None:
    import comfy.k_diffusion.sampling as k_sampling

    from engine.sampling import k_samplers

    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 5.0
    sigmas = k_sampling.get_sigmas_exponential(3, 0.5, 5.0)
    seen: list[tuple[int, float]] = []

    def denoiser(x_: torch.Tensor, sigma: torch.Tensor, *, offset: float) -> torch.Tensor:
        return torch.full_like(x_, offset)  # analytic: every sample's x0 is `offset`

    def callback(step: dict) -> None:
        seen.append((step["i"], float(step["sigma"])))

    out = k_sampling.sample_euler(denoiser, x, sigmas, extra_args={"offset": 0.25}, callback=callback, disable=True)
    reference = k_samplers.sample_euler(lambda x_, s: torch.full_like(x_, 0.25), x, sigmas)
    assert torch.equal(out, reference) and torch.allclose(out, torch.full_like(out, 0.25))
    assert [i for i, _ in seen] == [0, 1, 2] and seen[0][1] == pytest.approx(5.0)
    with pytest.raises(TypeError, match="s_churn"):
        k_sampling.sample_euler(denoiser, x, sigmas, extra_args={"offset": 0.0}, s_churn=1.0)


def test_comfy_extras_string_nodes_run_as_loom_builtins(facts, packs) -> None:
    packs.registry.register("StringConcatenate", bind(builtin_node_classes()["StringConcatenate"], None),
                            source="builtin")
    import comfy_extras.nodes_string as nodes_string

    node = nodes_string.StringConcatenate()
    assert nodes_string.StringConcatenate is packs.registry.get("StringConcatenate")
    function = getattr(node, nodes_string.StringConcatenate.FUNCTION)
    result = function(string_a="Loom", string_b="packs", delimiter=" ")
    assert (result.get("result") if isinstance(result, dict) else result)[0] == "Loom packs"


def test_comfy_extras_model_merging_subclass_as_packs_do(facts, packs) -> None:
    """Packs add block-merge nodes for other architectures by subclassing ModelMergeBlocks with their own prefixes,
    and merge by hand with get_key_patches / add_patches (tinyterra, Comfyroll): both work on Loom's handles."""
    from pathlib import Path

    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    for node_id in ("ModelMergeBlocks", "ModelMergeSubtract"):
        packs.registry.register(node_id, bind(builtin_node_classes()[node_id], None), source="builtin")
    import comfy_extras.nodes_model_merging as merging

    assert merging.ModelMergeBlocks is packs.registry.get("ModelMergeBlocks")
    assert merging.ModelSubtract.__name__ == "ModelMergeSubtract"

    class PackMerge(merging.ModelMergeBlocks):
        @classmethod
        def INPUT_TYPES(cls):
            ratio = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})
            return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), "time_embed.": ratio, "out.": ratio}}

    ckpt = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors"
    model = load_checkpoint(ckpt, ModelManager(DevicePolicy.cpu()), output_clip=False, output_vae=False)[0]
    zero = merging.ModelSubtract().merge(model, model, 1.0)[0]  # model - model = 0 everywhere
    merged = PackMerge().merge(model, zero, **{"time_embed.": 0.25, "out.": 1.0})[0]
    sd, base = merged.patched_state_dict(), model.patched_state_dict()
    assert torch.allclose(sd["time_embed.0.weight"], 0.25 * base["time_embed.0.weight"])
    assert torch.equal(sd["out.2.bias"], base["out.2.bias"])
    assert torch.allclose(sd["input_blocks.0.0.weight"], 0.25 * base["input_blocks.0.0.weight"])  # first ratio
    by_hand = model.clone()
    kp = zero.get_key_patches("diffusion_model.")
    for k in kp:
        by_hand.add_patches({k: kp[k]}, 0.5, 0.5)
    assert torch.allclose(by_hand.patched_state_dict()["out.2.bias"], 0.5 * base["out.2.bias"])


def test_comfy_extras_modules_packs_import_scheduler_and_patch_nodes_from(facts, packs) -> None:
    """efficiency-nodes imports AlignYourStepsScheduler / GITSScheduler, SeargeSDXL FreeU / FreeU_V2 and
    nodes_post_processing's Blend from their ComfyUI modules; nodes are also there under ComfyUI's class names."""
    for node_id in ("AlignYourStepsScheduler", "GITSScheduler", "FreeU", "FreeU_V2", "Epsilon Scaling", "ImageBlend"):
        packs.registry.register(node_id, bind(builtin_node_classes()[node_id], None), source="builtin")
    from comfy_extras.nodes_align_your_steps import AlignYourStepsScheduler
    from comfy_extras.nodes_eps import EpsilonScaling
    from comfy_extras.nodes_freelunch import FreeU, FreeU_V2
    from comfy_extras.nodes_gits import GITSScheduler

    sigmas = AlignYourStepsScheduler().get_sigmas("SD1", 10, denoise=1.0)[0]
    assert len(sigmas) == 11 and float(sigmas[-1]) == 0.0
    assert len(GITSScheduler().get_sigmas(1.20, 10, denoise=1.0)[0]) == 11
    assert FreeU is packs.registry.get("FreeU") and FreeU_V2.FUNCTION == "patch"
    assert EpsilonScaling is packs.registry.get("Epsilon Scaling")
    import comfy_extras.nodes_post_processing as post

    assert post.Blend is post.ImageBlend is packs.registry.get("ImageBlend")
    assert not hasattr(post, "Blur")  # ImageBlur is not registered in this test's registry: absent, not a stand-in


def test_names_efficiency_nodes_imports(facts) -> None:
    """efficiency-nodes (smZ's CFG denoiser) imports ComfyUI sampler internals and the VAE's Gaussian: present,
    the internals refusing a call (Loom's sampler prepares and batches conds itself), the Gaussian working."""
    import numpy
    from comfy.ldm.modules.distributions.distributions import DiagonalGaussianDistribution
    from comfy.sample import np
    from comfy.samplers import KSamplerX0Inpaint, can_concat_cond, cond_cat

    assert np is numpy
    for refused in (lambda: KSamplerX0Inpaint(None, None), lambda: can_concat_cond({}, {}), lambda: cond_cat([])):
        with pytest.raises(NotImplementedError, match="Loom"):
            refused()
    moments = torch.cat([torch.full((1, 4, 2, 2), 0.5), torch.full((1, 4, 2, 2), -40.0)], dim=1)
    dist = DiagonalGaussianDistribution(moments)
    assert torch.equal(dist.mode(), moments[:, :4]) and float(dist.logvar.min()) == -30.0  # clamped
    torch.manual_seed(0)
    assert torch.allclose(dist.sample(), dist.mean, atol=1e-5)  # std e^-15
    assert torch.allclose(dist.kl(dist), torch.zeros(1))
    standard = DiagonalGaussianDistribution(torch.zeros(1, 8, 2, 2))
    assert torch.allclose(standard.kl(), torch.zeros(1))
    assert torch.equal(DiagonalGaussianDistribution(moments, deterministic=True).sample(), moments[:, :4])


def test_chainner_model_loading_gives_the_upscale_model_of_a_state_dict(facts, tmp_path) -> None:
    """Comfyroll's upscale nodes load through ComfyUI's pre-spandrel `chainner_models.model_loading`: the same
    UPSCALE_MODEL UpscaleModelLoader gives for the file."""
    from comfy_extras.chainner_models import model_loading
    from safetensors.torch import save_file

    from engine.device import DevicePolicy
    from engine.model_management import ModelManager
    from engine.networks.upscalers import RRDBNet
    from engine.upscale import load_upscale_model

    torch.manual_seed(0)
    sd = {k: v.contiguous() for k, v in RRDBNet(3, 3, 8, 1, 4, 2, 1).state_dict().items()}
    save_file(sd, str(tmp_path / "x4.safetensors"))
    model = model_loading.load_state_dict(sd)
    ref = load_upscale_model(tmp_path / "x4.safetensors", ModelManager(DevicePolicy.cpu()))
    x = torch.rand(1, 3, 8, 8)
    assert model.scale == 4 and torch.equal(model.model(x), ref.model(x))
    with pytest.raises(Exception, match="state dict"):
        model_loading.load_state_dict({"not.an.upscaler": torch.zeros(2)})


def test_prompt_executor_is_there_by_name_only(facts) -> None:
    """Impact Pack keeps `execution.PromptExecutor.handle_execution_error` at import; using it is refused."""
    import execution

    kept = execution.PromptExecutor.handle_execution_error
    with pytest.raises(NotImplementedError, match="Loom"):
        kept(None, "p", {}, {}, [], {}, None)
    with pytest.raises(NotImplementedError, match="executor"):
        execution.PromptExecutor(None)


def test_latent_preview_taesd_names_impact_pack_imports(facts, tmp_path) -> None:
    """Impact Pack builds `TAESD(None, decoder_path, latent_channels=...)` and a `TAESDPreviewerImpl` over it."""
    from latent_preview import TAESD, TAESDPreviewerImpl
    from safetensors.torch import save_file

    from engine.networks.taesd import Decoder

    torch.manual_seed(0)
    decoder = Decoder(4)
    save_file({k: v.contiguous() for k, v in decoder.state_dict().items()}, str(tmp_path / "taesd_decoder.sft"))
    taesd = TAESD(None, str(tmp_path / "taesd_decoder.sft"), latent_channels=4)
    assert torch.equal(taesd.taesd_decoder[1].weight, decoder[1].weight)
    fmt, image, _ = TAESDPreviewerImpl(taesd).decode_latent_to_preview_image("JPEG", torch.randn(1, 4, 4, 5))
    assert image.size == (40, 32)


def test_sample_custom_and_sample_with_sigmas_run_the_schedule_given(facts) -> None:
    """Impact Pack's samplers call comfy.sample.sample_custom; comfy.sample.sample(..., sigmas=...) runs that
    schedule instead of the scheduler's (it used to be ignored)."""
    from pathlib import Path

    import comfy.sample
    import comfy.samplers

    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    model, clip, _ = load_checkpoint(fixtures / "tiny-sd15" / "tiny-sd15.safetensors", ModelManager(DevicePolicy.cpu()))
    pos, neg = clip.encode("a red circle"), clip.encode("")
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    latent = torch.zeros(1, 4, 8, 8)
    sigmas = comfy.samplers.KSampler(model, 4, "cpu", scheduler="normal").sigmas
    full = comfy.sample.sample(model, noise, 4, 5.0, "euler", "normal", pos, neg, latent, seed=3)
    custom = comfy.sample.sample_custom(model, noise, 5.0, comfy.samplers.sampler_object("euler"), sigmas, pos, neg,
                                        latent, seed=3)
    assert torch.equal(custom, full)
    tail = comfy.sample.sample(model, noise, 4, 5.0, "euler", "normal", pos, neg, latent, seed=3, sigmas=sigmas[2:])
    assert torch.equal(tail, comfy.sample.sample_custom(model, noise, 5.0, comfy.samplers.sampler_object("euler"),
                                                        sigmas[2:], pos, neg, latent, seed=3))
    assert not torch.equal(tail, full)
