"""engine.names (torch-free, read at server start) lists exactly engine.sampling's implemented names."""
from __future__ import annotations

import subprocess
import sys


def test_names_equal_engine_sampling() -> None:
    from engine import names, sampling

    assert names.SAMPLER_NAMES == sampling.SAMPLER_NAMES
    assert names.SCHEDULER_NAMES == sampling.SCHEDULER_NAMES


def test_names_and_node_options_need_no_torch() -> None:
    code = ("import sys; import engine.names; from nodes.sampling import sampler_names, scheduler_names; "
            "assert sampler_names() and scheduler_names(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
