"""DiAD's networks on diffusers: the denoising UNet, the semantic-guided (SG) network and its SFF block.

The UNet is a diffusers `UNet2DConditionModel` with plain ResNet blocks only (no attention, no text: the
cross-attention width is a placeholder that no block reads). It is used, rather than `UNet2DModel`, because
its `forward` takes `down_block_additional_residuals` / `mid_block_additional_residual`: the SG network's
outputs are added to the UNet's skip connections exactly as DiAD adds its control to the SD decoder, with
no wrapper of our own around the UNet. The SG network is diffusers' `ControlNetModel.from_unet` (a trainable
copy of the UNet's encoder, its input image entering through a small strided conv stack, zero-initialised
1x1 convs on every output), followed by DiAD's Spatial-aware Feature Fusion: the outputs at the second-deepest
resolution are brought down (zero-initialised stride-2 conv, instance norm, SiLU) and added to each output
at the deepest resolution. With `deepest_only` (DiAD's `only_mid_control`) only the fused deepest outputs and
the middle block reach the UNet.
"""
from __future__ import annotations

import torch
from torch import nn

CONTEXT_DIM = 8  # the UNet's (unused) cross-attention width: no block of this UNet attends to text


def build_unet(latent_channels: int, channels: tuple[int, ...], layers_per_block: int, norm_groups: int,
               mid_block: str = "UNetMidBlock2D"):
    """A small text-free latent denoiser (diffusers initialises it from torch's global generator: fork it).
    `mid_block` "UNetMidBlock2DCrossAttn" gives the middle two ResNets (as a domain prior's `UNet2DModel` has)
    around an attention block that `defectlab.prior.init_from_prior` starts at zero."""
    from diffusers import UNet2DConditionModel

    n = len(channels)
    return UNet2DConditionModel(
        sample_size=16, in_channels=latent_channels, out_channels=latent_channels,
        down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n, mid_block_type=mid_block,
        block_out_channels=tuple(channels), layers_per_block=layers_per_block, cross_attention_dim=CONTEXT_DIM,
        norm_num_groups=norm_groups)


def _zero_down(n_in: int, n_out: int) -> nn.Sequential:
    conv = nn.Conv2d(n_in, n_out, 3, stride=2, padding=1, bias=False)
    nn.init.zeros_(conv.weight)
    return nn.Sequential(conv, nn.InstanceNorm2d(n_out), nn.SiLU())


class SemanticGuide(nn.Module):
    """SG network: (noisy latents, t, input image) -> (down residuals, mid residual) for the UNet."""

    def __init__(self, unet, embedding_channels: tuple[int, ...], deepest_only: bool = True):
        super().__init__()
        from diffusers import ControlNetModel

        self.controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=tuple(embedding_channels))
        self.deepest_only = deepest_only
        shapes = self._residual_shapes(unet)
        deep = min(s[1] for s in shapes)
        self.deep = [i for i, (_, side) in enumerate(shapes) if side == deep]
        self.prev = [i for i, (_, side) in enumerate(shapes) if side == 2 * deep]
        self.sff = nn.ModuleList([nn.ModuleList([_zero_down(shapes[j][0], shapes[i][0]) for j in self.prev])
                                  for i in self.deep])

    @staticmethod
    def _residual_shapes(unet) -> list[tuple[int, int]]:
        """(channels, side at a 64-side latent) of each skip connection, in the UNet's order."""
        cfg, out = unet.config, []
        side, ch = 64, cfg.block_out_channels[0]
        out.append((ch, side))  # conv_in
        for i, width in enumerate(cfg.block_out_channels):
            out += [(width, side)] * cfg.layers_per_block
            if i < len(cfg.block_out_channels) - 1:
                side //= 2
                out.append((width, side))  # downsampler
        return out

    def forward(self, latents, t, image):
        context = latents.new_zeros(latents.shape[0], 1, CONTEXT_DIM)
        down, mid = self.controlnet(latents, t, encoder_hidden_states=context, controlnet_cond=image, return_dict=False)
        down = list(down)
        fused = {i: nn.functional.silu(down[i] + sum(conv(down[j]) for conv, j in zip(convs, self.prev)))
                 for i, convs in zip(self.deep, self.sff)}
        for i, value in fused.items():
            down[i] = value
        if self.deepest_only:
            down = [d if i in fused else torch.zeros_like(d) for i, d in enumerate(down)]
        return down, mid


class Denoiser(nn.Module):
    """UNet + SG network as one module: predicted noise of `latents` at `t`, guided by `image`."""

    def __init__(self, unet, guide: SemanticGuide):
        super().__init__()
        self.unet, self.guide = unet, guide

    def forward(self, latents, t, image):
        down, mid = self.guide(latents, t, image)
        context = latents.new_zeros(latents.shape[0], 1, CONTEXT_DIM)
        return self.unet(latents, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample


def build_denoiser(latent_channels: int, channels, layers_per_block: int, norm_groups: int, embedding_channels,
                   deepest_only: bool, seed: int, init=None, mid_block: str = "UNetMidBlock2D") -> Denoiser:
    """The networks, initialised from `seed` only (torch's global generator is forked, left as it was); `init(unet)`,
    if given, sets the UNet's weights before the SG network copies its encoder."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = build_unet(latent_channels, tuple(channels), layers_per_block, norm_groups, mid_block)
        if init is not None:
            init(unet)
        guide = SemanticGuide(unet, tuple(embedding_channels), deepest_only)
    return Denoiser(unet, guide)
