"""`python -m app.bench_cli` on the tiny checkpoint: per-node table, it/s, runs, memory, device."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import bench_cli


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Path:
    import torch

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("models")
    (d / "checkpoints").mkdir()
    (d / "checkpoints" / "tiny-sd15.safetensors").symlink_to(fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors")
    return d


def _args(models_dir: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["--models", str(models_dir), "--base-directory", str(tmp_path), "--cpu",
            "--set", "4.ckpt_name=tiny-sd15.safetensors", "--set", "KSampler.steps=2", *extra]


def test_runs_default_txt2img_and_reports(models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    out_json = tmp_path / "bench.json"
    rc = bench_cli.main(_args(models_dir, tmp_path, "--runs", "2", "--json", str(out_json)))
    out = capsys.readouterr().out
    assert rc == 0
    assert "| 3 | KSampler | 2 |" in out  # the sampler ran in both runs (the seed changes)
    assert "| 4 | CheckpointLoaderSimple | 1 |" in out  # the loader only in the cold run
    assert "sampling: node 3 (KSampler):" in out and "it/s" in out
    assert "device: cpu" in out and "peak memory: RSS" in out
    data = json.loads(out_json.read_text())
    assert data["executed_per_run"] == [7, 3]
    assert len(data["run_seconds"]) == 2 and all(s > 0 for s in data["run_seconds"])
    assert data["peak_rss_bytes"] > 10 * 2**20
    assert not list((tmp_path / "output").glob("*.png")) if (tmp_path / "output").exists() else True


def test_same_seed_reruns_come_from_the_cache(models_dir: Path, tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    assert bench_cli.main(_args(models_dir, tmp_path, "--runs", "2", "--same-seed", "--json", str(out_json))) == 0
    assert json.loads(out_json.read_text())["executed_per_run"] == [7, 0]


def test_bad_override_is_a_usage_error(models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = bench_cli.main(_args(models_dir, tmp_path, "--set", "NoSuchNode.x=1"))
    assert rc == 2
    assert "NoSuchNode" in capsys.readouterr().err


def test_report_says_which_precision_ran_and_why(models_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from engine.precision import cpu_has_bf16

    out_json = tmp_path / "bench.json"
    assert bench_cli.main(_args(models_dir, tmp_path, "--runs", "1", "--json", str(out_json))) == 0
    out = capsys.readouterr().out
    assert "precision: unet fp32 [CPU default: fp32 gives ComfyUI's exact pixels]" in out
    assert bench_cli.main(_args(models_dir, tmp_path, "--runs", "1", "--bf16-unet", "--bf16-vae",
                                "--json", str(out_json))) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("precision:"))
    assert "unet fp32, weights bf16 (bf16 conv/linear, fp32 norms+attention) [--bf16-unet" in line
    assert "vae fp32, weights bf16" in line
    assert ("CPU has AVX512_BF16" if cpu_has_bf16() else "CPU lacks AVX512_BF16") in line
    assert json.loads(out_json.read_text())["precision"] == line.removeprefix("precision: ")


def test_unsupported_precision_flag_is_a_usage_error(models_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_cli.main(_args(models_dir, tmp_path, "--fp8_e5m2-text-enc")) == 2
    assert "not supported" in capsys.readouterr().err
