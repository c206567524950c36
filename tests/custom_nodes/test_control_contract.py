"""Loom's sampler runs a CONTROL_NET that follows ComfyUI's control contract (a pack's ControlBase subclass):
`pre_run` once with the BaseModel view and a percent -> sigma function, `get_control` per model call with ComfyUI's
arguments (its residuals reach the UNet), `cleanup` after the run, also when it fails; what it cannot run raises."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.sampling.ksampler import sample


class RecordingControl:
    """A minimal contract object: adds a constant to the middle block's output, records every call."""

    def __init__(self, value: float = 0.0, fail: bool = False) -> None:
        self.value, self.fail = value, fail
        self.previous_controlnet: Any = None
        self.calls: list[dict[str, Any]] = []
        self.events: list[str] = []
        self.window: tuple[float, float] | None = None

    def pre_run(self, model: Any, percent_to_timestep_function: Any) -> None:
        self.events.append(f"pre_run:{type(model).__name__}")
        self.window = (percent_to_timestep_function(0.0), percent_to_timestep_function(1.0))

    def get_control(self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, Any], batched_number: int,
                    transformer_options: dict[str, Any]) -> dict[str, list[Any]]:
        if self.fail:
            raise RuntimeError("control failed")
        self.calls.append({"rows": x.shape[0], "t": t.clone(), "cond": sorted(cond), "batched": batched_number,
                           "sides": list(transformer_options["cond_or_uncond"]),
                           "sample_sigmas": len(transformer_options["sample_sigmas"])})
        middle = torch.full((x.shape[0], 1, 1, 1), self.value)
        return {"input": [], "middle": [middle], "output": []}

    def cleanup(self) -> None:
        self.events.append("cleanup")

    def copy(self) -> RecordingControl:
        return self

    def set_cond_hint(self, *args: Any, **kwargs: Any) -> RecordingControl:
        return self

    def set_previous_controlnet(self, control: Any) -> RecordingControl:
        self.previous_controlnet = control
        return self

    def get_extra_hooks(self) -> list[Any]:
        return []


def _sample(model: Any, positive: Any, negative: Any, control: Any, steps: int = 3) -> torch.Tensor:
    pos = [[positive[0][0], {**positive[0][1], "control": control}]]
    neg = [[negative[0][0], {**negative[0][1], "control": control}]]
    latent = torch.zeros(1, 4, 8, 8)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out: torch.Tensor = sample(model, noise, steps, 5.0, "euler", "normal", pos, neg, latent)
    return out


def test_contract_calls_and_their_effect(tiny: tuple[Any, Any, Any]) -> None:
    model, positive, negative = tiny
    zero, shifted = RecordingControl(0.0), RecordingControl(0.5)
    base = _sample(model, positive, negative, zero)
    assert zero.events == ["pre_run:BaseModel", "cleanup"]
    assert zero.window is not None and zero.window[0] > zero.window[1], "percent 0 is the highest sigma"
    assert len(zero.calls) == 3, "one batched call (cond + uncond) per euler step"
    first = zero.calls[0]
    assert first["rows"] == 2 and first["batched"] == 2 and sorted(first["sides"]) == [0, 1]
    assert first["cond"] == ["c_crossattn"] and first["sample_sigmas"] == 4
    assert float(zero.calls[0]["t"][0]) > float(zero.calls[-1]["t"][0])
    assert float((_sample(model, positive, negative, shifted) - base).abs().max()) > 1e-3, \
        "the middle residual the control returns reaches the UNet"


def test_cleanup_runs_when_the_control_fails(tiny: tuple[Any, Any, Any]) -> None:
    model, positive, negative = tiny
    failing = RecordingControl(fail=True)
    with pytest.raises(RuntimeError, match="control failed"):
        _sample(model, positive, negative, failing)
    assert failing.events == ["pre_run:BaseModel", "cleanup"]


def test_chain_onto_a_non_control_and_hooks_raise(tiny: tuple[Any, Any, Any]) -> None:
    model, positive, negative = tiny

    class NotAControl:
        pass

    chained = RecordingControl().set_previous_controlnet(NotAControl())
    with pytest.raises(TypeError, match="must be a CONTROL_NET .* got NotAControl"):
        _sample(model, positive, negative, chained)
    assert chained.events == [] and isinstance(chained.previous_controlnet, NotAControl), "chain put back"
    hooked = RecordingControl()
    hooked.get_extra_hooks = lambda: [object()]  # type: ignore[method-assign]
    with pytest.raises(NotImplementedError, match="hook system"):
        _sample(model, positive, negative, hooked)
    assert hooked.events == []


class ChainingControl(RecordingControl):
    """Adds its middle residual to its previous control's, as ComfyUI's control_merge does."""

    def get_control(self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, Any], batched_number: int,
                    transformer_options: dict[str, Any]) -> dict[str, list[Any]]:
        own = super().get_control(x, t, cond, batched_number, transformer_options)
        prev = self.previous_controlnet.get_control(x, t, cond, batched_number, transformer_options)
        assert sorted(prev) == ["input", "middle", "output"], "a merged control carries all three lists"
        prev["middle"] = [prev["middle"][0] + own["middle"][0]]
        return prev  # type: ignore[no-any-return]


def test_contract_control_chained_onto_a_loom_handle(tiny: tuple[Any, Any, Any], fixtures_dir: Any) -> None:
    from engine.adapters.control_load import load_control

    model, positive, negative = tiny
    handle = load_control(fixtures_dir / "adapters" / "tiny-control_v11p_sd15_canny_fp16.safetensors", model.manager)
    hint = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    applied = handle.copy().set_cond_hint(hint, 0.8)
    alone = _sample(model, positive, negative, applied)
    chained = ChainingControl(0.0).set_previous_controlnet(applied)
    assert float((_sample(model, positive, negative, chained) - alone).abs().max()) == 0.0
    assert chained.previous_controlnet is applied, "the bridge is removed after the run"
    assert chained.events == ["pre_run:BaseModel", "cleanup"] and len(chained.calls) == 3
    shifted = ChainingControl(0.5).set_previous_controlnet(applied)
    assert float((_sample(model, positive, negative, shifted) - alone).abs().max()) > 1e-3
