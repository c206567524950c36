"""The real pack Kosinkadink/ComfyUI-AnimateDiff-Evolved at its pinned commit, loaded unchanged: every node registers,
and its model-free nodes (value scheduling, multivals, sigma schedules, context options, latents) run with the values
ComfyUI gives.

The pack is staged from this machine's source of its pin (`real_packs`); without one these tests are skipped. The pack imports `torchvision` at module level (only its context-window visualiser uses it); where
it is not installed a stub module stands in for the test's lifetime.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import real_packs
import torch

PIN = real_packs.pin("ComfyUI-AnimateDiff-Evolved")
pytestmark = real_packs.skip_unless_staged(PIN, stubbed=frozenset({"torchvision"}))


def _register_motion_model(runtime: Any, node_id: str, patcher: Any) -> None:
    """Register a test node `node_id` (no inputs) giving `patcher` as MOTION_MODEL_ADE (one id per test)."""

    class GiveMotionModel:
        CATEGORY = "test"
        RETURN_TYPES = ("MOTION_MODEL_ADE",)
        FUNCTION = "give"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        def give(self) -> tuple[Any]:
            return (patcher,)

    runtime.registry.register(node_id, GiveMotionModel, source="test")


@pytest.fixture(scope="module")
def ade(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Iterator[Any]:
    """(runtime, report) with the pack loaded into a fresh in-process Loom (the tiny SD1.5 checkpoint in its
    checkpoints folder)."""
    from app.runner import build_runtime

    base = tmp_path_factory.mktemp("ade")
    real_packs.stage(PIN, base / "custom_nodes")
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "models" / "checkpoints" / "tiny-sd15.safetensors").symlink_to(
        fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors")
    stub = real_packs.torchvision_stub()
    next(stub)
    runtime = build_runtime(base, cpu=True)
    env, reports = real_packs.load_packs(runtime, base)
    try:
        yield runtime, reports[0]
    finally:
        real_packs.unload_packs(env)
        next(stub, None)
        runtime.close()


def _run(runtime: Any, graph: dict[str, Any], out: str, *more: str) -> Any:
    """The value of output 0 of node `out` (a tuple with those of `more`) after running `graph` (validated as a
    prompt)."""
    from executor import PromptExecutor, validate_prompt

    class Sink:
        CATEGORY = "test"
        RETURN_TYPES = ()
        OUTPUT_NODE = True
        FUNCTION = "take"
        seen: dict[str, Any] = {}

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("*", {})}, "hidden": {"node_id": "UNIQUE_ID"}}

        def take(self, value: Any, node_id: str) -> dict[str, Any]:
            Sink.seen[node_id] = value
            return {"ui": {}}

    if "TestSink" not in runtime.registry:
        runtime.registry.register("TestSink", Sink, source="test")
    sink_cls: Any = runtime.registry.get("TestSink")
    sink_cls.seen.clear()
    prompt = {**graph, **{f"sink:{node}": {"class_type": "TestSink", "inputs": {"value": [node, 0]}}
                          for node in (out, *more)}}
    valid = validate_prompt(runtime.registry, prompt)
    outcome = PromptExecutor(runtime.registry).execute(valid.prompt, "p", {}, valid.outputs)
    assert outcome.error is None, outcome.error
    values = tuple(sink_cls.seen[f"sink:{node}"] for node in (out, *more))
    return values if more else values[0]


def _normal_sigmas(table: np.ndarray, steps: int, timestep_of_index: Any = None) -> list[float]:
    """ComfyUI's "normal" scheduler over a sigma table, computed here from its definition (log-linear
    interpolation between table entries at evenly spaced timesteps, then a trailing 0)."""
    log_table = np.log(table)
    positions = np.linspace(len(table) - 1, 0, steps)
    values = [float(np.exp(np.interp(p, np.arange(len(table)), log_table))) for p in positions]
    return values + [0.0]


def test_every_node_registers(ade: Any) -> None:
    runtime, report = ade
    assert report.status == "loaded", (report.error, report.refused)
    mappings = sys.modules["custom_nodes.ComfyUI_AnimateDiff_Evolved"].NODE_CLASS_MAPPINGS
    assert len(report.nodes) == len(mappings) == 145
    assert all(runtime.registry.get(node_id) is not None for node_id in mappings)


def test_sigma_schedules_match_their_beta_schedules(ade: Any) -> None:
    runtime, _ = ade
    betas = {"sqrt_linear (AnimateDiff)": np.linspace(0.00085, 0.012, 1000),
             "linear (HotshotXL/default)": np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2}
    for alias, beta in betas.items():
        alphas_cumprod = np.cumprod(1.0 - beta)
        table = np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod)
        graph = {"s": {"class_type": "ADE_SigmaSchedule", "inputs": {"beta_schedule": alias}},
                 "t": {"class_type": "ADE_SigmaScheduleToSigmas",
                       "inputs": {"sigma_schedule": ["s", 0], "scheduler": "normal", "steps": 4, "denoise": 1.0}}}
        got = _run(runtime, graph, "t")
        np.testing.assert_allclose(got.numpy(), _normal_sigmas(table, 4), rtol=1e-5, err_msg=alias)
    # the AnimateDiff schedule is not the SD one: its sigma_max is ~25.1 (SD's 14.6)
    assert float(_run(runtime, {"s": {"class_type": "ADE_SigmaSchedule",
                                      "inputs": {"beta_schedule": "sqrt_linear (AnimateDiff)"}},
                                "t": {"class_type": "ADE_SigmaScheduleToSigmas",
                                      "inputs": {"sigma_schedule": ["s", 0], "scheduler": "normal", "steps": 1,
                                                 "denoise": 1.0}}}, "t")[0]) == pytest.approx(25.1461, abs=1e-4)


def test_lcm_schedule_is_the_distilled_table(ade: Any) -> None:
    runtime, _ = ade
    beta = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    alphas_cumprod = np.cumprod(1.0 - beta)
    full = np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod)
    distilled = full[[999 - 20 * i for i in range(50)][::-1]]  # every 20th step of 1000, ending at the last
    graph = {"s": {"class_type": "ADE_SigmaSchedule", "inputs": {"beta_schedule": "lcm"}},
             "t": {"class_type": "ADE_SigmaScheduleToSigmas",
                   "inputs": {"sigma_schedule": ["s", 0], "scheduler": "normal", "steps": 4, "denoise": 1.0}}}
    np.testing.assert_allclose(_run(runtime, graph, "t").numpy(), _normal_sigmas(distilled, 4), rtol=1e-5)


def test_model_free_nodes(ade: Any) -> None:
    runtime, _ = ade
    floats = _run(runtime, {"v": {"class_type": "ADE_ValueScheduling",
                                  "inputs": {"values": "0 = 1.0, 4 = 3.0", "max_length": 6}}}, "v")
    assert floats == pytest.approx([1.0, 1.5, 2.0, 2.5, 3.0, 3.0])
    assert _run(runtime, {"m": {"class_type": "ADE_MultivalDynamic", "inputs": {"float_val": 0.5}}}, "m") == 0.5
    latent = _run(runtime, {"e": {"class_type": "ADE_EmptyLatentImageLarge",
                                  "inputs": {"width": 64, "height": 128, "batch_size": 3}}}, "e")
    assert tuple(latent["samples"].shape) == (3, 4, 16, 8)
    group = _run(runtime, {"c": {"class_type": "ADE_StandardUniformContextOptions",
                                 "inputs": {"context_length": 16, "context_stride": 1, "context_overlap": 4,
                                            "fuse_method": "pyramid", "use_on_equal_length": False,
                                            "start_percent": 0.0, "guarantee_steps": 1}}}, "c")
    options = group.contexts[0]
    assert (options.context_length, options.context_overlap, options.fuse_method) == (16, 4, "pyramid")


def test_comfy_hooks_keyframes_as_comfyui_builds_them(ade: Any) -> None:
    import comfy.hooks

    from engine.hooks import HookKeyframes

    group = comfy.hooks.HookKeyframeGroup()
    group.add(comfy.hooks.HookKeyframe(strength=0.5, start_percent=0.6))
    group.add(comfy.hooks.HookKeyframe(strength=1.0, start_percent=0.1))
    copy = group.clone()
    copy.add(comfy.hooks.HookKeyframe(strength=0.0, start_percent=0.9))
    assert isinstance(group, HookKeyframes)
    assert [k.start_percent for k in group.keyframes] == [0.1, 0.6]
    assert [k.start_percent for k in copy.keyframes] == [0.1, 0.6, 0.9]


def test_model_sampling_built_from_a_config_samples(ade: Any, tiny: tuple[Any, Any, Any]) -> None:
    """A `comfy.model_base.model_sampling` schedule put on a MODEL (as the pack's beta_schedule option does) is
    the one the sampler runs: the result differs from the checkpoint's own schedule and matches Loom's own
    schedule object when the settings are the checkpoint's."""
    import comfy.model_base

    from engine.sampling.ksampler import sample as ksample

    model, positive, negative = tiny

    class Config:
        def __init__(self, beta_schedule: str) -> None:
            self.sampling_settings = {"beta_schedule": beta_schedule}

    assert model.model.model_type is comfy.model_base.ModelType.EPS
    latent = torch.zeros(1, 4, 8, 8)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(3))

    def run(sampling: Any) -> torch.Tensor:
        patched = model.clone()
        if sampling is not None:
            patched.add_object_patch("model_sampling", sampling)
        out: torch.Tensor = ksample(patched, noise, 3, 4.0, "euler", "normal", positive, negative, latent, seed=3)
        return out

    base = run(None)
    same = run(comfy.model_base.model_sampling(Config("linear"), comfy.model_base.ModelType.EPS))
    other = run(comfy.model_base.model_sampling(Config("sqrt_linear"), comfy.model_base.ModelType.EPS))
    torch.testing.assert_close(same, base)
    assert (other - base).abs().max() > 1e-3
    with pytest.raises(NotImplementedError, match="FLUX"):
        comfy.model_base.model_sampling(Config("linear"), comfy.model_base.ModelType.FLUX)


def _sampling_graph(model: list[Any], cfg: float = 4.0, extra: dict[str, Any] | None = None,
                    frames: int = 4) -> dict[str, Any]:
    """KSampler over `frames` frames of the tiny SD1.5 checkpoint (context windows of 4), its MODEL from `model`."""
    graph: dict[str, Any] = {
        "ck": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
        "p": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ck", 1], "text": "a red circle"}},
        "n": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ck", 1], "text": ""}},
        "c": {"class_type": "ADE_StandardUniformContextOptions",
              "inputs": {"context_length": 4, "context_stride": 1, "context_overlap": 2, "fuse_method": "pyramid",
                         "use_on_equal_length": False, "start_percent": 0.0, "guarantee_steps": 1}},
        "e": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": frames}},
        "k": {"class_type": "KSampler",
              "inputs": {"model": model, "positive": ["p", 0], "negative": ["n", 0], "latent_image": ["e", 0],
                         "seed": 1, "steps": 3, "cfg": cfg, "sampler_name": "euler", "scheduler": "normal",
                         "denoise": 1.0}},
    }
    graph.update(extra or {})
    return graph


def _evolved(beta_schedule: str = "autoselect", **settings: Any) -> dict[str, Any]:
    """ADE_UseEvolvedSampling (context options, optional sample settings) on the checkpoint's MODEL."""
    inputs: dict[str, Any] = {"model": ["ck", 0], "beta_schedule": beta_schedule, "context_options": ["c", 0]}
    nodes: dict[str, Any] = {"u": {"class_type": "ADE_UseEvolvedSampling", "inputs": inputs}}
    if settings:
        nodes["ss"] = {"class_type": "ADE_AnimateDiffSamplingSettings",
                       "inputs": {"batch_offset": 0, "noise_type": "default", "seed_gen": "comfy", "seed_offset": 0,
                                  **settings}}
        inputs["sample_settings"] = ["ss", 0]
    return nodes


def test_evolved_sampling_runs_through_loom_sampler(ade: Any) -> None:
    """ADE_UseEvolvedSampling (outer_sample + calc_cond_batch wrappers, its own sampling_function, attachments)
    without a motion model samples exactly as KSampler; its sample settings act as in ComfyUI."""
    runtime, _ = ade
    plain = _run(runtime, _sampling_graph(["ck", 0]), "k")["samples"]
    evolved = _run(runtime, _sampling_graph(["u", 0], extra=_evolved()), "k")["samples"]
    assert torch.equal(evolved, plain)
    # custom CFG 2 on a KSampler at cfg 4 is KSampler at cfg 2
    custom = _sampling_graph(["u", 0], extra={**_evolved(custom_cfg=["cc", 0]),
                                              "cc": {"class_type": "ADE_CustomCFGSimple", "inputs": {"cfg": 2.0}}})
    torch.testing.assert_close(_run(runtime, custom, "k")["samples"],
                               _run(runtime, _sampling_graph(["ck", 0], cfg=2.0), "k")["samples"])
    # constant noise: every frame starts from the same noise, so every frame comes out the same
    constant = _run(runtime, _sampling_graph(["u", 0], extra=_evolved(noise_type="constant")), "k")["samples"]
    assert torch.equal(constant[0], constant[3]) and not torch.equal(plain[0], plain[3])
    # AnimateDiff's beta schedule on the model (add_object_patch) or as a sample setting gives the same run
    by_model = _run(runtime, _sampling_graph(["u", 0], extra=_evolved("sqrt_linear (AnimateDiff)")), "k")["samples"]
    by_setting = _run(runtime, _sampling_graph(["u", 0], extra={
        **_evolved(sigma_schedule=["sg", 0]),
        "sg": {"class_type": "ADE_SigmaSchedule", "inputs": {"beta_schedule": "sqrt_linear (AnimateDiff)"}}}), "k")
    torch.testing.assert_close(by_model, by_setting["samples"])
    assert (by_model - plain).abs().max() > 1e-2


def _tiny_motion_model(seed: int, version: str = "v3") -> Any:
    """A motion model at the tiny UNet's widths (32 / 64 / 128 / 128 channels), built from the pack's own classes
    (`AnimateDiffModel`, `MotionModule`: ADE's key layout, `down_blocks.N.motion_modules.M.temporal_transformer...`)
    and wrapped by the pack's `create_MotionModelPatcher`. (The pack's loader fixes SD1.5's 320 / 640 / 1280 widths,
    so a file this small cannot go through ADE_LoadAnimateDiffModel.)"""
    package = "custom_nodes.ComfyUI_AnimateDiff_Evolved.animatediff"
    mm = sys.modules[f"{package}.motion_module_ad"]
    injection = sys.modules[f"{package}.model_injection"]
    sd_type = sys.modules[f"{package}.utils_model"].ModelTypeSD.SD1_5
    import comfy.ops

    info = mm.AnimateDiffInfo(sd_type=sd_type, mm_format=mm.AnimateDiffFormat.ANIMATEDIFF,
                              mm_version=getattr(mm.AnimateDiffVersion, version.upper()), mm_name="tiny")
    pe_key = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
    model = mm.AnimateDiffModel(mm_state_dict={pe_key: torch.zeros(1, 32, 32)}, mm_info=info)

    def blocks(widths: tuple[int, ...], kind: str) -> torch.nn.ModuleList:
        return torch.nn.ModuleList(
            [mm.MotionModule(c, temporal_pe=True, temporal_pe_max_len=32, block_type=kind, block_idx=i,
                             attention_block_types=("Temporal_Self", "Temporal_Self"),
                             ops=comfy.ops.disable_weight_init) for i, c in enumerate(widths)])

    torch.manual_seed(seed)
    model.down_blocks = blocks((32, 64, 128, 128), mm.BlockType.DOWN)
    model.up_blocks = blocks((128, 128, 64, 32), mm.BlockType.UP)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    assert "down_blocks.3.motion_modules.1.temporal_transformer.proj_out.weight" in model.state_dict()
    cpu = torch.device("cpu")
    return injection.create_MotionModelPatcher(model, load_device=cpu, offload_device=cpu)


def test_a_motion_module_is_injected_into_loom_unet_and_samples(ade: Any) -> None:
    """The pack's motion-model path on Loom's UNet: its patcher (`comfy.model_patcher.ModelPatcher` over the
    module), ADE_ApplyAnimateDiffModelSimple -> ADE_UseEvolvedSampling (additional models, injections, the
    forward_timestep_embed patch) -> KSampler: the temporal modules run on every model call and are taken out of the
    UNet after the run."""
    import comfy.model_patcher

    from engine.handles import ModelHandle

    runtime, _ = ade
    patcher = _tiny_motion_model(seed=5)
    assert isinstance(patcher, comfy.model_patcher.ModelPatcher) and not isinstance(patcher, ModelHandle)

    _register_motion_model(runtime, "TinyMotionModel", patcher)
    calls: list[tuple[int, ...]] = []
    first = patcher.model.down_blocks[0].motion_modules[0]
    hook = first.register_forward_hook(lambda module, args, out: calls.append(tuple(out.shape)))
    schedule = "sqrt_linear (AnimateDiff)"
    try:
        with_motion, evolved = _run(runtime, _sampling_graph(["u", 0], extra={
            **_evolved(schedule),
            "mm": {"class_type": "TinyMotionModel", "inputs": {}},
            "a": {"class_type": "ADE_ApplyAnimateDiffModelSimple", "inputs": {"motion_model": ["mm", 0]}}}
            | {"u": {"class_type": "ADE_UseEvolvedSampling",
                     "inputs": {"model": ["ck", 0], "beta_schedule": schedule, "context_options": ["c", 0],
                                "m_models": ["a", 0]}}}), "k", "u")
    finally:
        hook.remove()
    with_motion = with_motion["samples"]
    without = _run(runtime, _sampling_graph(["u", 0], extra=_evolved(schedule)), "k")["samples"]
    assert calls == [(8, 32, 8, 8)] * 3  # 3 steps, 4 frames x (positive, negative) in one batch
    assert (with_motion - without).abs().max() > 1e-2
    assert evolved.get_additional_models_with_key("ADE") and evolved.get_injections("ADE")
    unet = evolved.model.diffusion_model  # the UNet that sampled: ejected again after the run
    assert not any(first is module for module in unet.modules())
    assert "SpatialTransformer" in [type(layer).__name__ for block in unet.input_blocks for layer in block]


@pytest.mark.slow
def test_a_full_size_motion_module_file_loads_and_samples(ade: Any) -> None:
    """Real sizes, random weights (nothing downloaded; ~2.6 GB written to the test's folders, ~6 GB of memory):
    a motion module file in the pack's v3 layout at SD1.5's widths (418M parameters) through ADE_LoadAnimateDiffModel
    and a full-size SD1.5 UNet through UNETLoader; 4 frames sample, and the motion module changes the result."""
    from safetensors.torch import save_file

    from engine.networks.configs import UNetConfig
    from engine.networks.unet import UNetModel

    runtime, _ = ade
    package = "custom_nodes.ComfyUI_AnimateDiff_Evolved.animatediff"
    mm = sys.modules[f"{package}.motion_module_ad"]
    sd_type = sys.modules[f"{package}.utils_model"].ModelTypeSD.SD1_5
    info = mm.AnimateDiffInfo(sd_type=sd_type, mm_format=mm.AnimateDiffFormat.ANIMATEDIFF,
                              mm_version=mm.AnimateDiffVersion.V3, mm_name="generated")
    prefix = "motion_modules.0.temporal_transformer"
    layout = {f"{kind}_blocks.{i}.{prefix}.norm.weight": torch.zeros(1) for kind in ("down", "up") for i in (0, 3)}
    layout[f"down_blocks.0.{prefix}.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"] = torch.zeros(1, 32, 320)
    layout[f"down_blocks.0.{prefix}.transformer_blocks.0.attention_blocks.1.to_q.weight"] = torch.zeros(1)
    torch.manual_seed(0)
    motion = mm.AnimateDiffModel(mm_state_dict=layout, mm_info=info)
    for p in motion.parameters():
        torch.nn.init.normal_(p, std=0.02)  # the pack zero-inits proj_out: a module that changes nothing
    paths = runtime.services.paths
    mm_dir = Path(paths.get_folder_paths("animatediff_models")[0])
    mm_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in motion.state_dict().items()}, str(mm_dir / "generated.safetensors"))
    assert sum(p.numel() for p in motion.parameters()) > 400_000_000
    del motion
    unet = UNetModel(UNetConfig())  # SD1.5's
    unet_dir = Path(paths.get_folder_paths("diffusion_models")[0])
    unet_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in unet.state_dict().items()}, str(unet_dir / "sd15.safetensors"))
    del unet

    class Text:
        CATEGORY = "test"
        RETURN_TYPES = ("CONDITIONING",)
        FUNCTION = "give"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"seed": ("INT", {"default": 0})}}

        def give(self, seed: int) -> tuple[Any]:
            return ([[torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(seed)), {}]],)

    if "TestText768" not in runtime.registry:
        runtime.registry.register("TestText768", Text, source="test")
    graph = _sampling_graph(["u", 0], extra={
        "ck": {"class_type": "UNETLoader", "inputs": {"unet_name": "sd15.safetensors", "weight_dtype": "default"}},
        "p": {"class_type": "TestText768", "inputs": {"seed": 1}},
        "n": {"class_type": "TestText768", "inputs": {"seed": 2}},
        **_evolved("sqrt_linear (AnimateDiff)")})
    graph["k"]["inputs"]["steps"] = 2
    without = _run(runtime, graph, "k")["samples"]
    graph["l"] = {"class_type": "ADE_LoadAnimateDiffModel", "inputs": {"model_name": "generated.safetensors"}}
    graph["a"] = {"class_type": "ADE_ApplyAnimateDiffModelSimple", "inputs": {"motion_model": ["l", 0]}}
    graph["u"]["inputs"]["m_models"] = ["a", 0]
    with_motion = _run(runtime, graph, "k")["samples"]
    assert with_motion.shape == (4, 4, 8, 8) and bool(torch.isfinite(with_motion).all())
    assert (with_motion - without).abs().max() > 1e-2


def test_a_v1_motion_module_runs_with_the_frame_batched_group_norm(ade: Any) -> None:
    """AnimateDiff v1 modules run with the pack's group norm over all frames (a `diffusion_model` wrapper that
    swaps torch's GroupNorm.forward during each network call): same weights, other result than as v3; torch's
    GroupNorm is restored after the run."""
    runtime, _ = ade
    results = {}
    forward = torch.nn.GroupNorm.forward
    for version in ("v1", "v3"):
        patcher = _tiny_motion_model(seed=5, version=version)

        _register_motion_model(runtime, f"TinyMotionModel_{version}", patcher)
        graph = _sampling_graph(["u", 0], extra={
            "mm": {"class_type": f"TinyMotionModel_{version}", "inputs": {}},
            "a": {"class_type": "ADE_ApplyAnimateDiffModelSimple", "inputs": {"motion_model": ["mm", 0]}},
            "u": {"class_type": "ADE_UseEvolvedSampling",
                  "inputs": {"model": ["ck", 0], "beta_schedule": "sqrt_linear (AnimateDiff)",
                             "context_options": ["c", 0], "m_models": ["a", 0]}}})
        results[version] = _run(runtime, graph, "k")["samples"]
        assert torch.nn.GroupNorm.forward is forward
    assert bool(torch.isfinite(results["v1"]).all())
    assert (results["v1"] - results["v3"]).abs().max() > 1e-3


def test_sliding_context_windows_sample_with_a_motion_module(ade: Any) -> None:
    """More frames than the context length: the pack's sliding calc_cond_batch wrapper slices ComfyUI's cond dicts
    into windows of 4 frames and fuses the windows' predictions. Without a motion model every frame's prediction is
    its own, so the fused result is KSampler's; with one, the temporal modules run once per window."""
    runtime, _ = ade
    plain = _run(runtime, _sampling_graph(["ck", 0], frames=6), "k")["samples"]
    sliding = _run(runtime, _sampling_graph(["u", 0], extra=_evolved(), frames=6), "k")["samples"]
    torch.testing.assert_close(sliding, plain, rtol=1e-4, atol=1e-3)

    patcher = _tiny_motion_model(seed=5)

    _register_motion_model(runtime, "TinyMotionModelSliding", patcher)
    calls: list[tuple[int, ...]] = []
    hook = patcher.model.down_blocks[0].motion_modules[0].register_forward_hook(
        lambda module, args, out: calls.append(tuple(out.shape)))
    try:
        with_motion = _run(runtime, _sampling_graph(["u", 0], frames=6, extra={
            "mm": {"class_type": "TinyMotionModelSliding", "inputs": {}},
            "a": {"class_type": "ADE_ApplyAnimateDiffModelSimple", "inputs": {"motion_model": ["mm", 0]}},
            "u": {"class_type": "ADE_UseEvolvedSampling",
                  "inputs": {"model": ["ck", 0], "beta_schedule": "autoselect", "context_options": ["c", 0],
                             "m_models": ["a", 0]}}}), "k")["samples"]
    finally:
        hook.remove()
    assert with_motion.shape == (6, 4, 8, 8) and bool(torch.isfinite(with_motion).all())
    assert len(calls) > 3 and len(calls) % 3 == 0 and set(calls) == {(8, 32, 8, 8)}  # windows x 3 steps


def test_a_motion_lora_patches_the_module_while_it_samples(ade: Any) -> None:
    """ADE_AnimateDiffLoRALoader + ADE_ApplyAnimateDiffModelSimple: the LoRA (the pack's file layout) is a weight
    patch on the motion model's patcher, written into the module for the run and taken out after: the result is the
    run with the module's weight changed by hand."""
    from safetensors.torch import save_file

    runtime, _ = ade
    patcher = _tiny_motion_model(seed=7)
    attention = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0"
    generator = torch.Generator().manual_seed(3)
    down, up = torch.randn(2, 32, generator=generator) * 3.0, torch.randn(32, 2, generator=generator) * 3.0
    lora_dir = Path(runtime.services.paths.get_folder_paths("animatediff_motion_lora")[0])
    lora_dir.mkdir(parents=True, exist_ok=True)
    save_file({f"{attention}.processor.to_q_lora.down.weight": down, f"{attention}.processor.to_q_lora.up.weight": up},
              str(lora_dir / "tiny_motion_lora.safetensors"))

    _register_motion_model(runtime, "TinyMotionModelLora", patcher)

    def graph(lora: bool) -> dict[str, Any]:
        apply: dict[str, Any] = {"motion_model": ["mm", 0]}
        nodes: dict[str, Any] = {"mm": {"class_type": "TinyMotionModelLora", "inputs": {}},
                                 "a": {"class_type": "ADE_ApplyAnimateDiffModelSimple", "inputs": apply},
                                 "u": {"class_type": "ADE_UseEvolvedSampling",
                                       "inputs": {"model": ["ck", 0], "beta_schedule": "autoselect",
                                                  "context_options": ["c", 0], "m_models": ["a", 0]}}}
        if lora:
            nodes["lo"] = {"class_type": "ADE_AnimateDiffLoRALoader",
                           "inputs": {"name": "tiny_motion_lora.safetensors", "strength": 1.0}}
            apply["motion_lora"] = ["lo", 0]
        return _sampling_graph(["u", 0], extra=nodes)

    weight = patcher.model.down_blocks[0].motion_modules[0].temporal_transformer.transformer_blocks[0] \
        .attention_blocks[0].to_q.weight
    original = weight.detach().clone()
    with_lora = _run(runtime, graph(True), "k")["samples"]
    assert torch.equal(weight, original)
    try:
        weight.data.add_(up @ down)
        by_hand = _run(runtime, graph(False), "k")["samples"]
    finally:
        weight.data.copy_(original)
    plain = _run(runtime, graph(False), "k")["samples"]
    torch.testing.assert_close(with_lora, by_hand)
    assert (with_lora - plain).abs().max() > 1e-3
