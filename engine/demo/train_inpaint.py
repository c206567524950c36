"""`python -m engine.demo.train_inpaint`: fine-tune the demo model into a 9-channel inpainting UNet.

The UNet starts from the demo checkpoint's, with its input conv widened from 4 to 9 channels (the latent,
then the mask, then the masked-image latent, the order ComfyUI's InpaintModelConditioning feeds; the 5 new
input channels start at zero, so step 0 is the demo model exactly). The text encoder and VAE are the demo's,
frozen. Examples come from `engine.demo.inpaint_data`; the masked image is the target with the mask's
pixels set to 0.5 grey, encoded by the frozen VAE; the mask goes to latent size the way the sampler does
(bilinear, then rounded). Loss and noise are the demo's (eps, offset noise, min-SNR, extra high-noise
samples, 10% dropped captions). State lives in the work folder; rerunning the command resumes. The output
is the EMA UNet alone (`engine/demo/loom-demo-inpaint-unet.safetensors`, float16): the installer composes
the full checkpoint from it and the demo file (`engine.demo.export.compose_inpaint_checkpoint`).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine.demo.config import SD15_SCALE_FACTOR, InpaintTrainConfig
from engine.demo.export import ddpm_buffers, load_demo_networks, save_inpaint_unet
from engine.demo.files import DEMO_DIR, INPAINT_UNET
from engine.demo.inpaint_data import inpaint_batch
from engine.demo.text import CaptionTokenizer
from engine.demo.train import DEFAULT_OUT as DEMO_CHECKPOINT
from engine.demo.train import _logger, drop_captions, min_snr_loss, noised, resolve_device
from engine.demo.world import training_scenes

DEFAULT_LOG = DEMO_DIR / "training-inpaint.log"
DEFAULT_WORK = DEMO_DIR.parent.parent / "temp" / "demo-inpaint-train"


def grey_masked_pixels(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Pixels [N, 3, H, W] in -1..1 with round(mask) == 1 set to 0.5 grey (0 in -1..1)."""
    return images * (1.0 - masks.round())


def latent_mask(masks: torch.Tensor, latent_size: int) -> torch.Tensor:
    """[N, 1, H, W] pixel masks to latent size as the sampler does it: bilinear, then rounded."""
    return F.interpolate(masks, size=(latent_size, latent_size), mode="bilinear").round()


class InpaintTrainer:
    """The 9-channel UNet, its EMA and optimiser, the frozen demo text encoder / VAE and the example pool."""

    def __init__(self, cfg: InpaintTrainConfig, base: Path, work: Path, out: Path, log: Any) -> None:
        self.cfg, self.base, self.work, self.out, self.log = cfg, base, work, out, log
        self.device = resolve_device(cfg.device)
        self.unet, self.text, self.vae, self.spec = load_demo_networks(base, unet_in_channels=9)
        self.unet.to(self.device)
        self.text.to(self.device).requires_grad_(False).eval()
        self.vae.to(self.device).requires_grad_(False).eval()
        self.ema = copy.deepcopy(self.unet).requires_grad_(False)
        # the widened input conv (whose 5 new channels start at zero) learns faster than the rest
        first = self.unet.get_parameter("input_blocks.0.0.weight")
        rest = [p for p in self.unet.parameters() if p is not first]
        self.opt = torch.optim.AdamW([{"params": rest, "lr": cfg.lr, "weight_decay": 0.01},
                                      {"params": [first], "lr": cfg.lr * cfg.input_conv_lr_scale, "weight_decay": 0.0}],
                                     betas=(0.9, 0.99))
        self.tokenizer = CaptionTokenizer()
        self.empty_tokens = self.tokenizer([""])[0]
        self.alphas_cumprod = ddpm_buffers()["alphas_cumprod"]
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.pool: dict[str, torch.Tensor] = {}
        self.started = time.time()
        self.elapsed_before = 0.0

    # ---- state -------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def save_state(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        state = {"config": self.cfg.to_json(), "step": self.step, "unet": self.unet.state_dict(),
                 "ema": self.ema.state_dict(), "opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                 "elapsed": self.elapsed()}
        tmp = self.work / "state.tmp"
        torch.save(state, tmp)
        tmp.replace(self.work / "state.pt")

    def load_state(self) -> bool:
        path = self.work / "state.pt"
        if not path.exists():
            return False
        s = torch.load(path, weights_only=False, map_location="cpu")
        self.unet.load_state_dict(s["unet"])
        self.ema.load_state_dict(s["ema"])
        self.opt.load_state_dict(s["opt"])
        self.gen.set_state(s["gen"])
        self.step, self.elapsed_before = s["step"], s["elapsed"]
        self.log.info("resumed at step %d (%.1f min trained before)", self.step, self.elapsed_before / 60)
        return True

    # ---- examples ----------------------------------------------------------------------------
    @torch.no_grad()
    def build_pool(self) -> None:
        """Draw and encode `pool` examples (saved in the work folder: a resumed run reuses them)."""
        c = self.cfg
        path = self.work / "pool.pt"
        key = json.dumps([c.seed, c.pool, c.image_size, c.partial_mask_prob, c.distractor_prob,
                          c.short_caption_prob, c.free_mask_prob])
        if path.exists():
            saved = torch.load(path, map_location="cpu", weights_only=False)
            if saved.get("key") == key:
                self.pool = saved["pool"]
                return
        started = time.time()
        rng = np.random.default_rng(c.seed)
        images, masks, captions = inpaint_batch(training_scenes(), c.image_size, c.pool, rng,
                                                partial_prob=c.partial_mask_prob, distractor_prob=c.distractor_prob,
                                                short_caption_prob=c.short_caption_prob, free_prob=c.free_mask_prob)
        x0, masked = [], []
        for i in range(0, c.pool, 128):
            pixels = torch.from_numpy(images[i: i + 128]).permute(0, 3, 1, 2).to(self.device) * 2.0 - 1.0
            m = torch.from_numpy(masks[i: i + 128])[:, None].to(self.device)
            x0.append(self.vae.encode(pixels).cpu() * SD15_SCALE_FACTOR)
            masked.append(self.vae.encode(grey_masked_pixels(pixels, m)).cpu() * SD15_SCALE_FACTOR)
        latent = c.image_size // self.spec.vae.downscale
        self.pool = {"x0": torch.cat(x0), "masked": torch.cat(masked),
                     "mask": latent_mask(torch.from_numpy(masks)[:, None], latent),
                     "tokens": self.tokenizer(captions)}
        self.work.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "pool": self.pool}, path)
        self.log.info("pool of %d examples drawn and encoded in %.1f s", c.pool, time.time() - started)

    # ---- training ----------------------------------------------------------------------------
    def lr_factor(self) -> float:
        c = self.cfg
        if self.step < c.warmup_steps:
            return (self.step + 1) / c.warmup_steps
        progress = (self.step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def train_step(self) -> float:
        c = self.cfg
        idx = torch.randint(0, len(self.pool["x0"]), (c.batch,), generator=self.gen)
        x0 = self.pool["x0"][idx].to(self.device)
        concat = torch.cat([self.pool["mask"][idx], self.pool["masked"][idx]], dim=1).to(self.device)
        tokens = drop_captions(self.pool["tokens"][idx], c.empty_caption_prob, self.empty_tokens, self.gen)
        xt, t, noise, ac = noised(x0, self.alphas_cumprod, c.high_noise_fraction, c.high_noise_from,
                                  c.noise_offset, self.gen)
        with torch.no_grad():
            unique, inverse = torch.unique(tokens, dim=0, return_inverse=True)
            context = self.text(unique.to(self.device))[0][inverse.to(self.device)]
        eps = self.unet(torch.cat([xt, concat], dim=1), t.float().to(self.device), context)
        loss = min_snr_loss(eps, noise, ac, c.min_snr_gamma)
        for group, scale in zip(self.opt.param_groups, (1.0, c.input_conv_lr_scale), strict=True):
            group["lr"] = c.lr * scale * self.lr_factor()
        self.opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.opt.step()
        with torch.no_grad():
            decay = min(c.ema_decay, (1 + self.step) / (10 + self.step))
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.unet.parameters()), 1.0 - decay)
        return float(loss.item())

    def export(self) -> None:
        save_inpaint_unet(self.out, self.ema, self.spec, self.cfg.to_json(), self.step)
        self.log.info("wrote %s at step %d (%.1f MB)", self.out, self.step, self.out.stat().st_size / 1e6)

    def run(self) -> None:
        c = self.cfg
        self.build_pool()
        bar = tqdm(total=c.steps, initial=self.step, desc="inpaint", file=sys.stderr, mininterval=10.0)
        losses: list[float] = []
        t0 = time.time()
        while self.step < c.steps:
            if c.max_minutes > 0 and (time.time() - self.started) / 60 > c.max_minutes:
                self.log.info("stopped at step %d/%d: max_minutes=%.1f reached", self.step, c.steps, c.max_minutes)
                break
            losses.append(self.train_step())
            self.step += 1
            bar.update(1)
            if self.step % 10 == 0 or self.step == c.steps:
                self.log.info("step %d/%d loss %.5f (%.2f s/step, %.1f min total)", self.step, c.steps,
                              float(np.mean(losses)), (time.time() - t0) / len(losses), self.elapsed() / 60)
                losses, t0 = [], time.time()
            if self.step % c.checkpoint_every == 0:
                self.save_state()
            if self.step % c.export_every == 0:
                self.export()
        bar.close()
        self.save_state()
        self.export()
        self.log.info("done in %.1f min", self.elapsed() / 60)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: options as name=value (see InpaintTrainConfig), --base/--out/--work/--log paths."""
    parser = argparse.ArgumentParser(prog="python -m engine.demo.train_inpaint", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="InpaintTrainConfig fields as name=value")
    parser.add_argument("--base", type=Path, default=DEMO_CHECKPOINT, help="the demo checkpoint to start from")
    parser.add_argument("--out", type=Path, default=INPAINT_UNET)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="resumable state folder")
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG)
    parser.add_argument("--fresh", action="store_true", help="ignore saved state (the pool is kept if it fits)")
    parser.add_argument("--export-only", action="store_true", help="write the UNet file from the saved state")
    args = parser.parse_args(argv)
    cfg = InpaintTrainConfig.from_overrides(dict(item.split("=", 1) for item in args.overrides))
    torch.set_num_threads(cfg.threads)
    log = _logger(args.log, "engine.demo.train_inpaint")
    trainer = InpaintTrainer(cfg, args.base, args.work, args.out, log)
    resumed = not args.fresh and trainer.load_state()
    if args.export_only:
        if not resumed:
            raise SystemExit(f"no saved state in {args.work}; run the training first")
        trainer.export()
        return 0
    log.info("%s: %s", "config now" if resumed else "fine-tuning from " + str(args.base), cfg.to_json())
    trainer.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
