"""Which `comfy_extras.nodes_*` modules Loom answers, and the node ids (and helper names) each one holds.

ComfyUI keeps many built-in nodes in `comfy_extras/nodes_<topic>.py`; packs import them from there
(`from comfy_extras.nodes_custom_sampler import SamplerCustom`) to call or subclass them. Every listed
module is served by the one shim file `comfy_extras/_nodes_module.py`, which exposes the registered
classes of these ids (Loom's built-ins, bound to this instance) and `NODE_CLASS_MAPPINGS`. A listed id that
Loom does not register is absent, so importing it fails with the usual ImportError naming it.
"""
from __future__ import annotations

SHIM_FILE = "_nodes_module"

# ComfyUI module -> node ids it defines (each a module attribute; see EXTRAS_CLASS_NAMES for ComfyUI's class names).
EXTRAS_MODULES: dict[str, tuple[str, ...]] = {
    "nodes_canny": ("Canny",),
    "nodes_clip_sdxl": ("CLIPTextEncodeSDXLRefiner", "CLIPTextEncodeSDXL"),
    "nodes_custom_sampler": (
        "SamplerCustom", "BasicScheduler", "KarrasScheduler", "ExponentialScheduler", "PolyexponentialScheduler",
        "LaplaceScheduler", "VPScheduler", "BetaSamplingScheduler", "SDTurboScheduler", "KSamplerSelect",
        "SamplerEulerAncestral", "SamplerEulerAncestralCFGPP", "SamplerLMS", "SamplerDPMPP_3M_SDE",
        "SamplerDPMPP_2M_SDE", "SamplerDPMPP_SDE", "SamplerDPMPP_2S_Ancestral", "SamplerDPMAdaptative",
        "SamplerER_SDE", "SamplerSASolver", "SplitSigmas", "SplitSigmasDenoise", "FlipSigmas", "SetFirstSigma",
        "ExtendIntermediateSigmas", "SamplingPercentToSigma", "CFGGuider", "DualCFGGuider", "BasicGuider",
        "RandomNoise", "DisableNoise", "AddNoise", "SamplerCustomAdvanced",
    ),
    "nodes_differential_diffusion": ("DifferentialDiffusion",),
    "nodes_images": (
        "ImageCrop", "RepeatImageBatch", "ImageFromBatch", "ImageAddNoise", "SaveAnimatedWEBP", "SaveAnimatedPNG",
        "ImageStitch", "ResizeAndPadImage", "GetImageSize", "ImageRotate", "ImageFlip", "ImageScaleToMaxDimension",
    ),
    "nodes_latent": (
        "LatentAdd", "LatentSubtract", "LatentMultiply", "LatentInterpolate", "LatentConcat", "LatentCut",
        "LatentBatch", "LatentBatchSeedBehavior", "LatentApplyOperation", "LatentApplyOperationCFG",
        "LatentOperationTonemapReinhard", "LatentOperationSharpen",
    ),
    "nodes_mask": (
        "LatentCompositeMasked", "ImageCompositeMasked", "MaskToImage", "ImageToMask", "ImageColorToMask",
        "SolidMask", "InvertMask", "CropMask", "MaskComposite", "FeatherMask", "GrowMask", "ThresholdMask",
        "MaskPreview",
    ),
    "nodes_model_advanced": (
        "ModelSamplingDiscrete", "ModelSamplingContinuousEDM", "ModelSamplingContinuousV",
        "ModelSamplingStableCascade", "ModelSamplingSD3", "ModelSamplingAuraFlow", "ModelSamplingFlux",
        "RescaleCFG", "ModelComputeDtype",
    ),
    "nodes_post_processing": ("ImageBlend", "ImageBlur", "ImageQuantize", "ImageSharpen", "ImageScaleToTotalPixels"),
    "nodes_primitive": ("PrimitiveString", "PrimitiveStringMultiline", "PrimitiveInt", "PrimitiveFloat",
                        "PrimitiveBoolean"),
    "nodes_upscale_model": ("UpscaleModelLoader", "ImageUpscaleWithModel"),
    "nodes_string": (
        "StringConcatenate", "StringSubstring", "StringLength", "CaseConverter", "StringTrim", "StringReplace",
        "StringContains", "StringCompare", "RegexMatch", "RegexExtract", "RegexReplace",
    ),
    "nodes_rebatch": ("RebatchLatents", "RebatchImages"),
    "nodes_compositing": ("PorterDuffImageComposite", "SplitImageWithAlpha", "JoinImageWithAlpha"),
    "nodes_morphology": ("Morphology", "ImageRGBToYUV", "ImageYUVToRGB"),
    "nodes_model_merging": ("ModelMergeSimple", "ModelMergeBlocks", "ModelMergeSubtract", "ModelMergeAdd",
                            "CheckpointSave", "CLIPMergeSimple", "CLIPMergeSubtract", "CLIPMergeAdd", "CLIPSave",
                            "VAESave", "ModelSave"),
    "nodes_model_merging_model_specific": ("ModelMergeSD1", "ModelMergeSD2", "ModelMergeSDXL"),
    "nodes_advanced_samplers": ("SamplerLCMUpscale", "SamplerEulerCFGpp"),
    "nodes_align_your_steps": ("AlignYourStepsScheduler",),
    "nodes_apg": ("APG",),
    "nodes_attention_multiply": ("UNetSelfAttentionMultiply", "UNetCrossAttentionMultiply", "CLIPAttentionMultiply",
                                 "UNetTemporalAttentionMultiply"),
    "nodes_cfg": ("CFGZeroStar", "CFGNorm"),
    "nodes_controlnet": ("SetUnionControlNetType",),
    "nodes_eps": ("Epsilon Scaling",),
    "nodes_flux": ("CLIPTextEncodeFlux", "FluxGuidance", "FluxDisableGuidance",
                   "FluxKontextMultiReferenceLatentMethod"),
    "nodes_edit_model": ("ReferenceLatent",),
    "nodes_freelunch": ("FreeU", "FreeU_V2"),
    "nodes_gits": ("GITSScheduler",),
    "nodes_hypernetwork": ("HypernetworkLoader",),
    "nodes_hypertile": ("HyperTile",),
    "nodes_ip2p": ("InstructPixToPixConditioning",),
    "nodes_lumina2": ("RenormCFG",),
    "nodes_mahiro": ("Mahiro",),
    "nodes_model_downscale": ("PatchModelAddDownscale",),
    "nodes_optimalsteps": ("OptimalStepsScheduler",),
    "nodes_pag": ("PerturbedAttentionGuidance",),
    "nodes_perpneg": ("PerpNeg", "PerpNegGuider"),
    "nodes_preview_any": ("PreviewAny",),
    "nodes_sd3": ("TripleCLIPLoader", "EmptySD3LatentImage", "CLIPTextEncodeSD3", "SkipLayerGuidanceSD3"),
    "nodes_slg": ("SkipLayerGuidanceDiT", "SkipLayerGuidanceDiTSimple"),
    "nodes_tcfg": ("TCFG",),
    "nodes_tomesd": ("TomePatchModel",),
    "nodes_sag": ("SelfAttentionGuidance",),
    "nodes_stable3d": ("StableZero123_Conditioning", "StableZero123_Conditioning_Batched", "SV3D_Conditioning"),
    "nodes_audio": ("SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "SaveAudioAdvanced", "LoadAudio", "PreviewAudio",
                    "RecordAudio", "TrimAudioDuration", "SplitAudioChannels", "JoinAudioChannels", "AudioConcat",
                    "AudioMerge", "AudioAdjustVolume", "EmptyAudio", "AudioEqualizer3Band", "AudioDuration"),
    "nodes_video": ("SaveWEBM", "SaveVideo", "CreateVideo", "GetVideoComponents", "LoadVideo", "Video Slice"),
    "nodes_hooks": (
        "CreateHookLora", "CreateHookLoraModelOnly", "CreateHookModelAsLora", "CreateHookModelAsLoraModelOnly",
        "SetHookKeyframes", "CreateHookKeyframe", "CreateHookKeyframesInterpolated", "CreateHookKeyframesFromFloats",
        "CombineHooks2", "CombineHooks4", "CombineHooks8", "ConditioningSetProperties",
        "ConditioningSetPropertiesAndCombine", "PairConditioningSetProperties", "PairConditioningSetPropertiesAndCombine",
        "ConditioningSetDefaultCombine", "PairConditioningSetDefaultCombine", "PairConditioningCombine", "SetClipHooks",
        "ConditioningTimestepsRange",
    ),
}

# Non-node names packs import from these modules -> "module:attribute" of Loom's own object (a compatibility module
# such as `comfy_extras._guider_perpneg` where the object builds on other ComfyUI names packs see).
EXTRAS_HELPERS: dict[str, dict[str, str]] = {
    "nodes_custom_sampler": {
        "Noise_RandomNoise": "engine.sampling.custom:GaussianNoise",
        "Noise_EmptyNoise": "engine.sampling.custom:EmptyNoise",
    },
    "nodes_sag": {"gaussian_blur_2d": "engine.image_ops:gaussian_blur_2d"},
    "nodes_model_advanced": {"LCM": "comfy_extras._lcm_sampling:LCM",
                             "ModelSamplingDiscreteDistilled": "comfy_extras._lcm_sampling:ModelSamplingDiscreteDistilled",
                             "rescale_zero_terminal_snr_sigmas": "engine.sampling.model_sampling:rescale_zero_terminal_snr"},
    "nodes_mask": {"composite": "app.compat._mask_helpers:composite"},
    "nodes_perpneg": {"Guider_PerpNeg": "comfy_extras._guider_perpneg:Guider_PerpNeg",
                      "perp_neg": "comfy_extras._guider_perpneg:perp_neg"},
    "nodes_stable3d": {"camera_embeddings": "app.compat._stable3d:camera_embeddings"},
    "nodes_audio": {"load": "app.compat._audio_helpers:load", "f32_pcm": "app.compat._audio_helpers:f32_pcm",
                    "match_audio_sample_rates": "app.compat._audio_helpers:match_audio_sample_rates"},
}

# ComfyUI's class names where they differ from the node ids -> the node id (the same registered class)
EXTRAS_CLASS_NAMES: dict[str, dict[str, str]] = {
    "nodes_post_processing": {"Blend": "ImageBlend", "Blur": "ImageBlur", "Quantize": "ImageQuantize",
                              "Sharpen": "ImageSharpen"},
    "nodes_primitive": {"String": "PrimitiveString", "StringMultiline": "PrimitiveStringMultiline",
                        "Int": "PrimitiveInt", "Float": "PrimitiveFloat", "Boolean": "PrimitiveBoolean"},
    "nodes_rebatch": {"LatentRebatch": "RebatchLatents", "ImageRebatch": "RebatchImages"},
    "nodes_model_merging": {"ModelSubtract": "ModelMergeSubtract", "ModelAdd": "ModelMergeAdd",
                            "CLIPSubtract": "CLIPMergeSubtract", "CLIPAdd": "CLIPMergeAdd"},
    "nodes_eps": {"EpsilonScaling": "Epsilon Scaling"},
    "nodes_video": {"VideoSlice": "Video Slice"},
    "nodes_hooks": {"CombineHooks": "CombineHooks2", "CombineHooksFour": "CombineHooks4",
                    "CombineHooksEight": "CombineHooks8", "ConditioningSetDefaultAndCombine": "ConditioningSetDefaultCombine",
                    "PairConditioningSetDefaultAndCombine": "PairConditioningSetDefaultCombine"},
}
