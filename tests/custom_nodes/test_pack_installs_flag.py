"""`--allow-pack-installs`: installs a pack runs while it is imported are blocked unless the flag is given."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.compat._pip_guard import block_installs
from app.config import parse_args


def _fake_pip(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "ran"
    pip = tmp_path / "pip"
    pip.write_text(f"#!/bin/sh\necho \"$@\" > {marker}\n")
    pip.chmod(0o755)
    return pip, marker


def test_installs_are_blocked_by_default(tmp_path: Path) -> None:
    pip, marker = _fake_pip(tmp_path)
    record: list[str] = []
    with block_installs(record):
        result = subprocess.run([str(pip), "install", "somepkg"])
    assert result.returncode == 1 and not marker.exists()
    assert record == [f"{pip} install somepkg"]


def test_allow_runs_them_and_still_records(tmp_path: Path) -> None:
    pip, marker = _fake_pip(tmp_path)
    record: list[str] = []
    with block_installs(record, allow=True):
        result = subprocess.run([str(pip), "install", "somepkg"])
    assert result.returncode == 0 and marker.read_text().strip() == "install somepkg"
    assert record == [f"{pip} install somepkg"]


def test_the_flag_reaches_the_config() -> None:
    assert parse_args([]).allow_pack_installs is False
    assert parse_args(["--allow-pack-installs"]).allow_pack_installs is True


def test_loader_blocks_by_default(packs) -> None:
    report = packs.load("fake_pip_pack")["fake_pip_pack"]
    assert report.status == "loaded" and len(report.pip_attempts) == 1
    assert sys.modules["custom_nodes.fake_pip_pack"].RESULT.returncode == 1
    assert any("install-requirements" in w and "--allow-pack-installs" in w for w in report.warnings)


def test_loader_reads_the_flag_from_the_config(packs, tmp_path: Path) -> None:
    packs.environment.handles.config = parse_args(["--allow-pack-installs", "--base-directory", str(tmp_path)])
    report = packs.load("fake_pip_pack")["fake_pip_pack"]
    assert sys.modules["custom_nodes.fake_pip_pack"].RESULT.stdout.strip() == "installed install somepkg"
    assert len(report.pip_attempts) == 1
    assert any("allowed by --allow-pack-installs" in w for w in report.warnings)
