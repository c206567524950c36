"""Fixtures for loading the fixture packs in `packs/` into a fresh registry, isolated per test."""
from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.compat._environment import CompatEnvironment, LoomHandles
from app.compat.prompt_server import PromptServer
from app.custom_nodes import PackReport, load_custom_nodes
from executor.registry import NodeRegistry

PACKS = Path(__file__).parent / "packs"


class CoreNode:
    """A pure-Python stand-in for a built-in node."""

    CATEGORY = "fixtures/core"
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("INT", {"default": 7})}}

    def run(self, value: int) -> tuple[int]:
        return (value,)


class PackLoader:
    """Copies fixture packs into a temporary custom_nodes/ folder and loads them."""

    def __init__(self, tmp_path: Path) -> None:
        self.base = tmp_path
        self.root = tmp_path / "custom_nodes"
        self.root.mkdir()
        self.registry = NodeRegistry()
        self.registry.register("CoreNode", CoreNode, display_name="Core Node", source="builtin")
        self.environment = CompatEnvironment(LoomHandles(registry=self.registry, base_dir=tmp_path))
        self.prompt_server: PromptServer | None = None

    def add(self, *names: str) -> None:
        for name in names:
            if name == "syntax_error_pack":  # generated: a fixture file with a syntax error would break linters
                (self.root / name).mkdir()
                (self.root / name / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {\ndef broken(:\n")
                continue
            src = PACKS / name
            if src.is_dir():
                shutil.copytree(src, self.root / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(src, self.root / name)

    def load(self, *names: str, **kwargs: object) -> dict[str, PackReport]:
        self.add(*names)
        server = self.prompt_server if self.prompt_server is not None else PromptServer(None, None, None)
        reports = load_custom_nodes(self.registry, [self.root], server, environment=self.environment,
                                    **kwargs)  # type: ignore[arg-type]
        return {r.name: r for r in reports}

    def cleanup(self) -> None:
        self.environment.uninstall()
        for name in [n for n in sys.modules if n == "custom_nodes" or n.startswith("custom_nodes.")]:
            del sys.modules[name]
        PromptServer.instance = None


@pytest.fixture
def packs(tmp_path: Path) -> Iterator[PackLoader]:
    loader = PackLoader(tmp_path)
    yield loader
    loader.cleanup()


@pytest.fixture
def load_packs(packs: PackLoader) -> Callable[..., dict[str, PackReport]]:
    return packs.load


@pytest.fixture(scope="module")
def tiny_sd15(fixtures_dir: Path) -> tuple[Any, Any]:
    """The tiny SD1.5 checkpoint's MODEL and CLIP handles (loaded once per test module)."""
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    model, clip, _ = load_checkpoint(fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors",
                                     ModelManager(DevicePolicy.detect(cpu_only=True)))
    assert clip is not None
    return model, clip


@pytest.fixture(scope="module")
def tiny(tiny_sd15: tuple[Any, Any]) -> tuple[Any, Any, Any]:
    """(MODEL, positive "a red circle", negative "") of the tiny SD1.5 checkpoint."""
    model, clip = tiny_sd15
    return model, clip.encode("a red circle"), clip.encode("")
