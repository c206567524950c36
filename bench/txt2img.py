"""End-to-end txt2img in process: load, encode, 20 steps, decode. Loom vs diffusers' StableDiffusionPipeline.

Run: ``.venv/bin/python bench/txt2img.py [--runs 3] [--steps 20] [--width 128 --height 64]``. Loom loads the
tiny fixture checkpoint (fresh ModelManager each run, so the load is timed) and runs engine calls (CLIP
encode, euler / normal, VAE decode). diffusers loads a pipeline of the same shapes (tiny UNet / VAE / CLIP,
random weights, saved once with save_pretrained) with EulerDiscreteScheduler and runs 20 steps at the same
CFG. Per-phase times are printed for Loom; both totals are timed alternately, min and median.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench._timing import Row, alternate, device_name, print_table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors"
PROMPT, NEGATIVE = "a photo of a cat", "blurry, low quality"


def save_diffusers_pipeline(folder: Path) -> None:
    """A StableDiffusionPipeline with the tiny checkpoint's shapes (random weights) saved to ``folder``."""
    import transformers
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(32, 64, 128, 128), cross_attention_dim=32, attention_head_dim=8,
                                layers_per_block=2, sample_size=64)
    vae = AutoencoderKL(block_out_channels=(32, 32, 64, 64), latent_channels=4, layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=32))
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(REPO / "engine" / "tokenizers" / "sd1"),
                                                           model_max_length=77)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, timestep_spacing="linspace")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)


def diffusers_run(folder: Path, steps: int, width: int, height: int) -> Any:
    """Load the saved pipeline and generate one image."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    pipe = StableDiffusionPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=7.5, width=width,
                height=height, generator=torch.Generator().manual_seed(42), output_type="pt").images


def loom_run(steps: int, width: int, height: int, phases: dict[str, list[float]]) -> torch.Tensor:
    """Load the tiny checkpoint, encode both prompts, sample euler / normal, decode; record phase times."""
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager
    from engine.sampling import prepare_noise, sample

    marks = [time.perf_counter()]
    model, clip, vae = load_checkpoint(TINY, ModelManager(DevicePolicy.cpu()))
    marks.append(time.perf_counter())
    positive, negative = clip.encode(PROMPT), clip.encode(NEGATIVE)
    marks.append(time.perf_counter())
    latent = torch.zeros(1, 4, height // 8, width // 8)
    samples = sample(model, prepare_noise(latent, 42), steps, 7.5, "euler", "normal", positive, negative, latent)
    marks.append(time.perf_counter())
    image = vae.decode(samples)
    marks.append(time.perf_counter())
    for name, a, b in zip(("load", "encode", "sample", "decode"), marks, marks[1:], strict=False):
        phases.setdefault(name, []).append(b - a)
    return image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    phases: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="loom-bench-sd-") as tmp:
        folder = Path(tmp)
        save_diffusers_pipeline(folder)
        with torch.inference_mode():
            times = alternate([lambda: diffusers_run(folder, args.steps, args.width, args.height),
                               lambda: loom_run(args.steps, args.width, args.height, phases)], args.runs)
    for v in phases.values():
        del v[0]  # the warm-up call
    print(f"txt2img {args.width}x{args.height}, {args.steps} steps euler, cfg 7.5, tiny SD1.5 shapes, "
          f"{device_name()}, torch {torch.__version__}, {args.runs} runs alternating (after one warm-up each)")
    rows = [Row("diffusers StableDiffusionPipeline (load + run)", times[0]),
            Row("loom engine (load + encode + sample + decode)", times[1])]
    print_table("end to end", rows, reference=rows[0])
    print_table("loom phases", [Row(k, v) for k, v in phases.items()])


if __name__ == "__main__":
    main()
