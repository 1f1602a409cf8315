"""Detection metrics: how well anomaly maps find real defects.

Image level: AUROC, AP, F1-max of a per-image score (given, or the mean of the top-k pixels of the map).
Pixel level: AUROC, AP, F1-max over every pixel of every image; AUPRO up to a false-positive rate of 0.3
(Bergmann et al., "The MVTec AD dataset", IJCV 2021, Sec. 4.2); IAP and IAP90 (Zhang et al., DeSTSeg,
CVPR 2023, Sec. 4.1): every connected component of the ground truth is an instance.

All pixel metrics share one sort of the pixel scores (values only; the few defect pixels find their place by
binary search), so `evaluate` on 100 maps of 256x256 takes about a second on one core
(`benchmarks/metrics_speed.py`).
Image-level metrics use scikit-learn directly; the pixel curve is checked against scikit-learn in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import DefectlabError

# 8-connectivity, as in the MVTec AD evaluation code and anomalib's connected components
_EIGHT = np.ones((3, 3), dtype=bool)


def _stack_maps(maps, what: str = "maps") -> np.ndarray:
    arr = np.stack([np.asarray(m) for m in maps]) if isinstance(maps, (list, tuple)) else np.asarray(maps)
    if arr.dtype not in (np.float32, np.float64):  # float32 maps stay float32: half the sorting time
        arr = arr.astype(np.float64)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise DefectlabError(f"{what}: expected N maps of shape (H, W), got an array of shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DefectlabError(f"{what}: contains NaN or infinite values")
    return arr


def _stack_masks(masks, shape: tuple[int, ...], what: str = "masks") -> np.ndarray:
    arr = np.stack([np.asarray(m) for m in masks]) if isinstance(masks, (list, tuple)) else np.asarray(masks)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape != tuple(shape):
        raise DefectlabError(f"{what}: shape {arr.shape} differs from the maps' shape {tuple(shape)}")
    return arr > 0 if arr.dtype != bool else arr


def _checked(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    m = _stack_maps(maps)
    return _stack_masks(masks, m.shape), m


def image_labels(masks: np.ndarray, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """(each image's label, whether its pixels are scored) for N bool masks. Labels default to "the mask has a
    defect pixel". A defect image (label True) whose mask is empty counts at image level and adds no pixels to
    the pixel metrics: where its defect lies is unknown, so its pixels are neither defect nor good pixels."""
    annotated = masks.reshape(len(masks), -1).any(axis=1)
    if labels is None:
        return annotated, np.ones(len(masks), bool)
    labels = np.asarray(labels, bool).ravel()
    if labels.shape != annotated.shape:
        raise DefectlabError(f"labels: expected {len(annotated)} image labels, got {labels.size}")
    wrong = np.flatnonzero(annotated & ~labels)
    if wrong.size:
        raise DefectlabError(f"labels: image {wrong[0]} is labelled good but its mask has "
                             f"{int(masks[wrong[0]].sum())} defect pixels")
    return labels, labels == annotated


# ---------------------------------------------------------------- image level

def image_scores(maps, top_k: int = 100) -> np.ndarray:
    """Per-image score: the mean of the `top_k` highest pixels of each map (all pixels if fewer)."""
    m = _stack_maps(maps)
    m = m.reshape(m.shape[0], -1)
    if top_k < 1:
        raise DefectlabError(f"top_k: must be at least 1, got {top_k}")
    k = min(int(top_k), m.shape[1])
    return -np.partition(-m, k - 1, axis=1)[:, :k].mean(axis=1)


def _labels_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise DefectlabError(f"scores: {s.size} scores for {y.size} labels")
    return y, s


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.any() and not y.all())


def auroc(labels, scores) -> float:
    """Area under the ROC curve (scikit-learn); NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y, s = _labels_scores(labels, scores)
    return float(roc_auc_score(y, s)) if _both_classes(y) else float("nan")


def average_precision(labels, scores) -> float:
    """Average precision (scikit-learn's step-wise sum); NaN when there is no positive."""
    from sklearn.metrics import average_precision_score

    y, s = _labels_scores(labels, scores)
    return float(average_precision_score(y, s)) if y.any() else float("nan")


def f1_max(labels, scores) -> float:
    """Best F1 over all thresholds (scikit-learn's precision-recall curve); NaN when there is no positive."""
    from sklearn.metrics import precision_recall_curve

    y, s = _labels_scores(labels, scores)
    if not y.any():
        return float("nan")
    p, r, _ = precision_recall_curve(y, s)
    return float(_f1(p, r).max())


def _f1(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    denom = p + r
    return np.where(denom > 0, 2 * p * r / np.where(denom > 0, denom, 1), 0.0)


# ---------------------------------------------------------------- pixel level

@dataclass
class PixelCurve:
    """Cumulative counts at the corners of the pixel ROC curve, highest score first (one sort of all pixels).

    thresholds[i]: a score; tps[i] / fps[i]: defect / good pixels scoring >= thresholds[i]. Distinct scores on a
    flat stretch of the curve (no defect pixel at them or just below) are left out: see `pixel_curve`.
    """

    thresholds: np.ndarray
    tps: np.ndarray
    fps: np.ndarray
    n_pos: int
    n_neg: int
    ascending: np.ndarray  # every pixel score, sorted ascending (reused by IAP)
    pos_group: np.ndarray  # for each defect pixel (in `masks` order): index of its threshold (reused by AUPRO)

    def auroc(self) -> float:
        if self.n_pos == 0 or self.n_neg == 0:
            return float("nan")
        tpr = np.concatenate([[0.0], self.tps / self.n_pos])
        fpr = np.concatenate([[0.0], self.fps / self.n_neg])
        return float(np.trapezoid(tpr, fpr))

    def precision_recall(self) -> tuple[np.ndarray, np.ndarray]:
        """Precision and recall at each threshold (highest threshold first)."""
        precision = self.tps / (self.tps + self.fps)
        recall = self.tps / max(self.n_pos, 1)
        return precision, recall

    def average_precision(self) -> float:
        if self.n_pos == 0:
            return float("nan")
        p, r = self.precision_recall()
        return float(np.sum(np.diff(np.concatenate([[0.0], r])) * p))

    def f1_max(self) -> float:
        if self.n_pos == 0:
            return float("nan")
        return float(_f1(*self.precision_recall()).max())

    def cumulative(self, pos_weights: np.ndarray) -> np.ndarray:
        """At each threshold, the sum of `pos_weights` (one per defect pixel) over defect pixels scoring >= it."""
        return np.cumsum(np.bincount(self.pos_group, weights=pos_weights, minlength=self.thresholds.size))


def pixel_curve(masks, maps) -> PixelCurve:
    """Sort every pixel score once (values only, no argsort) and find the corners of the ROC curve.

    The defect pixels, a small minority, find their place in the sorted scores by binary search. Corners: each
    score that has defect pixels, and the score just above it (the last threshold before those pixels count).
    Between corners the ROC / PRO curves run flat and precision only falls, so AUROC, AP, F1-max and AUPRO equal
    their values over every distinct score.
    """
    y, s = _checked(masks, maps)
    flat = s.ravel()
    n = flat.size
    asc = np.sort(flat)
    pos = flat[y.ravel()]
    lo = np.searchsorted(asc, pos, side="left")  # first sorted index of each defect pixel's score
    starts, inverse, counts = np.unique(lo, return_inverse=True, return_counts=True)
    starts, counts = starts[::-1], counts[::-1]  # highest score first
    k = starts.size
    tps_at = np.cumsum(counts)
    above = np.searchsorted(asc, asc[starts], side="right")  # first index of the next higher score
    prev_ge = np.concatenate([[n], starts[:-1]])  # pixels >= the previous defect score, as an index
    before = above < prev_ge  # good pixels lie between this defect score and the previous one: a corner
    final = k == 0 or starts[-1] > 0  # pixels below the lowest defect score
    where = np.arange(k) + np.cumsum(before)  # position of each defect score's corner
    size = k + int(before.sum()) + int(final)
    thresholds = np.empty(size, asc.dtype)
    tps = np.empty(size, np.int64)
    ge = np.empty(size, np.int64)  # pixels >= threshold
    thresholds[where], tps[where], ge[where] = asc[starts], tps_at, n - starts
    b = where[before] - 1
    thresholds[b] = asc[above[before]]
    tps[b] = np.concatenate([[0], tps_at[:-1]])[before]
    ge[b] = n - above[before]
    if final:
        thresholds[-1], tps[-1], ge[-1] = asc[0], pos.size, n
    pos_group = where[k - 1 - inverse.ravel()]
    return PixelCurve(thresholds, tps, ge - tps, int(pos.size), int(n - pos.size), asc, pos_group)


def pixel_auroc(masks, maps) -> float:
    return pixel_curve(masks, maps).auroc()


def pixel_ap(masks, maps) -> float:
    return pixel_curve(masks, maps).average_precision()


def pixel_f1_max(masks, maps) -> float:
    return pixel_curve(masks, maps).f1_max()


def _components(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Label every connected defect region of every mask with one global id (0 = background)."""
    labels = np.zeros(masks.shape, dtype=np.int64)
    count = 0
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=_EIGHT)
        labels[i] = np.where(lab > 0, lab + count, 0)
        count += n
    return labels, count


def _trapezoid_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Area under y(x) from 0 to x_max (x ascending), interpolating the last point at x_max."""
    keep = x <= x_max
    xs, ys = x[keep], y[keep]
    if xs[-1] < x_max and keep.sum() < x.size:
        i = np.argmax(x > x_max)
        y_at = y[i - 1] + (y[i] - y[i - 1]) * (x_max - x[i - 1]) / (x[i] - x[i - 1])
        xs, ys = np.append(xs, x_max), np.append(ys, y_at)
    return float(np.trapezoid(ys, xs))


def aupro(masks, maps, fpr_limit: float = 0.3, curve: PixelCurve | None = None, components=None) -> float:
    """Area under the per-region-overlap curve up to `fpr_limit`, divided by `fpr_limit` (1 = perfect).

    PRO at a threshold = mean over ground-truth regions of the fraction of the region above it; FPR = fraction
    of good pixels above it (MVTec AD, IJCV 2021, Sec. 4.2; 0.3 is their integration limit). With `curve`
    (`pixel_curve` of the same maps) no pixel is sorted again; `components`: `_components(masks)` if known.
    """
    y, s = _checked(masks, maps)
    labels, n_regions = components or _components(y)
    if n_regions == 0 or y.all():
        return float("nan")
    curve = curve or pixel_curve(y, s)
    region = labels.ravel()[y.ravel()]  # region id of each defect pixel, in the curve's defect-pixel order
    sizes = np.bincount(region)
    pro = np.concatenate([[0.0], curve.cumulative(1.0 / (sizes[region] * n_regions))])
    fpr = np.concatenate([[0.0], curve.fps / curve.n_neg])
    return _trapezoid_to(fpr, np.minimum(pro, 1.0), fpr_limit) / fpr_limit


def instance_scores(masks, maps, quantile: float = 0.5, components=None) -> np.ndarray:
    """Score of each ground-truth region: its pixel scores sorted descending, the one at `quantile` (DeSTSeg)."""
    y, s = _checked(masks, maps)
    labels, n = components or _components(y)
    flat, vals = labels.ravel(), s.ravel()
    inside = flat > 0
    lab, v = flat[inside], vals[inside]
    order = np.lexsort((-v, lab))  # by region, then descending score
    sizes = np.bincount(lab, minlength=n + 1)[1:]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return v[order][starts + (quantile * sizes).astype(np.int64)]


def iap(masks, maps, recall_level: float = 0.9, quantile: float = 0.5, curve: PixelCurve | None = None,
        components=None) -> tuple[float, float]:
    """Instance average precision and the precision once `recall_level` of the instances are found (DeSTSeg).

    Thresholds are the instance scores; recall counts instances, precision counts pixels; precision is made
    monotone (each threshold keeps the best precision of any lower threshold) before averaging.
    """
    y, s = _checked(masks, maps)
    scores = np.sort(instance_scores(y, s, quantile, components))
    if scores.size == 0:
        return float("nan"), float("nan")
    n = scores.size
    all_sorted = curve.ascending if curve is not None else np.sort(s.ravel())
    pos_sorted = np.sort(s[y])
    tpfp = all_sorted.size - np.searchsorted(all_sorted, scores, side="left")
    tp = pos_sorted.size - np.searchsorted(pos_sorted, scores, side="left")
    precision = np.maximum.accumulate(tp / tpfp)
    recall = 1 - np.arange(n) / n  # ascending thresholds: all instances found at the lowest one
    k = np.searchsorted(recall[::-1], recall_level, side="left")
    return float(precision.mean()), float(precision[::-1][min(k, n - 1)])


# ---------------------------------------------------------------- plots and the one-call API

@dataclass
class PRCurve:
    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    ap: float


def pr_curve(masks, maps, level: str = "pixel", scores=None, top_k: int = 100) -> PRCurve:
    """Precision-recall curve for plotting (`plt.plot(c.recall, c.precision)`), pixel or image level."""
    if level == "pixel":
        c = pixel_curve(masks, maps)
        p, r = c.precision_recall()
        return PRCurve(p, r, c.thresholds, c.average_precision())
    if level != "image":
        raise DefectlabError(f"level: expected 'pixel' or 'image', got {level!r}")
    from sklearn.metrics import precision_recall_curve

    y, m = _checked(masks, maps)
    labels = y.reshape(len(y), -1).any(axis=1)
    s = image_scores(m, top_k) if scores is None else np.asarray(scores, dtype=np.float64)
    p, r, t = precision_recall_curve(labels, s)
    return PRCurve(p, r, t, average_precision(labels, s))


def evaluate(masks, maps, scores=None, top_k: int = 100, labels=None) -> dict:
    """Every detection metric at once.

    masks: N bool (H, W) ground truths (all False for good images); maps: N float (H, W) anomaly maps;
    scores: optional per-image scores (default: mean of the top-k pixels of each map); labels: optional N
    bools, True for a defect image (default: its mask has a defect pixel; `image_labels` for a defect image
    whose mask is empty). Metrics that are undefined for the data (e.g. no good image for image AUROC) are NaN.
    """
    y, m = _checked(masks, maps)
    labels, scored = image_labels(y, labels)
    s = image_scores(m, top_k) if scores is None else np.asarray(scores, dtype=np.float64)
    if s.shape != (len(y),):
        raise DefectlabError(f"scores: expected {len(y)} per-image scores, got shape {s.shape}")
    if not scored.all():
        y, m = y[scored], m[scored]
    curve = pixel_curve(y, m)  # the one sort of all pixels, shared by every pixel metric
    components = _components(y)
    iap_value, iap90 = iap(y, m, curve=curve, components=components)
    return {
        "image_auroc": auroc(labels, s),
        "image_ap": average_precision(labels, s),
        "image_f1_max": f1_max(labels, s),
        "pixel_auroc": curve.auroc(),
        "pixel_ap": curve.average_precision(),
        "pixel_f1_max": curve.f1_max(),
        "aupro": aupro(y, m, curve=curve, components=components),
        "iap": iap_value,
        "iap90": iap90,
    }


__all__ = ["PRCurve", "PixelCurve", "aupro", "auroc", "average_precision", "binned_metrics", "evaluate", "f1_max", "iap", "image_labels", "image_stats",
           "image_scores", "instance_scores", "pixel_ap", "pixel_auroc", "pixel_curve", "pixel_f1_max", "pr_curve"]


# ---------------------------------------------------------------- per-image statistics for bootstrapping

def image_stats(masks, maps, bins: int = 1000, quantile: float = 0.5, labels=None) -> dict:
    """What a bootstrap over test images needs, per image: histograms of defect and good pixel scores
    (`bins` equal bins on [0, 1]; maps outside are clipped) and the DeSTSeg score of each defect region.
    `labels` as in `evaluate`: a defect image whose mask is empty has empty histograms (it adds no pixels).

    Returns {"pos_hist": (N, bins) int32, "neg_hist": (N, bins) int32, "inst_scores": (R,) float32,
    "inst_image": (R,) int32}. `binned_metrics` turns any resample of the images back into pixel AP / IAP.
    """
    y, s = _checked(masks, maps)
    idx = np.minimum((np.clip(s, 0, 1) * bins).astype(np.int64), bins - 1)
    flat = idx.reshape(len(y), -1) + (np.arange(len(y)) * bins)[:, None]
    yf = y.reshape(len(y), -1)
    pos = np.bincount(flat[yf], minlength=len(y) * bins).reshape(len(y), bins)
    neg = np.bincount(flat[~yf], minlength=len(y) * bins).reshape(len(y), bins)
    neg[~image_labels(y, labels)[1]] = 0
    labels, n = _components(y)
    inst = instance_scores(y, s, quantile, (labels, n)).astype(np.float32)
    region_image = np.zeros(n + 1, np.int32)
    for i, lab in enumerate(labels):
        region_image[np.unique(lab[lab > 0])] = i
    return {"pos_hist": pos.astype(np.int32), "neg_hist": neg.astype(np.int32), "inst_scores": inst,
            "inst_image": region_image[1:]}


def binned_metrics(stats: dict, weights=None, recall_level: float = 0.9) -> dict:
    """pixel AP, IAP and IAP90 from `image_stats`, each image counted `weights[i]` times (a bootstrap resample;
    default once). Scores are binned, so the values approximate the exact ones to the bin width."""
    pos, neg = np.asarray(stats["pos_hist"], np.float64), np.asarray(stats["neg_hist"], np.float64)
    w = np.ones(len(pos)) if weights is None else np.asarray(weights, np.float64)
    tp = np.cumsum((w @ pos)[::-1])[::-1]  # defect pixels in bins >= b
    allp = tp + np.cumsum((w @ neg)[::-1])[::-1]
    out = {"pixel_ap": float("nan"), "iap": float("nan"), "iap90": float("nan")}
    if tp[0] <= 0:
        return out
    prec = np.divide(tp, allp, out=np.zeros_like(tp), where=allp > 0)
    recall = tp / tp[0]
    steps = -np.diff(np.append(recall, 0.0))  # recall gained at each bin, walking down from the top
    out["pixel_ap"] = float(np.sum(steps * prec))
    reps = np.round(w).astype(np.int64)[np.asarray(stats["inst_image"], np.int64)]
    scores = np.sort(np.repeat(np.asarray(stats["inst_scores"], np.float64), reps))
    if scores.size:
        b = np.minimum((np.clip(scores, 0, 1) * len(tp)).astype(np.int64), len(tp) - 1)
        precision = np.maximum.accumulate(prec[b])
        n = scores.size
        rec = 1 - np.arange(n) / n
        k = np.searchsorted(rec[::-1], recall_level, side="left")
        out["iap"], out["iap90"] = float(precision.mean()), float(precision[::-1][min(k, n - 1)])
    return out
