"""PatchCore (Roth et al., CVPR 2022): the unsupervised row every benchmark table needs.

No defects at all: locally aware patch features of good images from a frozen ImageNet CNN go into a
memory bank, thinned by a greedy coreset; a test patch's anomaly score is the distance to its nearest
neighbour in the bank. It answers the first question a user asks of synthesis: does it beat no
synthesis? (anomalib's PatchCore needs a timm backbone with downloadable weights; this one runs on the
packaged EfficientNet-Lite0, `defectlab.backbone`.)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ..errors import DefectlabError
from ..progress import progress
from ..sample import as_image, torch_generator
from .destseg import teacher_features
from .detector import match_channels, torch_threads, unsupervised_goods


@dataclass
class PatchCoreParams:
    backbone: str = "efficientnet-lite0"  # PatchCore uses WideResNet-50 layers 2 + 3 (Sec. 3.1)
    feature_strides: tuple = (8, 16)  # Lite0 stages at the strides of WRN-50 layers 2 and 3
    patch_size: int = 3  # Sec. 3.1: local neighbourhood aggregation, p = 3
    coreset_fraction: float = 0.01  # Sec. 4.1: 1 % (10 % and 25 % also reported)
    projection_dim: int = 128  # Sec. 3.2: random projection for the coreset's distances
    max_goods: int = 200  # ours: cap on good images in the bank (coreset cost grows with bank size)
    smoothing_sigma: float = 4.0  # Sec. 3.3 / reference code: Gaussian blur of the upsampled map, sigma 4
    num_threads: int | None = None


class PatchCore:
    """`fit(goods, rng)` then `predict(images)` -> (maps, scores); `score(image)` -> one map.
    Maps are raw nearest-neighbour distances (not in [0, 1]); the image score is the map's maximum."""

    name = "patchcore"

    def __init__(self, params: PatchCoreParams | None = None, **overrides):
        self.params = params or PatchCoreParams()
        if overrides:
            unknown = set(overrides) - set(asdict(self.params))
            if unknown:
                raise DefectlabError(f"unknown patchcore parameter(s): {', '.join(sorted(unknown))}")
            self.params = PatchCoreParams(**{**asdict(self.params), **overrides})
        if not 0 < self.params.coreset_fraction <= 1:
            raise DefectlabError(f"patchcore: coreset_fraction must be in (0, 1], got {self.params.coreset_fraction}")
        self.bank = None
        self.channels: int | None = None

    def _teacher(self):
        return teacher_features(self.params.backbone, (4, 8, 16))

    def _patches(self, images: Sequence[np.ndarray]):
        """Locally aware patch features (N, h, w, D) at the first feature stride."""
        import torch
        import torch.nn.functional as F

        teacher = self._teacher()
        picks = [teacher.strides.index(s) for s in self.params.feature_strides]
        out = []
        for feats in teacher(images):
            maps = [F.avg_pool2d(feats[k].float()[None], self.params.patch_size, stride=1,
                                 padding=self.params.patch_size // 2) for k in picks]
            size = maps[0].shape[-2:]
            maps = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                    for m in maps]
            out.append(torch.cat(maps, dim=1)[0].permute(1, 2, 0))
        return torch.stack(out)

    def fit(self, goods: Sequence[np.ndarray], rng: np.random.Generator | None = None, show_progress: bool = True,
            **_ignored) -> "PatchCore":
        """Build the memory bank from (at most `max_goods` of) the good images; defects are not used."""
        import torch

        p = self.params
        goods, keep = unsupervised_goods(goods, rng, p.max_goods, "PatchCore")
        self.channels = goods[0].shape[2]
        with torch.no_grad(), torch_threads(p.num_threads):
            feats = self._patches([match_channels(goods[i], self.channels) for i in keep])
            flat = feats.reshape(-1, feats.shape[-1])
            n = max(1, int(round(p.coreset_fraction * len(flat))))
            self.bank = flat[greedy_coreset(flat, n, p.projection_dim, torch_generator(rng), show_progress)]
        return self

    def predict(self, images: Sequence[np.ndarray], show_progress: bool = False, batch: int = 8):
        """(maps (N, H, W) float32 nearest-neighbour distances, scores (N,) = each map's maximum)."""
        import torch
        import torch.nn.functional as F
        from scipy.ndimage import gaussian_filter

        if self.bank is None:
            raise DefectlabError("PatchCore: call fit before predict")
        maps = []
        with torch.no_grad(), torch_threads(self.params.num_threads):
            starts = range(0, len(images), batch)
            for start in progress(starts, desc="patchcore") if show_progress else starts:
                chunk = [match_channels(as_image(im), self.channels) for im in images[start:start + batch]]
                feats = self._patches(chunk)
                n, h, w, d = feats.shape
                dist = torch.cdist(feats.reshape(-1, d), self.bank).min(dim=1).values.reshape(n, 1, h, w)
                up = F.interpolate(dist, size=chunk[0].shape[:2], mode="bilinear", align_corners=False)[:, 0].numpy()
                maps += [gaussian_filter(m, self.params.smoothing_sigma).astype(np.float32) for m in up]
        maps = np.stack(maps) if maps else np.zeros((0, 0, 0), np.float32)
        return maps, maps.reshape(len(maps), -1).max(axis=1) if len(maps) else np.zeros(0, np.float32)

    def score(self, image: np.ndarray) -> np.ndarray:
        return self.predict([image])[0][0]


def greedy_coreset(features, n: int, projection_dim: int, generator, show_progress: bool = False):
    """Indices of `n` rows chosen by greedy k-centre selection (PatchCore Alg. 1) on a random
    projection of the rows (Johnson-Lindenstrauss, Sec. 3.2); the first centre is drawn from `generator`."""
    import torch

    if n >= len(features):
        return torch.arange(len(features))
    d = features.shape[1]
    if projection_dim and projection_dim < d:
        proj = torch.randn(d, projection_dim, generator=generator) / projection_dim ** 0.5
        z = features @ proj
    else:
        z = features
    squared = (z * z).sum(1)

    def to(i: int):  # squared distances of every row to row i: one matrix-vector product
        return (squared - 2 * (z @ z[i]) + squared[i]).clamp(min=0)

    chosen = [int(torch.randint(len(z), (1,), generator=generator))]
    dist = to(chosen[-1])
    steps = range(n - 1)
    for _ in progress(steps, desc="coreset") if show_progress else steps:
        chosen.append(int(dist.argmax()))
        dist = torch.minimum(dist, to(chosen[-1]))
    return torch.tensor(chosen)
