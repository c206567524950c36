"""ComfyUI's `comfy.taesd.taesd` for packs: the Tiny AutoEncoder (Loom's `engine.networks.taesd`, the one Loom's
TAESD previews use): the building blocks `conv`, `Clamp`, `Block` (with TAEF2's `use_midblock_gn`), the
`Encoder` / `Decoder` stacks, and `TAESD(encoder_path=None, decoder_path=None, latent_channels=4)`, which loads
the given encoder / decoder files (`decode` / `encode`, `scale_latents` / `unscale_latents`, `vae_scale` /
`vae_shift`)."""
from __future__ import annotations

from typing import Any

from engine.networks.taesd import Block, Clamp, Decoder, Encoder, TinyAutoencoder, conv

__all__ = ["Block", "Clamp", "Decoder", "Encoder", "TAESD", "conv"]


class TAESD(TinyAutoencoder):
    """ComfyUI's constructor over Loom's TinyAutoencoder: each stack given a file takes its tensors from it."""

    def __init__(self, encoder_path: Any = None, decoder_path: Any = None, latent_channels: int = 4) -> None:
        from engine.state_files import read_state_dict

        super().__init__(latent_channels)
        for stack, path in ((self.taesd_encoder, encoder_path), (self.taesd_decoder, decoder_path)):
            if path is not None:
                stack.load_state_dict(read_state_dict(path)[0])
