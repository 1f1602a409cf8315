"""Texture-conditioned defect GAN with a fusion network, after the multistage fabric GAN
(Liu et al., "Multistage GAN for Fabric Defect Detection", IEEE TIP 2020).

Stage 1, generation: G(z, t) draws a defect patch conditioned on a texture descriptor t of the
background it will go on — here the Gram matrix of the frozen TAEF2 encoder's features of that
background window (Gatys et al. 2016 style statistics), so a defect on fine gravel looks different
from one on brick. Stage 2, fusion: F(background, patch, mask) blends the patch into the background;
the result is composited through the mask, so nothing outside it changes. Both are trained jointly
against a discriminator that compares fused windows with windows around the few real defects (the
mask is an input of D, so it judges "a defect here").

Loss (`loss="r3gan"`, default): RpGAN + R1 + R2 (Huang et al., NeurIPS 2024, "R3GAN"): relativistic
pairing softplus(D(fake) - D(real)) for D and its mirror for G, with zero-centred gradient penalties
on real *and* fake data. `loss="nonsaturating"`: the classic non-saturating loss (Goodfellow et al.
2014) with R1 only (Mescheder et al. 2018).
Trained from scratch on a handful of defects, it learns colour/darkness and rough shape statistics of
the defects in quick mode; fine structure needs thousands of steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import DefectlabError
from ...progress import progress
from ...registry import register
from ...sample import Sample, as_mask
from ..base import build_params
from ..feature.space import load_feature_encoder
from .patches import augment_pairs, begin_window_fit, crop, paste, random_windows
from ..learned import (crop_box, fitted_input, perlin_region, place_real_mask, require_fitted, require_region,
                       seeded_init, work)


@dataclass
class TextureGANParams:
    loss: str = "r3gan"  # "r3gan" (RpGAN + R1 + R2, Huang et al. 2024) | "nonsaturating" (+ R1)
    gamma: float = 0.05  # R3GAN CIFAR-10 preset: initial gamma of the R1/R2 penalties
    lr: float = 2e-4  # R3GAN CIFAR-10 preset: initial learning rate
    betas: tuple[float, float] = (0.0, 0.9)  # R3GAN CIFAR-10 preset: Adam beta1 = 0, initial beta2 = 0.9
    z_dim: int = 64  # R3GAN: NoiseDimension 64
    width: int = 32  # ours: tiny networks
    size: int = 64  # ours: working window size (px)
    quick_size: int = 32  # ours
    context: float = 2.0  # ours: window side / defect bounding-box side
    steps: int = 3000  # ours
    quick_steps: int = 30  # ours
    batch_size: int = 16  # ours
    encoder: object = "taef2"  # texture-descriptor encoder: "taef2" | "random" | torch module


def gram_descriptor(encoder, windows):
    """Texture descriptor of windows (B, C, h, w) in [0, 1]: upper triangle of the Gram matrix of the
    encoder's features, normalised by the number of positions (Gatys et al. 2016, Eq. 3)."""
    import torch

    with torch.no_grad():
        f = encoder(windows)
        f = f.flatten(2)
        g = f @ f.transpose(1, 2) / f.shape[-1]
        iu = torch.triu_indices(g.shape[1], g.shape[1])
        return g[:, iu[0], iu[1]]


def _generator(z_dim: int, t_dim: int, width: int, channels: int, size: int):
    import torch
    from torch import nn

    ups = int(np.log2(size // 4))

    class Generator(nn.Module):
        """z and the texture embedding -> 4x4 map -> `ups` x (upsample, conv) -> (C, size, size)."""

        def __init__(self):
            super().__init__()
            self.texture = nn.Sequential(nn.LayerNorm(t_dim), nn.Linear(t_dim, z_dim))
            self.stem = nn.Linear(2 * z_dim, 4 * width * 16)
            blocks = []
            for _ in range(ups):
                blocks += [nn.Upsample(scale_factor=2), nn.Conv2d(4 * width if not blocks else width, width, 3, padding=1),
                           nn.GroupNorm(8, width), nn.LeakyReLU(0.2)]
            self.body = nn.Sequential(*blocks, nn.Conv2d(width, channels, 3, padding=1), nn.Sigmoid())

        def forward(self, z, t):
            h = self.stem(torch.cat([z, self.texture(t)], 1)).view(len(z), 4 * width, 4, 4)
            return self.body(h)

    return Generator()


def _fusion(width: int, channels: int):
    from torch import nn

    # background, generated patch and mask in -> blended content out (used only inside the mask)
    return nn.Sequential(nn.Conv2d(2 * channels + 1, width, 3, padding=1), nn.LeakyReLU(0.2),
                         nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.LeakyReLU(0.2),
                         nn.Conv2d(width, channels, 3, padding=1), nn.Sigmoid())


def _discriminator(width: int, channels: int, size: int):
    from torch import nn

    layers, c = [], channels + 1
    for i in range(int(np.log2(size // 4))):
        layers += [nn.Conv2d(c, width * 2 ** min(i, 2), 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c = width * 2 ** min(i, 2)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * 16, 1))


@register("texture_gan", family="generative")
class TextureDefectGAN:
    needs_fit = True

    def __init__(self, params: TextureGANParams | None = None, **overrides):
        self.params = build_params(TextureGANParams, params, overrides, "texture_gan")
        size = self.params.size
        if size < 8 or size & (size - 1) or self.params.quick_size < 8 or self.params.quick_size & (self.params.quick_size - 1):
            raise DefectlabError(f"size / quick_size: must be powers of two >= 8, got {size}, {self.params.quick_size}")
        if self.params.loss not in ("r3gan", "nonsaturating"):
            raise DefectlabError(f"loss: expected 'r3gan' or 'nonsaturating', got {self.params.loss!r}")
        self.fitted = False
        self.history: list[float] = []

    def _fuse(self, background, mask, z, texture):
        import torch

        patch = self.generator_(z, texture)
        return background * (1 - mask) + self.fusion_(torch.cat([background, patch, mask], 1)) * mask

    def _d(self, x, mask):
        import torch

        return self.discriminator_(torch.cat([x, mask], 1))

    def _d_losses(self, real, fake, mask):
        """Discriminator loss (adversarial + gradient penalties) on one batch."""
        import torch
        import torch.nn.functional as F

        p = self.params
        real = real.detach().requires_grad_(True)
        fake = fake.detach().requires_grad_(True)
        d_real, d_fake = self._d(real, mask), self._d(fake, mask)
        if p.loss == "r3gan":
            adv = F.softplus(d_fake - d_real).mean()
            pen_on = [(d_real, real), (d_fake, fake)]  # R1 and R2
        else:
            adv = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            pen_on = [(d_real, real)]  # R1
        penalty = 0
        for d, x in pen_on:
            (g,) = torch.autograd.grad(d.sum(), x, create_graph=True)
            penalty = penalty + g.square().sum(dim=(1, 2, 3)).mean()
        return adv + p.gamma / 2 * penalty, adv

    def _g_loss(self, real, fake, mask):
        import torch.nn.functional as F

        d_fake = self._d(fake, mask)
        if self.params.loss == "r3gan":
            return F.softplus(self._d(real, mask).detach() - d_fake).mean()
        return F.softplus(-d_fake).mean()

    def fit(self, goods, defects, rng: np.random.Generator | None = None, *, foregrounds=None):
        """Train G, F and D on windows around the real `defects` and random windows of `goods`."""
        import torch

        p = self.params
        goods, real_img, real_mask, sides = begin_window_fit(self, goods, defects, rng, "TextureDefectGAN.fit")
        self.encoder_ = load_feature_encoder(p.encoder)
        t_dim = gram_descriptor(self.encoder_, real_img[:1]).shape[1]
        with seeded_init(rng):
            self.generator_ = _generator(p.z_dim, t_dim, p.width, self.channels_, self.size_)
            self.fusion_ = _fusion(p.width, self.channels_)
            self.discriminator_ = _discriminator(p.width, self.channels_, self.size_)
        opt_g = torch.optim.Adam([*self.generator_.parameters(), *self.fusion_.parameters()], lr=p.lr, betas=p.betas)
        opt_d = torch.optim.Adam(self.discriminator_.parameters(), lr=p.lr, betas=p.betas)
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        self.history, self.g_history = [], []
        for _ in progress(range(work(p.steps, p.quick_steps)), desc="fit texture_gan"):
            real, mask = augment_pairs(real_img, real_mask, rng, rng.integers(len(real_img), size=p.batch_size))
            background = random_windows(goods, sides, p.batch_size, self.size_, rng)
            texture = gram_descriptor(self.encoder_, background)
            z = torch.randn(p.batch_size, p.z_dim, generator=gen)
            fake = self._fuse(background, mask, z, texture)
            d_loss, adv = self._d_losses(real, fake, mask)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = self._g_loss(real, fake, mask)
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            self.history.append(float(adv.detach()))
            self.g_history.append(float(g_loss.detach()))
        self.fitted = True
        return self

    def generate(self, window, mask, rng: np.random.Generator):
        """Fused window (C, size, size) for a good `window` and working `mask` (1, size, size)."""
        import torch

        require_fitted(self, "generate")
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        with torch.no_grad():
            z = torch.randn(1, self.params.z_dim, generator=gen)
            return self._fuse(window[None], mask[None], z, gram_descriptor(self.encoder_, window[None]))[0]

    def __call__(self, image, rng, *, foreground=None, mask=None) -> Sample:
        """A generated defect fused into `image` inside `mask` (default: a real defect mask moved to a
        random spot in the foreground)."""
        image = fitted_input(self, image)
        shape = image.shape[:2]
        region = as_mask(mask, shape) if mask is not None else place_real_mask(shape, rng, self.masks_, foreground)
        if region is None:
            region = perlin_region(shape, rng, foreground)
        require_region(region)
        window = crop_box(region, min(self.size_, *shape), self.params.context)
        win, m = crop(image, region, window, self.size_)
        out = paste(image, region, window, self.generate(win, m, rng))
        meta = {"method": self.name, "family": "generative", "window": list(window),
                "params": {k: v for k, v in vars(self.params).items() if k != "encoder"}}
        return Sample(out, region, meta)

