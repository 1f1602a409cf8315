"""RealNet's Strength-controllable Diffusion Anomaly Synthesis, SDAS (Zhang et al., CVPR 2024).

A diffusion model trained on good images only is sampled with its per-step noise variance scaled by
(1 + s): every reverse step lands a little off the learned normal manifold, so the sample drifts into
"almost normal" images — anomalies whose strength s controls. The anomalous image is then blended into
a good image through a Perlin mask with a transparency factor (RealNet's training data recipe).

Here the model is a tiny diffusers UNet trained from scratch at a low working resolution (RealNet
fine-tunes an ImageNet-pretrained 256 px guided-diffusion model for two days on four GPUs), so
the samples are blurry in quick mode; the mechanism — and how s moves samples off the manifold — is
the same. RealNet's optional classifier guidance is not included.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...progress import progress
from ...registry import register
from ...sample import Sample, as_mask
from . import diffusion
from ..base import build_params
from ..learned import (check_goods, fitted_input, perlin_region, require_fitted, require_region, require_rng, resize_to,
                       seeded_init, to_image, to_tensor, work)


@dataclass
class RealNetParams:
    strength: tuple[float, float] = (0.1, 0.2)  # RealNet sample.py: s ~ U(0.1, 0.2) for DDPM sampling
    transparency: tuple[float, float] = (0.5, 1.0)  # RealNet realnet.yaml: sdas_transparency_range
    inference_steps: int = 20  # RealNet sample.yaml: 1000 steps respaced to 20 ("section_counts")
    size: int = 64  # ours (RealNet: 256 px)
    quick_size: int = 32  # ours
    widths: tuple[int, ...] = (32, 64, 64)  # ours: tiny UNet
    steps: int = 4000  # ours: optimiser steps
    quick_steps: int = 40  # ours
    batch_size: int = 16  # ours
    lr: float = 2e-4  # DDPM (Ho et al. 2020), App. B (CIFAR-10)
    # ours (issue #36), standing in for RealNet's pretrained diffusion model fine-tuned on the good images: "auto" =
    # SDAS samples the latents of the domain prior of the goods given to fit (`defectlab.prior`; trained once,
    # cached, shared with AdaBLDM and DiAD) and decodes them; a prior folder = that prior; None = the tiny
    # pixel-space UNet above, trained in fit
    prior: str | None = "auto"
    prior_size: int = 128  # ours: the prior's side (its latents are prior_size / 8)
    autoencoder: str | None = None  # the prior's latent space: None = "taef2" ("tiny" in quick mode)


@register("realnet_sdas", family="generative")
class RealNetSDAS:
    needs_fit = True
    uses_defects = False  # fit learns from the goods only (benchmark: no transferred row, it would repeat)

    def __init__(self, params: RealNetParams | None = None, **overrides):
        self.params = build_params(RealNetParams, params, overrides, "realnet_sdas")
        self.fitted = False
        self.history: list[float] = []

    def deviations(self) -> list[str]:
        """What stands in for the paper's pretrained model, and other departures (issue #36)."""
        prior = getattr(self, "prior_", None)
        first = (f"SDAS samples the domain prior of the {prior.category} good images (an unconditional latent diffusion "
                 "model trained on them, `defectlab.prior`, in TAEF2 latents) in place of RealNet's ImageNet-pretrained "
                 "256-px guided-diffusion model fine-tuned on the good images" if prior is not None else
                 f"a tiny pixel-space UNet trained from scratch on the good images at {self.params.size} px stands in "
                 "for RealNet's ImageNet-pretrained 256-px guided-diffusion model (fine-tuned on the good images); "
                 "no domain prior (`defectlab.prior`)")
        return [first, "no classifier guidance"]

    def fit(self, goods, defects=None, rng: np.random.Generator | None = None, *, foregrounds=None):
        """Train the diffusion model on good images (eps-prediction MSE). `defects` are not used."""
        import torch
        import torch.nn.functional as F

        require_rng(rng, "RealNetSDAS.fit")
        p = self.params
        goods = check_goods(goods)
        self.size_ = work(p.size, p.quick_size)
        self.channels_ = goods[0].shape[2]
        self.prior_ = self._prior(goods)
        if self.prior_ is not None:  # nothing to train: SDAS samples the prior
            self.history, self.fitted = [], True
            return self
        data = to_tensor(goods, self.size_) * 2 - 1
        with seeded_init(rng):
            self.unet_ = diffusion.tiny_unet(self.channels_, self.size_, p.widths)
        self.scheduler_ = diffusion.scheduler()
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        opt = torch.optim.Adam(self.unet_.parameters(), lr=p.lr)
        self.history = []
        self.unet_.train()
        for _ in progress(range(work(p.steps, p.quick_steps)), desc="fit realnet_sdas"):
            x0 = data[torch.randint(len(data), (p.batch_size,), generator=gen)]
            x0 = torch.where(torch.rand(len(x0), 1, 1, 1, generator=gen) < 0.5, x0.flip(-1), x0)  # h-flip
            noise, t = diffusion.train_batch_noise(x0, gen)
            loss = F.mse_loss(self.unet_(diffusion.add_noise(self.scheduler_, x0, noise, t), t).sample, noise)
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.history.append(float(loss.detach()))
        self.unet_.eval()
        self.fitted = True
        return self

    def _prior(self, goods):
        from ...config import quick_mode
        from ...prior import PriorParams, resolve_prior

        p = self.params
        autoencoder = p.autoencoder or ("tiny" if quick_mode() else "taef2")
        like = PriorParams(size=p.prior_size, autoencoder=autoencoder)
        if autoencoder == "tiny":
            from ...prior import tiny_params

            like = tiny_params(size=p.prior_size)
        return resolve_prior(p.prior, goods, like, category="goods", who="RealNet SDAS", show_progress=False)

    def _sample_prior(self, n: int, s: float, gen):
        """SDAS on the prior: respaced DDPM steps on its latents, variance scaled by (1 + s), then decoded."""
        import torch

        from ...prior.model import ddpm_scheduler

        prior = self.prior_
        side = prior.params.size // prior.autoencoder.factor
        z = torch.randn((n, prior.autoencoder.channels, side, side), generator=gen)
        sched = ddpm_scheduler()
        ts = diffusion.timesteps(self.params.inference_steps)
        with torch.no_grad():
            for t, t_prev in zip(ts, ts[1:] + [-1]):
                eps = prior.unet(z, torch.full((n,), t)).sample
                z = diffusion.reverse_step(sched, eps, t, t_prev, z, gen, variance_scale=1 + s, clip=3.0)
            images = prior.autoencoder.decode(z).clamp(0, 1)
        return images.mean(dim=1, keepdim=True) if self.channels_ == 1 else images

    def sample_images(self, n: int, rng: np.random.Generator, strength: float | None = None):
        """`n` SDAS images (n, C, size, size) in [0, 1]; strength s (default: drawn from `params.strength`).
        s = 0 is plain DDPM sampling: the model's idea of a normal image."""
        import torch

        require_fitted(self, "sample_images")
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        s = float(rng.uniform(*self.params.strength)) if strength is None else float(strength)
        if self.prior_ is not None:
            return self._sample_prior(n, s, gen), s
        x = torch.randn((n, self.channels_, self.size_, self.size_), generator=gen)
        ts = diffusion.timesteps(self.params.inference_steps)
        with torch.no_grad():
            for t, t_prev in zip(ts, ts[1:] + [-1]):
                eps = self.unet_(x, torch.full((n,), t)).sample
                x = diffusion.reverse_step(self.scheduler_, eps, t, t_prev, x, gen, variance_scale=1 + s)
        return (x + 1) / 2, s

    def __call__(self, image, rng, *, foreground=None, mask=None) -> Sample:
        """Blend one SDAS sample (resized to the image) into `image` through a Perlin mask (or `mask`)
        with a transparency factor beta: out = (1 - m) x + m (beta a + (1 - beta) x)."""
        image = fitted_input(self, image)
        shape = image.shape[:2]
        region = as_mask(mask, shape) if mask is not None else perlin_region(shape, rng, foreground)
        require_region(region)
        anomaly, s = self.sample_images(1, rng)
        anomaly = to_image(resize_to(anomaly, shape)[0])
        beta = float(rng.uniform(*self.params.transparency))
        out = image.copy()
        out[region] = beta * anomaly[region] + (1 - beta) * image[region]
        meta = {"method": self.name, "family": "generative", "strength": s, "transparency": beta,
                "params": asdict(self.params)}
        return Sample(out, region, meta)
