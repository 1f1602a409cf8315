"""GLASS global anomaly synthesis (Chen et al., ECCV 2024): Gaussian noise pushed by gradient ascent.

Start from SimpleNet's noised features, then take a few steps *up* the discriminator's loss (normalised
gradient, so the step is a distance, not a gradient magnitude) and project each feature back into the
annulus r <= ||f' - f|| <= 2r around its normal feature (GLASS Sec. 3.3, "manifold" truncation). The
negatives thus sit where the current discriminator is weakest, but never far from the normal manifold.

r is measured, not fixed: the `radius` quantile of the batch's normal features' distances to their
mean — how GLASS's code measures r_t for its hypersphere variant. (Its manifold variant uses r = 0.5 in
WideResNet feature units; our 32-d TAEF2 features have another scale, so a fixed value would not carry.)
With r of the order of the normal cloud's own radius the negatives land well outside the cloud: see
notebook 03 for where they sit relative to real defects.
The discriminator ends in a sigmoid and is trained with BCE (normal -> 0, synthetic -> 1), as in GLASS.
Not included: GLASS's local (image-space, DTD texture) synthesis branch and its focal loss.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...registry import register
from .space import FeatureParams, FeatureSpaceMethod


@dataclass
class GlassParams(FeatureParams):
    ascent_steps: int = 20  # GLASS code default (--step 20)
    ascent_step_size: float = 0.1  # ours: step length as a fraction of r (GLASS: 0.001 absolute)
    radius: float = 0.75  # GLASS code default (--radius 0.75): quantile defining r
    radius_scale: float = 1.0  # ours: r multiplier (r = radius_scale * quantile)


@register("glass_global", family="feature")
class GlassGlobal(FeatureSpaceMethod):
    Params = GlassParams
    sigmoid_output = True

    def _radius(self, true, idx):
        """r: the `radius` quantile of the normal features' distances to their mean (GLASS code's r_t)."""
        import torch

        if idx is None:  # a single image (synthesize_features): reuse the radius seen in training
            return torch.tensor(self.radius_)
        with torch.no_grad():
            r = self.params.radius_scale * torch.quantile((true - true.mean(0)).norm(dim=1), self.params.radius)
        self.radius_ = float(r)
        return r

    def _negatives(self, true, idx, gen):
        import torch
        import torch.nn.functional as F

        p = self.params
        r = self._radius(true, idx)
        anchor = true.detach()
        fake = anchor + torch.randn(anchor.shape, generator=gen) * p.noise_std
        was_training = self.discriminator_.training
        self.discriminator_.eval()  # ascent must not update BatchNorm statistics
        for _ in range(p.ascent_steps):
            fake = fake.detach().requires_grad_(True)
            # loss the discriminator pays on these negatives (BCE towards "anomalous" = 1); climb it
            loss = F.binary_cross_entropy(self.discriminator_(fake), torch.ones(len(fake), 1))
            (grad,) = torch.autograd.grad(loss, fake)
            fake = fake + p.ascent_step_size * r * grad / (grad.norm(dim=1, keepdim=True) + 1e-10)
            fake = self._project(anchor, fake.detach(), r)
        if p.ascent_steps == 0:
            fake = self._project(anchor, fake, r)
        self.discriminator_.train(was_training)
        return fake.detach()

    @staticmethod
    def _project(anchor, fake, r):
        """Truncated projection (GLASS Eq. 6): keep ||fake - anchor|| within [r, 2r]."""
        h = fake - anchor
        norm = h.norm(dim=1, keepdim=True)
        return anchor + h * (norm.clamp(min=float(r), max=2 * float(r)) / (norm + 1e-10))

    def _loss(self, d_true, d_fake):
        import torch
        import torch.nn.functional as F

        return (F.binary_cross_entropy(d_true, torch.zeros_like(d_true))
                + F.binary_cross_entropy(d_fake, torch.ones_like(d_fake)))
