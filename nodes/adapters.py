"""ControlNet / T2I-Adapter nodes (ComfyUI's names): load from `controlnet` + `t2i_adapter`, apply to conditioning.

The apply nodes put a copy of the CONTROL_NET, carrying the hint, strength and start / end percent, under
each conditioning entry's `control` key; sampling runs it (`engine.adapters.control`). Chaining a second apply
node makes the first control its `previous_controlnet`, and their residuals are summed.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from nodes._base import BuiltinNode, InputTypes, input_error, progress_context
from nodes.loaders import load_model_file

if TYPE_CHECKING:
    import torch

__all__ = ["ControlNetLoader", "DiffControlNetLoader", "ControlNetApplyAdvanced", "ControlNetApply",
           "SetUnionControlNetType", "UNION_CONTROLNET_TYPES", "apply_control"]

Conditioning = list[list[Any]]

# ComfyUI's union ControlNet task ids (SetUnionControlNetType's choices after "auto").
UNION_CONTROLNET_TYPES = {"openpose": 0, "depth": 1, "hed/pidi/scribble/ted": 2,
                          "canny/lineart/anime_lineart/mlsd": 3, "normal": 4, "segment": 5, "tile": 6, "repaint": 7}


def _load(cls_name: str, services: Any, name: str, model: Any = None) -> Any:
    from engine.adapters.control_load import load_control

    return load_model_file(cls_name, services, "controlnet", "control_net_name", name,
                           lambda path, manager: load_control(path, manager, model))


def _check_image(cls_name: str, image: Any) -> None:
    import torch

    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise input_error(cls_name, "image", f"expected an IMAGE tensor [B,H,W,C], got {got}")


def _check_control(cls_name: str, control_net: Any, contract_ok: bool = True) -> None:
    """A CONTROL_NET: Loom's handle, or (``contract_ok``) a pack's object following ComfyUI's control contract."""
    from engine.adapters.control import ControlHandle
    from engine.adapters.control_contract import follows_control_contract

    if isinstance(control_net, ControlHandle) or (contract_ok and follows_control_contract(control_net)):
        return
    raise input_error(cls_name, "control_net",
                      f"expected a CONTROL_NET from ControlNetLoader, got {type(control_net).__name__}")


def apply_control(sides: list[Conditioning], control_net: Any, hint: torch.Tensor, strength: float,
                  percent: tuple[float, float], vae: Any = None, apply_to_uncond: bool = False) -> list[Conditioning]:
    """ComfyUI's apply rule: per side, each entry gets a copy of `control_net` set to this hint and settings
    whose previous control is the entry's old one; entries with the same old control share one copy."""
    copies: dict[int, Any] = {}
    out = []
    for side in sides:
        entries = []
        for cond, opts in side:
            new_opts = dict(opts)
            prev = opts.get("control")
            if id(prev) not in copies:
                copies[id(prev)] = (control_net.copy().set_cond_hint(hint, strength, percent, vae=vae)
                                    .set_previous_controlnet(prev))
            new_opts["control"] = copies[id(prev)]
            new_opts["control_apply_to_uncond"] = apply_to_uncond
            entries.append([cond, new_opts])
        out.append(entries)
    return out


class ControlNetLoader(BuiltinNode):
    """Load a ControlNet (lllyasviel v1.1, ControlNet 1.0 or diffusers layout; SD1.x / SDXL) or a T2I-Adapter (TencentARC or diffusers names).

    Parameters:
        control_net_name: a file in `models/controlnet` or `models/t2i_adapter`.
    """

    DISPLAY_NAME = "Load ControlNet Model"
    CATEGORY = "loaders"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"control_net_name": "controlnet"}
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"control_net_name": (cls._services().paths.get_filename_list("controlnet"),)}}

    def load_controlnet(self, control_net_name: str) -> tuple[Any]:
        return (_load("ControlNetLoader", self._services(), control_net_name),)


class DiffControlNetLoader(BuiltinNode):
    """Load a ControlNet; a diff ControlNet (`difference` key) gets the model's UNet weights added.

    Parameters:
        model: the MODEL whose weights a diff ControlNet adds to its own.
        control_net_name: a file in `models/controlnet` or `models/t2i_adapter`.
    """

    DISPLAY_NAME = "Load ControlNet Model (diff)"
    CATEGORY = "loaders"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"control_net_name": "controlnet"}
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        files = cls._services().paths.get_filename_list("controlnet")
        return {"required": {"model": ("MODEL",), "control_net_name": (files,)}}

    def load_controlnet(self, model: Any, control_net_name: str) -> tuple[Any]:
        return (_load("DiffControlNetLoader", self._services(), control_net_name, model),)


class ControlNetApplyAdvanced(BuiltinNode):
    """Apply a ControlNet / T2I-Adapter to the positive and negative conditioning.

    Parameters:
        positive, negative: CONDITIONING to control (both sides share one control per previous control).
        control_net: a CONTROL_NET.
        image: the hint IMAGE; resized (centre crop, nearest-exact) to the latent size x 8 when sampling.
        strength: residual multiplier (0 returns the inputs unchanged).
        start_percent, end_percent: the part of the schedule where the control acts.
        vae: optional; unused by the ControlNets and T2I-Adapters Loom loads.
    """

    DISPLAY_NAME = "Apply ControlNet"
    CATEGORY = "conditioning/controlnet"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "apply_controlnet"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "control_net": ("CONTROL_NET",), "image": ("IMAGE",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
                             "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
                             "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001})},
                "optional": {"vae": ("VAE",)}}

    def apply_controlnet(self, positive: Conditioning, negative: Conditioning, control_net: Any, image: Any,
                         strength: float, start_percent: float, end_percent: float, vae: Any = None,
                         extra_concat: Any = None) -> dict[str, Any]:
        if strength == 0:
            return {"result": (positive, negative)}
        _check_control("ControlNetApplyAdvanced", control_net)
        _check_image("ControlNetApplyAdvanced", image)
        pos, neg = apply_control([positive, negative], control_net, image.movedim(-1, 1), strength,
                                 (start_percent, end_percent), vae=vae)
        _report_chain(pos)
        return {"result": (pos, neg)}


class ControlNetApply(BuiltinNode):
    """Apply a ControlNet to one conditioning (deprecated: the sampler gives the negative side this control too).

    Parameters:
        conditioning: CONDITIONING to control.
        control_net: a CONTROL_NET.
        image: the hint IMAGE.
        strength: residual multiplier (0 returns the input unchanged).
    """

    DISPLAY_NAME = "Apply ControlNet (OLD)"
    CATEGORY = "conditioning/controlnet"
    DEPRECATED = True
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_controlnet"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning": ("CONDITIONING",), "control_net": ("CONTROL_NET",),
                             "image": ("IMAGE",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})}}

    def apply_controlnet(self, conditioning: Conditioning, control_net: Any, image: Any,
                         strength: float) -> dict[str, Any]:
        if strength == 0:
            return {"result": (conditioning,)}
        _check_control("ControlNetApply", control_net)
        _check_image("ControlNetApply", image)
        hint = image.movedim(-1, 1)
        out = []
        for cond, opts in conditioning:  # one copy per entry, as ComfyUI's old node
            new_opts = dict(opts)
            new_opts["control"] = control_net.copy().set_cond_hint(hint, strength).set_previous_controlnet(
                opts.get("control"))
            new_opts["control_apply_to_uncond"] = True
            out.append([cond, new_opts])
        _report_chain(out)
        return {"result": (out,)}


class SetUnionControlNetType(BuiltinNode):
    """Pick the task of a union ControlNet. Union ControlNets do not load yet (the loader says so); for any
    other CONTROL_NET the type is recorded and has no effect, as in ComfyUI.

    Parameters:
        control_net: a CONTROL_NET.
        type: "auto" or a union task.
    """

    CATEGORY = "conditioning/controlnet"
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "set_controlnet_type"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"control_net": ("CONTROL_NET",),
                             "type": (["auto", *UNION_CONTROLNET_TYPES],)}}

    def set_controlnet_type(self, control_net: Any, type: str) -> tuple[Any]:
        _check_control("SetUnionControlNetType", control_net, contract_ok=False)
        if type != "auto" and type not in UNION_CONTROLNET_TYPES:
            raise input_error("SetUnionControlNetType", "type",
                              f"unknown union type {type!r}; choose auto or one of {', '.join(UNION_CONTROLNET_TYPES)}")
        out = control_net.copy()
        out.control_type = [] if type == "auto" else [UNION_CONTROLNET_TYPES[type]]
        return (out,)


def _report_chain(conditioning: Conditioning) -> None:
    """Record the controls of the first entry, outermost first, for the history entry (``loom.reports``: kind
    ``controls``; the sampler reports the steps each acted on under ``adapters``)."""
    from engine.adapters.control import ControlHandle

    ctx = progress_context()
    if ctx is None or not conditioning or conditioning[0][1].get("control") is None:
        return
    chain: list[dict[str, Any]] = []
    control = conditioning[0][1]["control"]
    while control is not None:  # Loom's handles describe themselves; a pack's ComfyUI control is named by class
        chain.append(control.describe() if isinstance(control, ControlHandle) else {"kind": type(control).__name__})
        control = control.previous_controlnet
    ctx.report("controls", {"chain": chain})


NODES = [ControlNetLoader, DiffControlNetLoader, ControlNetApplyAdvanced, ControlNetApply, SetUnionControlNetType]
