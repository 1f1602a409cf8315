"""Online decoder adaptation (paper Sec. III-D): fine-tune a copy of the decoder for one generated image.

Loss = MSE(inside the defect mask, vs the unadapted decoding) + preservation x MSE(outside, vs the good image),
both means over all pixels as in the reference code, on the decoder's output *before* its clamp to [0, 1] (a
clamped pixel would pass no gradient). Only the decoder learns: SD's `post_quant_conv` stays frozen, as in the
reference code (AdamW over `vae.decoder.parameters()`). The caller's decoder is never modified.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..progress import progress
from .params import AdaptParams


def adaptation_loss(decoded, inside_target, good, mask, preservation: float) -> torch.Tensor:
    return (nn.functional.mse_loss(decoded * mask, inside_target * mask)
            + preservation * nn.functional.mse_loss(decoded * (1 - mask), good * (1 - mask)))


def latent_window(latent_mask: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) on the latent grid: the mask's bounding box grown by `margin` cells, clipped."""
    ys, xs = np.nonzero(latent_mask)
    h, w = latent_mask.shape
    return (max(0, ys.min() - margin), min(h, ys.max() + 1 + margin),
            max(0, xs.min() - margin), min(w, xs.max() + 1 + margin))


def unclamped(decoder: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """The decoder's output before its final clamp to [0, 1] (TAEF2, SD and the tiny decoders have `unclamped`)."""
    raw = getattr(decoder, "unclamped", None)
    return raw(latents) if callable(raw) else decoder(latents)


def trainable_decoder_parameters(decoder: nn.Module) -> list[nn.Parameter]:
    """The parameters adaptation trains: all but SD's `post_quant_conv` (frozen)."""
    frozen = getattr(decoder, "post_quant_conv", None)
    skip = {id(q) for q in frozen.parameters()} if isinstance(frozen, nn.Module) else set()
    return [q for q in decoder.parameters() if id(q) not in skip]


def adapt_decoder(decoder: nn.Module, latents: torch.Tensor, inside_target: torch.Tensor, good: torch.Tensor,
                  mask: torch.Tensor, params: AdaptParams, show_progress: bool = False) -> tuple[nn.Module, list[float]]:
    """A fine-tuned deep copy of `decoder` and the loss at every iteration (before each update)."""
    adapted = copy.deepcopy(decoder).train().requires_grad_(False)
    trained = trainable_decoder_parameters(adapted)
    for q in trained:
        q.requires_grad_(True)
    opt = torch.optim.AdamW(trained, lr=params.lr)
    losses = []
    steps = range(params.iterations)
    for _ in progress(steps, desc="decoder adaptation", leave=False) if show_progress else steps:
        opt.zero_grad(set_to_none=True)
        loss = adaptation_loss(unclamped(adapted, latents), inside_target, good, mask, params.preservation)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return adapted.eval().requires_grad_(False), losses


@torch.no_grad()
def decode_adapted(decoder: nn.Module, latents, inside_target, good, mask, latent_mask: np.ndarray,
                   params: AdaptParams, factor: int, show_progress: bool = False):
    """Adapt (whole image, or a window around the defect) and decode: (image (1, 3, H, W), losses)."""
    if params.iterations <= 0:
        return inside_target, []
    if params.window_margin is None or not latent_mask.any():
        with torch.enable_grad():
            adapted, losses = adapt_decoder(decoder, latents, inside_target, good, mask, params, show_progress)
        return adapted(latents), losses
    y0, y1, x0, x1 = latent_window(latent_mask, params.window_margin)
    py, px = slice(y0 * factor, y1 * factor), slice(x0 * factor, x1 * factor)
    crop = latents[:, :, y0:y1, x0:x1]
    with torch.enable_grad():
        adapted, losses = adapt_decoder(decoder, crop, inside_target[..., py, px], good[..., py, px],
                                        mask[..., py, px], params, show_progress)
    out = good.clone()  # far from the defect the preservation term drives the output to the good image
    out[..., py, px] = adapted(crop)
    return out, losses
