"""Pluggable autoencoders with one interface: images (B, 3, H, W) in [0, 1] <-> diffusion latents.

`encoder` and `decoder` are plain `nn.Module`s (so online adaptation can deep-copy and fine-tune the
decoder); `factor` is the spatial downscaling, `channels` the latent channel count.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import DefectlabError


@dataclass
class Autoencoder:
    encoder: nn.Module
    decoder: nn.Module
    channels: int
    factor: int = 8
    name: str = ""

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, decoder: nn.Module | None = None) -> torch.Tensor:
        return (decoder or self.decoder)(latents)

    def to(self, device) -> "Autoencoder":
        self.encoder.to(device)
        self.decoder.to(device)
        return self


def taef2() -> Autoencoder:
    """Offline default: TAEF2 (weights checked via `defectlab.weights`); its latents are already about unit scale."""
    from .. import taesd

    return Autoencoder(taesd.load_encoder(), taesd.load_decoder(), taesd.LATENT_CHANNELS, taesd.DOWNSCALE, "taef2")


def tiny(seed: int = 0, channels: int = 4) -> Autoencoder:
    """Random tiny autoencoder for tests (fast, meaningless pictures)."""
    from .. import taesd

    enc, dec = taesd.tiny_random_autoencoder(seed, latent_channels=channels)
    return Autoencoder(enc.requires_grad_(False), dec.requires_grad_(False), channels, taesd.DOWNSCALE, "tiny")


class _SDEncoder(nn.Module):
    """[0, 1] images -> SD latents (posterior mean x scaling factor)."""

    def __init__(self, vae):
        super().__init__()
        self.encoder, self.quant_conv, self.scale = vae.encoder, vae.quant_conv, float(vae.config.scaling_factor)

    def forward(self, images):
        images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        moments = self.quant_conv(self.encoder(images * 2 - 1)) if self.quant_conv is not None \
            else self.encoder(images * 2 - 1)
        return moments.chunk(2, dim=1)[0] * self.scale


class _SDDecoder(nn.Module):
    """SD latents -> [0, 1] images: divide by the scaling factor, decode, map [-1, 1] to [0, 1]."""

    def __init__(self, vae):
        super().__init__()
        self.post_quant_conv, self.decoder, self.scale = vae.post_quant_conv, vae.decoder, float(vae.config.scaling_factor)

    def forward(self, latents):
        return self.unclamped(latents).clamp(0, 1)

    def unclamped(self, latents):
        z = latents / self.scale
        z = self.post_quant_conv(z) if self.post_quant_conv is not None else z
        return (self.decoder(z) + 1) / 2


def stable_diffusion(path: str, subfolder: str | None = "vae", revision: str | None = None) -> Autoencoder:
    """SD's `AutoencoderKL.from_pretrained(path)` (hub id or local folder; a hub id needs internet once;
    `revision` pins a hub commit or tag)."""
    from diffusers import AutoencoderKL

    try:
        vae = AutoencoderKL.from_pretrained(path, subfolder=subfolder, revision=revision) if subfolder \
            else AutoencoderKL.from_pretrained(path, revision=revision)
    except (OSError, ValueError) as exc:
        if subfolder:
            return stable_diffusion(path, subfolder=None, revision=revision)
        raise DefectlabError(f"{path}: cannot load an AutoencoderKL ({exc})") from exc
    vae = vae.float().eval().requires_grad_(False)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return Autoencoder(_SDEncoder(vae), _SDDecoder(vae), int(vae.config.latent_channels), factor, "sd")


def build(kind: str, path: str | None = None, seed: int = 0, channels: int = 4, revision: str | None = None) -> Autoencoder:
    if kind == "taef2":
        return taef2()
    if kind == "tiny":
        return tiny(seed, channels)
    if kind == "sd":
        if not path:
            raise DefectlabError("autoencoder 'sd' needs autoencoder_path (an SD hub id or a local folder)")
        return stable_diffusion(path, revision=revision)
    raise DefectlabError(f"unknown autoencoder {kind!r}; use 'taef2', 'tiny' or 'sd'")
