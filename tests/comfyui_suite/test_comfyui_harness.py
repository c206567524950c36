"""The harness's own pieces, without ComfyUI: test names, counts per cache setting, the server-start redirect."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from comfyui_run import REDIRECT, FileResult, base_name


def test_server_parameters_are_dropped_from_test_names() -> None:
    assert base_name("test_validation_error_literal[_server1-5-True]") == "test_validation_error_literal[5-True]"
    assert base_name("test_lazy_input[_server2]") == "test_lazy_input" == base_name("test_lazy_input[server0]")
    assert base_name("test_progress_with_missing_client_id") == "test_progress_with_missing_client_id"


def test_counts_per_cache_setting() -> None:
    result = FileResult(outcomes={"a[_server0]": "passed", "b[_server0]": "failure", "a[_server1]": "passed"},
                        settings={"a[_server0]": "no cache flag", "b[_server0]": "no cache flag",
                                  "a[_server1]": "--cache-lru 0"})
    assert result.counts() == {"no cache flag": (1, 2), "--cache-lru 0": (1, 1)}
    assert list(result.failed()) == ["b[_server0]"]


def test_redirect_sends_only_the_suites_server_start_to_loom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace: dict[str, Any] = {"__name__": "redirect_under_test"}
    started: list[list[str]] = []
    monkeypatch.setattr(subprocess, "Popen", lambda args, *a, **k: started.append(args))
    exec(compile(REDIRECT.read_text(), str(REDIRECT), "exec"), namespace)  # binds the patched Popen as _POPEN
    monkeypatch.setenv("LOOM_ROOT", "/loom")
    monkeypatch.chdir(tmp_path)
    namespace["_loom_popen"](["python", "main.py", "--port", "9", "--cache-lru", "100"])
    namespace["_loom_popen"](["git", "status"])
    assert namespace["_STARTED"] == [["--cache-lru", "100"]]
    assert namespace["cache_flags"](["--cpu", "--cache-none", "--listen", "x"]) == ["--cache-none"]
    (_, server, *flags), other = started
    assert server == "/loom/server.py" and flags[:4] == ["--port", "9", "--cache-lru", "100"]
    assert flags[4] == "--base-directory" and Path(flags[5]).parent == tmp_path
    assert (Path(flags[5]) / "custom_nodes").is_dir() and other == ["git", "status"]
