"""ComfyUI's `comfy.controlnet` for packs: the control classes with ComfyUI's contract, which packs subclass
(Advanced-ControlNet's keyframed controls), `load_controlnet(path)`, `broadcast_image_to` and `StrengthType`.

`ControlBase`, `ControlNet` and `T2IAdapter` are real classes: a pack's subclass is a CONTROL_NET that Loom's
sampler runs through ComfyUI's calling contract (`pre_run`, `get_control`, `cleanup`:
`engine.adapters.control_contract`). `load_controlnet` returns a `ControlNet` / `T2IAdapter` over the network
Loom loads from the file (`engine.adapters`); its `control_model` / `t2i_model` is a small adapter giving that
network ComfyUI's call signature, so code written for ComfyUI's objects (`copy`, `copy_to`, `control_merge`,
`cond_hint_original`, `timestep_range`, ...) works on it. Loom's own CONTROL_NET handles (ControlNetLoader)
also pass `isinstance(handle, ControlNet / T2IAdapter / ControlBase)`.

Not provided, raising when used: `ControlLora` (Loom loads no Control-LoRA), `ControlNetSD35` (nor SD3.5
ControlNets), `load_t2i_adapter(state_dict)` (load the file with `load_controlnet`), a VAE-encoded hint
(`latent_format` set: SD3 / Flux ControlNets) and extra network arguments (`set_extra_arg`, union ControlNets).
"""
from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

import comfy.utils
import torch
from comfy.sd import _manager

from app.compat._control_models import LoomControlModel, LoomT2IModel, wrap_control_model
from engine.adapters.control import ControlHandle, broadcast_rows, merge_residuals
from engine.adapters.control_contract import Residuals

__all__ = ["ControlBase", "ControlNet", "ControlNetSD35", "ControlLora", "StrengthType", "T2IAdapter",
           "broadcast_image_to", "load_controlnet", "load_t2i_adapter"]

class StrengthType(Enum):
    """How `strength` scales the outputs: all alike, or `strength ** (n - i)` for output i of n."""
    CONSTANT = 1
    LINEAR_UP = 2


def broadcast_image_to(tensor: torch.Tensor, target_batch_size: int, batched_number: int) -> torch.Tensor:
    """A hint batch matched to `target_batch_size` rows made of `batched_number` cond groups (ComfyUI's rule)."""
    return broadcast_rows(tensor, target_batch_size, batched_number)


class _ControlMeta(type):
    """Loom's own CONTROL_NET handles answer `isinstance` for the three base classes (by their kind)."""

    def __instancecheck__(cls, obj: Any) -> bool:
        test = cls.__dict__.get("_loom_handle_test")
        if test is not None and isinstance(obj, ControlHandle):
            return bool(test(obj))
        return super().__instancecheck__(obj)


class ControlBase(metaclass=_ControlMeta):
    """ComfyUI's control contract: hint and settings, the chain, strength merge, per-run state."""

    _loom_handle_test = staticmethod(lambda handle: True)

    def __init__(self) -> None:
        self.cond_hint_original: Any = None
        self.cond_hint: Any = None
        self.strength = 1.0
        self.timestep_percent_range: tuple[float, float] = (0.0, 1.0)
        self.latent_format: Any = None
        self.vae: Any = None
        self.global_average_pooling = False
        self.timestep_range: tuple[float, float] | None = None
        self.compression_ratio = 8
        self.upscale_algorithm = "nearest-exact"
        self.extra_args: dict[str, Any] = {}
        self.previous_controlnet: Any = None
        self.extra_conds: list[str] = []
        self.strength_type = StrengthType.CONSTANT
        self.concat_mask = False
        self.extra_concat_orig: list[torch.Tensor] = []
        self.extra_concat: Any = None
        self.extra_hooks: Any = None
        self.preprocess_image: Callable[[Any], Any] = _identity

    def set_cond_hint(self, cond_hint: Any, strength: float = 1.0,
                      timestep_percent_range: tuple[float, float] = (0.0, 1.0), vae: Any = None,
                      extra_concat: list[torch.Tensor] | None = None) -> ControlBase:
        """Hint (NCHW), strength, start / end percent (and the VAE of latent-space controls); returns self."""
        self.cond_hint_original = cond_hint
        self.strength = strength
        self.timestep_percent_range = timestep_percent_range
        if self.latent_format is not None:
            self.vae = vae
        self.extra_concat_orig = list(extra_concat or [])
        if self.concat_mask and not self.extra_concat_orig:
            self.extra_concat_orig.append(torch.ones(1, 1, 1, 1))
        return self

    def pre_run(self, model: Any, percent_to_timestep_function: Callable[[float], float]) -> None:
        """Before sampling: the start / end percents as sigmas (the chain too)."""
        start, end = self.timestep_percent_range
        self.timestep_range = (percent_to_timestep_function(start), percent_to_timestep_function(end))
        if self.previous_controlnet is not None:
            self.previous_controlnet.pre_run(model, percent_to_timestep_function)

    def set_previous_controlnet(self, controlnet: Any) -> ControlBase:
        self.previous_controlnet = controlnet
        return self

    def cleanup(self) -> None:
        """After sampling: drop per-run state (the chain too)."""
        if self.previous_controlnet is not None:
            self.previous_controlnet.cleanup()
        self.cond_hint = None
        self.extra_concat = None
        self.timestep_range = None

    def get_models(self) -> list[Any]:
        return [] if self.previous_controlnet is None else list(self.previous_controlnet.get_models())

    def get_extra_hooks(self) -> list[Any]:
        own = [] if self.extra_hooks is None else [self.extra_hooks]
        return own + ([] if self.previous_controlnet is None else list(self.previous_controlnet.get_extra_hooks()))

    def copy_to(self, c: ControlBase) -> None:
        """Copy the apply settings (not the chain, not per-run state) onto `c`."""
        c.cond_hint_original = self.cond_hint_original
        c.strength = self.strength
        c.timestep_percent_range = self.timestep_percent_range
        c.global_average_pooling = self.global_average_pooling
        c.compression_ratio = self.compression_ratio
        c.upscale_algorithm = self.upscale_algorithm
        c.latent_format = self.latent_format
        c.extra_args = dict(self.extra_args)
        c.vae = self.vae
        c.extra_conds = list(self.extra_conds)
        c.strength_type = self.strength_type
        c.concat_mask = self.concat_mask
        c.extra_concat_orig = list(self.extra_concat_orig)
        c.extra_hooks = self.extra_hooks.clone() if self.extra_hooks else None
        c.preprocess_image = self.preprocess_image

    def inference_memory_requirements(self, dtype: torch.dtype) -> int:
        return 0 if self.previous_controlnet is None else int(
            self.previous_controlnet.inference_memory_requirements(dtype))

    def control_merge(self, control: Residuals, control_prev: Residuals | None,
                      output_dtype: torch.dtype | None) -> Residuals:
        """This control's outputs times strength (shared tensors scaled once), plus the previous control's."""
        out: Residuals = {"input": [], "middle": [], "output": []}
        for key, outputs in control.items():
            scaled: set[int] = set()
            for i, x in enumerate(outputs):
                if x is not None:
                    if self.global_average_pooling:
                        x = torch.mean(x, dim=(2, 3), keepdim=True).repeat(1, 1, x.shape[2], x.shape[3])
                    if id(x) not in scaled:
                        scaled.add(id(x))
                        power = 1.0 if self.strength_type == StrengthType.CONSTANT else float(len(outputs) - i)
                        x *= self.strength ** power
                    if output_dtype is not None and x.dtype != output_dtype:
                        x = x.to(output_dtype)
                out.setdefault(key, []).append(x)
        return merge_residuals(out, control_prev)

    def set_extra_arg(self, argument: str, value: Any = None) -> None:
        self.extra_args[argument] = value

    def _previous_control(self, x_noisy: torch.Tensor, t: torch.Tensor, cond: dict[str, Any], batched_number: int,
                          transformer_options: dict[str, Any]) -> Residuals | None:
        if self.previous_controlnet is None:
            return None
        prev: Residuals | None = self.previous_controlnet.get_control(x_noisy, t, cond, batched_number,
                                                                      transformer_options)
        return prev

    def _outside_window(self, t: torch.Tensor) -> bool:
        return self.timestep_range is not None and (float(t[0]) > self.timestep_range[0]
                                                    or float(t[0]) < self.timestep_range[1])


def _identity(image: Any) -> Any:
    return image


class ControlNet(ControlBase):
    """ComfyUI's ControlNet: `control_model(x=, hint=, timesteps=, context=, **extra)` per model call."""

    _loom_handle_test = staticmethod(lambda handle: not handle.is_t2i)

    def __init__(self, control_model: Any = None, global_average_pooling: bool = False, compression_ratio: int = 8,
                 latent_format: Any = None, load_device: Any = None, manual_cast_dtype: torch.dtype | None = None,
                 extra_conds: list[str] | None = None, strength_type: StrengthType = StrengthType.CONSTANT,
                 concat_mask: bool = False, preprocess_image: Callable[[Any], Any] = _identity) -> None:
        super().__init__()
        self.control_model = control_model
        self.load_device = load_device
        if control_model is not None:
            self.control_model_wrapped = wrap_control_model(control_model, load_device)
        self.compression_ratio = compression_ratio
        self.global_average_pooling = global_average_pooling
        self.model_sampling_current: Any = None
        self.manual_cast_dtype = manual_cast_dtype
        self.latent_format = latent_format
        self.extra_conds += ["y"] if extra_conds is None else list(extra_conds)
        self.strength_type = strength_type
        self.concat_mask = concat_mask
        self.preprocess_image = preprocess_image

    def _hint_for(self, x_noisy: torch.Tensor, dtype: torch.dtype, batched_number: int) -> torch.Tensor:
        ratio = self.compression_ratio
        hint: torch.Tensor | None = self.cond_hint
        if hint is None or hint.shape[-2:] != (x_noisy.shape[-2] * ratio, x_noisy.shape[-1] * ratio):
            if self.latent_format is not None or self.vae is not None:
                raise NotImplementedError(f"{type(self).__name__}: a ControlNet whose hint is VAE-encoded (SD3 / Flux "
                                          f"ControlNets, latent_format set) is not supported by Loom")
            hint = comfy.utils.common_upscale(self.cond_hint_original, x_noisy.shape[-1] * ratio,
                                              x_noisy.shape[-2] * ratio, self.upscale_algorithm, "center")
            hint = self.preprocess_image(hint)
            if self.extra_concat_orig:
                extra = [comfy.utils.repeat_to_batch_size(
                    comfy.utils.common_upscale(c.to(hint.device), hint.shape[-1], hint.shape[-2],
                                               self.upscale_algorithm, "center"), hint.shape[0])
                         for c in self.extra_concat_orig]
                hint = torch.cat([hint, *extra], dim=1)
            hint = hint.to(device=x_noisy.device, dtype=dtype)
        if x_noisy.shape[0] != hint.shape[0]:
            hint = broadcast_image_to(hint, x_noisy.shape[0], batched_number)
        self.cond_hint = hint
        return hint

    def get_control(self, x_noisy: torch.Tensor, t: torch.Tensor, cond: dict[str, Any], batched_number: int,
                    transformer_options: dict[str, Any]) -> Residuals | None:
        """The merged residuals of this control and its chain for one model call (ComfyUI's contract)."""
        control_prev = self._previous_control(x_noisy, t, cond, batched_number, transformer_options)
        if self._outside_window(t):
            return control_prev
        dtype = self.manual_cast_dtype or self.control_model.dtype
        hint = self._hint_for(x_noisy, dtype, batched_number)
        context = cond.get("crossattn_controlnet", cond["c_crossattn"])
        extra = dict(self.extra_args)
        for name in self.extra_conds:
            value = cond.get(name)
            if value is not None:
                extra[name] = value.to(x_noisy.device, dtype)
        if isinstance(self.control_model, torch.nn.Module):  # a pack's own network: ComfyUI loads it for the call
            self.control_model.to(x_noisy.device)
        sampling = self.model_sampling_current
        timestep = sampling.timestep(t)
        x_in = sampling.calculate_input(t, x_noisy)
        control = self.control_model(x=x_in.to(dtype), hint=hint, timesteps=timestep.to(dtype),
                                     context=context.to(x_noisy.device, dtype), **extra)
        return self.control_merge(control, control_prev, output_dtype=None)

    def copy(self) -> ControlNet:
        c = ControlNet(None, global_average_pooling=self.global_average_pooling, load_device=self.load_device,
                       manual_cast_dtype=self.manual_cast_dtype)
        c.control_model = self.control_model
        c.control_model_wrapped = self.control_model_wrapped
        self.copy_to(c)
        return c

    def get_models(self) -> list[Any]:
        return [*super().get_models(), self.control_model_wrapped]

    def pre_run(self, model: Any, percent_to_timestep_function: Callable[[float], float]) -> None:
        super().pre_run(model, percent_to_timestep_function)
        self.model_sampling_current = model.model_sampling

    def cleanup(self) -> None:
        self.model_sampling_current = None
        super().cleanup()


class ControlNetSD35(ControlNet):
    """SD3.5 ControlNets: not loaded by Loom (the class exists for packs that subclass or test it)."""

    _loom_handle_test = staticmethod(lambda handle: False)

    def pre_run(self, model: Any, percent_to_timestep_function: Callable[[float], float]) -> None:
        raise NotImplementedError("comfy.controlnet.ControlNetSD35: Loom does not run SD3.5 ControlNets")


class ControlLora(ControlNet):
    """Control-LoRAs: Loom loads none, so this class cannot be built (it exists for subclassing / isinstance)."""

    _loom_handle_test = staticmethod(lambda handle: False)

    def __init__(self, control_weights: Any, global_average_pooling: bool = False,
                 model_options: dict[str, Any] | None = None) -> None:
        raise NotImplementedError("comfy.controlnet.ControlLora: Loom does not load Control-LoRAs")


class T2IAdapter(ControlBase):
    """ComfyUI's T2I-Adapter: features computed once per hint size, copied per model call."""

    _loom_handle_test = staticmethod(lambda handle: bool(handle.is_t2i))

    def __init__(self, t2i_model: Any, channels_in: int, compression_ratio: int, upscale_algorithm: str,
                 device: Any = None) -> None:
        super().__init__()
        self.t2i_model = t2i_model
        self.channels_in = channels_in
        self.control_input: Residuals | None = None
        self.compression_ratio = compression_ratio
        self.upscale_algorithm = upscale_algorithm
        self.device = device if device is not None else _manager().policy.device

    def scale_image_to(self, width: int, height: int) -> tuple[int, int]:
        step = int(self.t2i_model.unshuffle_amount)
        return -(-width // step) * step, -(-height // step) * step

    def get_control(self, x_noisy: torch.Tensor, t: torch.Tensor, cond: dict[str, Any], batched_number: int,
                    transformer_options: dict[str, Any]) -> Residuals | None:
        """The merged residuals of this adapter and its chain for one model call (ComfyUI's contract)."""
        control_prev = self._previous_control(x_noisy, t, cond, batched_number, transformer_options)
        if self._outside_window(t):
            return control_prev
        ratio = self.compression_ratio
        if self.cond_hint is None or self.cond_hint.shape[-2:] != (x_noisy.shape[2] * ratio,
                                                                   x_noisy.shape[3] * ratio):
            self.control_input = None
            width, height = self.scale_image_to(x_noisy.shape[3] * ratio, x_noisy.shape[2] * ratio)
            hint = comfy.utils.common_upscale(self.cond_hint_original, width, height, self.upscale_algorithm,
                                              "center").float().to(self.device)
            if self.channels_in == 1 and hint.shape[1] > 1:
                hint = torch.mean(hint, 1, keepdim=True)
            self.cond_hint = hint
        if x_noisy.shape[0] != self.cond_hint.shape[0]:
            self.cond_hint = broadcast_image_to(self.cond_hint, x_noisy.shape[0], batched_number)
        if self.control_input is None:
            self.t2i_model.to(x_noisy.dtype)
            self.t2i_model.to(self.device)
            self.control_input = self.t2i_model(self.cond_hint.to(x_noisy.dtype))
        assert self.control_input is not None
        copied = {k: [None if a is None else a.clone() for a in v] for k, v in self.control_input.items()}
        return self.control_merge(copied, control_prev, x_noisy.dtype)

    def copy(self) -> T2IAdapter:
        c = T2IAdapter(self.t2i_model, self.channels_in, self.compression_ratio, self.upscale_algorithm)
        self.copy_to(c)
        return c

    def cleanup(self) -> None:
        self.control_input = None
        super().cleanup()


def load_controlnet(ckpt_path: str, model: Any = None, model_options: dict[str, Any] | None = None) -> ControlBase:
    """The ControlNet / T2I-Adapter of a file, as ComfyUI's classes (a diff ControlNet needs its MODEL)."""
    from engine.adapters.control_load import load_control

    handle = load_control(ckpt_path, _manager(), model)
    if handle.is_t2i:
        return T2IAdapter(LoomT2IModel(handle), int(handle.config.hint_channels), 8, "nearest-exact",
                          device=handle.manager.policy.device)
    return ControlNet(LoomControlModel(handle), load_device=handle.manager.policy.device)


def load_t2i_adapter(t2i_data: Any, model_options: dict[str, Any] | None = None) -> ControlBase:
    """ComfyUI builds T2I-Adapters from a state dict; Loom loads them from files (`load_controlnet(path)`)."""
    raise NotImplementedError("comfy.controlnet.load_t2i_adapter(state_dict) is not provided by Loom: load the file "
                              "with comfy.controlnet.load_controlnet(path), which detects T2I-Adapters")
