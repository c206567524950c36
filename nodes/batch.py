"""Rebatching: regroup lists of image or latent batches into batches of a chosen size (ComfyUI names).

Both nodes take whole lists (INPUT_IS_LIST) and give a list (OUTPUT_IS_LIST): every input batch is split
into single items, in order, and the stream is cut into batches of `batch_size`; the last batch may be
smaller.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.types import Latent
from nodes._base import BuiltinNode, InputTypes, input_error, latent_samples

if TYPE_CHECKING:
    import torch

__all__ = ["RebatchImages", "RebatchLatents"]

_BATCH_SIZE = ("INT", {"default": 1, "min": 1, "max": 4096})


def _batch_size(values: list[int], class_name: str) -> int:
    size = int(values[0])
    if size < 1:
        raise input_error(class_name, "batch_size", f"must be at least 1, got {size}")
    return size


class RebatchImages(BuiltinNode):
    """Regroup a list of IMAGE batches into batches of `batch_size` images (all images must share a size)."""

    DISPLAY_NAME = "Rebatch Images"
    CATEGORY = "image/batch"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_IS_LIST = (True,)
    INPUT_IS_LIST = True
    FUNCTION = "rebatch"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"images": ("IMAGE",), "batch_size": _BATCH_SIZE}}

    def rebatch(self, images: list[torch.Tensor], batch_size: list[int]) -> tuple[list[torch.Tensor]]:
        import torch

        size = _batch_size(batch_size, "RebatchImages")
        frames = [batch[i:i + 1] for batch in images for i in range(batch.shape[0])]
        shapes = {tuple(f.shape[1:]) for f in frames}
        if len(shapes) > 1:
            raise input_error("RebatchImages", "images",
                              f"images of different sizes cannot share a batch: {sorted(shapes)}; "
                              "scale them to one size first")
        return ([torch.cat(frames[i:i + size]) for i in range(0, len(frames), size)],)


class RebatchLatents(BuiltinNode):
    """Regroup a list of LATENT batches into batches of `batch_size` latents.

    Like ComfyUI: a change of latent size closes the current batch; each output carries `batch_index`
    (the input's own, else the running position in the list) and a `noise_mask` per item (all ones where an
    input had none), dropped again from a batch whose mask is all ones.
    """

    DISPLAY_NAME = "Rebatch Latents"
    CATEGORY = "latent/batch"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_IS_LIST = (True,)
    INPUT_IS_LIST = True
    FUNCTION = "rebatch"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"latents": ("LATENT",), "batch_size": _BATCH_SIZE}}

    def rebatch(self, latents: list[Latent], batch_size: list[int]) -> tuple[list[Latent]]:
        size = _batch_size(batch_size, "RebatchLatents")
        runs: list[list[tuple[torch.Tensor, torch.Tensor, Any]]] = []  # items of one latent size, in order
        position = 0
        for latent in latents:
            items, consumed = _items(latent, position)
            position += consumed
            if runs and runs[-1] and runs[-1][-1][0].shape[-2:] == items[0][0].shape[-2:]:
                runs[-1].extend(items)
            elif items:
                runs.append(items)
        out: list[Latent] = []
        for run in runs:
            out.extend(_batch(run[i:i + size]) for i in range(0, len(run), size))
        return (out,)


def _items(latent: Latent, offset: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor, Any]], int]:
    """(one (samples, mask, index) per item, how far the running position moves)."""
    import torch

    samples = latent_samples(latent, "RebatchLatents", "latents")
    count = samples.shape[0]
    mask = latent.get("noise_mask")
    if mask is None:
        mask = torch.ones((count, 1, samples.shape[2] * 8, samples.shape[3] * 8))
    if mask.shape[0] < count:
        mask = mask.repeat((count - 1) // mask.shape[0] + 1, *([1] * (mask.ndim - 1)))[:count]
    indices = list(latent["batch_index"]) if "batch_index" in latent else list(range(offset, offset + count))
    if len(indices) < count:
        raise input_error("RebatchLatents", "latents",
                          f"batch_index has {len(indices)} entries for {count} latents; give one per latent")
    return [(samples[i:i + 1], mask[i:i + 1], indices[i]) for i in range(count)], len(indices)


def _batch(items: list[tuple[torch.Tensor, torch.Tensor, Any]]) -> Latent:
    import torch

    out: Latent = {"samples": torch.cat([s for s, _, _ in items]), "batch_index": [i for _, _, i in items]}
    mask = torch.cat([m for _, m, _ in items])
    if mask.mean() != 1.0:
        out["noise_mask"] = mask
    return out


NODES = [RebatchImages, RebatchLatents]
