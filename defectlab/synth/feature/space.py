"""Feature-space anomaly synthesis: the shared machinery of SimpleNet and GLASS.

These methods never change pixels. They perturb *features* of good images (the "distribution
hypothesis": anomalies are what lies just off the normal feature distribution), train a small
discriminator to tell normal from perturbed features, and use it as an anomaly scorer.

Pipeline (SimpleNet, Liu et al. 2023, Fig. 2): frozen encoder -> local 3x3 neighbourhood averaging
-> learned linear adaptor -> [synthetic negatives] -> MLP discriminator. The papers' encoder is an
ImageNet WideResNet-50, layers 2 and 3 (strides 8 and 16, concatenated at stride 8). Ours by default is
the packaged ImageNet EfficientNet-Lite0 (`defectlab.backbone`) at the same two strides: its last stage
at stride 8 (40 channels) and at stride 16 (112 channels, upsampled), 152 channels at 1/8 resolution,
so everything runs offline on a CPU. `encoder="taef2"` (an autoencoder's latents: measured far worse,
below chance on Magnetic Tile) and any torchvision ResNet from a weights file of yours remain available
(`encoder="wide_resnet50_2=FILE@SHA256"`: the papers' own network, layers 2 and 3).

Library integration (see DEVELOPERS.md, "Feature-space methods"): `__call__` returns the input image
unchanged with `mask` = the image region whose feature cells were perturbed; `score(image)` returns
the discriminator's anomaly map, so the benchmark runner evaluates these methods as detectors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import DefectlabError
from ...progress import progress
from ...sample import Sample, as_image, as_mask
from ..base import build_params
from ..learned import check_goods, perlin_region, require_fitted, require_region, require_rng, seeded_init, to_tensor, work


# --------------------------------------------------------------------------- encoders
def load_feature_encoder(encoder="efficientnet-lite0"):
    """The frozen feature encoder: images (B, C, H, W) in [0, 1] -> features (B, D, h, w).

    "efficientnet-lite0" (default) or any `defectlab.backbone.load` spec, e.g. `"wide_resnet50_2=/models/wrn50.pth@<sha256>"`
    for the papers' own network from a weights file of yours: its stride-8 and stride-16 stages concatenated at
    stride 8 (`stride8_encoder`). "taef2": the pretrained TAEF2 encoder from ../shared/weights (checked, offline).
    "random": a tiny randomly initialised encoder of the same family (tests; no weights needed).
    An `nn.Module` is used as it is.
    In quick mode only (tests, CI without ../shared), a missing TAEF2 file falls back to "random" with a
    warning (a corrupt one is an error); otherwise the missing file is an error naming it, its checksum and
    where to put it."""
    import warnings

    from ... import taesd, weights
    from ...config import quick_mode

    if encoder == "taef2":
        if quick_mode() and weights.missing("taef2_encoder"):  # a corrupt file is an error, even here
            warnings.warn("TAEF2 encoder weights not found; quick mode uses a random encoder (features are "
                          "meaningless; see defectlab.weights.require('taef2_encoder') for the file)", stacklevel=2)
            return load_feature_encoder("random")
        return taesd.load_encoder()
    if encoder == "random":
        return taesd.tiny_random_autoencoder(seed=0, latent_channels=8, width=8)[0].requires_grad_(False)
    if isinstance(encoder, str):
        return stride8_encoder(encoder)
    if hasattr(encoder, "forward"):
        return encoder.eval().requires_grad_(False)
    raise DefectlabError(f"encoder: expected a backbone name ('efficientnet-lite0', 'ARCH=FILE@SHA256'), 'taef2', "
                         f"'random' or a torch module, got {encoder!r}")


def stride8_encoder(spec: str = "efficientnet-lite0"):
    """A pretrained backbone's stride-8 and stride-16 stages, the second upsampled and concatenated at stride 8: the
    layer-2 + layer-3 recipe of PatchCore / SimpleNet / GLASS (`spec`: as `defectlab.backbone.load`)."""
    import torch
    import torch.nn.functional as F

    from ... import backbone

    features = backbone.load(spec, strides=(8, 16))

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = features

        def forward(self, x):
            h, w = x.shape[-2:]
            f8, f16 = self.features(F.pad(x, (0, (-w) % 32, 0, (-h) % 32)))  # Lite0 wants multiples of 32
            f8 = f8[..., :-(-h // 8), :-(-w // 8)]
            return torch.cat([f8, F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)], dim=1)

    return Encoder().eval().requires_grad_(False)


def encode(encoder, images, size: int, batch: int = 8):
    """Frozen features of a list of images resized to `size`, with SimpleNet's 3x3 local averaging
    (Sec. 3.1, "neighbourhood aggregation", patch size 3) -> tensor (N, D, h, w)."""
    import torch
    import torch.nn.functional as F

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            f = encoder(to_tensor(images[i:i + batch], size))
            out.append(F.avg_pool2d(f, 3, stride=1, padding=1, count_include_pad=False))
    return torch.cat(out)


def grid_mask(mask: np.ndarray, grid: tuple[int, int], min_fraction: float = 0.0) -> np.ndarray:
    """Image mask (H, W) -> feature-grid mask (h, w): cells whose covered fraction exceeds `min_fraction`."""
    import torch
    import torch.nn.functional as F

    m = torch.from_numpy(np.asarray(mask, np.float32))[None, None]
    frac = F.adaptive_avg_pool2d(m, grid)[0, 0].numpy()
    return frac > min_fraction


def upsample_grid_mask(cells: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Feature-grid mask -> image mask (nearest): exactly the pixels of the perturbed cells."""
    ys = (np.arange(shape[0]) * cells.shape[0]) // shape[0]
    xs = (np.arange(shape[1]) * cells.shape[1]) // shape[1]
    return cells[ys[:, None], xs[None, :]]


# --------------------------------------------------------------------------- networks
def _adaptor(dim: int):
    import torch

    layer = torch.nn.Linear(dim, dim)  # SimpleNet Sec. 3.2: one fully connected layer
    torch.nn.init.xavier_normal_(layer.weight)  # SimpleNet code: xavier_normal_ init
    return layer


def _discriminator(dim: int, hidden: int, sigmoid: bool):
    import torch

    # SimpleNet Sec. 3.4 / GLASS: Linear -> BatchNorm -> LeakyReLU(0.2) -> Linear
    layers = [torch.nn.Linear(dim, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.LeakyReLU(0.2),
              torch.nn.Linear(hidden, 1, bias=False)]
    net = torch.nn.Sequential(*layers, *( [torch.nn.Sigmoid()] if sigmoid else []))
    for m in net:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.xavier_normal_(m.weight)
    return net


@dataclass
class FeatureParams:
    noise_std: float = 0.015  # SimpleNet Sec. 4.1 (sigma of the Gaussian feature noise); GLASS --noise 0.015
    image_size: int = 256  # ours: 256 px -> 32x32 cells at stride 8 (SimpleNet: 288 px -> 36x36 WRN50 layer2 cells)
    quick_image_size: int = 128  # ours: quick mode
    steps: int = 2000  # ours: optimiser steps (SimpleNet trains 160 epochs of batch 8)
    quick_steps: int = 60  # ours
    batch_size: int = 8  # SimpleNet Sec. 4.1
    cells_per_step: int = 1024  # ours: random feature cells of the batch per step (CPU budget; 0 = all)
    quick_cells_per_step: int = 128  # ours: quick mode
    lr_adaptor: float = 1e-4  # SimpleNet Sec. 4.1
    lr_discriminator: float = 2e-4  # SimpleNet Sec. 4.1
    weight_decay: float = 1e-5  # SimpleNet code (adaptor AdamW weight decay)
    hidden: int = 1024  # SimpleNet Sec. 4.1: discriminator hidden width 1024
    smoothing_sigma: float = 4.0  # SimpleNet code: Gaussian blur sigma 4 on the upsampled map
    max_goods: int = 200  # ours: cap on images encoded in fit
    quick_max_goods: int = 16  # ours
    encoder: object = "efficientnet-lite0"  # "efficientnet-lite0" | "taef2" | "random" | torch module
    standardize: bool = False  # ours: z-score each channel on the good images, so noise_std is relative to its spread


class FeatureSpaceMethod:
    """Base of the feature-space synthesizers. Subclasses define `_negatives` and `_loss`."""

    needs_fit = True
    Params = FeatureParams
    sigmoid_output = False

    def __init__(self, params: FeatureParams | None = None, **overrides):
        self.params = build_params(self.Params, params, overrides, self.name)
        self.fitted = False
        self.history: list[float] = []

    # ---- learning
    def fit(self, goods, defects=None, rng: np.random.Generator | None = None, *, foregrounds=None):
        """Train the adaptor and discriminator on good images only (`defects` are not used: these
        methods assume no real anomalies, which is their point)."""
        import torch

        require_rng(rng, f"{type(self).__name__}.fit")
        p = self.params
        goods = check_goods(goods)
        n = min(len(goods), work(p.max_goods, p.quick_max_goods))
        goods = [goods[i] for i in np.sort(rng.permutation(len(goods))[:n])]
        self.size_ = work(p.image_size, p.quick_image_size)
        self.encoder_ = load_feature_encoder(p.encoder)
        feats = encode(self.encoder_, goods, self.size_)  # (N, D, h, w)
        if p.standardize:  # the papers' sigma was set for WRN-50 features; other encoders differ in scale
            self.feature_mean_ = feats.mean(dim=(0, 2, 3), keepdim=True)
            self.feature_std_ = feats.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-6)
            feats = (feats - self.feature_mean_) / self.feature_std_
        self.grid_ = tuple(feats.shape[-2:])
        dim = feats.shape[1]
        with seeded_init(rng):
            self.adaptor_ = _adaptor(dim)
            self.discriminator_ = _discriminator(dim, p.hidden, self.sigmoid_output)
        opt_a = torch.optim.AdamW(self.adaptor_.parameters(), lr=p.lr_adaptor, weight_decay=p.weight_decay)
        opt_d = torch.optim.Adam(self.discriminator_.parameters(), lr=p.lr_discriminator)
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        flat = feats.permute(0, 2, 3, 1)  # (N, h, w, D)
        self.history = []
        self.adaptor_.train(), self.discriminator_.train()
        for _ in progress(range(work(p.steps, p.quick_steps)), desc=f"fit {self.name}"):
            idx = torch.randint(len(flat), (min(p.batch_size, len(flat)),), generator=gen)
            rows = flat[idx].reshape(-1, dim)
            cells = work(p.cells_per_step, p.quick_cells_per_step)
            if cells and len(rows) > cells:
                rows = rows[torch.randperm(len(rows), generator=gen)[:cells]]
            true = self.adaptor_(rows)
            fake = self._negatives(true, idx, gen)
            # one batch through the discriminator, as SimpleNet's and GLASS's code: BatchNorm over the normal
            # and the synthetic features together. Two separate passes would normalise each set by its own
            # statistics, which hides much of what tells them apart (GLASS on Magnetic Tile: pixel AUROC 0.46 -> 0.74).
            scores = self.discriminator_(torch.cat([true, fake]))
            loss = self._loss(scores[:len(true)], scores[len(true):])
            opt_a.zero_grad(), opt_d.zero_grad()
            loss.backward()
            opt_a.step(), opt_d.step()
            self.history.append(float(loss.detach()))
        self.adaptor_.eval(), self.discriminator_.eval()
        self.channels_ = goods[0].shape[2]
        self.fitted = True
        return self

    def _negatives(self, true, idx, gen):  # pragma: no cover - abstract
        raise NotImplementedError

    def _loss(self, d_true, d_fake):  # pragma: no cover - abstract
        raise NotImplementedError

    def _anomaly(self, d_out):
        """Discriminator output -> anomaly score (higher = more anomalous)."""
        return d_out

    # ---- features
    def adapted_features(self, image: np.ndarray) -> np.ndarray:
        """Adapted features of one image: float32 (h, w, D)."""
        import torch

        require_fitted(self, "adapted_features")
        image = as_image(image)
        with torch.no_grad():
            f = encode(self.encoder_, [image], self.size_)
            if self.params.standardize:
                f = (f - self.feature_mean_) / self.feature_std_
            f = f[0].permute(1, 2, 0)
            return self.adaptor_(f.reshape(-1, f.shape[-1])).reshape(*f.shape[:2], -1).numpy()

    def synthesize_features(self, image: np.ndarray, rng: np.random.Generator, cells: np.ndarray | None = None):
        """(normal, synthetic) adapted features of one image, both (h, w, D); synthetic differs on `cells`
        (default: all cells). This is what the discriminator was trained to separate."""
        import torch

        normal = torch.from_numpy(self.adapted_features(image))
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        fake = self._negatives(normal.reshape(-1, normal.shape[-1]), None, gen).detach().reshape(normal.shape)
        if cells is not None:
            keep = torch.from_numpy(~np.asarray(cells, bool))
            fake[keep] = normal[keep]
        return normal.numpy(), fake.numpy()

    # ---- the detector
    def score(self, image: np.ndarray) -> np.ndarray:
        """Anomaly map (H, W) float32 of one image: per-cell discriminator scores, upsampled
        bilinearly and blurred (SimpleNet Sec. 3.6). Higher = more anomalous."""
        import torch
        import torch.nn.functional as F
        from scipy.ndimage import gaussian_filter

        require_fitted(self, "score")
        image = as_image(image)
        f = torch.from_numpy(self.adapted_features(image))
        with torch.no_grad():
            s = self._anomaly(self.discriminator_(f.reshape(-1, f.shape[-1]))).reshape(1, 1, *f.shape[:2])
            s = F.interpolate(s, size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
        sigma = self.params.smoothing_sigma * image.shape[0] / self.size_
        return gaussian_filter(s, sigma).astype(np.float32)

    def image_score(self, image: np.ndarray) -> float:
        """Image-level score: the maximum of the anomaly map (SimpleNet Sec. 3.6)."""
        return float(self.score(image).max())

    # ---- the synthesis-method interface
    def __call__(self, image, rng, *, foreground=None, mask=None) -> Sample:
        """The unchanged image with the region whose feature cells would be perturbed.

        The region is `mask` (if given) or a Perlin region inside `foreground`, snapped to the feature
        grid, so the returned mask is exactly the pixels of the perturbed cells."""
        require_fitted(self, "calling it")
        image = as_image(image)
        shape = image.shape[:2]
        region = require_region(as_mask(mask, shape) if mask is not None else perlin_region(shape, rng, foreground))
        cells = grid_mask(region, self.grid_)
        out = upsample_grid_mask(cells, shape)
        meta = {"method": self.name, "family": "feature", "pixels_changed": False,
                "feature_grid": list(self.grid_), "perturbed_cells": int(cells.sum()),
                "params": {k: v for k, v in vars(self.params).items() if k != "encoder"},
                "encoder": self.params.encoder if isinstance(self.params.encoder, str) else "custom"}
        return Sample(image.copy(), out, meta)


def pca_figure(groups: dict[str, np.ndarray], max_points: int = 1500, seed: int = 0):
    """2-D PCA scatter of feature groups {label: (n, D)}, the axes fitted on the first group."""
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    pick = {k: v[rng.permutation(len(v))[:max_points]] for k, v in groups.items() if len(v)}
    first = next(iter(pick.values()))
    pca = PCA(2, random_state=seed).fit(first)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for label, pts in pick.items():
        xy = pca.transform(pts)
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.5, label=f"{label} ({len(pts)})")
    ax.set_xlabel("PC 1"), ax.set_ylabel("PC 2"), ax.legend(fontsize=8, markerscale=2)
    fig.tight_layout()
    return fig


def feature_groups(method: FeatureSpaceMethod, goods, defects, rng: np.random.Generator,
                   min_fraction: float = 0.5) -> dict[str, np.ndarray]:
    """Adapted features of a fitted method, as {label: (n, D)}: "normal" (cells of `goods`),
    "synthetic" (the method's negatives for the same cells) and "real defect" (cells of the real
    `defects` — Samples — covered at least `min_fraction` by their masks)."""
    normal, fake, real = [], [], []
    for g in goods:
        n, f = method.synthesize_features(g, rng)
        normal.append(n.reshape(-1, n.shape[-1])), fake.append(f.reshape(-1, f.shape[-1]))
    for d in defects:
        feats = method.adapted_features(d.image)
        real.append(feats[grid_mask(d.mask, feats.shape[:2], min_fraction)])
    dim = normal[0].shape[-1]
    stack = lambda xs: np.concatenate(xs) if xs else np.zeros((0, dim), np.float32)  # noqa: E731
    return {"normal": stack(normal), "synthetic": stack(fake), "real defect": stack(real)}


def distance_to_normal(groups: dict[str, np.ndarray]) -> dict[str, float]:
    """Median distance from each group's features to the nearest "normal" feature (the normal group
    itself: to the nearest *other* normal feature) — how far off the normal cloud each group sits."""
    from scipy.spatial import cKDTree

    normal = groups["normal"]
    tree = cKDTree(normal)
    out = {}
    for label, pts in groups.items():
        if len(pts):
            d, _ = tree.query(pts, k=2 if label == "normal" else 1)
            out[label] = float(np.median(d[:, 1] if label == "normal" else d))
    return out
