"""Defect-GAN: whole-image translation normal <-> defective (Zhang, Cui, Hung & Lu, WACV 2021).

Where the other generative methods paint a window around a mask, Defect-GAN translates the *whole*
image. One generator G(x, c) serves two directions, chosen by a spatial and categorical control map c
(one channel per defect type plus one "normal" channel, each 1 where that class is wanted):
- **defacement** G(x, c_type): a normal image gets a defect of that type where the map says;
- **restoration** G(y, c_normal): a defective image gets its defect removed there.
Trained on unpaired images (the goods and the few real defects), the two directions are each other's
cycle: deface then restore should give back the normal image, restore a real defect then deface it
again should give back the real defect.

The generator is layer-wise compositional: it outputs a defect foreground layer F and a spatial alpha
A (the paper's "spatial distribution map") and the result is A * F + (1 - A) * x, so the normal
appearance is kept wherever A = 0. Per-layer learned-scale noise (StyleGAN's noise inputs) gives
different defects for the same control map. A discriminator with a PatchGAN head and an auxiliary
classifier over {normal, type 1..K} judges realism and the type. Losses (Sec. 3 of the paper;
networks in `defect_gan_nets.py`):
  D: adversarial + lambda_cls_d * classification of the real images;
  G: adversarial + lambda_cls_g * classification of the translated images + lambda_rec * L1 cycle
     + lambda_sd_cyc * L1(A of a translation, A of its reverse) + lambda_sd_con * mean(A) (sparsity).

Here: the whole image is resized to a square working side (128 px by default, 64 in quick mode), the
alpha and the foreground are brought back to the image's resolution and composed there, so the
background keeps its full detail. The returned mask is the composition's foreground, alpha > threshold
(inside the foreground when one is given), not the control map: it follows what G actually drew, and
the pixels outside it are the input's own (the alpha there is cut to 0), so the mask covers every
changed pixel. Trained from scratch on a CPU in minutes, G learns where and roughly how dark to paint,
not the defects' fine structure; the paper trains for hours on a GPU.

Parameter sources: the abstract confirms the mechanisms (defacement / restoration, compositional
layers, stochastic variation, control of location and category). The full text was not reachable
from here; the loss weights are those of a public re-implementation (jason2714/de-i2i-gan, option
`loss_weight` = [cls_d, cls_g, rec, sd_cyc, sd_con]) and are marked so; the rest is ours.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...errors import DefectlabError
from ...progress import progress
from ...registry import register
from ...sample import Sample, as_mask, torch_generator
from ..base import build_params
from .patches import augment_pairs
from ..learned import (check_goods, fitted_input, perlin_region, place_real_mask, require_defects, require_fitted,
                       require_region, require_rng, resize_to, seeded_init, to_image, to_tensor, work)

NORMAL = "normal"  # the restoration channel of the control map (channel 0)


@dataclass
class DefectGANParams:
    lambda_cls_d: float = 2.0  # de-i2i-gan re-implementation of Defect-GAN, loss_weight[0]; paper value not confirmed
    lambda_cls_g: float = 5.0  # same source, loss_weight[1]
    lambda_rec: float = 5.0  # same source, loss_weight[2] (cycle L1)
    lambda_sd_cyc: float = 5.0  # same source, loss_weight[3] (alpha of a translation vs of its reverse)
    lambda_sd_con: float = 1.0  # same source, loss_weight[4] (alpha sparsity)
    lambda_mask: float = 5.0  # ours: L1(alpha of restoring a real defect, its real mask); the few shots have masks
    lr: float = 2e-4  # same source (default lr); also pix2pix / CycleGAN
    betas: tuple[float, float] = (0.5, 0.999)  # ours (pix2pix / CycleGAN's Adam)
    threshold: float = 0.5  # ours: alpha above this is the returned mask
    width: int = 16  # ours: generator width at full resolution (x2 per downsampling)
    d_width: int = 16  # ours: discriminator width
    size: int = 128  # ours (issue 22: 128 px on a CPU); the paper works at 128 px as well: not confirmed
    quick_size: int = 64  # ours
    steps: int = 1500  # ours
    quick_steps: int = 60  # ours
    batch_size: int = 8  # ours


def _check(p: DefectGANParams) -> None:
    for name in ("size", "quick_size"):
        v = getattr(p, name)
        if not isinstance(v, int) or v < 16 or v % 4:
            raise DefectlabError(f"defect_gan: {name} must be a multiple of 4 >= 16, got {v!r}")
    if not 0 < p.threshold < 1:
        raise DefectlabError(f"defect_gan: threshold must be in (0, 1), got {p.threshold!r}")
    for name in ("width", "d_width", "batch_size", "steps", "quick_steps"):
        if not isinstance(getattr(p, name), int) or getattr(p, name) < (0 if "steps" in name else 1):
            raise DefectlabError(f"defect_gan: {name} must be a positive integer, got {getattr(p, name)!r}")


def _working_mask(mask: np.ndarray, side: int):
    """bool (H, W) -> float tensor (1, side, side); a cell is 1 if it holds any mask pixel (thin defects survive)."""
    import torch
    import torch.nn.functional as F

    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    if m.shape[-2] >= side and m.shape[-1] >= side:
        m = F.adaptive_max_pool2d(m, side)
    else:
        m = F.interpolate(m, size=(side, side), mode="nearest")
    return (m[0] > 0).float()


def _balanced_l1(alpha, mask):
    """L1 between alpha and a 0/1 mask, inside and outside the mask weighted equally (defects are small)."""
    inside = ((1 - alpha) * mask).sum() / mask.sum().clamp(min=1)
    outside = (alpha * (1 - mask)).sum() / (1 - mask).sum().clamp(min=1)
    return (inside + outside) / 2


def defect_type(sample: Sample) -> str:
    """The defect type of a real defect: meta "label" (the data readers' key) or "defect_type", else "defect"."""
    return str(sample.meta.get("label") or sample.meta.get("defect_type") or "defect")


@register("defect_gan", family="generative")
class DefectGAN:
    needs_fit = True

    def __init__(self, params: DefectGANParams | None = None, **overrides):
        self.params = build_params(DefectGANParams, params, overrides, "defect_gan")
        _check(self.params)
        self.fitted = False
        self.history: list[float] = []

    # ---- control maps
    def control(self, region, kind: str, side: int | None = None):
        """Control map (1, K+1, side, side) for a bool region (H, W) and a class name (a type or "normal")."""
        import torch

        if kind != NORMAL and kind not in self.types_:
            raise DefectlabError(f"defect type {kind!r} unknown; fitted on {', '.join(self.types_)}")
        side = side or self.size_
        c = torch.zeros(1, len(self.types_) + 1, side, side)
        c[0, self.classes_.index(kind)] = _working_mask(region, side)[0]
        return c

    # ---- training
    def fit(self, goods, defects, rng: np.random.Generator | None = None, *, foregrounds=None):
        """Train G and D on the good images and the few real `defects` (Samples with a type in meta["label"])."""
        import torch

        from . import defect_gan_nets as nets

        require_rng(rng, "DefectGAN.fit")
        p = self.params
        goods = check_goods(goods)
        self.channels_ = goods[0].shape[2]
        defects = require_defects(defects, self.channels_, "DefectGAN.fit")
        fgs = self._foregrounds(goods, foregrounds)
        side = min(work(p.size, p.quick_size), min(min(g.shape[:2]) for g in goods) // 4 * 4)
        self.size_ = max(side, 16)
        self.types_ = sorted({defect_type(d) for d in defects})
        self.classes_ = [NORMAL, *self.types_]
        self.masks_ = [d.mask for d in defects]
        self.mask_types_ = [defect_type(d) for d in defects]
        S = self.size_
        x_all = to_tensor(goods, S)
        fg_all = torch.stack([_working_mask(f, S) for f in fgs])
        y_all = to_tensor([d.image for d in defects], S)
        m_all = torch.stack([_working_mask(d.mask, S) for d in defects])
        k_all = torch.tensor([self.classes_.index(t) for t in self.mask_types_])
        small_masks = [m[0].numpy() > 0 for m in m_all]
        with seeded_init(rng):
            self.generator_ = nets.Generator(self.channels_, len(self.classes_), p.width)
            self.discriminator_ = nets.Discriminator(self.channels_, len(self.classes_), p.d_width)
        opt_g = torch.optim.Adam(self.generator_.parameters(), lr=p.lr, betas=p.betas)
        opt_d = torch.optim.Adam(self.discriminator_.parameters(), lr=p.lr, betas=p.betas)
        gen = torch_generator(rng)
        self.history, self.d_history = [], []
        self.parts = {k: [] for k in ("adv", "cls", "rec", "sd_cyc", "sd_con", "mask")}
        for _ in progress(range(work(p.steps, p.quick_steps)), desc="fit defect_gan"):
            x, fg = augment_pairs(x_all, fg_all, rng, rng.integers(len(x_all), size=p.batch_size))
            j = rng.integers(len(y_all), size=p.batch_size)
            y, m = augment_pairs(y_all, m_all, rng, j)
            k = k_all[j]
            # where to deface each normal image: a real mask of the chosen type moved onto its foreground
            region = torch.stack([torch.from_numpy(place_real_mask((S, S), rng, [small_masks[i]], f[0].numpy() > 0))
                                  for i, f in zip(j, fg)]).float()[:, None]
            losses, fakes = self._g_forward(x, y, m, region, k, gen)
            d_loss = self._d_loss(x, y, k, fakes)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = self._g_loss(losses, fakes, k)
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            self.history.append(float(g_loss.detach()))
            self.d_history.append(float(d_loss.detach()))
        self.generator_.eval()
        self.fitted = True
        return self

    @staticmethod
    def _foregrounds(goods, foregrounds):
        if foregrounds is None:
            return [np.ones(g.shape[:2], bool) for g in goods]
        if len(foregrounds) != len(goods):
            raise DefectlabError(f"foregrounds: {len(foregrounds)} masks for {len(goods)} good images")
        out = [as_mask(f, g.shape[:2], f"foregrounds[{i}]") for i, (f, g) in enumerate(zip(foregrounds, goods))]
        return [f if f.any() else np.ones_like(f) for f in out]

    def _onehot(self, region, k):
        """(B, K+1, S, S) control maps: class k[i] on region[i]."""
        import torch.nn.functional as F

        return F.one_hot(k, len(self.classes_)).float()[:, :, None, None] * region

    def _g_forward(self, x, y, m, region, k, gen):
        """Both cycles: deface x and restore it; restore the real y and deface it again."""
        import torch
        import torch.nn.functional as F

        G, normal = self.generator_, torch.zeros_like(k)
        y_fake, _, a1 = G(x, self._onehot(region, k), gen)
        x_back, _, a2 = G(y_fake, self._onehot(region, normal), gen)
        x_fake, _, a3 = G(y, self._onehot(m, normal), gen)
        y_back, _, a4 = G(x_fake, self._onehot(m, k), gen)
        losses = {"rec": (F.l1_loss(x_back, x) + F.l1_loss(y_back, y)) / 2,
                  "sd_cyc": (F.l1_loss(a1, a2) + F.l1_loss(a3, a4)) / 2,
                  "sd_con": torch.stack([a.mean() for a in (a1, a2, a3, a4)]).mean(),
                  "mask": _balanced_l1(a3, m)}
        return losses, (y_fake, x_fake)

    def _d_loss(self, x, y, k, fakes):
        import torch.nn.functional as F

        D = self.discriminator_
        (px, cx), (py, cy) = D(x), D(y)
        adv = (F.softplus(-px).mean() + F.softplus(-py).mean()
               + sum(F.softplus(D(f.detach())[0]).mean() for f in fakes)) / 2
        cls = (F.cross_entropy(cx, k * 0) + F.cross_entropy(cy, k)) / 2
        return adv + self.params.lambda_cls_d * cls

    def _g_loss(self, losses, fakes, k):
        import torch.nn.functional as F

        p = self.params
        (p1, c1), (p3, c3) = (self.discriminator_(f) for f in fakes)
        losses["adv"] = (F.softplus(-p1).mean() + F.softplus(-p3).mean()) / 2
        losses["cls"] = (F.cross_entropy(c1, k) + F.cross_entropy(c3, k * 0)) / 2
        for name, v in losses.items():
            self.parts[name].append(float(v.detach()))
        return (losses["adv"] + p.lambda_cls_g * losses["cls"] + p.lambda_rec * losses["rec"]
                + p.lambda_sd_cyc * losses["sd_cyc"] + p.lambda_sd_con * losses["sd_con"] + p.lambda_mask * losses["mask"])

    # ---- translation
    def translate(self, image, region, kind: str, rng: np.random.Generator):
        """G on the whole image with class `kind` (a defect type, or "normal" to restore) on `region`.

        Returns (composed image, alpha, foreground layer) at the image's resolution: float32 (H, W, C),
        (H, W) and (H, W, C); composed = alpha * layer + (1 - alpha) * image, with no threshold applied."""
        import torch

        require_fitted(self, "translate")
        image = fitted_input(self, image)
        region = require_region(as_mask(region, image.shape[:2], "region"))
        c = self.control(region, kind)
        with torch.no_grad():
            _, layer, alpha = self.generator_(to_tensor([image], self.size_), c, torch_generator(rng))
            alpha = resize_to(alpha, image.shape[:2])[0].clamp(0, 1)
            layer = resize_to(layer, image.shape[:2])[0].clamp(0, 1)
        a, f = to_image(alpha)[:, :, 0], to_image(layer)
        return np.clip(a[:, :, None] * f + (1 - a[:, :, None]) * image, 0, 1).astype(np.float32), a, f

    def __call__(self, image, rng, *, foreground=None, mask=None, defect_type: str | None = None) -> Sample:
        """Deface `image`: control map = `mask` (else a real support mask moved onto the foreground, else a
        Perlin region) with `defect_type` (default: drawn with the real masks); returned mask = alpha > threshold."""
        return self.deface(image, rng, foreground=foreground, mask=mask, defect_type=defect_type)[0]

    def deface(self, image, rng, *, foreground=None, mask=None, defect_type: str | None = None):
        """`__call__` with its workings: (Sample, control region (H, W) bool, alpha (H, W) float32)."""
        image = fitted_input(self, image)
        shape = image.shape[:2]
        fg = None if foreground is None else as_mask(foreground, shape, "foreground")
        kinds = self.types_ if defect_type is None else [defect_type]
        if defect_type is not None and defect_type not in self.types_:
            raise DefectlabError(f"defect_type {defect_type!r} unknown; fitted on {', '.join(self.types_)}")
        if mask is not None:
            region, source = as_mask(mask, shape), "mask"
            kind = kinds[int(rng.integers(len(kinds)))]
        else:
            pool = [i for i, t in enumerate(self.mask_types_) if t in kinds]
            i = pool[int(rng.integers(len(pool)))]
            kind, source = self.mask_types_[i], "real_mask"
            region = place_real_mask(shape, rng, [self.masks_[i]], fg)
            if region is None or not region.any():
                region, source = perlin_region(shape, rng, fg), "perlin"
        require_region(region)
        composed, alpha, _ = self.translate(image, region, kind, rng)
        t = self.params.threshold
        keep = np.ones(shape, bool) if fg is None else fg
        out_mask, mask_from = (alpha > t) & keep, "alpha"
        if not out_mask.any():  # G drew nothing above the threshold: its strongest pixels in the control map
            inside = region & keep if (region & keep).any() else region
            out_mask, mask_from = inside & (alpha >= 0.5 * alpha[inside].max()), "alpha_fallback"
        out = np.where(out_mask[:, :, None], composed, image).astype(np.float32)
        meta = {"method": self.name, "family": "generative", "defect_type": kind, "control": source,
                "control_pixels": int(region.sum()), "threshold": t, "mask_from": mask_from,
                "alpha_max": float(alpha.max()), "working_size": self.size_, "params": asdict(self.params)}
        return Sample(out, out_mask, meta), region, alpha


def translation_panels(method: DefectGAN, image, rng: np.random.Generator, foreground=None) -> tuple[list, Sample]:
    """The story of one translation, for pictures: [normal, control map, defaced, alpha, restored] and the Sample.

    The control map is shown as the region of the chosen type; "restored" is G run again on the defaced
    image with the normal class on the same region (the cycle the training enforces)."""
    sample, region, alpha = method.deface(image, rng, foreground=foreground)
    restored, _, _ = method.translate(sample.image, region, NORMAL, rng)
    return [np.asarray(image, np.float32), region.astype(np.float32), sample.image, alpha, restored], sample
