"""mypy over the strictly typed packages, so `./scripts/test` fails on a type error there.

pyproject.toml's [tool.mypy] overrides make executor, engine, nodes and app strict; STRICT_PACKAGES is what this
test checks: all four.
mypy keeps its cache in .mypy_cache (gitignored): a cold run takes about a minute, later runs a few seconds.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The one list of packages held to `mypy --strict` in CI (see pyproject.toml's [[tool.mypy.overrides]]).
STRICT_PACKAGES: tuple[str, ...] = ("executor", "engine", "nodes", "app")


def _mypy(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_mypy_is_installed() -> None:
    """mypy is a test dependency (pyproject's `test` extra); without it the strict check below cannot run."""
    result = _mypy("--version")
    assert result.returncode == 0, f"mypy is not installed for {sys.executable}: {result.stderr.strip()}"


def test_strict_packages_typecheck() -> None:
    """mypy with the project config reports no error in the strict packages."""
    result = _mypy("--config-file", "pyproject.toml", *STRICT_PACKAGES)
    assert result.returncode == 0, "mypy errors:\n" + result.stdout + result.stderr


def test_strict_config_applies_to_the_listed_packages(tmp_path: Path) -> None:
    """The pyproject overrides really are strict for each listed package: an untyped def is an error there."""
    for package in STRICT_PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "probe.py").write_text("def f(x):\n    return x\n")
    result = _mypy("--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / ".cache"),
                   *STRICT_PACKAGES, cwd=tmp_path)
    assert result.returncode == 1
    for package in STRICT_PACKAGES:
        assert f"{package}/probe.py:1: error: Function is missing a type annotation" in result.stdout, result.stdout
