"""DDPM pieces shared by the diffusion-based synthesizers (RealNet SDAS, DefectFill-style inpainting).

The models are diffusers' `UNet2DModel` / `UNet2DConditionModel`, made tiny so they train from scratch
on a CPU in minutes; the schedule is diffusers' `DDPMScheduler` (DDPM, Ho et al. 2020: T = 1000,
linear betas 1e-4..0.02). The reverse step is written out below, as the paper writes it, because
both methods change it: RealNet scales its noise, AnomalyDiffusion-style blending overwrites the
known region after it. Pixels live in [-1, 1] inside this module.
"""
from __future__ import annotations

import numpy as np

NUM_TRAIN_TIMESTEPS = 1000  # DDPM (Ho et al. 2020), Sec. 4: T = 1000
BETA_START, BETA_END = 1e-4, 0.02  # DDPM Sec. 4: linear schedule


def scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END,
                         beta_schedule="linear", clip_sample=True)


def tiny_unet(channels: int, size: int, widths=(32, 64, 64)):
    """Unconditional UNet2DModel: `widths` per level, one ResNet block per level, attention at the lowest."""
    from diffusers import UNet2DModel

    n = len(widths)
    return UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
                       block_out_channels=tuple(widths), norm_num_groups=8,
                       down_block_types=("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D",),
                       up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (n - 1))


def tiny_inpaint_unet(channels: int, size: int, widths=(32, 64), token_dim: int = 32):
    """Conditional inpainting UNet2DConditionModel: input = [noisy x, mask, masked image] (2C + 1
    channels, as Stable Diffusion inpainting stacks them), cross-attention to `token_dim` tokens below
    the top level only (attention over every pixel of the top level costs most of the time on a CPU)."""
    from diffusers import UNet2DConditionModel

    n = len(widths)
    return UNet2DConditionModel(sample_size=size, in_channels=2 * channels + 1, out_channels=channels,
                                layers_per_block=1, block_out_channels=tuple(widths), norm_num_groups=8,
                                down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
                                up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
                                cross_attention_dim=token_dim, attention_head_dim=8)


def timesteps(steps: int) -> list[int]:
    """`steps` timesteps spread evenly over [0, T-1], descending (respaced DDPM sampling)."""
    steps = max(1, min(steps, NUM_TRAIN_TIMESTEPS))
    return sorted({int(round(t)) for t in np.linspace(0, NUM_TRAIN_TIMESTEPS - 1, steps)}, reverse=True)


def add_noise(sched, x0, noise, t):
    """q(x_t | x_0) for a batch of timesteps `t` (long tensor)."""
    return sched.add_noise(x0, noise, t)


def reverse_step(sched, eps, t: int, t_prev: int, x_t, generator, variance_scale: float = 1.0, clip: float = 1.0):
    """One DDPM reverse step x_t -> x_{t_prev} (DDPM Eq. 7 posterior, respaced; fixed "small" variance).

    x0 is predicted from eps and clipped to [-clip, clip] (pixels: 1; TAEF2 latents: 3); the posterior mean of
    q(x_prev | x_t, x0) plus sqrt(variance * variance_scale) * z. RealNet's SDAS sets variance_scale = 1 + s."""
    import torch

    a_t = sched.alphas_cumprod[t]
    a_prev = sched.alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    beta = 1 - a_t / a_prev
    x0 = ((x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-clip, clip)
    mean = (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x_t
    if t_prev < 0:
        return mean
    var = beta * (1 - a_prev) / (1 - a_t)
    z = torch.randn(x_t.shape, generator=generator)
    return mean + (var * variance_scale).sqrt() * z


def train_batch_noise(x0, generator):
    """(noise, timesteps) for one training batch, drawn from `generator`."""
    import torch

    noise = torch.randn(x0.shape, generator=generator)
    t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (x0.shape[0],), generator=generator)
    return noise, t
