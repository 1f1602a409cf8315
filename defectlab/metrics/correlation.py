"""Does a better generation-quality score go with a better downstream detector? Rank correlations across methods.

Sign convention: FID and KID are lower-is-better while AP is higher-is-better, so "better FID goes with better AP"
shows as a *negative* rho/tau; IC-LPIPS (diversity, higher-is-better) would show a positive one.

Evidence over a handful of methods: `permutation_p` asks whether the observed ranking could be chance (under "no
association" every ordering of the detection values over the methods is equally likely; exact over all M!
orderings for M <= 8). With M methods the smallest attainable two-sided p is 2 / M! (3 methods: 1/3, 4: 1/12,
5: 1/60), so rows over fewer than `MIN_METHODS` (4) methods say "too few to say" and report no interval or p as
evidence.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DefectlabError

MIN_METHODS = 4  # below this a rank correlation's interval and p are not evidence of anything
TOO_FEW = "too few to say"
EXACT_MAX_METHODS = 8  # 8! = 40320 orderings enumerated at once; beyond, Monte-Carlo permutations


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



def permutation_p(quality: dict, detection: dict, statistic: str = "spearman",
                  rng: np.random.Generator | None = None, resamples: int = 10000) -> float:
    """Two-sided permutation p of Spearman rho or Kendall tau over the methods present in both dicts: the share of
    orderings of the detection values whose |statistic| is at least the observed one (tolerance 1e-9; the identity
    counts). Exact over all M! orderings for M <= 8 (7 methods: 5040); beyond, (1 + count) / (1 + resamples)
    random orderings drawn with `rng`. NaN with fewer than 3 methods or a constant column."""
    from itertools import permutations

    rows = {"spearman": _spearman_rows, "kendall": _kendall_rows}.get(statistic)
    if rows is None:
        raise DefectlabError(f"permutation_p: statistic must be 'spearman' or 'kendall', not {statistic!r}")
    common = [k for k in quality if k in detection and _finite(quality[k]) and _finite(detection[k])]
    q = np.array([float(quality[k]) for k in common])
    d = np.array([float(detection[k]) for k in common])
    m = len(common)
    if m < 3 or np.ptp(q) == 0 or np.ptp(d) == 0:
        return float("nan")
    observed = abs(rows(q[None], d[None])[0])
    if m <= EXACT_MAX_METHODS:
        orders = np.array(list(permutations(range(m))))
        extra = 0
    else:
        if rng is None:
            raise DefectlabError(f"permutation_p: {m} methods need an rng for the Monte-Carlo test (exact up to "
                                 f"{EXACT_MAX_METHODS})")
        orders = rng.permuted(np.tile(np.arange(m), (int(resamples), 1)), axis=1)
        extra = 1
    stats = rows(np.broadcast_to(q, orders.shape), d[orders])
    count = int(np.sum(np.abs(stats) >= observed - 1e-9))
    return (extra + count) / (extra + len(orders))


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
    coefficients (`n_boot` of them), widened to contain the point value when they miss it (a percentile interval
    of a rank statistic can, with few seeds: resampled means reorder methods the full data does not) and then
    flagged `"<name>_ci_widened"`. Point values: all seeds, every image once.
    Returns {(quality key, detection key): {"spearman", "kendall", "spearman_ci", "kendall_ci",
    "spearman_ci_widened", "kendall_ci_widened", "n_boot", "n_methods"}}; below `MIN_METHODS` methods the
    intervals are None and the row says `"verdict": "too few to say"`.
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
            for name, v in (("spearman", rho), ("kendall", tau)):
                row[f"{name}_ci"], row[f"{name}_ci_widened"] = _interval(v[0], v[1:][np.isfinite(v[1:])], lo, hi)
                row["n_boot"] = int(np.isfinite(v[1:]).sum()) if name == "spearman" else row["n_boot"]
            if len(methods) < MIN_METHODS:
                row.update(spearman_ci=None, kendall_ci=None, spearman_ci_widened=False, kendall_ci_widened=False,
                           verdict=TOO_FEW)
            out[(qk, dk)] = row
    return out


def _interval(point: float, values: np.ndarray, lo: float, hi: float) -> tuple[list[float], bool]:
    """Percentile interval [lo %, hi %] of the resampled values, widened to contain the point value (and whether
    it had to be, beyond float noise); [nan, nan] without resampled values; unwidened without a point value."""
    if not values.size:
        return [float("nan"), float("nan")], False
    from .paired import containing

    a, b = float(np.percentile(values, lo)), float(np.percentile(values, hi))
    if not np.isfinite(point):
        return [a, b], False
    return containing(a, b, float(point))


def scatter_figure(points: dict, detection_label: str = "pixel AP"):
    """One panel per quality metric: {metric label: {method: (q_mean, q_std, d_mean, d_std)}}; error bars are
    the std over seeds. Each method has one colour in every panel (legend below the panels) and its name beside
    its point; the axes are named (x: the quality metric, y: `detection_label`)."""
    import matplotlib.pyplot as plt

    names = list(points)
    methods = list(dict.fromkeys(m for panel in points.values() for m in panel))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    cols = min(3, max(1, len(names)))
    rows = -(-len(names) // cols) if names else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows + 0.6), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for method, (qm, qs, dm, ds) in points[name].items():
            if qm is None or dm is None:
                continue
            ax.errorbar(qm, dm, xerr=qs or 0, yerr=ds or 0, fmt="o", ms=5, capsize=2, color=colours[method],
                        label=method)
            ax.annotate(method, (qm, dm), fontsize=7, xytext=(3, 3), textcoords="offset points", color=colours[method])
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel(detection_label, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[m], label=m) for m in methods]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(methods), 5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.6 / (3.2 * rows + 0.6) + 0.02, 1, 1))
    return fig


def forest_figure(panels: dict, title: str = "", xlabel: str = "Spearman ρ across methods"):
    """A forest plot: {panel title: [{"label", "rho", "ci": (lo, hi) or None, "p": float or None}, ...]}, panels
    side by side, one row per quality metric (the rows of the first panel, top to bottom): ρ as a point, its
    interval as a bar, the zero line, and ρ [interval] p written at the right. A point whose interval excludes 0
    is black, one whose interval spans 0 (or has none) grey."""
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    labels = list(dict.fromkeys(r["label"] for rows in panels.values() for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 1.6, 0.32 * len(labels) + 1.3),
                             squeeze=False, sharey=True)
    for ax, (panel, rows) in zip(axes[0], panels.items()):
        by_label = {r["label"]: r for r in rows}
        text = blended_transform_factory(ax.transAxes, ax.transData)
        for y, label in enumerate(labels):
            r = by_label.get(label)
            if r is None or r.get("rho") is None or not np.isfinite(r["rho"]):
                continue
            ci = r.get("ci")
            has_ci = ci is not None and all(v is not None and np.isfinite(v) for v in ci)
            colour = "k" if has_ci and (ci[0] > 0 or ci[1] < 0) else "0.6"
            if has_ci:
                ax.plot(ci, [y, y], color=colour, lw=1.6)
            ax.plot(r["rho"], y, "o", color=colour, ms=5)
            p = r.get("p")
            words = f"{r['rho']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if has_ci else "") + \
                (f"  p {p:.2g}" if p is not None and np.isfinite(p) else "")
            ax.text(1.02, y, words, transform=text, fontsize=7.5, va="center", family="monospace")
        ax.axvline(0, color="0.3", lw=0.8, ls="--")
        ax.set_xlim(-1.05, 1.05)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0][0].set_yticks(range(len(labels)), labels)
    axes[0][0].set_ylim(len(labels) - 0.5, -0.5)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(w_pad=9.0)
    return fig


__all__ = ["MIN_METHODS", "TOO_FEW", "bootstrap_rank_correlations", "permutation_p", "rank_correlation",
           "forest_figure", "scatter_figure"]
