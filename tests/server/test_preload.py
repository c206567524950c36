"""server.py's start-up preload leaves what the first prompt needs ready: modules imported, SD1.5 skeletons
built and the shipped CLIP tokenizer parsed (issue 26: the first prompt after an idle start)."""
from __future__ import annotations

import gc
import sys

import server
from engine import tokenizer


def test_preload_puts_what_it_loaded_out_of_the_collectors_sight() -> None:
    # a full collection otherwise scans torch's and the engine's ~190k objects (75-80 ms holding the GIL)
    gc.unfreeze()
    try:
        server._preload_ml_modules().join(timeout=120)
        frozen = gc.get_freeze_count()
        assert frozen > 50_000, frozen
    finally:
        gc.unfreeze()  # the test process's own objects go back to the collector


def test_preload_parses_the_default_tokenizer_and_imports_the_engine() -> None:
    tokenizer._BPE_CACHE.clear()
    server._preload_ml_modules().join(timeout=120)
    assert all(name in sys.modules for name in server._PRELOAD)
    default = tokenizer._folder_stamp(tokenizer.default_tokenizer_dir())
    cached = [key for key in tokenizer._BPE_CACHE if key[:2] == default]
    assert cached == [(*default, 77)]
    bpe, _ = tokenizer.shared_bpe(tokenizer.default_tokenizer_dir(), 77)
    assert bpe is tokenizer._BPE_CACHE[cached[0]][0]  # what the first checkpoint load gets: no second parse
