"""Does a better generation-quality score go with a better downstream detector? Rank correlations across methods.

Sign convention: FID and KID are lower-is-better while AP is higher-is-better, so "better FID goes with better AP"
shows as a *negative* rho/tau; IC-LPIPS (diversity, higher-is-better) would show a positive one.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DefectlabError


def rank_correlation(quality: dict, detection: dict) -> tuple[float, float, int]:
    """Spearman rho and Kendall tau (scipy) over the methods present in both dicts, and that count.

    Methods whose value is None or NaN in either dict are left out. With fewer than 3 methods, or a constant
    column, the coefficients are NaN (a rank correlation of two points says nothing).
    """
    from scipy.stats import kendalltau, spearmanr

    if not isinstance(quality, dict) or not isinstance(detection, dict):
        raise DefectlabError("rank_correlation: quality and detection must be dicts mapping method -> value")
    common = [k for k in quality if k in detection and _finite(quality[k]) and _finite(detection[k])]
    n = len(common)
    q = np.array([float(quality[k]) for k in common])
    d = np.array([float(detection[k]) for k in common])
    if n < 3 or np.ptp(q) == 0 or np.ptp(d) == 0:
        return float("nan"), float("nan"), n
    rho = spearmanr(q, d).statistic
    tau = kendalltau(q, d).statistic
    return float(rho), float(tau), n


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False





# ---------------------------------------------------------------- bootstrap over seeds and test images

def _rank_rows(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=1)  # average ranks for ties, as scipy's spearmanr


def _spearman_rows(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Spearman rho of each row pair of two (B, M) arrays (NaN for a constant row)."""
    rq, rd = _rank_rows(q), _rank_rows(d)
    rq, rd = rq - rq.mean(1, keepdims=True), rd - rd.mean(1, keepdims=True)
    den = np.sqrt((rq ** 2).sum(1) * (rd ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rq * rd).sum(1) / np.where(den > 0, den, 1), np.nan)


def _kendall_rows(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Kendall tau-b of each row pair of two (B, M) arrays (scipy's default variant; NaN for a constant row)."""
    sq = np.sign(q[:, :, None] - q[:, None, :])
    sd = np.sign(d[:, :, None] - d[:, None, :])
    iu = np.triu_indices(q.shape[1], 1)
    sq, sd = sq[:, iu[0], iu[1]], sd[:, iu[0], iu[1]]
    den = np.sqrt((sq != 0).sum(1) * (sd != 0).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (sq * sd).sum(1) / np.where(den > 0, den, 1), np.nan)


def bootstrap_rank_correlations(quality: dict, detection, seeds: list, n_images: dict, *,
                                rng: np.random.Generator, resamples: int = 1000, level: float = 0.95) -> dict:
    """Spearman and Kendall of each quality metric vs each detection metric across methods, with bootstrap intervals.

    quality: {quality key: {method: {seed: value}}}. detection: a function (method, seed, image_weights) ->
    {detection key: value}, where image_weights counts how often each of the seed's `n_images[seed]` test images
    is drawn (None: each once). One resample draws the seeds with replacement and, within each drawn seed, its
    test images with replacement - the same draw for every method (they share the test set) and every metric; a
    method's value is its mean over the drawn seeds. Intervals: percentiles of the finite resampled
    coefficients (`n_boot` of them). Point values: all seeds, every image once.
    Returns {(quality key, detection key): {"spearman", "kendall", "spearman_ci", "kendall_ci", "n_boot",
    "n_methods"}}.
    """
    methods = sorted(set.intersection(*(set(v) for v in quality.values()))) if quality else []
    draws = [(list(seeds), [None] * len(seeds))]
    for _ in range(int(resamples)):
        draw = [seeds[i] for i in rng.integers(0, len(seeds), len(seeds))]
        draws.append((draw, [np.bincount(rng.integers(0, n_images[s], n_images[s]), minlength=n_images[s])
                             for s in draw]))
    det: dict = {}  # detection key -> (draws, methods) array
    for j, m in enumerate(methods):
        for b, (draw, weights) in enumerate(draws):
            vals = [detection(m, s, w) for s, w in zip(draw, weights)]
            for k in vals[0]:
                det.setdefault(k, np.full((len(draws), len(methods)), np.nan))[b, j] = np.mean([v[k] for v in vals])
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out = {}
    for qk, per_method in quality.items():
        q = np.array([[np.mean([per_method[m][s] for s in draw]) for m in methods] for draw, _ in draws])
        for dk, d in det.items():
            ok = np.isfinite(q).all(1) & np.isfinite(d).all(1)
            rho, tau = np.full(len(draws), np.nan), np.full(len(draws), np.nan)
            if len(methods) >= 3 and ok.any():
                rho[ok], tau[ok] = _spearman_rows(q[ok], d[ok]), _kendall_rows(q[ok], d[ok])
            row = {"spearman": float(rho[0]), "kendall": float(tau[0]), "n_methods": len(methods)}
            for name, v in (("spearman", rho[1:]), ("kendall", tau[1:])):
                v = v[np.isfinite(v)]
                row[f"{name}_ci"] = [float(np.percentile(v, lo)), float(np.percentile(v, hi))] if v.size \
                    else [float("nan"), float("nan")]
                row["n_boot"] = int(v.size) if name == "spearman" else row["n_boot"]
            out[(qk, dk)] = row
    return out


def scatter_figure(points: dict, detection_label: str = "pixel AP"):
    """One panel per quality metric: {metric label: {method: (q_mean, q_std, d_mean, d_std)}}; error bars are
    the std over seeds, each point labelled with its method."""
    import matplotlib.pyplot as plt

    names = list(points)
    cols = min(3, max(1, len(names)))
    rows = -(-len(names) // cols) if names else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for method, (qm, qs, dm, ds) in points[name].items():
            if qm is None or dm is None:
                continue
            ax.errorbar(qm, dm, xerr=qs or 0, yerr=ds or 0, fmt="o", ms=4, capsize=2)
            ax.annotate(method, (qm, dm), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel(detection_label, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
__all__ = ["bootstrap_rank_correlations", "rank_correlation", "scatter_figure"]
