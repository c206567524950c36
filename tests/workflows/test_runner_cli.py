"""`python -m app.runner run ...` end to end (in-process main()), and app.demo_install."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app import demo_install
from app.runner import RunnerError, apply_overrides, main
from engine.png import read_graphs

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def test_apply_overrides_targets_and_errors() -> None:
    prompt = json.loads((WORKFLOWS / "txt2img.json").read_text())
    out = apply_overrides(prompt, ["KSampler.seed=5", "3.steps=10", "Positive prompt.text=a.b c",
                                   "5.width=128"])
    assert out["3"]["inputs"]["seed"] == 5 and out["3"]["inputs"]["steps"] == 10
    assert out["6"]["inputs"]["text"] == "a.b c" and out["5"]["inputs"]["width"] == 128
    assert prompt["3"]["inputs"]["seed"] == 42  # the input is not modified
    with pytest.raises(RunnerError, match="no node with id, class or title 'Nope'"):
        apply_overrides(prompt, ["Nope.seed=1"])
    with pytest.raises(RunnerError, match="expected NODE.INPUT=VALUE"):
        apply_overrides(prompt, ["seed=1"])


def test_runner_cli_api_ui_and_png(loom_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    common = ["--base-directory", str(loom_base), "--out", str(out), "--cpu", "--no-progress",
              "--set", "4.ckpt_name=tiny-sd15.safetensors", "--set", "KSampler.steps=1"]
    assert main(["run", str(WORKFLOWS / "txt2img.json"), "--set", "KSampler.seed=5", "--set", "5.width=128",
                 *common]) == 0
    printed = capsys.readouterr()
    first = out / "loom_txt2img_00001_.png"
    assert str(first) in printed.out and "node 3 (KSampler)" in printed.err
    _, prompt = read_graphs(first)
    assert prompt["3"]["inputs"]["seed"] == 5 and prompt["5"]["inputs"]["width"] == 128
    assert main(["run", str(WORKFLOWS / "img2img.ui.json"), *common]) == 0
    workflow, _ = read_graphs(out / "loom_img2img_00001_.png")
    assert workflow == json.loads((WORKFLOWS / "img2img.ui.json").read_text())
    # a saved PNG runs again: its `prompt` chunk is executed, its `workflow` chunk carried into the new PNG
    assert main(["run", str(out / "loom_img2img_00001_.png"), *common]) == 0
    assert (out / "loom_img2img_00002_.png").is_file()


def test_runner_cli_usage_errors(loom_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--base-directory", str(loom_base), "--out", str(tmp_path), "--cpu"]
    assert main(["run", str(WORKFLOWS / "txt2img.json"), "--set", "Nope.x=1", *base]) == 2
    assert "no node with id" in capsys.readouterr().err
    assert main(["run", str(WORKFLOWS / "txt2img.json"), "--set", "KSampler.steps=0",
                 "--set", "4.ckpt_name=tiny-sd15.safetensors", *base]) == 2
    err = capsys.readouterr().err
    assert "node 3 (KSampler)" in err and "smaller than min" in err
    assert main(["run", str(tmp_path / "missing.json"), *base]) == 2


def test_runner_models_dir_and_demo_stand_in(tmp_path: Path, loom_base: Path) -> None:
    models = tmp_path / "elsewhere"
    (models / "checkpoints").mkdir(parents=True)
    shutil.copyfile(loom_base / "models" / "checkpoints" / "tiny-sd15.safetensors",
                    models / "checkpoints" / demo_install.STAND_IN_NAME)
    base = tmp_path / "base"
    base.mkdir()
    rc = main(["run", str(WORKFLOWS / "txt2img.json"), "--base-directory", str(base), "--models", str(models),
               "--out", str(tmp_path / "o"), "--cpu", "--no-progress", "--set", "KSampler.steps=1"])
    assert rc == 0 and (tmp_path / "o" / "loom_txt2img_00001_.png").is_file()


def test_demo_install(tmp_path: Path) -> None:
    fake_demo = tmp_path / "missing-demo.safetensors"
    stand_in = tmp_path / "stand_in.safetensors"
    stand_in.write_bytes(b"weights")
    result = demo_install.install_demo(tmp_path / "models", tmp_path / "input", demo_source=fake_demo,
                                       stand_in_source=stand_in)
    assert result.checkpoint == tmp_path / "models" / "checkpoints" / demo_install.STAND_IN_NAME
    assert {p.name for p in result.inputs} == {"loom_example_init.png", "loom_example_mask.png"}
    again = demo_install.install_demo(tmp_path / "models", tmp_path / "input", demo_source=fake_demo,
                                      stand_in_source=stand_in)
    assert again.checkpoint is None and "already holds a checkpoint" in str(again.skipped_reason)
    fake_demo.write_bytes(b"trained")
    fresh = demo_install.install_demo(tmp_path / "m2", None, demo_source=fake_demo, stand_in_source=stand_in,
                                      inpaint_unet_source=tmp_path / "no-inpaint-unet.safetensors")
    assert fresh.checkpoint is not None and fresh.checkpoint.name == demo_install.DEMO_NAME
    assert fresh.checkpoint.read_bytes() == b"trained"
