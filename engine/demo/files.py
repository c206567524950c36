"""Where the demo's shipped files live and the name the inpainting checkpoint is installed under."""
from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
INPAINT_UNET = DEMO_DIR / "loom-demo-inpaint-unet.safetensors"
"""The shipped 9-channel inpainting UNet alone (float16; `python -m engine.demo.train_inpaint` writes it)."""
INPAINT_CHECKPOINT_NAME = "loom-demo-shapes-inpainting.safetensors"
"""The full checkpoint the installer composes from the demo file and `INPAINT_UNET` (and the name
`workflows/inpaint_model.json` loads)."""
