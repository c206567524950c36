"""`python -m app.packs install-requirements`: torch pinned, CUDA and torch replacements refused."""
from __future__ import annotations

import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from app import packs as app_packs
from app.packs import forbidden_reason, install_requirements, pinned_constraints

TORCH = metadata.version("torch")


def _item(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "version": version}}


class FakePip:
    """Resolves each requirement from a table (what pip's --report would say) and records installs."""

    def __init__(self, table: dict[str, list[tuple[str, str]]], unresolvable: Sequence[str] = ()) -> None:
        self.table = table
        self.unresolvable = set(unresolvable)
        self.installed: list[list[str]] = []
        self.constraints: list[str] = []

    def resolve(self, lines: Sequence[str], constraints: Path) -> dict[str, Any]:
        self.constraints = constraints.read_text().split()
        (line,) = lines
        if line in self.unresolvable:
            raise subprocess.CalledProcessError(1, "pip", stderr="ResolutionImpossible: torch==x conflicts")
        return {"install": [_item(n, v) for n, v in self.table[line]]}

    def install(self, lines: Sequence[str], constraints: Path) -> None:
        assert f"torch=={TORCH}" in constraints.read_text().split()
        self.installed.append(list(lines))


def _pack(tmp_path: Path, text: str) -> Path:
    pack = tmp_path / "some-pack"
    pack.mkdir()
    (pack / "requirements.txt").write_text(text)
    return pack


def test_accepted_lines_install_together_and_forbidden_ones_are_refused(tmp_path: Path) -> None:
    pack = _pack(tmp_path, "# comment\nmatplotlib>=3\nclip-interrogator\nfancy-gpu\ntorch==1.0\n"
                           "git+https://example.invalid/x.git\n--extra-index-url https://x\nneeds-new-torch\n")
    pip = FakePip({
        "matplotlib>=3": [("matplotlib", "3.9"), ("cycler", "0.12")],
        "clip-interrogator": [("clip-interrogator", "0.6"), ("torchvision", "0.1")],
        "fancy-gpu": [("fancy-gpu", "1.0"), ("nvidia-cublas-cu12", "12.1")],
    }, unresolvable=["needs-new-torch", "torch==1.0"])
    report = install_requirements(pack, resolver=pip.resolve, installer=pip.install)
    assert pip.installed == [["matplotlib>=3"]]
    assert report.installed == ["cycler==0.12", "matplotlib==3.9"]
    reasons = {r["requirement"]: r["reason"] for r in report.refused}
    assert set(reasons) == {"clip-interrogator", "fancy-gpu", "torch==1.0", "git+https://example.invalid/x.git",
                            "--extra-index-url https://x", "needs-new-torch"}
    assert "torchvision" in reasons["clip-interrogator"] and "CUDA" in reasons["fancy-gpu"]
    assert "direct URL" in reasons["git+https://example.invalid/x.git"]
    assert "cannot resolve" in reasons["needs-new-torch"] and "cannot resolve" in reasons["torch==1.0"]
    assert f"torch=={TORCH}" in pip.constraints


def test_dry_run_resolves_but_installs_nothing(tmp_path: Path) -> None:
    pip = FakePip({"simpleeval": [("simpleeval", "1.0")]})
    report = install_requirements(_pack(tmp_path, "simpleeval\n"), resolver=pip.resolve, installer=pip.install,
                                  dry_run=True)
    assert report.installed == ["simpleeval==1.0"] and report.dry_run and pip.installed == []


def test_rules() -> None:
    assert forbidden_reason("triton") and forbidden_reason("nvidia_cudnn_cu12")
    assert forbidden_reason("torch", "0.0.1") and forbidden_reason("torch", TORCH) is None
    assert forbidden_reason("numpy", "2.0") is None
    assert f"torch=={TORCH}" in pinned_constraints()


def test_cli_reports_a_pack_without_requirements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plain-pack").mkdir()
    assert app_packs.main(["install-requirements", "--custom-nodes", str(tmp_path), "plain-pack"]) == 0
    assert "plain-pack: no requirements.txt" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no pack folder"):
        app_packs.main(["install-requirements", "--custom-nodes", str(tmp_path), "missing-pack"])
