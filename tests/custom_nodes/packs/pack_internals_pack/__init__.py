"""Imports the ComfyUI internals that ADV_CLIP_emb, Cutoff, TiledKSampler, AutomaticCFG and TiledDiffusion use,
as they do."""
import comfy.controlnet
import comfy.gligen
import comfy.model_management
import comfy.sample
import comfy.sampler_helpers
import comfy.samplers
import comfy.supported_models
import comfy.supported_models_base
import comfy_extras.nodes_sag
import torch
from comfy import model_management
from comfy.controlnet import ControlNet, T2IAdapter
from comfy.ldm.modules.attention import (
    attention_basic,
    attention_pytorch,
    attention_split,
    attention_sub_quad,
    attention_xformers,
    optimized_attention_for_device,
)
from comfy.model_base import BaseModel
from comfy.sd1_clip import SD1ClipModel
from comfy.sdxl_clip import SDXLClipG, SDXLClipModel, SDXLRefinerClipModel, StableCascadeClipModel
from comfy_extras.nodes_sag import gaussian_blur_2d

# TiledDiffusion wraps these at import (its wrappers only run if someone calls them)
_originals = {name: getattr(comfy.samplers.KSAMPLER, name) for name in ("sample",)}
_originals["get_area_and_mult"] = comfy.samplers.get_area_and_mult
comfy.gligen.Gligen._set_position = lambda self, *a: None
comfy_extras.nodes_sag.create_blur_map = lambda x0, attn, sigma=3.0, threshold=1.0: x0

attnfunc = optimized_attention_for_device(model_management.get_torch_device())  # at import, as AutomaticCFG does


class WordIdEncode:
    """ADV_CLIP_emb's SD1 path: tokens with word ids, per-word weights, encoded from (token, weight) pairs."""

    CATEGORY = "fixtures"
    RETURN_TYPES = ("CONDITIONING", "DICT")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",), "text": ("STRING", {"default": "a (red:1.5) circle"})}}

    def run(self, clip, text):
        tokenized = clip.tokenize(text, return_word_ids=True)
        sdxl = isinstance(clip.cond_stage_model, (SDXLClipModel, SDXLRefinerClipModel, SDXLClipG,
                                                  StableCascadeClipModel))
        window = tokenized["l"][0]
        word_ids = [wid for _, _, wid in window]
        weights = {wid: w for _, w, wid in window if wid}
        pairs = [[(t, w) for t, w, _ in x] for x in tokenized["l"]]
        from_pairs = clip.encode_from_tokens({"l": pairs})
        from_triples, pooled = clip.encode_from_tokens(tokenized, return_pooled=True)
        sub = clip.tokenizer.clip_l
        facts = {
            "sd1": isinstance(clip.cond_stage_model, SD1ClipModel), "sdxl": sdxl,
            "word_ids": word_ids[:6], "weights": weights, "same_encoding": bool(torch.equal(from_pairs, from_triples)),
            "end_token": sub.end_token, "max_length": sub.max_length, "has_clip_g": hasattr(clip.tokenizer, "clip_g"),
            "plain_window": sub.tokenize_with_weights(text)[0][:4],
            "bpe_ids": sub.tokenizer("red")["input_ids"],
            "pooled_shape": list(pooled.shape),
        }
        return ([[from_triples, {"pooled_output": pooled}]], facts)


class ControlFacts:
    """TiledKSampler / TiledDiffusion: the control classes, `load_controlnet` and `broadcast_image_to`."""

    CATEGORY = "fixtures"
    RETURN_TYPES = ("DICT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"controlnet_path": ("STRING",), "t2i_path": ("STRING",)}}

    def run(self, controlnet_path, t2i_path):
        cnet = comfy.controlnet.load_controlnet(controlnet_path)
        t2i = comfy.controlnet.load_controlnet(t2i_path)
        hint = torch.arange(3.0).reshape(3, 1, 1, 1)
        return ({
            "cnet": [isinstance(cnet, ControlNet), isinstance(cnet, T2IAdapter),
                     isinstance(cnet, comfy.controlnet.ControlBase), isinstance(cnet, comfy.controlnet.ControlLora)],
            "t2i": [isinstance(t2i, ControlNet), isinstance(t2i, T2IAdapter)],
            "string": isinstance("x", comfy.controlnet.ControlBase),
            "broadcast_one": list(comfy.controlnet.broadcast_image_to(hint[:1], 6, 2).shape),
            "broadcast": comfy.controlnet.broadcast_image_to(hint, 4, 2).flatten().tolist(),
        },)


class ModelInternals:
    """TiledKSampler's calls on a MODEL: KSampler.sigmas, model.model.*, model_dtype, memory_required; the
    attention functions; sampling_function with the model's CFG hook."""

    CATEGORY = "fixtures"
    RETURN_TYPES = ("DICT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",)}}

    def run(self, model, positive, negative):
        device = comfy.model_management.get_torch_device()
        sampler = comfy.samplers.KSampler(model, steps=4, device=device, sampler="euler", scheduler="normal",
                                          denoise=0.5, model_options=model.model_options)
        full = comfy.samplers.KSampler(model, steps=8, device=device, sampler="euler", scheduler="normal")
        base: BaseModel = model.model
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        sigma = torch.tensor([3.0])
        cond = positive[0][0]
        q, k, v = (torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(i)) for i in range(3))
        heads = 2
        qh, kh, vh = (t.view(2, 5, heads, 8).transpose(1, 2) for t in (q, k, v))
        manual = (torch.softmax(qh @ kh.transpose(-1, -2) / 8 ** 0.5, -1) @ vh).transpose(1, 2).reshape(2, 5, 16)
        return ({
            "sigmas_tail": bool(torch.allclose(sampler.sigmas, full.sigmas[-5:])), "sigmas_len": len(sampler.sigmas),
            "dtype": str(model.model_dtype()), "memory": model.memory_required((1, 4, 8, 8)),
            "latent_roundtrip": bool(torch.allclose(base.process_latent_out(base.process_latent_in(x)), x)),
            "scale": float(base.process_latent_in(torch.ones(1))[0]),
            "apply_model": bool(torch.equal(base.apply_model(x, sigma, c_crossattn=cond),
                                            model.apply_model(x, sigma, cond))),
            "attention": [bool(torch.allclose(f(q, k, v, heads), manual, atol=1e-5))
                          for f in (attention_basic, attention_pytorch, attention_split, attention_sub_quad,
                                    attention_xformers, attnfunc)],
            "configs": [c.__name__ for c in comfy.supported_models.models],
            "sd15_latent": comfy.supported_models.SD15.latent_format.scale_factor,
            "is_base": issubclass(comfy.supported_models.SDXL, comfy.supported_models_base.BASE),
        },)


class TiledInternals:
    """TiledDiffusion's calls: a model function wrapper, the SAG blur, the VAE network's ldm attributes."""

    CATEGORY = "fixtures"
    RETURN_TYPES = ("DICT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "vae": ("VAE",), "positive": ("CONDITIONING",),
                             "negative": ("CONDITIONING",)}}

    def run(self, model, vae, positive, negative):
        seen = []

        def halves(apply_model, args):  # MultiDiffusion-like: run the left and right halves separately
            x, t, c = args["input"], args["timestep"], args["c"]
            seen.append((sorted(c), list(args["cond_or_uncond"]), x.shape[0]))
            w = x.shape[-1] // 2
            return torch.cat([apply_model(x[..., :w], t, **c), apply_model(x[..., w:], t, **c)], dim=-1)

        wrapped = model.clone()
        wrapped.set_model_unet_function_wrapper(halves)
        x = torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(2))
        sigma = torch.tensor([2.0])
        conds = positive[0][0]
        left = model.apply_model(x[..., :8], sigma, conds)
        decoder = vae.first_stage_model.decoder
        impulse = torch.zeros(1, 1, 9, 9)
        impulse[..., 4, 4] = 1.0
        blurred = gaussian_blur_2d(impulse, kernel_size=5, sigma=1.0)
        return ({
            "wrapped": wrapped, "seen": seen, "left": left, "x": x, "sigma": sigma,
            "blur_sum": float(blurred.sum()), "blur_symmetric": bool(torch.equal(blurred, blurred.flip(-1, -2))),
            "blur_flat": bool(torch.allclose(gaussian_blur_2d(torch.ones(1, 3, 6, 6), 5, 2.0), torch.ones(1, 3, 6, 6))),
            "ldm": [decoder.num_resolutions, decoder.num_res_blocks, decoder.give_pre_end, decoder.tanh_out,
                    decoder.up[0].block[0].in_channels, decoder.up[0].block[0].out_channels,
                    decoder.up[0].block[0].use_conv_shortcut],
            "vae_attention": list(decoder.mid.attn_1.optimized_attention(*(torch.ones(1, 4, 2, 3),) * 3).shape),
            "gligen": isinstance(object(), comfy.gligen.Gligen),
        },)


NODE_CLASS_MAPPINGS = {"WordIdEncode": WordIdEncode, "ControlFacts": ControlFacts, "ModelInternals": ModelInternals,
                       "TiledInternals": TiledInternals}
