"""ComfyUI's `comfy.conds`: the per-model conditioning values (`CONDRegular`, `CONDNoiseShape`, `CONDCrossAttn`,
`CONDConstant`, `CONDList`) that packs build in `extra_conds` overrides or put under an entry's `model_conds`.

They are plain values with ComfyUI's contract (`process_cond(batch_size, area=...)`, `can_concat`, `concat`,
`size`), usable on their own. Loom's sampler builds its model inputs from the conditioning entries' options itself
(`engine.sampling.conditioning`), so it does not read these values: a conditioning entry carrying `model_conds`
is refused there with an error that says so.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import torch

from engine.sampling.conditioning import repeat_to_batch_size

__all__ = ["CONDRegular", "CONDNoiseShape", "CONDCrossAttn", "CONDConstant", "CONDList"]

_log = logging.getLogger(__name__)


class CONDRegular:
    """A tensor batched along dim 0 (repeated or cut to the batch) and concatenated with others of its shape."""

    def __init__(self, cond: Any) -> None:
        self.cond = cond

    def _copy_with(self, cond: Any) -> CONDRegular:
        return self.__class__(cond)

    def process_cond(self, batch_size: int, **kwargs: Any) -> CONDRegular:
        """This value for a batch of `batch_size`."""
        return self._copy_with(repeat_to_batch_size(self.cond, batch_size))

    def can_concat(self, other: CONDRegular) -> bool:
        """Whether `other` batches with this value in one model call (same shape, same device)."""
        return self.cond.shape == other.cond.shape and _same_device(self, other)

    def concat(self, others: list[Any]) -> Any:
        """This value and `others` as one batch."""
        return torch.cat([self.cond, *(o.cond for o in others)])

    def size(self) -> list[int]:
        return list(self.cond.size())


def _same_device(a: CONDRegular, b: CONDRegular) -> bool:
    if a.cond.device != b.cond.device:
        _log.warning("conds on different devices (%s, %s) are not concatenated", a.cond.device, b.cond.device)
        return False
    return True


class CONDNoiseShape(CONDRegular):
    """A tensor shaped like the latent: cropped to the entry's area (h, w, ..., y, x, ...) before batching."""

    def process_cond(self, batch_size: int, area: Any = None, **kwargs: Any) -> CONDRegular:
        data = self.cond
        if area is not None:
            dims = len(area) // 2
            for i in range(dims):
                data = data.narrow(i + 2, area[dims + i], area[i])
        return self._copy_with(repeat_to_batch_size(data, batch_size))


class CONDCrossAttn(CONDRegular):
    """Cross-attention context [B, T, C]: contexts of different lengths batch by repeating each to their least
    common multiple (a repeated context attends the same), when that is at most 4 times the shorter."""

    def can_concat(self, other: CONDRegular) -> bool:
        a, b = self.cond.shape, other.cond.shape
        if a != b:
            if a[0] != b[0] or a[2] != b[2]:
                return False
            if math.lcm(a[1], b[1]) // min(a[1], b[1]) > 4:
                return False
        return _same_device(self, other)

    def concat(self, others: list[Any]) -> Any:
        conds = [self.cond, *(o.cond for o in others)]
        length = 1
        for c in conds:
            length = math.lcm(length, c.shape[1])
        return torch.cat([c.repeat(1, length // c.shape[1], 1) if c.shape[1] < length else c for c in conds])


class CONDConstant(CONDRegular):
    """A value passed unchanged (not batched); values batch together only when equal."""

    def process_cond(self, batch_size: int, **kwargs: Any) -> CONDRegular:
        return self._copy_with(self.cond)

    def can_concat(self, other: CONDRegular) -> bool:
        return bool(self.cond == other.cond)

    def concat(self, others: list[Any]) -> Any:
        return self.cond

    def size(self) -> list[int]:
        return [1]


class CONDList(CONDRegular):
    """A list of tensors, each batched along dim 0 and concatenated with the same position of others."""

    def process_cond(self, batch_size: int, **kwargs: Any) -> CONDRegular:
        return self._copy_with([repeat_to_batch_size(c, batch_size) for c in self.cond])

    def can_concat(self, other: CONDRegular) -> bool:
        return len(self.cond) == len(other.cond) and all(
            a.shape == b.shape for a, b in zip(self.cond, other.cond, strict=True))

    def concat(self, others: list[Any]) -> Any:
        return [torch.cat([c, *(o.cond[i] for o in others)]) for i, c in enumerate(self.cond)]

    def size(self) -> list[int]:
        """[1, channels of the last multi-dimensional tensor, total elements / channels] (a memory estimate)."""
        total, channels = 0, 1
        for c in self.cond:
            total += math.prod(c.size())
            if c.dim() > 1:
                channels = c.size()[1]
        return [1, channels, total // channels]
