"""The executor package is the graph engine only: importing it must not import torch."""
from __future__ import annotations

import subprocess
import sys


def test_importing_executor_does_not_import_torch() -> None:
    code = "import sys, executor; assert 'torch' not in sys.modules, 'executor imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
