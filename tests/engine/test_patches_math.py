"""The core maths of engine.patches against straightforward implementations written here: FreeU's Fourier
filter and channel rule, HyperTile's tiling, ToMe's bipartite merge, SAG's attention map and blur, Deep Shrink's
sigma window, the copy-on-write attention replacement."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.patches.attention_guidance import attention_with_map, blur_by_attention, gaussian_blur_2d
from engine.patches.deep_shrink import DownscaleInput, UpscaleToSkip
from engine.patches.freeu import FreeUPatch, fourier_filter
from engine.patches.hypertile import HyperTilePatch, random_divisor
from engine.patches.options import call_generator, with_patch_replace
from engine.patches.tome import TokenMerge, TomePatch, dst_partition
from engine.patches.weights import clip_attention_scales, temporal_attention_scales, unet_attention_scales


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------------ FreeU
def naive_fourier_filter(x: np.ndarray, threshold: int, scale: float) -> np.ndarray:
    """numpy FFT; the low band is the frequencies within `threshold` of zero after centring (H, W >= 2)."""
    f = np.fft.fftshift(np.fft.fft2(x.astype(np.float64)), axes=(-2, -1))
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            if h // 2 - threshold <= i < h // 2 + threshold and w // 2 - threshold <= j < w // 2 + threshold:
                f[..., i, j] *= scale
    return np.fft.ifft2(np.fft.ifftshift(f, axes=(-2, -1))).real


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 5, 6), (1, 1, 4, 2)])
def test_fourier_filter_matches_numpy(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, generator=gen(1))
    got = fourier_filter(x, 1, 0.3)
    assert got.dtype == x.dtype
    np.testing.assert_allclose(got.numpy(), naive_fourier_filter(x.numpy(), 1, 0.3), atol=1e-5)
    # scale 1 is the identity (up to FFT rounding); scale 0 removes exactly the 2x2 low band's energy
    assert torch.allclose(fourier_filter(x, 1, 1.0), x, atol=1e-5)
    assert not torch.allclose(fourier_filter(x, 1, 0.0), x, atol=1e-3)


def test_fourier_filter_one_pixel_side_takes_the_whole_side() -> None:
    # ComfyUI's slice ch-1:ch+1 with ch = 0 is -1:1, i.e. the whole length-1 side: the DC row's band is scaled
    x = torch.randn(1, 1, 1, 4, generator=gen(2))
    freq = torch.fft.fftshift(torch.fft.fftn(x, dim=(-2, -1)), dim=(-2, -1))
    freq[..., :, 1:3] *= 0.5
    want = torch.fft.ifftn(torch.fft.ifftshift(freq, dim=(-2, -1)), dim=(-2, -1)).real
    assert torch.allclose(fourier_filter(x, 1, 0.5), want, atol=1e-6)


def backbone_factor(h: torch.Tensor, b: float, version: int) -> Any:
    if version == 1:
        return b
    m = h.mean(1, keepdim=True)  # channel mean, min-max normalised per sample, then (b - 1) * m + 1
    lo = m.amin(dim=(2, 3), keepdim=True)
    hi = m.amax(dim=(2, 3), keepdim=True)
    return (b - 1) * (m - lo) / (hi - lo) + 1


@pytest.mark.parametrize("version", [1, 2])
def test_freeu_patch_by_channel_count(version: int) -> None:
    patch = FreeUPatch(32, b1=1.5, b2=1.2, s1=0.7, s2=0.4, version=version)
    for channels, b, s in ((128, 1.5, 0.7), (64, 1.2, 0.4)):  # 4x and 2x model_channels, whatever the block
        h = torch.randn(2, channels, 4, 4, generator=gen(channels))
        skip = torch.randn(2, channels, 4, 4, generator=gen(channels + 1))
        out_h, out_skip = patch(h, skip, {})
        half = channels // 2
        assert torch.allclose(out_h[:, :half], h[:, :half] * backbone_factor(h, b, version), atol=1e-6)
        assert torch.equal(out_h[:, half:], h[:, half:])
        want = torch.from_numpy(naive_fourier_filter(skip.numpy(), 1, s)).float()
        assert torch.allclose(out_skip, want, atol=1e-5)
    h96 = torch.randn(1, 96, 4, 4, generator=gen(6))
    same_h, same_skip = patch(h96, h96, {})
    assert same_h is h96 and same_skip is h96


# -------------------------------------------------------------------------------------------------- HyperTile
def test_random_divisor() -> None:
    assert random_divisor(16, 4, 2, gen()) == 4  # divisors >= 4: 4, 8, 16 -> counts 4, 2; randint(0, 1) == 0
    assert random_divisor(16, 32, 2, gen()) == 1  # min_value clipped to the value
    picks = {random_divisor(16, 2, 3, gen(s)) for s in range(20)}  # counts 8, 4, 2: randint(0, 2) -> 8 or 4
    assert picks == {8, 4}


def naive_tiles(q: torch.Tensor, h: int, w: int, nh: int, nw: int) -> torch.Tensor:
    """Token (r, c) of an h-row grid goes to tile (r // th, c // tw), row-major inside the tile."""
    b, _, c = q.shape
    th, tw = h // nh, w // nw
    out = torch.empty(b * nh * nw, th * tw, c)
    for bi in range(b):
        for r in range(h):
            for col in range(w):
                tile = (bi * nh + r // th) * nw + col // tw
                out[tile, (r % th) * tw + col % tw] = q[bi, r * w + col]
    return out


def test_hypertile_tiles_queries_and_reassembles() -> None:
    patch = HyperTilePatch(tile_size=32, swap_size=1, max_depth=0, scale_depth=False)
    q = torch.randn(2, 256, 6, generator=gen(7))
    extra = {"original_shape": [2, 4, 16, 16], "sigmas": torch.tensor([3.0, 3.0])}
    tq, k, v = patch.tile_in(q, q, q, extra)
    assert k is q and v is q  # keys and values keep every token, as in ComfyUI
    assert torch.equal(tq, naive_tiles(q, 16, 16, 4, 4))  # latent tile 32 // 8 = 4 -> 16 / 4 = 4 tiles a side
    assert torch.equal(patch.tile_out(tq, extra), q)
    # a level whose token count is not the latent's (or a deeper one beyond max_depth) is left alone
    q64 = torch.randn(1, 64, 6, generator=gen(8))
    assert patch.tile_in(q64, q64, q64, extra)[0] is q64
    assert patch.tile_out(q64, extra) is q64
    deeper = HyperTilePatch(tile_size=32, swap_size=1, max_depth=1, scale_depth=False)
    assert deeper.tile_in(q64, q64, q64, extra)[0].shape == (4, 16, 6)


def test_hypertile_below_tile_size_is_identity() -> None:
    patch = HyperTilePatch(tile_size=256, swap_size=2, max_depth=2, scale_depth=True)
    q = torch.randn(1, 128, 6, generator=gen(9))
    extra = {"original_shape": [1, 4, 8, 16]}
    assert patch.tile_in(q, q, q, extra)[0] is q


# ------------------------------------------------------------------------------------------------------- ToMe
def naive_merge(x: torch.Tensor, metric: torch.Tensor, dst: list[int], src: list[int],
                r: int) -> tuple[torch.Tensor, dict[int, int]]:
    """Greedy per-sample bipartite matching with python loops; returns merged tokens and source -> dst."""
    out = []
    where: dict[int, int] = {}
    for b in range(x.shape[0]):
        unit = metric[b] / metric[b].norm(dim=-1, keepdim=True)
        best = {s: max(range(len(dst)), key=lambda d: float(unit[s] @ unit[dst[d]])) for s in src}
        score = {s: float(unit[s] @ unit[dst[best[s]]]) for s in src}
        ranked = sorted(src, key=lambda s: -score[s])
        merged, kept = ranked[:r], ranked[r:]
        rows = [x[b, s] for s in kept]
        for d_pos, d in enumerate(dst):
            group = [x[b, d]] + [x[b, s] for s in merged if best[s] == d_pos]
            rows.append(torch.stack(group).mean(0))
        out.append(torch.stack(rows))
        if b == 0:
            where = {s: best[s] for s in merged}
    return torch.stack(out), where


def test_dst_partition() -> None:
    picks = torch.tensor([[0, 3], [1, 2]])
    dst, src = dst_partition(5, 4, picks)  # an odd row count: the last row is all sources
    grid = torch.zeros(5, 4, dtype=torch.long)
    grid.view(-1)[dst] = 1
    assert grid.tolist() == [[1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert sorted(dst.tolist() + src.tolist()) == list(range(20))


def test_token_merge_matches_a_loop_implementation() -> None:
    h, w, c, r = 4, 6, 5, 7
    x = torch.randn(2, h * w, c, generator=gen(10))
    picks = torch.randint(4, (h // 2, w // 2), generator=gen(11))
    merge = TokenMerge(x, h, w, r, picks)
    merged = merge.merge(x)
    assert merged.shape == (2, h * w - r, c)
    dst, src = (t.tolist() for t in dst_partition(h, w, picks))
    want, where = naive_merge(x, x, dst, src, r)
    assert torch.allclose(merged, want, atol=1e-6)
    back = merge.unmerge(merged)
    assert back.shape == x.shape
    n_kept = h * w // 4 * 3 - r
    for s, d_pos in where.items():  # a merged source reads its destination's row
        assert torch.allclose(back[0, s], merged[0, n_kept + d_pos])
    kept = [t for t in range(h * w) if t not in where]
    unmerged_kept = back[:, kept]
    assert all(any(torch.allclose(unmerged_kept[0, i], merged[0, j]) for j in range(len(merged[0])))
               for i in range(len(kept)))


def test_tome_patch_only_at_the_top_level_and_ratio_zero_is_identity() -> None:
    q = torch.randn(1, 128, 8, generator=gen(12))
    extra = {"original_shape": [1, 4, 8, 16], "sigmas": torch.tensor([2.0])}
    patch = TomePatch(0.5)
    mq, k, v = patch.merge_in(q, q, q, extra)
    assert mq.shape == (1, 64, 8) and k is q and v is q
    assert patch.unmerge_out(mq, extra).shape == (1, 128, 8)
    q32 = torch.randn(1, 32, 8, generator=gen(13))  # the next level down: not merged
    assert patch.merge_in(q32, q32, q32, extra)[0] is q32 and patch.unmerge_out(q32, extra) is q32
    off = TomePatch(0.0)
    assert off.merge_in(q, q, q, extra)[0] is q and off.unmerge_out(q, extra) is q
    # the same call position draws the same partition (no global random state)
    again = TomePatch(0.5).merge_in(q, q, q, extra)[0]
    assert torch.equal(again, mq)


# ------------------------------------------------------------------------------------------------------- SAG
def test_attention_with_map_matches_sdpa_and_softmax() -> None:
    heads, d = 2, 4
    q, k, v = (torch.randn(2, 6, heads * d, generator=gen(s)) for s in (14, 15, 16))
    out, weights = attention_with_map(q, k, v, heads)
    ref = F.scaled_dot_product_attention(*(t.view(2, 6, heads, d).transpose(1, 2) for t in (q, k, v)))
    assert torch.allclose(out, ref.transpose(1, 2).reshape(2, 6, heads * d), atol=1e-5)
    qh, kh = (t.view(2, 6, heads, d).transpose(1, 2) for t in (q, k))
    want = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), dim=-1).reshape(4, 6, 6)
    assert torch.allclose(weights, want, atol=1e-6)


def naive_blur(img: np.ndarray, size: int, sigma: float) -> np.ndarray:
    half = (size - 1) / 2
    xs = np.linspace(-half, half, size)
    k = np.exp(-0.5 * (xs / sigma) ** 2)
    k /= k.sum()
    p = size // 2
    padded = np.pad(img, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")
    out = np.zeros_like(img)
    for i in range(size):
        for j in range(size):
            out += k[i] * k[j] * padded[:, :, i:i + img.shape[2], j:j + img.shape[3]]
    return out


def test_gaussian_blur_and_blur_map() -> None:
    x0 = torch.randn(1, 4, 8, 12, generator=gen(17))
    np.testing.assert_allclose(gaussian_blur_2d(x0, 9, 2.0).numpy(), naive_blur(x0.numpy(), 9, 2.0), atol=1e-5)
    # a 2 x 3 map (6 tokens) for an 8 x 12 latent; key token 4 gathers all attention, the others none
    attn = torch.zeros(2, 6, 6)  # 2 heads
    attn[:, :, 4] = 1.0
    got = blur_by_attention(x0, attn, 2.0)
    blurred = gaussian_blur_2d(x0, 9, 2.0)
    mask = torch.zeros(8, 12)
    mask[4:8, 4:8] = 1  # token 4 = row 1, column 1 of the 2 x 3 grid, nearest-upsampled by 4
    assert torch.allclose(got, blurred * mask + x0 * (1 - mask))


def test_blur_map_grids_and_a_clear_error() -> None:
    x0 = torch.randn(1, 4, 8, 16, generator=gen(20))
    attn = torch.zeros(8, 2, 2)
    attn[:, :, 1] = 1.0  # 2 tokens as 1 x 2 (ComfyUI's search has no steps below 4 tokens): the right half blurs
    mask = torch.zeros(8, 16)
    mask[:, 8:] = 1
    want = gaussian_blur_2d(x0, 9, 2.0) * mask + x0 * (1 - mask)
    assert torch.allclose(blur_by_attention(x0, attn, 2.0), want)
    with pytest.raises(ValueError, match="7 attention tokens"):  # 7 tokens: no grid near the latent's aspect
        blur_by_attention(torch.zeros(1, 4, 8, 8), torch.zeros(8, 7, 7), 2.0)


# ----------------------------------------------------------------------------------------------- Deep Shrink
def test_deep_shrink_window_and_sizes() -> None:
    h = torch.randn(1, 8, 8, 12, generator=gen(18))
    down = DownscaleInput(3, 2.0, sigma_start=10.0, sigma_end=1.0, method="bilinear")
    inside = {"block": ("input", 3), "sigmas": torch.tensor([5.0])}
    assert torch.equal(down(h, inside), F.interpolate(h, size=(4, 6), mode="bilinear"))
    for options in ({"block": ("input", 2), "sigmas": torch.tensor([5.0])},
                    {"block": ("input", 3), "sigmas": torch.tensor([0.5])},
                    {"block": ("input", 3), "sigmas": torch.tensor([11.0])}):
        assert down(h, options) is h
    assert down(h, {"block": ("input", 3), "sigmas": torch.tensor([10.0])}).shape[-2:] == (4, 6)  # inclusive
    # 1 / 3 as ComfyUI rounds it: round(12 * (1 / 3)) = 4
    assert DownscaleInput(3, 3.0, 10.0, 1.0, "nearest-exact")(h, inside).shape[-2:] == (3, 4)
    small = torch.randn(1, 8, 4, 6, generator=gen(19))
    up, skip = UpscaleToSkip("nearest-exact")(small, h, {})
    assert skip is h and torch.equal(up, F.interpolate(small, size=(8, 12), mode="nearest-exact"))
    assert UpscaleToSkip("bicubic")(h, h, {})[0] is h
    # every method keeps the features' device (bislerp built its sample grid on the CPU before)
    for method in ("bicubic", "nearest-exact", "bilinear", "area", "bislerp"):
        on_meta = UpscaleToSkip(method)(small.to("meta"), h.to("meta"), {})[0]
        assert on_meta.device.type == "meta" and on_meta.shape == (1, 8, 8, 12)


# ----------------------------------------------------------------------------------------------- helpers
def test_with_patch_replace_copies_on_write() -> None:
    def original(*a: Any) -> None:
        return None

    def patch(*a: Any) -> None:
        return None

    opts: dict[str, Any] = {"transformer_options": {"patches_replace": {"attn1": {("input", 1): original}}},
                            "other": 1}
    new = with_patch_replace(opts, patch, "attn1", "middle", 0)
    assert new["transformer_options"]["patches_replace"]["attn1"] == {("input", 1): original, ("middle", 0): patch}
    assert opts["transformer_options"]["patches_replace"]["attn1"] == {("input", 1): original}
    assert new["other"] == 1
    assert with_patch_replace({}, patch, "attn2", "output", 3, 0)["transformer_options"] == {
        "patches_replace": {"attn2": {("output", 3, 0): patch}}}


def test_call_generator_is_per_call_position() -> None:
    a = {"sigmas": torch.tensor([1.5]), "block": ("input", 1), "block_index": 0}
    draw = torch.randint(1000, (4,), generator=call_generator(a, "x"))
    assert torch.equal(draw, torch.randint(1000, (4,), generator=call_generator(dict(a), "x")))
    other = torch.randint(1000, (4,), generator=call_generator({**a, "block": ("input", 2)}, "x"))
    assert not torch.equal(draw, other)


def test_weight_scale_selection() -> None:
    names = ["input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
             "input_blocks.1.1.transformer_blocks.0.attn1.to_out.0.bias",
             "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
             "input_blocks.1.1.time_stack.0.attn1.to_out.0.weight", "out.2.weight"]
    assert unet_attention_scales(names, "attn1", 2.0, 3.0, 4.0, 5.0) == {names[0]: 2.0, names[1]: 5.0,
                                                                         names[3]: 5.0}
    assert unet_attention_scales(names, "attn2", 2.0, 3.0, 4.0, 5.0) == {names[2]: 3.0}
    assert temporal_attention_scales(iter(names), 2.0, 3.0, 4.0, 5.0) == {names[1]: 2.0, names[3]: 3.0}
    clip = ["clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
            "clip_l.transformer.text_model.encoder.layers.0.self_attn.out_proj.bias",
            "clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.weight"]
    assert clip_attention_scales(clip, 0.5, 1.0, 1.0, 2.0) == {clip[0]: 0.5, clip[1]: 2.0}
