"""The prior's network and noise schedule, and sampling from it.

The denoiser is diffusers' unconditional `UNet2DModel` with plain ResNet blocks (no attention: the blocks and
their parameter names are those of AdaBLDM's and DiAD's conditioned UNets, so `transfer.init_from_prior` can
start them from it). The schedule is Stable Diffusion's (scaled linear betas 0.00085-0.012, 1000 steps), the one
AdaBLDM and DiAD use, so a timestep means the same noise level to all three.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .params import PriorParams

NUM_TRAIN_TIMESTEPS = 1000  # SD v1 (and DDPM): T = 1000
BETA_START, BETA_END = 0.00085, 0.012  # SD v1: scaled linear betas


def ddpm_scheduler():
    """Training: q(z_t | z_0) on SD's schedule."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END,
                         beta_schedule="scaled_linear", clip_sample=False)


def ddim_scheduler():
    """Sampling: DDIM (eta 0) on the same schedule, "trailing" spacing so a chain starts at t = 999."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END,
                         beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                         timestep_spacing="trailing")


def build_unet(params: PriorParams, latent_channels: int, seed: int = 0):
    """A fresh `UNet2DModel` (diffusers initialises from torch's global generator: forked, so it depends on `seed`)."""
    from diffusers import UNet2DModel

    n = len(params.unet_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(sample_size=params.size // 8, in_channels=latent_channels, out_channels=latent_channels,
                           block_out_channels=tuple(params.unet_channels), layers_per_block=params.layers_per_block,
                           down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
                           norm_num_groups=params.norm_groups, add_attention=False)


@dataclass
class DomainPrior:
    """A trained prior: its (EMA) UNet, the autoencoder whose latents it models, and what it was trained on."""

    unet: torch.nn.Module
    autoencoder: object  # defectlab.prior.autoencoders.Autoencoder
    params: PriorParams
    record: dict  # prior.json: category, size, fingerprint, sha256, number of good images, ...
    folder: Path | None = None  # where it was loaded from (what a `prior=` parameter takes)

    @property
    def category(self) -> str:
        return self.record.get("category", "")

    @property
    def size(self) -> int:
        return self.params.size

    @torch.no_grad()
    def sample_latents(self, n: int, generator: torch.Generator, steps: int = 50, batch: int = 16,
                       scheduler=ddim_scheduler) -> torch.Tensor:
        """`n` latents drawn from pure noise; by default by DDIM (eta 0: the noise is the only randomness).
        `scheduler`: a function returning another diffusers scheduler; one whose `step` draws noise (ancestral DDPM,
        DDIM with eta > 0) draws it from `generator` too."""
        side = self.params.size // self.autoencoder.factor
        out = []
        for start in range(0, n, batch):
            z = torch.randn((min(batch, n - start), self.autoencoder.channels, side, side), generator=generator)
            sched = scheduler()
            sched.set_timesteps(steps)
            for t in sched.timesteps:
                z = sched.step(self.unet(z, t).sample, t, z, generator=generator).prev_sample
            out.append(z)
        return torch.cat(out)

    def sample(self, n: int, rng: np.random.Generator, steps: int = 50) -> np.ndarray:
        """`n` free samples as images (n, size, size, 3) in [0, 1]."""
        from ..sample import torch_generator

        z = self.sample_latents(n, torch_generator(rng), steps)
        images = self.autoencoder.decode(z).clamp(0, 1)
        return images.permute(0, 2, 3, 1).numpy().astype(np.float32)
