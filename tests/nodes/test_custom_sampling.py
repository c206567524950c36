"""Custom sampling nodes on the tiny SD1.5 checkpoint: SamplerCustom / SamplerCustomAdvanced give KSampler's
latents for the same settings; schedules, split schedules, noise sources, guiders, errors, the catalogue and
a SamplerCustomAdvanced graph through the real executor."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from nodes._base import NodeInputError

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-sd15"
CKPT = "tiny-sd15.safetensors"
STEPS = 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tiny_model: Any) -> Any:
    return tiny_model


@pytest.fixture(scope="module")
def conds() -> tuple[list[Any], list[Any]]:
    gen = torch.Generator().manual_seed(5)
    cond = torch.randn(1, 77, 32, generator=gen)
    uncond = torch.randn(1, 77, 32, generator=gen)
    return [[cond, {}]], [[uncond, {}]]


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def empty(batch: int = 1) -> dict[str, Any]:
    return {"samples": torch.zeros(batch, 4, 8, 16)}


def image_latent() -> dict[str, Any]:
    return {"samples": torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(3)) * 5}


def ksampler(registry: Any, model: Any, conds: Any, latent: dict[str, Any], sampler: str = "euler",
             scheduler: str = "normal", cfg: float = 5.0, denoise: float = 1.0, seed: int = 7) -> torch.Tensor:
    (out,) = call(registry, "KSampler", model=model, seed=seed, steps=STEPS, cfg=cfg, sampler_name=sampler,
                  scheduler=scheduler, positive=conds[0], negative=conds[1], latent_image=latent, denoise=denoise)
    samples: torch.Tensor = out["samples"]
    return samples


def custom(registry: Any, model: Any, conds: Any, latent: dict[str, Any], sampler: str = "euler",
           scheduler: str = "normal", cfg: float = 5.0, denoise: float = 1.0, seed: int = 7) -> Any:
    (smp,) = call(registry, "KSamplerSelect", sampler_name=sampler)
    (sigmas,) = call(registry, "BasicScheduler", model=model, scheduler=scheduler, steps=STEPS, denoise=denoise)
    return call(registry, "SamplerCustom", model=model, add_noise=True, noise_seed=seed, cfg=cfg,
                positive=conds[0], negative=conds[1], sampler=smp, sigmas=sigmas, latent_image=latent)


@pytest.mark.parametrize("sampler,scheduler", [("euler", "normal"), ("euler_ancestral", "normal"),
                                               ("dpmpp_2m", "karras")])
def test_sampler_custom_equals_ksampler(registry: Any, model: Any, conds: Any, sampler: str,
                                        scheduler: str) -> None:
    want = ksampler(registry, model, conds, empty(), sampler, scheduler)
    out, denoised = custom(registry, model, conds, empty(), sampler, scheduler)
    assert torch.equal(out["samples"], want)
    # the last step ends at sigma 0, so the final x0 prediction is (nearly) the output itself
    assert denoised is not out and torch.allclose(denoised["samples"], want, atol=1e-4)
    other = ksampler(registry, model, conds, empty(), sampler, scheduler, seed=8)
    assert not torch.allclose(other, want)


def advanced(registry: Any, model: Any, conds: Any, latent: dict[str, Any], seed: int = 7, cfg: float = 5.0,
             denoise: float = 1.0, sampler: str = "euler") -> Any:
    (noise,) = call(registry, "RandomNoise", noise_seed=seed)
    (guider,) = call(registry, "CFGGuider", model=model, positive=conds[0], negative=conds[1], cfg=cfg)
    (smp,) = call(registry, "KSamplerSelect", sampler_name=sampler)
    (sigmas,) = call(registry, "BasicScheduler", model=model, scheduler="normal", steps=STEPS, denoise=denoise)
    return call(registry, "SamplerCustomAdvanced", noise=noise, guider=guider, sampler=smp, sigmas=sigmas,
                latent_image=latent)


def test_sampler_custom_advanced_equals_ksampler(registry: Any, model: Any, conds: Any) -> None:
    out, _ = advanced(registry, model, conds, empty())
    assert torch.equal(out["samples"], ksampler(registry, model, conds, empty()))


def test_batch_index_noise_mask_and_denoise_match_ksampler(registry: Any, model: Any, conds: Any) -> None:
    latent = image_latent()
    latent = {"samples": latent["samples"].repeat(2, 1, 1, 1), "batch_index": [3, 1]}
    mask = torch.zeros(1, 64, 128)
    mask[:, :, 64:] = 1.0
    (masked,) = call(registry, "SetLatentNoiseMask", samples=latent, mask=mask)
    for sampler in ("euler", "ddim"):  # ddim blends the kept area with noise from seed + 1
        out, _ = advanced(registry, model, conds, masked, denoise=0.5, sampler=sampler)
        want = ksampler(registry, model, conds, masked, sampler=sampler, denoise=0.5)
        assert torch.equal(out["samples"], want)
        assert out["batch_index"] == [3, 1] and out["noise_mask"] is masked["noise_mask"]
        # the unmasked left half keeps the input latent
        assert torch.allclose(out["samples"][..., :8], latent["samples"][..., :8], atol=1e-4)
    out, _ = custom(registry, model, conds, latent, denoise=0.5)
    assert torch.equal(out["samples"], ksampler(registry, model, conds, latent, denoise=0.5))


def test_basic_scheduler_denoise_is_the_ksampler_window(registry: Any, model: Any) -> None:
    from engine.sampling.ksampler import ksampler_sigmas
    from engine.sampling.samplers import get_sampler

    for denoise in (1.0, 0.6, 0.33):
        (sigmas,) = call(registry, "BasicScheduler", model=model, scheduler="karras", steps=STEPS, denoise=denoise)
        want = ksampler_sigmas(model.model_sampling, "karras", STEPS, denoise, get_sampler("euler"))
        assert sigmas.shape == (STEPS + 1,) and torch.equal(sigmas, want)
    (full,) = call(registry, "BasicScheduler", model=model, scheduler="normal", steps=10, denoise=1.0)
    (half,) = call(registry, "BasicScheduler", model=model, scheduler="normal", steps=5, denoise=0.5)
    assert torch.equal(half, full[-6:])
    (none,) = call(registry, "BasicScheduler", model=model, scheduler="normal", steps=STEPS, denoise=0.0)
    assert none.shape == (0,)


def test_empty_sigmas_return_the_latent_unchanged(registry: Any, model: Any, conds: Any) -> None:
    latent = image_latent()
    (smp,) = call(registry, "KSamplerSelect", sampler_name="euler")
    out, denoised = call(registry, "SamplerCustom", model=model, add_noise=True, noise_seed=1, cfg=5.0,
                         positive=conds[0], negative=conds[1], sampler=smp, sigmas=torch.zeros(0),
                         latent_image=latent)
    assert torch.equal(out["samples"], latent["samples"]) and denoised is out


def test_split_sigmas_two_passes_equal_one(registry: Any, model: Any, conds: Any) -> None:
    (smp,) = call(registry, "KSamplerSelect", sampler_name="euler")
    (sigmas,) = call(registry, "BasicScheduler", model=model, scheduler="normal", steps=STEPS, denoise=1.0)
    high, low = call(registry, "SplitSigmas", sigmas=sigmas, step=2)
    assert torch.equal(high, sigmas[:3]) and torch.equal(low, sigmas[2:]) and high[-1] == low[0]
    (noise,) = call(registry, "RandomNoise", noise_seed=7)
    (off,) = call(registry, "DisableNoise")
    (guider,) = call(registry, "CFGGuider", model=model, positive=conds[0], negative=conds[1], cfg=5.0)
    full, _ = call(registry, "SamplerCustomAdvanced", noise=noise, guider=guider, sampler=smp, sigmas=sigmas,
                   latent_image=empty())
    first, first_x0 = call(registry, "SamplerCustomAdvanced", noise=noise, guider=guider, sampler=smp,
                           sigmas=high, latent_image=empty())
    assert not torch.allclose(first["samples"], first_x0["samples"], atol=1e-2)  # still noisy vs its x0
    second, _ = call(registry, "SamplerCustomAdvanced", noise=off, guider=guider, sampler=smp, sigmas=low,
                     latent_image=first)
    scale = float(full["samples"].abs().max())
    assert float((second["samples"] - full["samples"]).abs().max()) <= 1e-5 * scale
    # SamplerCustom: the same refiner-style split with add_noise off on the low pass
    a, _ = call(registry, "SamplerCustom", model=model, add_noise=True, noise_seed=7, cfg=5.0, positive=conds[0],
                negative=conds[1], sampler=smp, sigmas=high, latent_image=empty())
    b, _ = call(registry, "SamplerCustom", model=model, add_noise=False, noise_seed=7, cfg=5.0, positive=conds[0],
                negative=conds[1], sampler=smp, sigmas=low, latent_image=a)
    assert float((b["samples"] - full["samples"]).abs().max()) <= 1e-5 * scale


def test_basic_guider_is_cfg_one(registry: Any, model: Any, conds: Any) -> None:
    (noise,) = call(registry, "RandomNoise", noise_seed=11)
    (basic,) = call(registry, "BasicGuider", model=model, conditioning=conds[0])
    (smp,) = call(registry, "KSamplerSelect", sampler_name="euler")
    (sigmas,) = call(registry, "BasicScheduler", model=model, scheduler="normal", steps=STEPS, denoise=1.0)
    out, _ = call(registry, "SamplerCustomAdvanced", noise=noise, guider=basic, sampler=smp, sigmas=sigmas,
                  latent_image=empty())
    assert basic.model_patcher is model
    assert torch.equal(out["samples"], ksampler(registry, model, conds, empty(), cfg=1.0, seed=11))


def test_noise_sources(registry: Any) -> None:
    from engine.sampling import prepare_noise

    (noise,) = call(registry, "RandomNoise", noise_seed=123)
    samples = torch.zeros(2, 4, 8, 8)
    latent = {"samples": samples, "batch_index": [2, 0]}
    assert noise.seed == 123
    assert torch.equal(noise.generate_noise(latent), prepare_noise(samples, 123, [2, 0]))
    assert torch.equal(noise.generate_noise(latent)[1], prepare_noise(torch.zeros(1, 4, 8, 8), 123)[0])
    (off,) = call(registry, "DisableNoise")
    zeros = off.generate_noise(latent)
    assert off.seed == 0 and zeros.shape == (2, 4, 8, 8) and not zeros.any()


def test_schedule_and_sigma_nodes(registry: Any, model: Any) -> None:
    from engine.sampling.schedulers import exponential_sigmas, karras_sigmas

    (k,) = call(registry, "KarrasScheduler", steps=5, sigma_max=14.614642, sigma_min=0.0291675, rho=7.0)
    assert torch.equal(k, karras_sigmas(5, 0.0291675, 14.614642, 7.0)) and k.shape == (6,) and k[-1] == 0
    (e,) = call(registry, "ExponentialScheduler", steps=5, sigma_max=10.0, sigma_min=0.1)
    assert torch.equal(e, exponential_sigmas(5, 0.1, 10.0))
    (p,) = call(registry, "PolyexponentialScheduler", steps=5, sigma_max=10.0, sigma_min=0.1, rho=1.0)
    assert torch.allclose(p, e, rtol=1e-5)
    (turbo,) = call(registry, "SDTurboScheduler", model=model, steps=2, denoise=1.0)
    assert torch.allclose(turbo[:2], model.model_sampling.sigma(torch.tensor([999, 899])))
    high, low = call(registry, "SplitSigmasDenoise", sigmas=k, denoise=0.4)
    assert torch.equal(low, k[-3:]) and torch.equal(high, k[:-2])
    (flipped,) = call(registry, "FlipSigmas", sigmas=k)
    assert flipped[0] == pytest.approx(1e-4) and torch.equal(flipped[1:], k.flip(0)[1:])
    assert k[-1] == 0  # the input is not modified
    (first,) = call(registry, "SetFirstSigma", sigmas=k, sigma=50.0)
    assert first[0] == 50.0 and k[0] != 50.0 and torch.equal(first[1:], k[1:])


def test_bad_inputs_name_node_and_input(registry: Any, model: Any, conds: Any) -> None:
    (smp,) = call(registry, "KSamplerSelect", sampler_name="euler")
    args = dict(model=model, add_noise=True, noise_seed=0, cfg=5.0, positive=conds[0], negative=conds[1],
                sampler=smp, sigmas=torch.ones(2), latent_image=empty())
    with pytest.raises(NodeInputError, match=r"SamplerCustom.*input 'sigmas'"):
        call(registry, "SamplerCustom", **{**args, "sigmas": None})
    with pytest.raises(NodeInputError, match=r"SamplerCustom.*input 'sampler'"):
        call(registry, "SamplerCustom", **{**args, "sampler": 3})
    with pytest.raises(NodeInputError, match=r"SamplerCustom.*input 'latent_image'"):
        call(registry, "SamplerCustom", **{**args, "latent_image": torch.zeros(1, 4, 8, 8)})
    with pytest.raises(NodeInputError, match=r"SamplerCustom.*input 'model'"):
        call(registry, "SamplerCustom", **{**args, "model": None})
    (noise,) = call(registry, "RandomNoise", noise_seed=0)
    with pytest.raises(NodeInputError, match=r"SamplerCustomAdvanced.*input 'guider'"):
        call(registry, "SamplerCustomAdvanced", noise=noise, guider=object(), sampler=smp, sigmas=torch.ones(2),
             latent_image=empty())
    with pytest.raises(NodeInputError, match=r"KSamplerSelect.*input 'sampler_name'.*euler"):
        call(registry, "KSamplerSelect", sampler_name="no_such_sampler")
    with pytest.raises(NodeInputError, match=r"BasicScheduler.*input 'scheduler'"):
        call(registry, "BasicScheduler", model=model, scheduler="nope", steps=3, denoise=1.0)


def test_comfy_style_sampler_objects_are_accepted(model: Any) -> None:
    from engine.sampling.custom import SamplerChoice, resolve_sampler

    class KSampler_:  # what `comfy.samplers.ksampler(name, extra_options)` hands a pack
        sampler_name = "euler_ancestral"
        extra_options = {"eta": 0.5}

    spec = resolve_sampler(KSampler_())
    assert spec.noise == "gaussian"
    with pytest.raises(ValueError, match="does not take option.*s_noise"):
        SamplerChoice("euler", {"s_noise": 1.0}).spec()


def test_catalogue_lists_the_custom_sampling_nodes(registry: Any) -> None:
    info = registry.object_info()
    sc = info["SamplerCustom"]
    assert sc["input_order"]["required"] == ["model", "add_noise", "noise_seed", "cfg", "positive", "negative",
                                             "sampler", "sigmas", "latent_image"]
    assert sc["input"]["required"]["add_noise"] == ["BOOLEAN", {"default": True}]
    seed = sc["input"]["required"]["noise_seed"][1]
    assert seed["max"] == 0xFFFFFFFFFFFFFFFF and seed["control_after_generate"] is True
    assert sc["input"]["required"]["cfg"][1] == {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1,
                                                 "round": 0.01}
    assert sc["output"] == ["LATENT", "LATENT"] and sc["output_name"] == ["output", "denoised_output"]
    assert sc["category"] == "sampling/custom_sampling" and sc["python_module"] == "nodes"
    adv = info["SamplerCustomAdvanced"]
    assert adv["input_order"]["required"] == ["noise", "guider", "sampler", "sigmas", "latent_image"]
    assert [adv["input"]["required"][k][0] for k in adv["input_order"]["required"]] == [
        "NOISE", "GUIDER", "SAMPLER", "SIGMAS", "LATENT"]
    bs = info["BasicScheduler"]
    assert bs["input_order"]["required"] == ["model", "scheduler", "steps", "denoise"]
    assert bs["input"]["required"]["scheduler"][0] == info["KSampler"]["input"]["required"]["scheduler"][0]
    assert bs["input"]["required"]["denoise"][1] == {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}
    assert info["KSamplerSelect"]["input"]["required"]["sampler_name"][0] == \
        info["KSampler"]["input"]["required"]["sampler_name"][0]
    assert info["KarrasScheduler"]["input"]["required"]["sigma_max"][1] == {
        "default": 14.614642, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False}
    assert info["SplitSigmas"]["output_name"] == ["high_sigmas", "low_sigmas"]
    assert info["DisableNoise"]["input"]["required"] == {}
    categories = {
        "KSamplerSelect": "samplers", "BasicScheduler": "schedulers", "KarrasScheduler": "schedulers",
        "ExponentialScheduler": "schedulers", "SplitSigmas": "sigmas", "SplitSigmasDenoise": "sigmas",
        "FlipSigmas": "sigmas", "RandomNoise": "noise", "DisableNoise": "noise", "CFGGuider": "guiders",
        "BasicGuider": "guiders",
    }
    for name, sub in categories.items():
        assert info[name]["category"] == f"sampling/custom_sampling/{sub}", name
    outputs = {"KSamplerSelect": ["SAMPLER"], "BasicScheduler": ["SIGMAS"], "RandomNoise": ["NOISE"],
               "CFGGuider": ["GUIDER"], "BasicGuider": ["GUIDER"]}
    for name, out in outputs.items():
        assert info[name]["output"] == out, name


# ------------------------------------------------------------------------------------- through the executor
def _graph(sampler_nodes: dict[str, Any], latent_ref: list[Any]) -> dict[str, Any]:
    graph: dict[str, Any] = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 64, "batch_size": 1}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": latent_ref, "vae": ["1", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "custom"}},
    }
    graph.update(sampler_nodes)
    return graph


class Events:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event: str, data: dict[str, Any]) -> None:
        self.events.append((event, data))

    def preview(self, prompt_id: str, node_id: str, image: Any) -> None:
        return None


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from app.runner import build_runtime

    base = tmp_path_factory.mktemp("loom")
    (base / "models" / "checkpoints").mkdir(parents=True)
    shutil.copyfile(TINY / CKPT, base / "models" / "checkpoints" / CKPT)
    rt = build_runtime(base, cpu=True)
    yield rt
    rt.close()


def test_executor_runs_sampler_custom_advanced_like_ksampler(runtime: Any) -> None:
    from app.runner import run_graph

    custom_nodes = {
        "10": {"class_type": "RandomNoise", "inputs": {"noise_seed": 42}},
        "11": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["2", 0],
                                                     "negative": ["3", 0], "cfg": 7.5}},
        "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "13": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "normal",
                                                          "steps": 3, "denoise": 1.0}},
        "14": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["10", 0], "guider": ["11", 0],
                                                                 "sampler": ["12", 0], "sigmas": ["13", 0],
                                                                 "latent_image": ["4", 0]}},
    }
    events = Events()
    result = run_graph(runtime, _graph(custom_nodes, ["14", 0]), sink=events)
    assert result.status == "success", result.error
    steps = [d for e, d in events.events if e == "progress" and str(d.get("node")) == "14"]
    assert [d["value"] for d in steps] == [1, 2, 3] and steps[-1]["max"] == 3
    plain = {"5": {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "seed": 42, "steps": 3, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
        "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0}}}
    reference = run_graph(runtime, _graph(plain, ["5", 0]), sink=Events())
    assert reference.status == "success", reference.error
    (a,), (b,) = result.files, reference.files
    with Image.open(a) as ia, Image.open(b) as ib:
        pa, pb = np.asarray(ia), np.asarray(ib)
    assert pa.shape == (64, 128, 3) and np.array_equal(pa, pb) and len(np.unique(pa)) > 1
    # denoised_output (slot 1) decodes too
    denoised = run_graph(runtime, _graph(custom_nodes, ["14", 1]), sink=Events())
    assert denoised.status == "success", denoised.error
