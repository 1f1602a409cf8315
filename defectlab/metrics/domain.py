"""Domain-feature distance: FID's and KID's arithmetic on the pretrained EfficientNet-Lite0 features that the
detectors use, instead of Inception's. It is **not FID**: different network, different numbers; it answers
"do the synthetic images look like the real ones to the backbone a defect detector is built on?".

Features: `defectlab.backbone.pretrained_features(strides=(4, 8, 16))` (24 + 40 + 112 channels), each map
global-average-pooled and concatenated (176-d), on images resized to `DomainParams.size` squared.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import inception as _inception

DOMAIN_NAME = "domain distance (EfficientNet-Lite0)"


@dataclass
class DomainParams:
    size: int = 256  # the benchmark's image size, a multiple of 32 as EfficientNet's fixed padding wants
    strides: tuple = (4, 8, 16)  # the feature levels DeSTSeg / PatchCore-style detectors read (layers 1-3)
    batch_size: int = 16


class DomainDistance(NamedTuple):
    frechet: float  # Fréchet distance of the pooled features (FID's formula, not FID)
    kernel: float  # unbiased cubic-kernel MMD^2 (KID's formula, subset scheme of `quality.KIDParams`)
    kernel_std: float
    n_real: int
    n_fake: int
    network: str = DOMAIN_NAME


_EXTRACTORS: dict = {}


def domain_features(images, params: DomainParams | None = None) -> np.ndarray:
    """(N, sum of channels) float32: each stride's feature map averaged over space, concatenated."""
    import torch
    import torch.nn.functional as F

    from ..backbone import pretrained_features

    p = params or DomainParams()
    key = tuple(p.strides)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = pretrained_features(strides=key)
    net = _EXTRACTORS[key]
    u8 = _inception.as_uint8_images(images, "images")
    out = []
    with torch.no_grad():
        for start in range(0, len(u8), p.batch_size):
            x = torch.cat([F.interpolate(torch.from_numpy(im).float()[None] / 255.0, size=(p.size, p.size),
                                         mode="bilinear", align_corners=False, antialias=True)
                           for im in u8[start:start + p.batch_size]])
            out.append(torch.cat([f.mean(dim=(2, 3)) for f in net(x)], dim=1).numpy())
    return np.concatenate(out).astype(np.float32)


def domain_distance(real, fake, params: DomainParams | None = None, kid_params=None) -> DomainDistance:
    """Fréchet and kernel distance between the pooled EfficientNet-Lite0 features of two image sets
    (lower = closer to the real images, for the detector's backbone)."""
    from .fid_kid import frechet_distance, kernel_inception_distance

    fr, ff = domain_features(real, params), domain_features(fake, params)
    k = kernel_inception_distance(fr, ff, kid_params)
    return DomainDistance(frechet_distance(fr, ff), k.mean, k.std, len(fr), len(ff))


__all__ = ["DOMAIN_NAME", "DomainDistance", "DomainParams", "domain_distance", "domain_features"]
