"""Image super-resolution networks: ESRGAN / Real-ESRGAN RRDBNet and Real-ESRGAN SRVGGNetCompact.

Attribute names follow the "new" (BasicSR) checkpoint layout (``conv_first``, ``body.N.rdb1.conv1``,
``conv_body``, ``conv_up1``, ``conv_hr``, ``conv_last``; ``body.N`` for the compact net), so those files load
without renaming; ``engine.upscale`` maps the older ESRGAN layouts onto it.

References: Wang et al. 2018, "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks"
(arXiv:1809.00219); Wang et al. 2021, "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure
Synthetic Data" (arXiv:2107.10833).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResidualDenseBlock", "RRDB", "RRDBNet", "SRVGGNetCompact"]


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; the last one's output, scaled by 0.2, is added to the input.

    Parameters:
        num_feat: channels in and out.
        growth: channels each of the first four convs adds to the dense concatenation.
    """

    def __init__(self, num_feat: int, growth: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, growth, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + growth, growth, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * growth, growth, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * growth, growth, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * growth, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = _lrelu(self.conv1(x))
        x2 = _lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = _lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = _lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5: torch.Tensor = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, their output scaled by 0.2 plus the input."""

    def __init__(self, num_feat: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, growth)
        self.rdb2 = ResidualDenseBlock(num_feat, growth)
        self.rdb3 = ResidualDenseBlock(num_feat, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator (also Real-ESRGAN's x4plus / x2plus).

    Parameters:
        in_channels: image channels of the input (3 for RGB); the first conv sees ``in_channels *
            unshuffle**2`` channels.
        out_channels: image channels of the output.
        num_feat: trunk width (64 in the released models).
        num_blocks: number of RRDB blocks (23 in the released models).
        growth: dense growth channels (32 in the released models).
        upsamples: nearest-x2 + conv stages (2 for a x4 model, 3 for x8, 0 for x1).
        unshuffle: pixel-unshuffle factor applied first (Real-ESRGAN x2plus: 2, x1: 4); the net's overall
            scale is ``2**upsamples / unshuffle``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 64, num_blocks: int = 23,
                 growth: int = 32, upsamples: int = 2, unshuffle: int = 1) -> None:
        super().__init__()
        self.unshuffle = unshuffle
        self.upsamples = upsamples
        self.conv_first = nn.Conv2d(in_channels * unshuffle * unshuffle, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, growth) for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        for i in range(upsamples):
            self.add_module(f"conv_up{i + 1}", nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        f = self.unshuffle
        if f > 1:
            # pixel-unshuffle needs multiples of f: pad (mirror where the image is big enough), crop after
            ph, pw = (-h) % f, (-w) % f
            if ph or pw:
                mode = "reflect" if h > ph and w > pw else "replicate"
                x = F.pad(x, (0, pw, 0, ph), mode=mode)
            x = F.pixel_unshuffle(x, f)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for i in range(self.upsamples):
            conv: nn.Module = getattr(self, f"conv_up{i + 1}")
            feat = _lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out: torch.Tensor = self.conv_last(_lrelu(self.conv_hr(feat)))
        if f > 1:
            scale = (2 ** self.upsamples) // f
            out = out[..., : h * scale, : w * scale]
        return out


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact net (realesr-general-x4v3, realesr-animevideov3): plain 3x3 convs with PReLU,
    a pixel shuffle, plus the nearest-upsampled input as a residual.

    Parameters:
        in_channels: image channels in.
        out_channels: image channels out.
        num_feat: width of the body convs (64 in the released models).
        num_conv: body convs between the first and the last one (16 or 32 in the released models).
        upscale: pixel-shuffle factor, the net's scale.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 64, num_conv: int = 16,
                 upscale: int = 4) -> None:
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(in_channels, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, out_channels * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = F.pixel_shuffle(out, self.upscale)
        base = F.interpolate(x, scale_factor=self.upscale, mode="nearest")
        if base.shape[1] != out.shape[1]:  # grey in, colour out: the residual is broadcast
            base = base.mean(1, keepdim=True)
        return out + base
