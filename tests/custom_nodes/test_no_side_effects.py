"""The ComfyUI view exists only once custom nodes are loaded; Loom's core never pulls it in."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import sys
import app.custom_nodes, app.loom, executor, nodes, server
from app.compat._environment import CompatFinder
assert not any(isinstance(f, CompatFinder) for f in sys.meta_path), "finder installed at import"
leaked = sorted(n for n in sys.modules if n.split('.')[0] in
                {'folder_paths', 'comfy', 'comfy_api', 'comfy_execution', 'node_helpers', 'latent_preview'})
assert not leaked, leaked
assert not hasattr(sys.modules['nodes'], 'NODE_CLASS_MAPPINGS'), "nodes proxy installed at import"
try:
    import folder_paths
except ImportError:
    pass
else:
    raise AssertionError('folder_paths importable without load_custom_nodes')
"""


def test_importing_loom_installs_no_comfyui_modules() -> None:
    subprocess.run([sys.executable, "-c", CODE], check=True, cwd=ROOT)
