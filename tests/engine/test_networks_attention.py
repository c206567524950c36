"""The CPU feed-forward path: GEGLU in token chunks gives the layers' own result, for fp32 layers and for
``--bf16-unet`` (CpuBf16) layers, and the chunked path is the one that ran."""
from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from engine.networks import attention
from engine.networks.attention import FeedForward
from engine.networks.ops import CpuBf16, Plain


def _ff(operations: type, seed: int = 0) -> FeedForward:
    torch.manual_seed(seed)
    ff = FeedForward(24, operations=operations).eval()
    if operations is CpuBf16:  # as build_assign stores them: bf16 matrices, fp32 biases
        for p in ff.parameters():
            if p.ndim == 2:
                p.data = p.data.to(torch.bfloat16)
    return ff


def _chunks_run(ff: FeedForward, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        out = ff(x)
    return out, sum(1 for e in prof.events() if e.name == "aten::gelu_")


@pytest.mark.parametrize("operations", [Plain, CpuBf16], ids=["fp32", "bf16"])
def test_chunked_feed_forward_equals_the_layers(monkeypatch: pytest.MonkeyPatch, operations: type) -> None:
    monkeypatch.setattr(attention, "FF_CHUNK_MIN_ROWS", 8)
    monkeypatch.setattr(attention, "FF_CHUNK_FLOATS", 8 * 2 * 96)  # 8 rows per chunk (inner width 96)
    ff = _ff(operations)
    x = torch.randn(2, 19, 24, generator=torch.Generator().manual_seed(1))  # 38 rows: 5 chunks, the last short
    with torch.inference_mode():
        ref = ff.net(x)  # the layers one after the other, unchunked
    out, chunks = _chunks_run(ff, x)
    assert chunks == 5
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5 if operations is Plain else 1e-2)
    if operations is CpuBf16:  # bf16 did run: not the fp32 result
        fp32 = FeedForward(24).eval()
        fp32.load_state_dict({k: v.float() for k, v in ff.state_dict().items()})
        with torch.inference_mode():
            assert not torch.equal(fp32(x), out)


def test_hooked_layers_take_the_layers_path() -> None:
    ff = _ff(CpuBf16)
    seen: list[tuple[int, ...]] = []
    ff.net[2].register_forward_hook(lambda m, a, o: seen.append(tuple(o.shape)))
    x = torch.randn(1, 7, 24)
    out, chunks = _chunks_run(ff, x)
    assert chunks == 0 and seen == [(1, 7, 24)] and out.dtype == torch.float32
