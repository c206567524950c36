"""MODEL / CLIP / VAE handles (the VAE's in ``engine.vae_handle``): a shared network plus per-handle settings and
patches.

Handles clone cheaply: clones share the network object and copy only their patch lists, so a LoRA on one
clone never changes another. Patched weights are computed when the handle runs (on the compute device,
in float32, cached per handle) and passed to the network through ``torch.func.functional_call``; the
shared base weights are never modified.
"""
from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from engine.clip_handle import ClipHandle
from engine.families import Family
from engine.latent_formats import LatentFormat
from engine.model_call import (
    NETWORK_INPUTS,
    ModelCall,
    NetworkCall,
    has_call_wrappers,
    has_network_wrappers,
    wrapped_model_call,
    wrapped_network_call,
)
from engine.model_management import ManagedModel, ModelManager
from engine.module_patcher import ModulePatcher
from engine.networks.unet import UNetModel
from engine.patching import Patch, Patchable
from engine.vae_handle import VaeHandle

__all__ = ["ModelHandle", "ClipHandle", "VaeHandle", "Patch", "Conditioning"]

Conditioning = list[list[Any]]

class ModelHandle(ModulePatcher):
    """The MODEL: a diffusion network, its noise schedule and latent format.

    apply_model(x, sigma, context) does the c_in scaling, the nearest-integer timestep and the eps / v rule
    and returns the denoised latent (k-diffusion denoiser contract). A ``ModulePatcher`` (ComfyUI's ModelPatcher)
    whose module is the network, placed by the model manager; its ``model`` is ComfyUI's BaseModel view.
    """

    _prefixes = ("diffusion_model.", "model.diffusion_model.")
    _key_prefix = "diffusion_model."

    def __init__(self, diffusion_model: UNetModel, model_sampling: Any, latent_format: LatentFormat,
                 family: Family, manager: ModelManager, entry: ManagedModel | None = None,
                 compute_dtype: torch.dtype | None = None) -> None:
        Patchable.__init__(self)  # not ModulePatcher.__init__: the manager places this network
        self.diffusion_model = diffusion_model
        self.compute_dtype = compute_dtype or next(diffusion_model.parameters()).dtype
        self.model_sampling = model_sampling
        # the schedule the network was loaded with (ComfyUI's model_type); sampling patches replace model_sampling only
        self.base_sampling = model_sampling
        self.latent_format = latent_format
        self.family = family
        self.manager = manager
        self.entry = entry if entry is not None else manager.register(diffusion_model, family.name, "unet")
        self.model_options["transformer_options"] = {}

    def _module(self) -> nn.Module:
        return self.diffusion_model

    @property
    def in_channels(self) -> int:
        return int(self.diffusion_model.config.in_channels)

    @property
    def context_dim(self) -> int:
        return int(self.diffusion_model.config.context_dim)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the network computes in (weights may be stored narrower, e.g. fp8)."""
        return self.compute_dtype

    @property
    def load_device(self) -> torch.device:  # type: ignore[override]  # the manager's device, not a stored one
        return self.manager.policy.device

    @property
    def offload_device(self) -> torch.device:  # type: ignore[override]
        return self.manager.policy.offload_device

    def clone(self) -> ModelHandle:
        """A handle sharing the network, with its own copy of the patches and options."""
        other = super().clone()
        assert isinstance(other, ModelHandle)
        return other

    def load(self, *args: Any, **kwargs: Any) -> None:
        """Refused: the model manager places a MODEL's network (with its patches) when it runs."""
        raise NotImplementedError("ModelPatcher.load on a Loom MODEL: its model manager loads the network when it "
                                  "runs; nothing to call")

    def offload(self) -> None:
        """Refused, as ``load``."""
        raise NotImplementedError("ModelPatcher.offload on a Loom MODEL: its model manager offloads the network")

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor | None = None,
                    y: torch.Tensor | None = None, concat: torch.Tensor | None = None,
                    transformer_options: dict[str, Any] | None = None,
                    control: dict[str, list[Any]] | None = None,
                    extra_inputs: dict[str, Any] | None = None) -> torch.Tensor:
        """Denoised latent for noisy ``x`` at ``sigma`` ([B] or scalar) given the text ``context``;
        ``control``: ControlNet / T2I residuals (``engine.adapters.control``) the UNet adds;
        ``transformer_options``: ComfyUI's patch options for this call (``engine.networks.unet``);
        ``extra_inputs``: further network inputs (``engine.model_call.NETWORK_INPUTS``: Flux Kontext's reference
        latents). Installed call wrappers (``engine.model_call``) run around it."""
        if not has_call_wrappers():
            return self._apply_model(x, sigma, context, y, concat, transformer_options, control, extra_inputs)
        call = ModelCall(self, x, sigma, context, y, concat, control, transformer_options, extra_inputs)
        return wrapped_model_call(call, lambda c: self._apply_model(c.x, c.sigma, c.context, c.y, c.concat,
                                                                    c.transformer_options, c.control,
                                                                    c.extra_inputs))

    def _apply_model(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor | None,
                     y: torch.Tensor | None, concat: torch.Tensor | None, transformer_options: dict[str, Any] | None,
                     control: dict[str, list[Any]] | None,
                     extra_inputs: dict[str, Any] | None = None) -> torch.Tensor:
        module = self.manager.load(self.entry)
        device, dtype = self.load_device, self.dtype
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        xc = self.model_sampling.calculate_input(sigma, x)
        if concat is not None:
            xc = torch.cat([xc, concat.to(xc)], dim=1)
        t = self.model_sampling.timestep(sigma).float()
        kwargs: dict[str, Any] = {
            "context": None if context is None else context.to(device, dtype),
            "y": None if y is None else y.to(device, dtype),
        }
        if transformer_options is not None:
            kwargs["transformer_options"] = transformer_options
        if control is not None:
            kwargs["control"] = {k: [None if r is None else r.to(device, dtype) for r in v] for k, v in control.items()}
        for key, value in (extra_inputs or {}).items():
            if key not in NETWORK_INPUTS:
                raise ValueError(f"apply_model: unknown network input {key!r}; expected one of {NETWORK_INPUTS}")
            kwargs[key] = [r.to(device, dtype) for r in value] if key == "ref_latents" else value
        patched = self._patched_weights(module)

        def forward(call: NetworkCall) -> torch.Tensor:
            if patched:
                result: torch.Tensor = torch.func.functional_call(module, patched, (call.x, call.timesteps),
                                                                  call.kwargs, strict=False)
                return result
            return module(call.x, call.timesteps, **call.kwargs)  # type: ignore[no-any-return]

        call = NetworkCall(self, module, xc.to(device, dtype), t.to(device), kwargs)
        with torch.no_grad(), _objects_patched(module, self.object_patches):
            out = wrapped_network_call(call, forward) if has_network_wrappers() else forward(call)
        out = out.to(device=x.device, dtype=torch.float32)
        denoised: torch.Tensor = self.model_sampling.calculate_denoised(sigma, out, x)
        return denoised

    def adm(self, cond: dict[str, Any], latent_shape: tuple[int, ...] | torch.Size,
            prompt_type: str = "positive", seed: int | None = None) -> torch.Tensor | None:
        """The UNet's ``y`` for one conditioning entry (SDXL size / aesthetic vector, unCLIP image embedding;
        ``seed``: the sampler's, for unCLIP's noise augmentation), None for SD1/SD2."""
        from engine.adm import adm_vector

        if self.family.adm == "unclip":
            from engine.unclip import unclip_adm

            adm_channels = self.diffusion_model.config.adm_in_channels
            assert adm_channels is not None  # the unCLIP family is detected by its ADM input
            return unclip_adm(cond.get("unclip_conditioning"), adm_channels, seed,
                              float(cond.get("unclip_noise_augment_merge", 0.05)))
        return adm_vector(self.family.adm, cond, tuple(latent_shape), prompt_type)  # type: ignore[arg-type]

    # ComfyUI-style aliases used by packs
    def model_dtype(self) -> torch.dtype:
        """ComfyUI's ``ModelPatcher.model_dtype()``: the compute dtype."""
        return self.compute_dtype

    def memory_required(self, input_shape: tuple[int, ...] | torch.Size) -> int:
        """ComfyUI's estimate of the bytes one model call on a latent batch of ``input_shape`` needs (packs pass
        it to ``load_models_gpu``; Loom's manager makes its own room on load)."""
        area = int(input_shape[0]) * math.prod(int(d) for d in input_shape[2:])
        return int((area * self.compute_dtype.itemsize * 0.6 / 0.9 + 1024) * 1024 * 1024)

    def get_model_object(self, name: str) -> Any:
        """ComfyUI's accessor: ``model_sampling``, ``diffusion_model`` or ``diffusion_model.<path>`` (an object
        patch's value where one is set)."""
        if name in self.object_patches:
            return self.object_patches[name]
        head, _, path = name.partition(".")
        target = getattr(self, head)
        for part in filter(None, path.split(".")):
            target = getattr(target, part)
        return target

    def add_object_patch(self, name: str, obj: Any) -> None:
        """ComfyUI's ``add_object_patch`` (on a clone): ``model_sampling`` replaces this handle's noise schedule;
        ``diffusion_model.<submodule path>.<attribute>`` (a block's ``forward``, say) is set on the shared network
        while this handle runs and restored after. Replacing the whole ``diffusion_model`` is refused."""
        if name == "model_sampling":
            self.model_sampling = obj
            return
        if not name.startswith("diffusion_model."):
            raise ValueError(f"add_object_patch({name!r}): Loom patches 'model_sampling' and attributes inside the "
                             "network ('diffusion_model.<submodule>.<attribute>'), not the whole network")
        owner = name[len("diffusion_model."):].rpartition(".")[0]
        try:
            self.diffusion_model.get_submodule(owner)
        except AttributeError as exc:
            raise ValueError(f"add_object_patch({name!r}): the network has no submodule {owner!r}") from exc
        self.object_patches = {**self.object_patches, name: obj}

    # ComfyUI ModelPatcher setters for the sampler hooks (semantics: engine/sampling/guider.py)
    def set_model_sampler_cfg_function(self, sampler_cfg_function: Callable[..., Any],
                                       disable_cfg1_optimization: bool = False) -> None:
        """Replace plain CFG: ``fn(args) -> input - guided_x0`` (or the old ``fn(cond, uncond, cond_scale)``)."""
        def old_style(args: dict[str, Any]) -> Any:
            return sampler_cfg_function(args["cond"], args["uncond"], args["cond_scale"])

        three_args = len(inspect.signature(sampler_cfg_function).parameters) == 3
        self.model_options["sampler_cfg_function"] = old_style if three_args else sampler_cfg_function
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def _append_option(self, key: str, fn: Callable[..., Any], disable_cfg1_optimization: bool) -> None:
        self.model_options[key] = list(self.model_options.get(key, [])) + [fn]
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def set_model_sampler_post_cfg_function(self, post_cfg_function: Callable[..., Any],
                                            disable_cfg1_optimization: bool = False) -> None:
        """Append ``fn(args) -> x0`` run on the guided x0 after CFG."""
        self._append_option("sampler_post_cfg_function", post_cfg_function, disable_cfg1_optimization)

    def set_model_sampler_calc_cond_batch_function(self, calc_cond_batch_function: Callable[..., Any]) -> None:
        """Replace the batched model calls: ``fn(args) -> [cond_x0, uncond_x0]`` (engine/sampling/guider.py)."""
        self.model_options["sampler_calc_cond_batch_function"] = calc_cond_batch_function

    def set_model_sampler_pre_cfg_function(self, pre_cfg_function: Callable[..., Any],
                                           disable_cfg1_optimization: bool = False) -> None:
        """Append ``fn(args) -> [cond_x0, uncond_x0]`` run on the predictions before CFG."""
        self._append_option("sampler_pre_cfg_function", pre_cfg_function, disable_cfg1_optimization)

    def set_model_unet_function_wrapper(self, unet_wrapper_function: Callable[..., Any]) -> None:
        """Wrap every model call: ``fn(apply_model, {"input", "timestep", "c", "cond_or_uncond"}) -> x0``."""
        self.model_options["model_function_wrapper"] = unet_wrapper_function

    def set_model_denoise_mask_function(self, denoise_mask_function: Callable[..., Any]) -> None:
        """Map the inpaint noise mask per step: ``fn(sigma, mask, extra_options) -> mask``."""
        self.model_options["denoise_mask_function"] = denoise_mask_function

    # ComfyUI ModelPatcher setters for the UNet patches (semantics: engine/networks/attention.py, unet.py)
    def set_model_patch(self, patch: Any, name: str) -> None:
        """Append ``patch`` to ``transformer_options["patches"][name]`` (this handle's copy only)."""
        to = self.model_options.setdefault("transformer_options", {})
        patches = to.setdefault("patches", {})
        patches[name] = list(patches.get(name, [])) + [patch]

    def set_model_patch_replace(self, patch: Any, name: str, block_name: str, number: int,
                                transformer_index: int | None = None) -> None:
        """Replace the ``name`` ("attn1" / "attn2") attention of one block (and transformer) with ``patch``."""
        to = self.model_options.setdefault("transformer_options", {})
        table = to.setdefault("patches_replace", {}).setdefault(name, {})
        table[(block_name, number) if transformer_index is None else (block_name, number, transformer_index)] = patch

    def set_model_attn1_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "attn1_patch")

    def set_model_attn2_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "attn2_patch")

    def set_model_attn1_output_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "attn1_output_patch")

    def set_model_attn2_output_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "attn2_output_patch")

    def set_model_input_block_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "input_block_patch")

    def set_model_input_block_patch_after_skip(self, patch: Any) -> None:
        self.set_model_patch(patch, "input_block_patch_after_skip")

    def set_model_output_block_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "output_block_patch")

    def set_model_emb_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "emb_patch")

    def set_model_forward_timestep_embed_patch(self, patch: Any) -> None:
        """``patch`` is ``(layer_type, handler)``: see ``engine.networks.unet._layer_forward``."""
        self.set_model_patch(patch, "forward_timestep_embed_patch")

    def set_model_attn1_replace(self, patch: Any, block_name: str, number: int,
                                transformer_index: int | None = None) -> None:
        self.set_model_patch_replace(patch, "attn1", block_name, number, transformer_index)

    def set_model_attn2_replace(self, patch: Any, block_name: str, number: int,
                                transformer_index: int | None = None) -> None:
        self.set_model_patch_replace(patch, "attn2", block_name, number, transformer_index)

    @property
    def model(self) -> Any:  # type: ignore[override]  # ComfyUI's BaseModel view of this handle
        """ComfyUI's ``ModelPatcher.model`` (the BaseModel): a view of this handle whose class names the family
        (``engine.model_base``), for packs that check ``isinstance(model.model, comfy.model_base.SDXL)``."""
        from engine.model_base import model_view

        return model_view(self)


@contextlib.contextmanager
def _objects_patched(module: nn.Module, patches: dict[str, Any]) -> Iterator[None]:
    """``patches`` ("diffusion_model.<path>.<attribute>" -> value) set on ``module`` inside the block, the previous
    attributes put back after (one prompt runs at a time, as in ComfyUI, where patches stay while a model is
    loaded)."""
    undo: list[tuple[nn.Module, str, Any]] = []
    try:
        for name, value in patches.items():
            owner_path, _, attr = name[len("diffusion_model."):].rpartition(".")
            owner = module.get_submodule(owner_path)
            held = owner._modules if attr in owner._modules else owner._parameters if attr in owner._parameters \
                else owner.__dict__
            undo.append((owner, attr, held.get(attr, _MISSING)))
            setattr(owner, attr, value)
        yield
    finally:
        for owner, attr, previous in reversed(undo):
            if previous is _MISSING:
                delattr(owner, attr)
            else:
                setattr(owner, attr, previous)


_MISSING = object()
