"""Catalogue example cases that need more models than tiny-sd15 (made by ComfyUI 0.3.64's own executor, copies in
tests/fixtures/catalogue/golden_models): the merge case (tiny-sd15-b, written at test time) and the save round trip
(tiny-sd15-lora). Each case runs through the built-in nodes with the harness of test_catalogue_goldens: its
``pre_graphs`` first; every file a pre-graph saved is checked against the case's ``saves`` (name, key set, dtypes,
shapes, metadata keys) and installed under its ``install_as`` name; then the main graph, whose latent must match to
1e-4 relative error and whose PNG to 2 levels (mean <= 0.01)."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from catalogue_models import LORA, SD15, write_sd15_b
from test_catalogue_goldens import TOL, run_graph, saved_png

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "catalogue" / "golden_models"
TINY = SD15.parent
CASES = sorted(p.stem.removeprefix("comfy__") for p in GOLDEN.glob("comfy__*.json"))
# Loom's own metadata entry, written only because the tiny text encoder has 2 heads (CLIP-L's standard is 12 and
# heads cannot be read from shapes): without it the file would not load back (engine.checkpoint_save)
LOOM_ONLY_METADATA = {"loom_config"}


@pytest.fixture(scope="module")
def models_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("loom-models")
    ck = base / "models" / "checkpoints"
    ck.mkdir(parents=True)
    shutil.copyfile(SD15, ck / SD15.name)
    write_sd15_b(ck / "tiny-sd15-b.safetensors")
    (base / "models" / "loras").mkdir(parents=True)
    shutil.copyfile(LORA, base / "models" / "loras" / LORA.name)
    (base / "input").mkdir()
    for name in ("init_128x64.png", "mask_128x64.png"):
        shutil.copyfile(TINY / name, base / "input" / name)
    return base


@pytest.fixture(scope="module")
def models_runtime(models_base: Path) -> Iterator[Any]:
    import torch

    from app.runner import build_runtime

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    rt = build_runtime(models_base, cpu=True)
    yield rt
    rt.close()
    torch.set_num_threads(threads)


def check_and_install(base: Path, save: dict[str, Any], pre_graph: dict[str, Any]) -> None:
    """The saved file is where ComfyUI writes it, with ComfyUI's tensors and metadata; install it for the graph."""
    from safetensors import safe_open

    from engine.safetensors_header import read_safetensors_header

    written = base / "output" / save["written_file"]
    assert written.is_file(), sorted(p.name for p in (base / "output").rglob("*"))
    header = read_safetensors_header(written)
    got = {k: [v.dtype, list(v.shape)] for k, v in header.tensors.items()}
    assert set(got) - set(save["keys"]) == set() and set(save["keys"]) - set(got) == set()
    assert got == save["keys"]
    assert len(got) == save["n_keys"]
    assert set(header.metadata) == set(save["metadata_keys"]) | LOOM_ONLY_METADATA
    assert json.loads(header.metadata["prompt"]) == pre_graph
    assert header.metadata["modelspec.predict_key"] == "epsilon"
    with safe_open(str(written), "pt") as f:  # readable by the reference reader, not only by Loom's header parser
        assert len(list(f.keys())) == save["n_keys"]
    target = base / "models" / save["folder"] / save["install_as"]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(written, target)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_catalogue_model_case_reproduces(models_runtime: Any, models_base: Path, rel_err: Any, case: str) -> None:
    meta = json.loads((GOLDEN / f"comfy__{case}.json").read_text())
    for pre_graph in meta.get("pre_graphs") or []:
        run_graph(models_runtime, pre_graph)
    for save in meta.get("saves") or []:
        check_and_install(models_base, save, meta["pre_graphs"][0])
    outcome = run_graph(models_runtime, meta["graph"])
    latent = outcome.values["5"][0][0]["samples"].numpy()
    assert rel_err(latent, np.load(GOLDEN / f"comfy__{case}.latent.npy")) <= TOL
    got = saved_png(models_base, outcome, "7").astype(np.int16)
    want = np.load(GOLDEN / f"comfy__{case}.out7.npy")[0].astype(np.int16)
    diff = np.abs(got - want)
    assert diff.max() <= 2 and diff.mean() <= 0.01, (int(diff.max()), float(diff.mean()))
