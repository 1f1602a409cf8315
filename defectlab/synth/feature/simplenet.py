"""SimpleNet (Liu et al., CVPR 2023): Gaussian noise on adapted normal features as the anomalies.

A discriminator learns to score adapted normal features high and noised ones low with a truncated L1
loss (Sec. 3.5, Eq. 7); its negated score per feature cell is the anomaly map. The anomalies are only
"normal + N(0, sigma^2)", so they sit in a thin shell around the normal cloud: the method bets that
real defects land outside that shell too.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...registry import register
from .space import FeatureParams, FeatureSpaceMethod


@dataclass
class SimpleNetParams(FeatureParams):
    margin: float = 0.5  # SimpleNet Sec. 3.5: truncation thresholds th+ = th- = 0.5


@register("simplenet", family="feature")
class SimpleNet(FeatureSpaceMethod):
    Params = SimpleNetParams

    def _negatives(self, true, idx, gen):
        import torch

        return true + torch.randn(true.shape, generator=gen) * self.params.noise_std

    def _loss(self, d_true, d_fake):
        # Eq. 7: max(0, th+ - D(normal)) + max(0, th- + D(noised)), averaged over cells
        m = self.params.margin
        return (m - d_true).clamp(min=0).mean() + (m + d_fake).clamp(min=0).mean()

    def _anomaly(self, d_out):
        return -d_out  # Sec. 3.6: the anomaly score is the negated discriminator output
