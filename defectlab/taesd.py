"""TAEF2: the tiny autoencoder distilled from the FLUX.2 VAE (madebyollin/taesd, MIT), built from its weights.

Architecture (read off the state-dict keys and shapes): plain 3x3 conv + ReLU residual blocks, 64 channels,
three stride-2 convs down (8x) to 32 latent channels, and nearest 2x upsampling on the way back. The blocks
next to the latent (last three of the encoder, first three of the decoder) add a "group-norm pooling"
branch: x + (1x1 conv 64->256, GroupNorm(4 groups), ReLU, 1x1 conv 256->64)(x) before their convs.

Conventions (those of TAESD): images are RGB in [0, 1] (not [-1, 1] as the SD VAE); raw latents lie
roughly in [-3, 3] (the decoder soft-clamps them with 3 tanh(x/3)); `scale_latents` maps them to [0, 1]
for 8-bit storage and `unscale_latents` back. Grey images (1 channel) are repeated to 3 channels.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import DefectlabError

LATENT_CHANNELS = 32  # TAEF2: FLUX.2 latents have 32 channels
DOWNSCALE = 8  # three stride-2 convolutions
LATENT_MAGNITUDE = 3.0  # TAESD: raw latents lie in about [-3, 3]
LATENT_SHIFT = 0.5  # TAESD: scale_latents maps [-3, 3] to [0, 1]


def _conv(n_in: int, n_out: int, **kw) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kw)


class SoftClamp(nn.Module):
    """3 tanh(x / 3): keeps decoder input in the range the encoder produces."""

    def forward(self, x):
        return torch.tanh(x / LATENT_MAGNITUDE) * LATENT_MAGNITUDE


class Block(nn.Module):
    """Residual block: three 3x3 convs (ReLU between), identity skip, ReLU; optional group-norm pooling branch."""

    def __init__(self, width: int, pooled: bool = False, pool_groups: int = 4):
        super().__init__()
        self.conv = nn.Sequential(_conv(width, width), nn.ReLU(), _conv(width, width), nn.ReLU(), _conv(width, width))
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = None
        if pooled:
            wide = 4 * width
            self.pool = nn.Sequential(nn.Conv2d(width, wide, 1, bias=False), nn.GroupNorm(pool_groups, wide),
                                      nn.ReLU(), nn.Conv2d(wide, width, 1, bias=False))

    def forward(self, x):
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def _rgb(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DefectlabError(f"images: expected (B, 1 or 3, H, W), got {tuple(images.shape)}")
    if images.shape[-1] % DOWNSCALE or images.shape[-2] % DOWNSCALE:
        raise DefectlabError(f"images: height and width must be multiples of {DOWNSCALE}, got {tuple(images.shape[-2:])}")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class TAEEncoder(nn.Sequential):
    """Images (B, 3 or 1, H, W) in [0, 1] -> raw latents (B, C, H/8, W/8). Indices match the published state dict."""

    def __init__(self, latent_channels: int = LATENT_CHANNELS, width: int = 64, blocks: int = 3,
                 pooled_mid: bool = True):
        layers: list[nn.Module] = [_conv(3, width), Block(width)]
        for level in range(3):
            layers.append(_conv(width, width, stride=2, bias=False))
            layers += [Block(width, pooled=pooled_mid and level == 2) for _ in range(blocks)]
        layers.append(_conv(width, latent_channels))
        super().__init__(*layers)
        self.latent_channels = latent_channels

    def forward(self, images):
        return super().forward(_rgb(images))


class TAEDecoder(nn.Sequential):
    """Raw latents (B, C, h, w) -> images (B, 3, 8h, 8w) clamped to [0, 1]."""

    def __init__(self, latent_channels: int = LATENT_CHANNELS, width: int = 64, blocks: int = 3,
                 pooled_mid: bool = True):
        layers: list[nn.Module] = [SoftClamp(), _conv(latent_channels, width), nn.ReLU()]
        for level in range(3):
            layers += [Block(width, pooled=pooled_mid and level == 0) for _ in range(blocks)]
            layers += [nn.Upsample(scale_factor=2), _conv(width, width, bias=False)]
        layers += [Block(width), _conv(width, 3)]
        super().__init__(*layers)
        self.latent_channels = latent_channels

    def forward(self, latents):
        return self.unclamped(latents).clamp(0, 1)

    def unclamped(self, latents):
        """The output before the clamp to [0, 1] (AdaBLDM's decoder adaptation takes its loss here)."""
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise DefectlabError(f"latents: expected (B, {self.latent_channels}, h, w), got {tuple(latents.shape)}")
        return super().forward(latents)


def _load(module: nn.Module, name: str) -> nn.Module:
    from .weights import require

    path = require(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as exc:
        raise DefectlabError(f"{path}: weights do not fit the TAEF2 architecture ({exc})") from exc
    return module.float().eval().requires_grad_(False)


def load_encoder() -> TAEEncoder:
    """The pretrained TAEF2 encoder (float32, eval, frozen) from the checked weight file `taef2_encoder`."""
    return _load(TAEEncoder(), "taef2_encoder")


def load_decoder() -> TAEDecoder:
    """The pretrained TAEF2 decoder (float32, eval, frozen) from the checked weight file `taef2_decoder`."""
    return _load(TAEDecoder(), "taef2_decoder")


def scale_latents(latents: torch.Tensor) -> torch.Tensor:
    """Raw latents -> [0, 1] (TAESD's convention for storing latents as 8-bit images)."""
    return (latents / (2 * LATENT_MAGNITUDE) + LATENT_SHIFT).clamp(0, 1)


def unscale_latents(scaled: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> raw latents (inverse of `scale_latents` inside the clamp range)."""
    return (scaled - LATENT_SHIFT) * (2 * LATENT_MAGNITUDE)


def tiny_random_autoencoder(seed: int = 0, latent_channels: int = 4, width: int = 8) -> tuple[TAEEncoder, TAEDecoder]:
    """A randomly initialised, very small encoder/decoder pair of the same shape family, for fast tests.

    Initialised inside a forked torch RNG seeded with `seed`, so the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = TAEEncoder(latent_channels, width=width, blocks=1)
        dec = TAEDecoder(latent_channels, width=width, blocks=1)
    with torch.no_grad():  # outputs around mid-grey, so random pictures are not clamped flat to 0 or 1
        dec[-1].weight.mul_(0.1)
        dec[-1].bias.fill_(0.5)
    return enc.eval(), dec.eval()
