"""The registered catalogue matches the spec's names, inputs, defaults and outputs (section 7)."""
from __future__ import annotations

from typing import Any

# every built-in node id (ComfyUI's names), by the module that defines it; an explicit list, so a node that
# disappears, is renamed or is added without being listed here fails the test
EXPECTED_BY_MODULE: dict[str, tuple[str, ...]] = {
    "loaders": ("CheckpointLoaderSimple", "UNETLoader", "CLIPLoader", "VAELoader", "LoraLoader",
                "LoraLoaderModelOnly", "unCLIPCheckpointLoader"),
    "text_encoders": ("CLIPTextEncode", "CLIPTextEncodeSDXL", "CLIPTextEncodeSDXLRefiner", "CLIPSetLastLayer"),
    "conditioning": ("ConditioningCombine", "ConditioningAverage", "ConditioningConcat", "ConditioningSetArea",
                     "ConditioningSetAreaPercentage", "ConditioningSetAreaStrength", "ConditioningSetMask",
                     "ConditioningZeroOut", "ConditioningSetTimestepRange", "InpaintModelConditioning"),
    "latent": ("EmptyLatentImage", "LatentUpscale", "LatentUpscaleBy", "LatentFromBatch", "RepeatLatentBatch",
               "LatentComposite", "SetLatentNoiseMask", "LatentCompositeMasked"),
    "latent_ops": ("LatentFlip", "LatentRotate", "LatentCrop", "LatentBlend", "LatentAdd", "LatentSubtract",
                   "LatentMultiply", "LatentInterpolate", "LatentBatch", "LatentBatchSeedBehavior"),
    "vae": ("VAEEncode", "VAEEncodeForInpaint", "VAEDecode", "VAEDecodeTiled", "VAEEncodeTiled"),
    "sampling": ("KSampler", "KSamplerAdvanced"),
    "image": ("ImageScale", "ImageScaleBy", "ImageInvert", "ImagePadForOutpaint", "ImageBatch", "ImageCrop",
              "EmptyImage", "ImageScaleToTotalPixels", "RepeatImageBatch", "ImageFromBatch"),
    "image_filters": ("ImageBlend", "ImageBlur", "ImageSharpen", "ImageQuantize", "Canny"),
    "mask": ("InvertMask", "SolidMask", "MaskToImage", "ImageToMask", "GrowMask", "ImageCompositeMasked",
             "ThresholdMask", "CropMask", "MaskComposite", "FeatherMask"),
    "io": ("LoadImage", "LoadImageMask", "LoadImageOutput", "SaveImage", "PreviewImage", "SaveLatent", "LoadLatent"),
    "primitives": ("PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline",
                   "PrimitiveBoolean"),
    "families": ("DualCLIPLoader", "ModelSamplingDiscrete", "CheckpointLoader"),
    "custom_sampling": ("SamplerCustom", "BasicScheduler", "KarrasScheduler", "ExponentialScheduler",
                        "PolyexponentialScheduler", "SDTurboScheduler", "BetaSamplingScheduler", "KSamplerSelect",
                        "SplitSigmas", "SplitSigmasDenoise", "FlipSigmas", "SetFirstSigma", "CFGGuider", "BasicGuider",
                        "DisableNoise", "RandomNoise", "SamplerCustomAdvanced"),
    "custom_samplers": ("SamplerEulerAncestral", "SamplerLMS", "SamplerDPMPP_3M_SDE", "SamplerDPMPP_2M_SDE",
                        "SamplerDPMPP_SDE", "SamplerDPMPP_2S_Ancestral", "SamplerDPMAdaptative"),
    "custom_sigmas": ("LaplaceScheduler", "VPScheduler", "ManualSigmas", "AddNoise"),
    "model_patches": ("RescaleCFG", "DifferentialDiffusion"),
    "upscale": ("UpscaleModelLoader", "ImageUpscaleWithModel"),
    "batch": ("RebatchImages", "RebatchLatents"),
    "strings": ("StringConcatenate", "StringSubstring", "StringLength", "CaseConverter", "StringTrim", "StringReplace",
                "StringContains", "StringCompare", "RegexMatch", "RegexExtract", "RegexReplace", "PreviewAny"),
    "image_utils": ("GetImageSize", "ImageFlip", "ImageRotate", "ImageStitch", "ResizeAndPadImage",
                    "ImageScaleToMaxDimension", "ImageAddNoise", "ImageColorToMask", "JoinImageWithAlpha",
                    "SplitImageWithAlpha", "PorterDuffImageComposite", "MaskPreview"),
    "latent_utils": ("LatentConcat", "LatentCut", "LatentApplyOperation", "LatentApplyOperationCFG",
                     "LatentOperationTonemapReinhard", "LatentOperationSharpen"),
    "save_animated": ("SaveAnimatedWEBP", "SaveAnimatedPNG"),
    "template_staples": ("ComfySwitchNode", "ImageCompare", "ResolutionSelector"),
    "dynamic_staples": ("BatchImagesNode", "BatchMasksNode", "BatchLatentsNode", "ResizeImageMaskNode",
                        "ComfyMathExpression"),
    "custom_samplers_extra": ("SamplerEulerCFGpp", "SamplerEulerAncestralCFGPP", "SamplerER_SDE", "SamplerSASolver",
                              "SamplerLCMUpscale"),
    "custom_schedulers_extra": ("AlignYourStepsScheduler", "GITSScheduler", "OptimalStepsScheduler",
                                "ExtendIntermediateSigmas", "SamplingPercentToSigma"),
    "guidance_patches": ("CFGZeroStar", "CFGNorm", "APG", "TCFG", "Mahiro", "RenormCFG", "Epsilon Scaling", "PerpNeg",
                         "ModelSamplingContinuousEDM", "ModelSamplingContinuousV"),
    "guiders_extra": ("PerpNegGuider", "DualCFGGuider", "ConditioningTimestepsRange"),
    "flow_families": ("TripleCLIPLoader", "CLIPTextEncodeSD3", "EmptySD3LatentImage", "FluxGuidance",
                      "FluxDisableGuidance", "CLIPTextEncodeFlux", "ModelSamplingFlux", "ModelSamplingSD3",
                      "ModelSamplingAuraFlow", "SkipLayerGuidanceDiT", "SkipLayerGuidanceSD3",
                      "SkipLayerGuidanceDiTSimple", "ReferenceLatent", "FluxKontextMultiReferenceLatentMethod"),
    "adapters": ("ControlNetLoader", "DiffControlNetLoader", "ControlNetApplyAdvanced", "ControlNetApply",
                 "SetUnionControlNetType"),
    "clip_vision": ("CLIPVisionLoader", "CLIPVisionEncode", "StyleModelLoader", "StyleModelApply",
                    "unCLIPConditioning"),
    "model_merging": ("ModelMergeSimple", "ModelMergeBlocks", "ModelMergeSubtract", "ModelMergeAdd", "CLIPMergeSimple",
                      "CLIPMergeSubtract", "CLIPMergeAdd", "ModelMergeSD1", "ModelMergeSD2", "ModelMergeSDXL"),
    "model_saving": ("CheckpointSave", "CLIPSave", "VAESave", "ModelSave"),
    "extra_loaders": ("DiffusersLoader", "HypernetworkLoader", "GLIGENLoader", "GLIGENTextBoxApply",
                      "InstructPixToPixConditioning"),
    "attention_patches": ("FreeU", "FreeU_V2", "PerturbedAttentionGuidance", "SelfAttentionGuidance", "HyperTile",
                          "PatchModelAddDownscale", "TomePatchModel", "UNetSelfAttentionMultiply",
                          "UNetCrossAttentionMultiply", "CLIPAttentionMultiply", "UNetTemporalAttentionMultiply"),
    "hooks": ("CreateHookLora", "CreateHookLoraModelOnly", "CreateHookModelAsLora", "CreateHookModelAsLoraModelOnly",
              "SetHookKeyframes", "CreateHookKeyframe", "CreateHookKeyframesInterpolated",
              "CreateHookKeyframesFromFloats", "CombineHooks2", "CombineHooks4", "CombineHooks8"),
    "hook_attach": ("ConditioningSetProperties", "ConditioningSetPropertiesAndCombine", "PairConditioningSetProperties",
                    "PairConditioningSetPropertiesAndCombine", "ConditioningSetDefaultCombine",
                    "PairConditioningSetDefaultCombine", "PairConditioningCombine", "SetClipHooks"),
    "audio": ("SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "SaveAudioAdvanced", "LoadAudio", "PreviewAudio",
              "RecordAudio"),
    "audio_edit": ("TrimAudioDuration", "SplitAudioChannels", "JoinAudioChannels", "AudioConcat", "AudioMerge",
                   "AudioAdjustVolume", "EmptyAudio", "AudioEqualizer3Band", "AudioDuration"),
    "save_advanced": ("SaveImageAdvanced", "ImageColorSpace"),
    "utility_staples": ("SaveText", "CustomCombo", "SeedNode", "ComfyNumberConvert", "ColorToRGBInt",
                        "LatentCutToBatch", "ImageCropToMask", "Painter", "FluxKontextImageScale"),
    "conditioning_files": ("ConditioningLoader", "SaveConditioning", "MarigoldV2PostProcess"),
    "video": ("SaveWEBM", "SaveVideo", "CreateVideo", "GetVideoComponents", "LoadVideo", "Video Slice"),
}
EXPECTED = {name for names in EXPECTED_BY_MODULE.values() for name in names}


def test_builtin_classes_are_exactly_the_expected_comfyui_names() -> None:
    from nodes import CATEGORY_MODULES, builtin_node_classes

    classes = builtin_node_classes()
    missing, unexpected = EXPECTED - set(classes), set(classes) - EXPECTED
    assert not missing and not unexpected, (
        f"built-in nodes missing: {sorted(missing)}; not in EXPECTED (add them here): {sorted(unexpected)}")
    by_module = {name: cls.__module__.removeprefix("nodes.") for name, cls in classes.items()}
    assert by_module == {name: module for module, names in EXPECTED_BY_MODULE.items() for name in names}
    assert list(CATEGORY_MODULES) == [f"nodes.{module}" for module in EXPECTED_BY_MODULE]
    # the catalogue (and /object_info) lists nodes module by module, each module in its NODES order
    assert list(classes) == [name for names in EXPECTED_BY_MODULE.values() for name in names]


def test_all_builtins_registered_with_python_module_nodes(registry: Any) -> None:
    missing = EXPECTED - set(registry.names())
    assert not missing, f"not registered: {sorted(missing)}"
    info = registry.object_info()
    for name in EXPECTED:
        node = info[name]
        assert node["python_module"] == "nodes"
        assert isinstance(node["output_node"], bool) and node["category"] and node["display_name"]


def test_selected_specs(registry: Any) -> None:
    info = registry.object_info()
    e = info["EmptyLatentImage"]["input"]["required"]
    assert e["width"] == ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8}]
    assert e["batch_size"] == ["INT", {"default": 1, "min": 1, "max": 4096}]
    assert info["EmptyLatentImage"]["display_name"] == "Empty Latent Image"
    ks = info["KSampler"]
    assert ks["input_order"]["required"] == ["model", "seed", "steps", "cfg", "sampler_name", "scheduler",
                                             "positive", "negative", "latent_image", "denoise"]
    seed = ks["input"]["required"]["seed"][1]
    assert seed["max"] == 0xFFFFFFFFFFFFFFFF and seed["control_after_generate"] is True
    cfg = {k: v for k, v in ks["input"]["required"]["cfg"][1].items() if k != "tooltip"}
    assert cfg == {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}
    assert ks["output"] == ["LATENT"]
    adv = info["KSamplerAdvanced"]["input_order"]["required"]
    assert adv == ["model", "add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "positive",
                   "negative", "latent_image", "start_at_step", "end_at_step", "return_with_leftover_noise"]
    imc = info["InpaintModelConditioning"]
    assert imc["output"] == ["CONDITIONING", "CONDITIONING", "LATENT"]
    assert imc["output_name"] == ["positive", "negative", "latent"]
    assert info["SaveImage"]["output_node"] is True and info["SaveImage"]["output"] == []
    assert info["SaveImage"]["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert info["LoadImageMask"]["input"]["required"]["channel"][0] == ["alpha", "red", "green", "blue"]
    assert info["VAEEncodeForInpaint"]["input"]["required"]["grow_mask_by"][1]["default"] == 6
    assert info["CLIPSetLastLayer"]["input"]["required"]["stop_at_clip_layer"][1] == {
        "default": -1, "min": -24, "max": -1, "step": 1}
    assert info["UNETLoader"]["input"]["required"]["weight_dtype"][0] == [
        "default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]
    assert "pixel_space" in info["VAELoader"]["input"]["required"]["vae_name"][0]


def test_services_bound_per_registry(tmp_path: Any) -> None:
    from engine.paths import ModelPaths
    from executor.registry import NodeRegistry
    from nodes import register_builtin_nodes
    from nodes.services import NodeServices

    regs = []
    for name in ("a", "b"):
        p = ModelPaths(tmp_path / name)
        p.ensure_dirs()
        (tmp_path / name / "models" / "checkpoints" / f"{name}.safetensors").write_bytes(b"")
        reg = NodeRegistry()
        register_builtin_nodes(reg, NodeServices(paths=p))
        regs.append(reg)
    lists = [r.object_info_for("CheckpointLoaderSimple")["CheckpointLoaderSimple"]["input"]["required"]
             ["ckpt_name"][0] for r in regs]
    assert lists == [["a.safetensors"], ["b.safetensors"]]


SPEC_SAMPLERS = (
    "euler euler_cfg_pp euler_ancestral euler_ancestral_cfg_pp heun heunpp2 exp_heun_2_x0 exp_heun_2_x0_sde dpm_2 "
    "dpm_2_ancestral lms dpm_fast dpm_adaptive dpmpp_2s_ancestral dpmpp_2s_ancestral_cfg_pp dpmpp_sde dpmpp_sde_gpu "
    "dpmpp_2m dpmpp_2m_cfg_pp dpmpp_2m_sde dpmpp_2m_sde_gpu dpmpp_2m_sde_heun dpmpp_2m_sde_heun_gpu dpmpp_3m_sde "
    "dpmpp_3m_sde_gpu ddpm lcm ipndm ipndm_v deis res_multistep res_multistep_cfg_pp res_multistep_ancestral "
    "res_multistep_ancestral_cfg_pp gradient_estimation gradient_estimation_cfg_pp er_sde seeds_2 seeds_3 sa_solver "
    "sa_solver_pece ddim uni_pc uni_pc_bh2").split()
SPEC_SCHEDULERS = "simple sgm_uniform karras exponential ddim_uniform beta normal linear_quadratic kl_optimal".split()


def test_sampler_and_scheduler_options_are_the_engines_in_spec_order(registry: Any) -> None:
    from engine import sampling

    req = registry.object_info_for("KSampler")["KSampler"]["input"]["required"]
    samplers, schedulers = req["sampler_name"][0], req["scheduler"][0]
    assert samplers == list(sampling.SAMPLER_NAMES) and schedulers == list(sampling.SCHEDULER_NAMES)
    assert samplers == [s for s in SPEC_SAMPLERS if s in samplers]
    assert schedulers == [s for s in SPEC_SCHEDULERS if s in schedulers]
    assert {"euler", "euler_ancestral", "dpmpp_2m", "ddim", "uni_pc"} <= set(samplers)


def test_lora_and_sdxl_text_nodes(registry: Any, services: Any) -> None:
    from pathlib import Path

    import pytest

    from nodes._base import NodeInputError

    info = registry.object_info()
    lora = info["LoraLoader"]
    assert lora["input_order"]["required"] == ["model", "clip", "lora_name", "strength_model", "strength_clip"]
    assert lora["input"]["required"]["strength_model"][1] == {"default": 1.0, "min": -100.0, "max": 100.0,
                                                              "step": 0.01}
    assert lora["output"] == ["MODEL", "CLIP"] and info["LoraLoaderModelOnly"]["output"] == ["MODEL"]
    assert info["CLIPTextEncodeSDXL"]["input_order"]["required"] == [
        "width", "height", "crop_w", "crop_h", "target_width", "target_height", "text_g", "clip", "text_l"]
    model, clip = object(), object()
    node = registry.get("LoraLoader")()
    assert node.load_lora(model, clip, "absent.safetensors", 0.0, 0.0) == (model, clip)
    with pytest.raises(NodeInputError, match="input 'lora_name'.*absent.safetensors"):
        node.load_lora(model, clip, "absent.safetensors", 1.0, 1.0)
    bad = Path(services.paths.get_folder_paths("loras")[0]) / "bad.safetensors"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"not a lora")
    with pytest.raises(NodeInputError, match="LoraLoader.*input 'lora_name'.*bad.safetensors"):
        node.load_lora(model, clip, "bad.safetensors", 1.0, 1.0)
