"""`python -m engine.demo.train`: train the demo model from scratch and write its checkpoint.

Phase 1 trains the VAE on drawn images (crops, then whole images); its latent spread is measured and
folded into quant_conv / post_quant_conv so that SD1.5's 0.18215 scale gives unit-variance latents.
Phase 2 trains UNet + text encoder on latents of the frozen VAE (10% empty captions for CFG, min-SNR
weighting, EMA). State is saved every few steps to the work folder; rerunning the command resumes.
"""
from __future__ import annotations

import argparse
import copy
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from engine.demo.config import SD15_SCALE_FACTOR, ModelSpec, TrainConfig
from engine.demo.draw import random_batch
from engine.demo.export import ddpm_buffers, fold_latent_scale, save_checkpoint
from engine.demo.monitor import generate
from engine.demo.score import read_image, score_table
from engine.demo.text import CaptionTokenizer
from engine.demo.world import scoring_scenes, training_scenes
from engine.networks.text_encoders import ClipTextEncoder
from engine.networks.unet import UNetModel
from engine.networks.vae import AutoencoderKL

DEMO_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = DEMO_DIR / "loom-demo-shapes.safetensors"
DEFAULT_LOG = DEMO_DIR / "training.log"
DEFAULT_WORK = DEMO_DIR.parent.parent / "temp" / "demo-train"
PHASES = ("vae_crop", "vae_full", "fold", "pool", "unet", "done")


def _to_pixels(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2) * 2.0 - 1.0


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when there is one, else cpu; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _draw_chunk(args: tuple[int, int, int, int]) -> tuple[np.ndarray, list[str]]:
    seed, chunk, size, count = args
    torch.set_num_threads(1)
    return random_batch(training_scenes(), size, count, np.random.default_rng([seed, chunk]))


def draw_many(seed: int, first_chunk: int, chunks: int, size: int, per_chunk: int,
              workers: int) -> tuple[np.ndarray, list[str]]:
    """`chunks` x `per_chunk` drawn scenes; chunk i is seeded by (seed, i), so any worker count gives
    the same images."""
    jobs = [(seed, first_chunk + i, size, per_chunk) for i in range(chunks)]
    if workers > 1 and chunks > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(min(workers, chunks)) as pool:
            parts = pool.map(_draw_chunk, jobs)
    else:
        parts = [_draw_chunk(job) for job in jobs]
    return np.concatenate([p[0] for p in parts]), [c for p in parts for c in p[1]]


def _random_crop(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    if size >= x.shape[-1]:
        return x
    out = []
    for img in x:
        top, left = (int(v) for v in torch.randint(0, x.shape[-1] - size + 1, (2,), generator=gen))
        out.append(img[:, top: top + size, left: left + size])
    return torch.stack(out)


def drop_captions(tokens: torch.Tensor, prob: float, empty_tokens: torch.Tensor,
                  gen: torch.Generator) -> torch.Tensor:
    """A copy of `tokens` with a fraction `prob` of rows dropped for classifier-free guidance.

    Half of the dropped captions become a few out-of-world words instead of "", so that a negative
    prompt the demo never learned ("blurry") also reads as "no condition" under CFG.
    """
    tokens = tokens.clone()
    drop = torch.rand(len(tokens), generator=gen) < prob
    tokens[drop] = empty_tokens
    for row in torch.nonzero(drop).flatten()[::2].tolist():
        count = int(torch.randint(1, 4, (1,), generator=gen))
        words = torch.randint(0, 49406, (count,), generator=gen)
        tokens[row, 1: 1 + count] = words
    return tokens


def noised(x0: torch.Tensor, alphas_cumprod: torch.Tensor, high_fraction: float, high_from: int,
           noise_offset: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The demo's noise recipe: (x_t, t, noise, alpha_bar_t) for clean scaled latents `x0`."""
    batch = x0.shape[0]
    t = torch.randint(0, 1000, (batch,), generator=gen)
    # Extra samples at the highest noise levels: there an eps model must copy its input almost exactly
    # (x0 error = eps error * sigma, sigma up to 14.6), and samplers start from there.
    high = torch.rand(batch, generator=gen) < high_fraction
    t = torch.where(high, torch.randint(high_from, 1000, (batch,), generator=gen), t)
    ac = alphas_cumprod[t][:, None, None, None].to(x0.device)
    noise = torch.randn(x0.shape, generator=gen)
    if noise_offset > 0:
        # Offset noise: a per-image, per-channel constant. Backgrounds are the latent's mean; without it,
        # the mean of x_t at high noise still leaks the background (16x16 latents average the noise down
        # only 16x), the model learns to copy it from the input instead of reading it from the caption,
        # and from a sampler's pure noise it then paints a random background.
        noise = noise + noise_offset * torch.randn(x0.shape[0], x0.shape[1], 1, 1, generator=gen)
    noise = noise.to(x0.device)
    return ac.sqrt() * x0 + (1.0 - ac).sqrt() * noise, t, noise, ac


def min_snr_loss(eps: torch.Tensor, noise: torch.Tensor, ac: torch.Tensor, gamma: float) -> torch.Tensor:
    """Eps MSE per image, weighted min(SNR, gamma) / SNR."""
    snr = (ac / (1.0 - ac)).flatten()
    weight = torch.clamp(snr, max=gamma) / snr
    return (weight * ((eps - noise) ** 2).mean(dim=(1, 2, 3))).mean()


class Trainer:
    """Owns the networks, optimisers and RNG streams of one training run; resumable from its work folder."""

    def __init__(self, cfg: TrainConfig, work: Path, out: Path, log: logging.Logger) -> None:
        self.cfg, self.work, self.out, self.log = cfg, work, out, log
        self.spec = ModelSpec()
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        # built on the CPU from the seed, then moved: the initial weights do not depend on the device
        self.vae = AutoencoderKL(self.spec.vae).to(self.device)
        self.unet = UNetModel(self.spec.unet).to(self.device)
        self.text = ClipTextEncoder(self.spec.clip).to(self.device)
        self.text.transformer.train()
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self.ema_unet = copy.deepcopy(self.unet).requires_grad_(False)
        self.ema_text = copy.deepcopy(self.text).requires_grad_(False)
        self.tokenizer = CaptionTokenizer()
        self.scenes = training_scenes()
        self.np_rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), lr=cfg.vae_lr, betas=(0.9, 0.99),
                                         weight_decay=0.0)
        self.unet_opt = torch.optim.AdamW([
            {"params": list(self.unet.parameters()), "lr": cfg.unet_lr, "weight_decay": 0.01},
            {"params": list(self.text.parameters()), "lr": cfg.text_lr, "weight_decay": 0.0},
        ], betas=(0.9, 0.99))
        self.phase, self.step = PHASES[0], 0
        self.pool = torch.zeros(0)
        self.pool_tokens = torch.zeros(0, dtype=torch.long)
        self.pool_cursor = 0
        self.alphas_cumprod = ddpm_buffers()["alphas_cumprod"]
        self.pool_chunks = 0
        self.unet_final_step = 0
        self.vae_images: torch.Tensor | None = None
        self.empty_tokens = self.tokenizer([""])[0]
        self.started = time.time()
        self.elapsed_before = 0.0

    # ---- state -------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.work / "state.pt"

    def save_state(self) -> None:
        """Everything needed to continue exactly where this run stands."""
        self.work.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "config": self.cfg.to_json(), "phase": self.phase, "step": self.step,
            "vae": self.vae.state_dict(), "unet": self.unet.state_dict(), "text": self.text.state_dict(),
            "ema_unet": self.ema_unet.state_dict(), "ema_text": self.ema_text.state_dict(),
            "vae_opt": self.vae_opt.state_dict(), "unet_opt": self.unet_opt.state_dict(),
            "unet_opt_names": self._opt_names(),
            "np_rng": self.np_rng.bit_generator.state, "gen": self.gen.get_state(),
            "pool": self.pool.cpu(), "pool_tokens": self.pool_tokens, "pool_cursor": self.pool_cursor,
            "pool_chunks": self.pool_chunks, "unet_final_step": self.unet_final_step,
            "elapsed": self.elapsed(),
        }
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.state_path)

    def load_state(self) -> bool:
        """Resume from the work folder; False when there is nothing to resume."""
        if not self.state_path.exists():
            return False
        s = torch.load(self.state_path, weights_only=False, map_location="cpu")
        for name in ("vae", "unet", "text", "ema_unet", "ema_text", "vae_opt"):
            getattr(self, name).load_state_dict(s[name])
        self.unet_opt.load_state_dict(self._reorder_opt(s["unet_opt"], s.get("unet_opt_names")))
        self.phase, self.step = s["phase"], s["step"]
        self.np_rng.bit_generator.state = s["np_rng"]
        self.gen.set_state(s["gen"])
        self.pool, self.pool_tokens, self.pool_cursor = s["pool"].to(self.device), s["pool_tokens"], s["pool_cursor"]
        self.pool_chunks = s.get("pool_chunks", 0)
        self.unet_final_step = s.get("unet_final_step", 0)
        if self.phase == "done" and 0 < self.unet_final_step < self.cfg.unet_steps:
            # a finished (or time-limited) run asked for more UNet steps: continue the UNet phase
            self.phase, self.step = "unet", self.unet_final_step
        self.elapsed_before = s["elapsed"]
        self.log.info("resumed at phase %s step %d (%.1f min trained before)", self.phase, self.step,
                      self.elapsed_before / 60)
        return True

    def _opt_names(self) -> list[str]:
        return [n for n, _ in self.unet.named_parameters()] + [n for n, _ in self.text.named_parameters()]

    def _reorder_opt(self, state: dict[str, Any], saved_names: list[str] | None) -> dict[str, Any]:
        """Map saved optimiser slots to parameters by name (the text encoder's layer order may change)."""
        if saved_names is None:
            # states written before names were saved: the text tower was transformers' CLIPTextModel,
            # whose attention registers k, v, q, out
            from transformers import CLIPTextConfig, CLIPTextModel

            hf = CLIPTextModel(CLIPTextConfig(**{k: getattr(self.spec.clip, k) for k in (
                "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "max_position_embeddings", "hidden_act", "layer_norm_eps", "projection_dim")}))
            saved_names = ([n for n, _ in self.unet.named_parameters()]
                           + ["transformer." + (n if n.startswith("text_model.") else "text_model." + n)
                              for n, _ in hf.named_parameters()])
        index = {name: i for i, name in enumerate(saved_names)}
        current = self._opt_names()
        if sorted(current) != sorted(saved_names):
            raise RuntimeError("saved optimiser state does not name the same parameters; restart with --fresh")
        remapped = copy.deepcopy(state)
        remapped["state"] = {i: state["state"][index[name]] for i, name in enumerate(current)
                             if index[name] in state["state"]}
        return remapped

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def next_phase(self) -> None:
        if self.phase == "unet":
            self.unet_final_step = self.step
        self.phase = PHASES[PHASES.index(self.phase) + 1]
        self.step = 0
        self.save_state()

    # ---- phase 1: VAE ------------------------------------------------------------------------
    def vae_lr(self) -> float:
        """Cosine from vae_lr to a tenth over the crop phase, then a fifth of vae_lr on whole images."""
        c = self.cfg
        if self.phase == "vae_full":
            return c.vae_lr * 0.2
        progress = min(1.0, self.step / max(1, c.vae_crop_steps))
        return c.vae_lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    def vae_step(self, batch: int, crop: int) -> float:
        for group in self.vae_opt.param_groups:
            group["lr"] = self.vae_lr()
        if self.cfg.vae_pool > 0:
            if self.vae_images is None:
                # a fixed pool drawn in parallel (chunks seeded apart from the latent pool's)
                images, _ = draw_many(self.cfg.seed + 7919, 0, max(1, self.cfg.vae_pool // 64), self.cfg.image_size,
                                      64, self.cfg.draw_workers)
                self.vae_images = _to_pixels(images, self.device)
            pick = torch.randint(0, len(self.vae_images), (batch,), generator=self.gen)
            x = _random_crop(self.vae_images[pick.to(self.device)], crop, self.gen)
        else:
            images, _ = random_batch(self.scenes, self.cfg.image_size, batch, self.np_rng)
            x = _random_crop(_to_pixels(images, self.device), crop, self.gen)
        moments = self.vae.quant_conv(self.vae.encoder(x))
        mean, logvar = moments.chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=self.gen).to(self.device)
        rec = self.vae.decode(z)
        kl = 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar).sum() / x.shape[0]
        loss = (rec - x).abs().mean() + ((rec - x) ** 2).mean() + self.cfg.vae_kl_weight * kl / x[0].numel()
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.vae.parameters(), 1.0)
        self.vae_opt.step()
        return float(loss.item())

    @torch.no_grad()
    def adopt_vae(self, path: Path) -> None:
        """Take a trained (already folded) VAE from an earlier run's checkpoint instead of phase 1."""
        from safetensors.torch import load_file

        from engine.demo.export import VAE_PREFIX

        sd = {k[len(VAE_PREFIX):]: v for k, v in load_file(str(path)).items() if k.startswith(VAE_PREFIX)}
        self.vae.load_state_dict(sd)
        self.log.info("VAE taken from %s (%d tensors); phase 1 skipped", path, len(sd))

    @torch.no_grad()
    def fold(self) -> None:
        images, _ = random_batch(self.scenes, self.cfg.image_size, 512, self.np_rng)
        latents = torch.cat([self.vae.encode(_to_pixels(images[i: i + 64], self.device)) for i in range(0, 512, 64)])
        mean = latents.mean(dim=(0, 2, 3))
        std = float((latents - mean[None, :, None, None]).std())
        k = fold_latent_scale(self.vae, mean, std, 1.0 / SD15_SCALE_FACTOR)
        check = self.vae.encode(_to_pixels(images[:64], self.device)) * SD15_SCALE_FACTOR
        self.log.info("latent spread: mean %s std %.4f -> folded x%.4f; scaled latents now mean %.3f std %.3f",
                      [round(float(v), 3) for v in mean], std, k, float(check.mean()), float(check.std()))

    # ---- phase 2: UNet + text ----------------------------------------------------------------
    @torch.no_grad()
    def draw_latents(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`count` (a multiple of 64) fresh images as latents + tokens; chunk seeds continue the pool's."""
        chunks = max(1, count // 64)
        images, captions = draw_many(self.cfg.seed, self.pool_chunks, chunks, self.cfg.unet_image_size, 64,
                                     self.cfg.draw_workers)
        self.pool_chunks += chunks
        latents = torch.cat([self.vae.encode(_to_pixels(images[i: i + 256], self.device))
                             for i in range(0, len(images), 256)])
        return latents, self.tokenizer(captions)

    def build_pool(self) -> None:
        self.log.info("building a latent pool of %d images at %d px", self.cfg.latent_pool, self.cfg.unet_image_size)
        started = time.time()
        self.pool, self.pool_tokens = self.draw_latents(self.cfg.latent_pool)
        self.log.info("latent pool drawn and encoded in %.1f s", time.time() - started)

    def lr_factor(self, step: int) -> float:
        c = self.cfg
        if step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        progress = (step - c.warmup_steps) / max(1, c.unet_steps - c.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def unet_step(self) -> float:
        c = self.cfg
        if c.pool_refresh_every > 0 and self.step % c.pool_refresh_every == 0:
            lat, tok = self.draw_latents(self.cfg.pool_refresh_count)
            n = len(lat)
            at = self.pool_cursor
            self.pool[at: at + n], self.pool_tokens[at: at + n] = lat, tok
            self.pool_cursor = (at + n) % (len(self.pool) - n + 1)
        idx = torch.randint(0, len(self.pool), (c.unet_batch,), generator=self.gen)
        x0 = self.pool[idx.to(self.device)] * SD15_SCALE_FACTOR
        tokens = drop_captions(self.pool_tokens[idx], c.empty_caption_prob, self.empty_tokens, self.gen)
        xt, t, noise, ac = noised(x0, self.alphas_cumprod, c.high_noise_fraction, c.high_noise_from,
                                  c.noise_offset, self.gen)
        # most of a batch repeats a few captions: encode each distinct one once (a third of the step cost)
        unique, inverse = torch.unique(tokens, dim=0, return_inverse=True)
        context = self.text(unique.to(self.device))[0][inverse.to(self.device)]
        eps = self.unet(xt, t.float().to(self.device), context)
        loss = min_snr_loss(eps, noise, ac, c.min_snr_gamma)
        for group, base in zip(self.unet_opt.param_groups, (c.unet_lr, c.text_lr), strict=False):
            group["lr"] = base * self.lr_factor(self.step)
        self.unet_opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(list(self.unet.parameters()) + list(self.text.parameters()), 1.0)
        self.unet_opt.step()
        self.update_ema()
        return float(loss.item())

    @torch.no_grad()
    def update_ema(self) -> None:
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        for ema, live in ((self.ema_unet, self.unet), (self.ema_text, self.text)):
            torch._foreach_lerp_(list(ema.parameters()), list(live.parameters()), 1.0 - decay)

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Score a fixed set of prompts (every colour/shape + held-out pairs, one seed) with the EMA."""
        scenes = scoring_scenes()[::2]
        images = generate(self.ema_unet, self.ema_text, self.vae, self.tokenizer,
                          [s.caption() for s in scenes], [0] * len(scenes), self.cfg.unet_image_size,
                          self.cfg.eval_steps, self.cfg.eval_cfg)
        table = score_table([(s, read_image(img)) for s, img in zip(scenes, images, strict=False)])
        self.log.info("eval at unet step %d: %s", self.step,
                      {g: {k: round(v, 2) for k, v in row.items()} for g, row in table.items()})
        return table

    def final_report(self) -> None:
        """Every scoring scene x seeds 0 and 1 at several CFG scales (EMA, the monitor sampler, 20 steps)."""
        scenes = scoring_scenes()
        captions = [s.caption() for s in scenes for _ in (0, 1)]
        seeds = [seed for _ in scenes for seed in (0, 1)]
        for cfg_scale in (float(v) for v in self.cfg.final_report.split(",")):
            images = np.concatenate([
                generate(self.ema_unet, self.ema_text, self.vae, self.tokenizer, captions[i: i + 24],
                         seeds[i: i + 24], self.cfg.unet_image_size, 20, cfg_scale)
                for i in range(0, len(captions), 24)])
            pairs = [(scenes[i // 2], read_image(img)) for i, img in enumerate(images)]
            table = score_table(pairs)
            self.log.info("final report cfg %.1f: %s", cfg_scale,
                          {g: {k: round(v, 3) for k, v in row.items()} for g, row in table.items()})

    def export(self) -> None:
        save_checkpoint(self.out, self.ema_unet, self.ema_text, self.vae, self.spec.to_dict(),
                        self.cfg.to_json())
        self.log.info("wrote %s (%.1f MB)", self.out, self.out.stat().st_size / 1e6)

    # ---- driver ------------------------------------------------------------------------------
    def _loop(self, total: int, desc: str, fn: Any) -> None:
        bar = tqdm(total=total, initial=self.step, desc=desc, file=sys.stderr, mininterval=5.0)
        losses: list[float] = []
        t0 = time.time()
        while self.step < total:
            if self.cfg.max_minutes > 0 and (time.time() - self.started) / 60 > self.cfg.max_minutes:
                self.log.info("%s stopped at step %d/%d: max_minutes=%.1f reached", desc, self.step, total,
                              self.cfg.max_minutes)
                break
            losses.append(fn())
            self.step += 1
            bar.update(1)
            if self.step % 50 == 0 or self.step == total:
                self.log.info("%s step %d/%d loss %.5f (%.2f s/step, %.1f min total)", desc, self.step,
                              total, float(np.mean(losses)), (time.time() - t0) / len(losses),
                              self.elapsed() / 60)
                losses, t0 = [], time.time()
            if self.step % self.cfg.checkpoint_every == 0:
                self.save_state()
            if desc == "unet" and self.step % self.cfg.eval_every == 0 and self.step < total:
                self.evaluate()
                self.export()
        bar.close()

    def run(self) -> None:
        c = self.cfg
        if c.vae_from and self.phase in ("vae_crop", "vae_full", "fold"):
            self.adopt_vae(Path(c.vae_from))
            self.phase = "pool"
        if self.phase == "vae_crop":
            self._loop(c.vae_crop_steps, "vae_crop", lambda: self.vae_step(c.vae_crop_batch, c.vae_crop_size))
            self.next_phase()
        if self.phase == "vae_full":
            self._loop(c.vae_full_steps, "vae_full", lambda: self.vae_step(c.vae_full_batch, c.image_size))
            self.next_phase()
        self.vae.requires_grad_(False).eval()
        if self.phase == "fold":
            self.fold()
            self.next_phase()
        if self.phase == "pool":
            self.build_pool()
            self.next_phase()
        if self.phase == "unet" and (self.pool.numel() == 0 or self.pool.shape[-1] * 8 != c.unet_image_size):
            # the UNet's image size changed (a resumed run): redraw the pool at the new size
            self.build_pool()
            self.pool_cursor = 0
        if self.phase == "unet":
            self._loop(c.unet_steps, "unet", self.unet_step)
            self.evaluate()
            self.next_phase()
            self.export()
            if c.final_report:
                self.final_report()
        self.export()
        self.log.info("done in %.1f min", self.elapsed() / 60)


def _logger(path: Path, name: str = "engine.demo.train") -> logging.Logger:
    log = logging.getLogger(name)
    log.setLevel(logging.INFO)
    log.handlers.clear()
    path.parent.mkdir(parents=True, exist_ok=True)
    for handler in (logging.FileHandler(path), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    return log


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: options as name=value (see TrainConfig), --out/--work/--log paths."""
    parser = argparse.ArgumentParser(prog="python -m engine.demo.train", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="TrainConfig fields as name=value")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="resumable state folder")
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG)
    parser.add_argument("--fresh", action="store_true", help="ignore saved state and start over")
    parser.add_argument("--export-only", action="store_true",
                        help="write the checkpoint from the saved state (EMA weights) without training")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.overrides)
    cfg = TrainConfig.from_overrides(overrides)
    torch.set_num_threads(cfg.threads)
    log = _logger(args.log)
    trainer = Trainer(cfg, args.work, args.out, log)
    if args.export_only:
        if not trainer.load_state():
            raise SystemExit(f"no saved state in {args.work}; run the training first")
        trainer.export()
        return 0
    if args.fresh or not trainer.load_state():
        log.info("training from scratch: %s", cfg.to_json())
    else:
        log.info("config now: %s", cfg.to_json())
    trainer.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
