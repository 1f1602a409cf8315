"""Detection metrics: hand-computed cases, scikit-learn and brute-force references."""
import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from defectlab import DefectlabError
from defectlab.metrics import detection as D


def _random_case(rng, n=6, size=24, levels=None):
    masks = np.zeros((n, size, size), bool)
    for i in range(0, n, 2):  # every other image has one or two rectangles
        for _ in range(1 + i % 3):
            y, x = rng.integers(0, size - 6, 2)
            masks[i, y:y + rng.integers(2, 6), x:x + rng.integers(2, 6)] = True
    maps = rng.random((n, size, size)) + 0.8 * masks * rng.random((n, size, size))
    if levels:
        maps = np.round(maps * levels) / levels  # many ties
    return masks, maps


def test_pixel_curve_matches_sklearn_with_ties(rng):
    masks, maps = _random_case(rng, levels=20)
    y, s = masks.ravel(), maps.ravel()
    curve = D.pixel_curve(masks, maps)
    assert curve.auroc() == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert curve.average_precision() == pytest.approx(average_precision_score(y, s), abs=1e-12)
    p, r, _ = precision_recall_curve(y, s)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0)
    assert curve.f1_max() == pytest.approx(f1.max(), abs=1e-12)
    assert D.pixel_auroc(list(masks), list(maps)) == pytest.approx(curve.auroc())


def test_image_level_uses_top_k_mean(rng):
    masks, maps = _random_case(rng)
    scores = D.image_scores(maps, top_k=5)
    manual = np.sort(maps.reshape(len(maps), -1), axis=1)[:, -5:].mean(axis=1)
    np.testing.assert_allclose(scores, manual)
    labels = masks.reshape(len(masks), -1).any(axis=1)
    out = D.evaluate(masks, maps, top_k=5)
    assert out["image_auroc"] == pytest.approx(roc_auc_score(labels, manual))
    assert out["image_ap"] == pytest.approx(average_precision_score(labels, manual))
    given = D.evaluate(masks, maps, scores=-manual)  # given scores replace the map-derived ones
    assert given["image_auroc"] == pytest.approx(1 - out["image_auroc"])


def test_evaluate_keys_and_perfect_maps():
    masks = np.zeros((4, 16, 16), bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 10:14, 1:4] = True
    out = D.evaluate(masks, masks.astype(float), top_k=4)
    assert set(out) == {"image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max",
                        "aupro", "iap", "iap90"}
    assert all(v == pytest.approx(1.0) for v in out.values())


def test_aupro_constant_map_is_the_diagonal():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 1:3, 1:3] = True
    # one threshold: everything flagged, FPR 1, PRO 1; the line from (0,0) to (1,1) has area 0.045 up to 0.3
    assert D.aupro(masks, np.zeros((2, 8, 8))) == pytest.approx(0.15)


def _brute_aupro(masks, maps, limit=0.3):
    # label per image so regions never join across images
    labels = np.zeros(masks.shape, int)
    n = 0
    for i, m in enumerate(masks):
        lab, k = ndimage.label(m, structure=np.ones((3, 3)))
        labels[i] = np.where(lab > 0, lab + n, 0)
        n += k
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        flagged = maps >= t
        fprs.append(flagged[~masks].mean())
        pros.append(np.mean([flagged[labels == r].mean() for r in range(1, n + 1)]))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= limit
    x, y = fprs[keep], pros[keep]
    if x[-1] < limit:
        i = np.argmax(fprs > limit)
        x = np.append(x, limit)
        y = np.append(y, pros[i - 1] + (pros[i] - pros[i - 1]) * (limit - fprs[i - 1]) / (fprs[i] - fprs[i - 1]))
    return np.trapezoid(y, x) / limit


def test_aupro_matches_brute_force(rng):
    masks, maps = _random_case(rng, n=4, size=16, levels=30)
    assert D.aupro(masks, maps) == pytest.approx(_brute_aupro(masks, maps), abs=1e-10)


def test_iap_hand_computed():
    mask = np.zeros((4, 4), bool)
    mask[0, 0:2] = True  # instance A, scores 0.9 / 0.8 -> instance score 0.8 (sorted desc, index int(0.5*2)=1)
    mask[3, 3] = True  # instance B, score 0.4
    pred = np.zeros((4, 4))
    pred[0, 0], pred[0, 1], pred[3, 3], pred[1, 3] = 0.9, 0.8, 0.4, 0.5
    np.testing.assert_allclose(np.sort(D.instance_scores([mask], [pred])), [0.4, 0.8])
    # threshold 0.4: 3 of 4 flagged pixels are defect (recall 1); 0.8: 2 of 2 (recall 0.5)
    value, at90 = D.iap([mask], [pred])
    assert value == pytest.approx((0.75 + 1.0) / 2)
    assert at90 == pytest.approx(0.75)


def _destseg_loop(masks, maps):
    """A direct, loop-based reading of the DeSTSeg definition (reference for the vectorised one)."""
    scores = []
    for m, p in zip(masks, maps):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        for r in range(1, n + 1):
            v = np.sort(p[lab == r])[::-1]
            scores.append(v[int(0.5 * len(v))])
    scores.sort()
    precision, recall = [], []
    for i, s in enumerate(scores):
        recall.append(1 - i / len(scores))
        precision.append(np.sum(masks & (maps >= s)) / np.sum(maps >= s))
    for i in range(len(precision) - 1):
        precision[i + 1] = max(precision[i + 1], precision[i])
    recall, rev = recall[::-1], precision[::-1]
    k = next(i for i, r in enumerate(recall) if r >= 0.9)
    return sum(precision) / len(precision), rev[k]


def test_iap_matches_loop(rng):
    masks, maps = _random_case(rng, n=8, size=20)
    np.testing.assert_allclose(D.iap(masks, maps), _destseg_loop(masks, maps))


def test_pr_curve_and_bad_input(rng):
    masks, maps = _random_case(rng)
    c = D.pr_curve(masks, maps)
    assert c.precision.shape == c.recall.shape and c.ap == pytest.approx(D.pixel_ap(masks, maps))
    assert D.pr_curve(masks, maps, level="image").recall[0] == pytest.approx(1.0)
    with pytest.raises(DefectlabError, match="masks"):
        D.evaluate(masks[:, :10], maps)
    with pytest.raises(DefectlabError, match="scores"):
        D.evaluate(masks, maps, scores=[1.0, 2.0])
    with pytest.raises(DefectlabError, match="NaN"):
        D.evaluate(masks, np.full(maps.shape, np.nan))


def test_undefined_metrics_are_nan():
    masks = np.zeros((3, 8, 8), bool)
    out = D.evaluate(masks, np.random.default_rng(1).random((3, 8, 8)))
    assert np.isnan(out["image_auroc"]) and np.isnan(out["aupro"]) and np.isnan(out["iap"])


def test_rank_correlation():
    from defectlab.metrics.correlation import rank_correlation

    fid = {"a": 10.0, "b": 20.0, "c": 30.0, "d": 40.0, "e": None}
    ap = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.75, "z": 0.1}
    rho, tau, n = rank_correlation(fid, ap)
    assert n == 4 and rho == pytest.approx(-0.8) and tau == pytest.approx(-2 / 3)
    assert np.isnan(rank_correlation({"a": 1, "b": 2}, {"a": 1, "b": 2})[0])


@pytest.mark.parametrize("levels", [None, 3, 50])
@pytest.mark.parametrize("seed", [1, 2])
def test_curve_corners_give_the_full_curve_values(levels, seed):
    """`pixel_curve` keeps only the ROC corners (one value sort, binary search for the defect pixels): every
    metric must equal scikit-learn's / the brute force over all thresholds, with and without ties."""
    rng = np.random.default_rng(seed)
    masks, maps = _random_case(rng, n=4, size=16, levels=levels)
    maps = maps.astype(np.float32)
    y, s = masks.ravel(), maps.ravel()
    curve = D.pixel_curve(masks, maps)
    assert curve.tps[-1] == masks.sum() and curve.fps[-1] == (~masks).sum()
    assert np.all(np.diff(curve.thresholds) < 0)
    assert curve.auroc() == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert curve.average_precision() == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert D.aupro(masks, maps, curve=curve) == pytest.approx(_brute_aupro(masks, maps), abs=1e-10)
    ev = D.evaluate(masks, maps)
    assert ev["aupro"] == pytest.approx(_brute_aupro(masks, maps), abs=1e-10)
    np.testing.assert_allclose((ev["iap"], ev["iap90"]), _destseg_loop(masks, maps), atol=1e-12)
    top = np.full_like(maps, 0.5)
    top[masks] = 0.9  # defect pixels strictly above every good one: no corner before the first, all found at once
    assert D.pixel_curve(masks, top).auroc() == pytest.approx(1.0)
