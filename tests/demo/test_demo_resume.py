"""A killed training run continues exactly where its last saved state left it."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from engine.demo.config import TrainConfig
from engine.demo.train import Trainer

CFG = TrainConfig(image_size=64, vae_crop_batch=2, vae_crop_size=16, vae_pool=64, latent_pool=64, unet_batch=4,
                  pool_refresh_every=2, unet_image_size=64)


def _trainer(work: Path) -> Trainer:
    return Trainer(CFG, work, work / "out.safetensors", logging.getLogger("test.demo.resume"))


def _steps(trainer: Trainer, vae: int, unet: int) -> None:
    for _ in range(vae):
        trainer.vae_step(CFG.vae_crop_batch, CFG.vae_crop_size)
        trainer.step += 1
    if unet:
        if trainer.pool.numel() == 0:
            trainer.vae.requires_grad_(False).eval()
            trainer.build_pool()
            trainer.step = 0
        for _ in range(unet):
            trainer.unet_step()
            trainer.step += 1


@pytest.mark.slow
def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    straight = _trainer(tmp_path / "a")
    _steps(straight, vae=2, unet=3)

    first = _trainer(tmp_path / "b")
    _steps(first, vae=2, unet=1)
    first.save_state()
    resumed = _trainer(tmp_path / "b")
    assert resumed.load_state()
    _steps(resumed, vae=0, unet=2)

    for name in ("vae", "unet", "text", "ema_unet"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}.{key} differs")
    # and training did change the weights
    fresh = _trainer(tmp_path / "c")
    changed = [k for k, v in fresh.unet.state_dict().items() if not torch.equal(v, straight.unet.state_dict()[k])]
    assert changed
