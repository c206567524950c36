"""The example workflows run end to end on the tiny checkpoint; caching; run-time errors name node and input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.demo_install import copy_example_inputs
from app.runner import apply_overrides, run_graph
from engine.png import read_graphs

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
FAST = ["KSampler.steps=2", "4.ckpt_name=tiny-sd15.safetensors"]


@pytest.fixture(scope="module")
def rt(runtime: Any, loom_base: Path) -> Any:
    copy_example_inputs(loom_base / "input", WORKFLOWS / "inputs")
    return runtime


def load(name: str, *sets: str) -> dict[str, Any]:
    return apply_overrides(json.loads((WORKFLOWS / f"{name}.json").read_text()), [*FAST, *sets])


@pytest.mark.parametrize("name", ["txt2img", "img2img", "inpaint", "inpaint_model"])
def test_example_workflow_runs(rt: Any, name: str) -> None:
    ui = json.loads((WORKFLOWS / f"{name}.ui.json").read_text())
    result = run_graph(rt, load(name), ui)
    assert result.status == "success", result.error
    (png,) = result.files
    assert png.is_file() and png.name.startswith(f"loom_{name}_")
    with Image.open(png) as img:
        assert img.size == (128, 128)  # the demo model's native size
        pixels = list(img.getdata())
    assert len(set(pixels)) > 1  # a decoded image, not a constant
    workflow, prompt = read_graphs(png)
    assert workflow == ui and prompt["3"]["inputs"]["steps"] == 2


def test_seed_change_reexecutes_only_sampler_decode_save(rt: Any) -> None:
    from executor import PromptExecutor, validate_prompt

    executor = PromptExecutor(rt.registry)
    first = validate_prompt(rt.registry, load("txt2img", "KSampler.seed=1"))
    out1 = executor.execute(first.prompt, "a", {}, first.outputs)
    assert out1.status == "success", out1.error
    assert set(out1.executed) == {"3", "4", "5", "6", "7", "8", "9"}
    second = validate_prompt(rt.registry, load("txt2img", "KSampler.seed=2"))
    out2 = executor.execute(second.prompt, "b", {}, second.outputs)
    assert out2.status == "success", out2.error
    assert sorted(out2.executed) == ["3", "8", "9"]
    again = executor.execute(second.prompt, "c", {}, second.outputs)
    assert again.executed == []


def _error(rt: Any, prompt: dict[str, Any]) -> str:
    result = run_graph(rt, prompt)
    assert result.status == "error"
    return str(result.error)


def test_wrong_image_format_names_node_input_and_file(rt: Any, loom_base: Path) -> None:
    (loom_base / "input" / "broken.png").write_bytes(b"GIF89a but not really")
    message = _error(rt, load("img2img", "10.image=broken.png"))
    assert "node 10" in message and "input 'image'" in message and "broken.png" in message


def test_missing_file_is_caught_by_validation(rt: Any) -> None:
    from app.runner import RunnerError

    with pytest.raises(RunnerError, match=r"node 10 \(LoadImage\).*gone\.png"):
        run_graph(rt, load("img2img", "10.image=gone.png"))


def test_missing_checkpoint_is_caught_by_validation(rt: Any) -> None:
    from app.runner import RunnerError

    with pytest.raises(RunnerError, match=r"node 4 \(CheckpointLoaderSimple\).*nope\.safetensors"):
        run_graph(rt, load("txt2img", "4.ckpt_name=nope.safetensors"))


def test_mask_size_mismatch_names_node_and_input(rt: Any, loom_base: Path) -> None:
    Image.new("L", (48, 96), 255).save(loom_base / "input" / "tall_mask.png")
    message = _error(rt, load("inpaint", "12.image=tall_mask.png"))
    assert "node 13" in message and "input 'mask'" in message and "48x96" in message
    message = _error(rt, load("inpaint_model", "12.image=tall_mask.png"))
    assert "node 14" in message and "input 'mask'" in message


def test_huge_size_is_refused_at_validation(rt: Any) -> None:
    from app.runner import RunnerError

    with pytest.raises(RunnerError, match=r"node 5 \(EmptyLatentImage\).*16384x16384"):
        run_graph(rt, load("txt2img", "5.width=16384", "5.height=16384"))


def test_png_metadata_round_trip_through_a_run(rt: Any, tmp_path: Path) -> None:
    from app.runner import load_prompt

    result = run_graph(rt, load("txt2img", "9.filename_prefix=meta/rt"),
                       json.loads((WORKFLOWS / "txt2img.ui.json").read_text()))
    png = result.files[0]
    assert png.parent.name == "meta"
    copy = tmp_path / "dragged.png"
    shutil.copyfile(png, copy)
    prompt, workflow = load_prompt(copy, rt.registry)
    assert prompt == result.prompt and workflow is not None and workflow["version"] == 0.4


def test_ksampler_reports_progress_previews_and_honours_interrupt(rt: Any) -> None:
    from executor import CollectingSink, InterruptFlag, PromptExecutor, validate_prompt

    rt.services.preview_method = "latent2rgb"
    try:
        valid = validate_prompt(rt.registry, load("txt2img", "KSampler.steps=3", "KSampler.seed=11"))
        sink = CollectingSink()
        outcome = PromptExecutor(rt.registry).execute(valid.prompt, "p", {}, valid.outputs, sink=sink)
        assert outcome.status == "success", outcome.error
        steps = [(d["value"], d["max"]) for e, d in sink.events if e == "progress" and d["node"] == "3"]
        assert steps == [(1, 3), (2, 3), (3, 3)]
        assert len(sink.previews) == 3 and sink.previews[0][1] == "3"
        assert sink.previews[0][2].size == (16, 16)  # latent-resolution latent2rgb preview (128 px image)
    finally:
        rt.services.preview_method = "none"

    class InterruptingSink(CollectingSink):
        def __init__(self, flag: InterruptFlag) -> None:
            super().__init__()
            self.flag = flag

        def emit(self, event: str, data: dict[str, Any]) -> None:
            super().emit(event, data)
            if event == "progress" and data["value"] == 1:
                self.flag.set()

    flag = InterruptFlag()
    valid = validate_prompt(rt.registry, load("txt2img", "KSampler.steps=3", "KSampler.seed=12"))
    sink = InterruptingSink(flag)
    outcome = PromptExecutor(rt.registry).execute(valid.prompt, "q", {}, valid.outputs, sink=sink,
                                                  interrupt=flag)
    assert outcome.status == "interrupted"
    assert [d["value"] for e, d in sink.events if e == "progress"] == [1]


def test_prompt_preview_method_overrides_the_server_default(rt: Any) -> None:
    from executor import CollectingSink, PromptExecutor, validate_prompt

    assert rt.services.preview_method == "none"
    valid = validate_prompt(rt.registry, load("txt2img", "KSampler.steps=2", "KSampler.seed=13"))
    sink = CollectingSink()
    outcome = PromptExecutor(rt.registry).execute(valid.prompt, "pm", {"preview_method": "latent2rgb"},
                                                  valid.outputs, sink=sink)
    assert outcome.status == "success", outcome.error
    assert len(sink.previews) == 2
    sink = CollectingSink()
    valid = validate_prompt(rt.registry, load("txt2img", "KSampler.steps=2", "KSampler.seed=14"))
    PromptExecutor(rt.registry).execute(valid.prompt, "pn", {}, valid.outputs, sink=sink)
    assert sink.previews == []


def test_split_loaders_match_checkpoint_loader(rt: Any, loom_base: Path) -> None:
    """UNETLoader + CLIPLoader + VAELoader on the same weights give exactly the checkpoint loader's latent."""
    from executor import PromptExecutor, validate_prompt

    src = loom_base / "models" / "checkpoints" / "tiny-sd15.safetensors"
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (loom_base / "models" / folder).mkdir(parents=True, exist_ok=True)
        target = loom_base / "models" / folder / "tiny-part.safetensors"
        if not target.exists():
            target.symlink_to(src)
    base = load("txt2img", "KSampler.seed=3")
    split = json.loads(json.dumps(base))
    split["20"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny-part.safetensors",
                                                          "weight_dtype": "default"}}
    split["21"] = {"class_type": "CLIPLoader", "inputs": {"clip_name": "tiny-part.safetensors",
                                                          "type": "stable_diffusion"}}
    split["22"] = {"class_type": "VAELoader", "inputs": {"vae_name": "tiny-part.safetensors"}}
    split["3"]["inputs"]["model"] = ["20", 0]
    for nid in ("6", "7"):
        split[nid]["inputs"]["clip"] = ["21", 0]
    split["8"]["inputs"]["vae"] = ["22", 0]
    del split["4"]
    results = []
    for prompt in (base, split):
        valid = validate_prompt(rt.registry, prompt)
        outcome = PromptExecutor(rt.registry, keep_values=True).execute(valid.prompt, "s", {}, valid.outputs)
        assert outcome.status == "success", outcome.error
        results.append((outcome.values["3"][0][0]["samples"], outcome.values["8"][0][0]))
    assert results[0][0].abs().max() > 0
    assert (results[0][0] - results[1][0]).abs().max() <= 1e-5 * results[0][0].abs().max()
    assert (results[0][1] - results[1][1]).abs().max() <= 1e-4
    vae_choices = rt.registry.get("VAELoader").INPUT_TYPES()["required"]["vae_name"][0]
    assert vae_choices[0] == "tiny-part.safetensors" and vae_choices[-1] == "pixel_space"


def test_broken_checkpoint_names_node_input_and_file(rt: Any, loom_base: Path) -> None:
    (loom_base / "models" / "checkpoints" / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}")
    message = _error(rt, load("txt2img", "4.ckpt_name=junk.safetensors"))
    assert "node 4" in message and "input 'ckpt_name'" in message and "junk.safetensors" in message
