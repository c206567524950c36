"""Caption -> CLIP token ids for training (SD1.x rules: start, words, end, padded with end to 77)."""
from __future__ import annotations

from pathlib import Path

import torch

START, END, LENGTH = 49406, 49407, 77
TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "tokenizers" / "sd1"


class CaptionTokenizer:
    """The real CLIP BPE tokenizer from the package's vocab/merges, with SD1.x padding."""

    def __init__(self, folder: Path = TOKENIZER_DIR) -> None:
        from engine.tokenizer import shared_bpe

        # the process-wide parsed tokenizer the prompt tokenizer uses too (length limit set to 77)
        self._bpe, self._lock = shared_bpe(folder, LENGTH)

    def ids(self, caption: str) -> list[int]:
        """77 ids for one caption; longer captions are cut (like SD1.x) keeping the end token."""
        with self._lock:
            words = self._bpe(caption, add_special_tokens=False)["input_ids"][: LENGTH - 2]
        return [START, *words, END] + [END] * (LENGTH - 2 - len(words))

    def __call__(self, captions: list[str]) -> torch.Tensor:
        """[N, 77] int64 ids for a batch of captions."""
        return torch.tensor([self.ids(c) for c in captions], dtype=torch.long)
