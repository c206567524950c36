"""UpscaleModelLoader / ImageUpscaleWithModel: catalogue entries, node calls, and a graph on the real executor."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from engine.networks.upscalers import RRDBNet, SRVGGNetCompact
from nodes._base import NodeInputError


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_models(folder: Path) -> None:
    """x2 Real-ESRGAN RRDBNet (pixel-unshuffle input), x4 SRVGGNetCompact (.pth), an unknown layout."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    rrdb = RRDBNet(3, 3, num_feat=8, num_blocks=1, growth=4, upsamples=2, unshuffle=2)
    save_file({k: v.contiguous() for k, v in rrdb.state_dict().items()}, str(folder / "rrdb_x2.safetensors"))
    compact = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, upscale=4)
    torch.save(compact.state_dict(), folder / "compact_x4.pth")  # read through the weights-only pickle path
    save_file({"weird.weight": torch.zeros(2, 2)}, str(folder / "unknown.safetensors"))


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def test_catalogue_entries(registry: Any, services: Any) -> None:
    write_models(Path(services.paths.models_dir) / "upscale_models")
    info = registry.object_info()
    loader = info["UpscaleModelLoader"]
    assert loader["input"]["required"] == {"model_name": [["compact_x4.pth", "rrdb_x2.safetensors",
                                                          "unknown.safetensors"]]}
    assert loader["input_order"] == {"required": ["model_name"]}
    assert (loader["output"], loader["category"], loader["display_name"]) == (
        ["UPSCALE_MODEL"], "loaders", "Load Upscale Model")
    up = info["ImageUpscaleWithModel"]
    assert up["input"]["required"] == {"upscale_model": ["UPSCALE_MODEL"], "image": ["IMAGE"]}
    assert up["input_order"] == {"required": ["upscale_model", "image"]}
    assert (up["output"], up["category"], up["display_name"]) == (
        ["IMAGE"], "image/upscaling", "Upscale Image (using Model)")
    assert loader["python_module"] == up["python_module"] == "nodes" and not up["output_node"]


def test_nodes_upscale_and_errors_name_input_and_file(registry: Any, services: Any) -> None:
    write_models(Path(services.paths.models_dir) / "upscale_models")
    (model,) = call(registry, "UpscaleModelLoader", model_name="compact_x4.pth")
    assert (model.scale, model.architecture) == (4, "RealESRGAN-Compact")
    image = torch.rand(2, 9, 7, 3)
    (out,) = call(registry, "ImageUpscaleWithModel", upscale_model=model, image=image)
    assert out.shape == (2, 36, 28, 3) and out.dtype == torch.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    with pytest.raises(NodeInputError, match=r"UpscaleModelLoader.*'model_name'.*unknown\.safetensors.*weird"):
        call(registry, "UpscaleModelLoader", model_name="unknown.safetensors")
    with pytest.raises(NodeInputError, match=r"'model_name'.*gone\.pth.*upscale_models"):
        call(registry, "UpscaleModelLoader", model_name="gone.pth")
    with pytest.raises(NodeInputError, match=r"'image'.*\[B,H,W,C\]"):
        call(registry, "ImageUpscaleWithModel", upscale_model=model, image=torch.rand(9, 7, 3))
    with pytest.raises(NodeInputError, match=r"'upscale_model'"):
        call(registry, "ImageUpscaleWithModel", upscale_model="nope", image=image)


class RecordingSink:
    """Collects the executor's events (progress included)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event: str, data: dict[str, Any]) -> None:
        self.events.append((event, dict(data)))

    def preview(self, prompt_id: str, node_id: str, image: Any) -> None:
        return None


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from app.runner import build_runtime

    base = tmp_path_factory.mktemp("loom-upscale")
    write_models(base / "models" / "upscale_models")
    (base / "input").mkdir()
    rng = torch.Generator().manual_seed(3)
    pixels = (torch.rand(24, 40, 3, generator=rng) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels, "RGB").save(base / "input" / "small.png")
    rt = build_runtime(base, cpu=True)
    yield rt
    rt.close()


@pytest.mark.parametrize(("model_name", "scale"), [("rrdb_x2.safetensors", 2), ("compact_x4.pth", 4)])
def test_graph_load_upscale_save(runtime: Any, model_name: str, scale: int) -> None:
    from app.runner import run_graph

    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "small.png"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model_name}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": f"up{scale}"}},
    }
    sink = RecordingSink()
    result = run_graph(runtime, prompt, sink=sink)
    assert result.status == "success", result.error
    (png,) = result.files
    with Image.open(png) as img:
        assert img.size == (40 * scale, 24 * scale)
    progress = [d for e, d in sink.events if e == "progress" and str(d.get("node")) == "3"]
    assert progress and progress[-1]["value"] == progress[-1]["max"] == 1  # one 512 px tile covers the image


def test_graph_rejects_unknown_model_name(runtime: Any) -> None:
    from app.runner import RunnerError, run_graph

    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "small.png"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "missing.pth"}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }
    with pytest.raises(RunnerError, match=r"missing\.pth"):
        run_graph(runtime, prompt)
