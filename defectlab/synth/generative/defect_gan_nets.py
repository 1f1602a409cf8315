"""Networks of `defect_gan` (Defect-GAN, Zhang et al., WACV 2021), kept small for a CPU.

- `Generator(x, c, gen)`: an encoder-decoder. The encoder reads the image and the control map; the
  decoder is modulated by the control map at every scale (a SPADE-like affine from the map, Park et al.
  2019) and gets per-channel learned-scale noise after each block (StyleGAN's noise inputs, Karras et al.
  2019). Two heads: a foreground layer F (the defect's appearance, in [0, 1]) and a spatial alpha A in
  [0, 1]. The output is the layer-wise composition A * F + (1 - A) * x, so wherever A = 0 the input shows
  through untouched.
- `Discriminator(y)`: a PatchGAN (Isola et al. 2017: one real/fake logit per receptive field) sharing
  its trunk with an auxiliary classifier over {normal, defect type 1..K} (AC-GAN / StarGAN style).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class NoiseInjection(nn.Module):
    """x + s * n with n ~ N(0, 1) per pixel (shared over channels) and s a learned per-channel scale,
    initialised at zero so the network first learns without noise and lets it in where it helps."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x, gen: torch.Generator | None):
        if gen is None:
            return x
        n = torch.randn((x.shape[0], 1, *x.shape[2:]), generator=gen)
        return x + self.scale * n


class ControlNorm(nn.Module):
    """Group-normalise the features, then scale and shift them with maps computed from the control map
    (resized to the features): where to paint and which defect type steers every decoder layer."""

    def __init__(self, channels: int, control_channels: int, hidden: int):
        super().__init__()
        self.norm = nn.GroupNorm(min(8, channels), channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(control_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 1)
        self.beta = nn.Conv2d(hidden, channels, 1)

    def forward(self, x, c):
        c = F.interpolate(c, size=x.shape[-2:], mode="area") if c.shape[-2:] != x.shape[-2:] else c
        h = self.shared(c)
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)


class DecoderBlock(nn.Module):
    """(optional 2x upsample) -> conv -> control norm -> noise -> LeakyReLU."""

    def __init__(self, cin: int, cout: int, control_channels: int, up: bool):
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = ControlNorm(cout, control_channels, hidden=min(16, cout))
        self.noise = NoiseInjection(cout)

    def forward(self, x, c, gen):
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.leaky_relu(self.noise(self.norm(self.conv(x), c), gen), 0.2)


class Generator(nn.Module):
    """G(x, c) -> (composed image, foreground F, alpha A); x (B, C, S, S) in [0, 1], c (B, K+1, S, S)."""

    def __init__(self, channels: int, control_channels: int, width: int, downs: int = 2, blocks: int = 2):
        super().__init__()
        widths = [width * 2 ** i for i in range(downs + 1)]
        enc = [nn.Conv2d(channels + control_channels, widths[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for a, b in zip(widths, widths[1:]):
            enc += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.GroupNorm(min(8, b), b), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*enc)
        dec = [DecoderBlock(widths[-1], widths[-1], control_channels, up=False) for _ in range(blocks)]
        dec += [DecoderBlock(a, b, control_channels, up=True) for a, b in zip(widths[::-1], widths[::-1][1:])]
        self.decoder = nn.ModuleList(dec)
        self.foreground = nn.Conv2d(widths[0], channels, 3, padding=1)
        self.alpha = nn.Conv2d(widths[0], 1, 3, padding=1)
        nn.init.constant_(self.alpha.bias, -2.0)  # start mostly transparent (A ~ 0.12): the input shows through

    def forward(self, x, c, gen: torch.Generator | None = None):
        h = self.encoder(torch.cat([x * 2 - 1, c], 1))
        for block in self.decoder:
            h = block(h, c, gen)
        fg = torch.sigmoid(self.foreground(h))
        alpha = torch.sigmoid(self.alpha(h))
        return alpha * fg + (1 - alpha) * x, fg, alpha


class Discriminator(nn.Module):
    """PatchGAN logits (B, 1, s, s) and class logits (B, K+1) from one convolutional trunk."""

    def __init__(self, channels: int, classes: int, width: int, layers: int = 3):
        super().__init__()
        trunk, c = [], channels
        for i in range(layers):
            trunk += [nn.Conv2d(c, width * 2 ** i, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c = width * 2 ** i
        self.trunk = nn.Sequential(*trunk)
        self.patch = nn.Conv2d(c, 1, 3, padding=1)
        self.classify = nn.Linear(c, classes)

    def forward(self, y):
        h = self.trunk(y * 2 - 1)
        return self.patch(h), self.classify(h.mean(dim=(2, 3)))
