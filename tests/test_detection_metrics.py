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


# ---------------------------------------------------------------- hand-computed cases (issue #37)
# Each value below is worked out in the comment beside it from the metric's definition, not taken from the code.

def _row(scores, defect):
    """One image of 1 x n pixels: its mask (the `defect` indices) and its map."""
    mask = np.zeros((1, 1, len(scores)), bool)
    mask[0, 0, list(defect)] = True
    return mask, np.asarray(scores, float)[None, None, :]


# scores 0.9 0.8 0.7 0.6 0.5, defects at ranks 1, 2, 4
RANKED, RANKED_DEFECT = [0.9, 0.8, 0.7, 0.6, 0.5], [0, 1, 3]
# AP: precision at each defect 1/1, 2/2, 3/4 -> (1 + 1 + 0.75) / 3
RANKED_AP = 2.75 / 3
# AUROC: defects .9 .8 .6 vs goods .7 .5: 5 of the 6 pairs ordered right (.6 < .7)
RANKED_AUROC = 5 / 6
# F1 after k flagged: k=1 1/2, k=2 0.8, k=3 2/3, k=4 2 * 0.75 / 1.75 = 6/7, k=5 2 * 0.6 / 1.6 = 0.75
RANKED_F1 = 6 / 7


def test_ranked_list_by_hand_at_image_and_pixel_level():
    labels = np.isin(np.arange(5), RANKED_DEFECT)
    assert D.average_precision(labels, RANKED) == pytest.approx(RANKED_AP)
    assert D.auroc(labels, RANKED) == pytest.approx(RANKED_AUROC)
    assert D.f1_max(labels, RANKED) == pytest.approx(RANKED_F1)
    curve = D.pixel_curve(*_row(RANKED, RANKED_DEFECT))
    assert curve.average_precision() == pytest.approx(RANKED_AP)
    assert curve.auroc() == pytest.approx(RANKED_AUROC)
    assert curve.f1_max() == pytest.approx(RANKED_F1)
    np.testing.assert_array_equal(curve.thresholds, RANKED)  # every score is a corner here
    np.testing.assert_array_equal(curve.tps, [1, 2, 2, 3, 3])
    np.testing.assert_array_equal(curve.fps, [0, 0, 1, 1, 2])
    p, r = curve.precision_recall()
    np.testing.assert_allclose(p, [1, 1, 2 / 3, 0.75, 0.6])
    np.testing.assert_allclose(r, [1 / 3, 2 / 3, 2 / 3, 1, 1])
    # five images whose given scores are the ranked list: the image metrics are the same numbers
    masks = np.zeros((5, 2, 2), bool)
    masks[RANKED_DEFECT, 0, 0] = True
    out = D.evaluate(masks, np.zeros((5, 2, 2)), scores=RANKED)
    assert out["image_ap"] == pytest.approx(RANKED_AP) and out["image_auroc"] == pytest.approx(RANKED_AUROC)
    assert out["image_f1_max"] == pytest.approx(RANKED_F1)
    img = D.pr_curve(masks, np.zeros((5, 2, 2)), level="image", scores=RANKED)
    ref_p, ref_r, ref_t = precision_recall_curve(labels, RANKED)
    np.testing.assert_allclose(img.precision, ref_p)
    np.testing.assert_allclose(img.recall, ref_r)
    np.testing.assert_allclose(img.thresholds, ref_t)
    assert img.ap == pytest.approx(RANKED_AP)
    pix = D.pr_curve(*_row(RANKED, RANKED_DEFECT))
    np.testing.assert_allclose(pix.precision, p)
    np.testing.assert_allclose(pix.thresholds, RANKED)
    assert pix.ap == pytest.approx(RANKED_AP)


def test_ties_by_hand():
    # defects .8 .5, goods .5 .2: pairs (.8,.5) (.8,.2) (.5,.2) right, (.5,.5) a tie = 1/2 -> AUROC 3.5 / 4
    # one threshold per distinct score: .8 -> P 1, R 1/2; .5 -> P 2/3, R 1 -> AP 0.5 * 1 + 0.5 * 2/3
    scores, defect = [0.8, 0.5, 0.5, 0.2], [0, 1]
    labels = np.isin(np.arange(4), defect)
    for auroc, ap in ((D.auroc(labels, scores), D.average_precision(labels, scores)),
                      (D.pixel_auroc(*_row(scores, defect)), D.pixel_ap(*_row(scores, defect)))):
        assert auroc == pytest.approx(0.875) and ap == pytest.approx(0.5 + 1 / 3)
    # F1 at .8: 2 * 1 * 0.5 / 1.5 = 2/3; at .5: 2 * (2/3) * 1 / (5/3) = 0.8
    assert D.pixel_f1_max(*_row(scores, defect)) == pytest.approx(0.8)


def test_f1_max_where_precision_plus_recall_is_one():
    # 2 defects in 100 pixels: a good pixel first, then a defect (P = R = 1/2, F1 = 1/2), the other defect last
    # (F1 there 2 * 0.02 / 1.02); every other threshold has F1 below 1/2
    scores = np.linspace(0.9, 0.0, 100)
    scores[0], scores[1] = 1.0, 0.95
    assert D.pixel_f1_max(*_row(scores, [1, 99])) == pytest.approx(0.5)
    assert D.f1_max(np.isin(np.arange(100), [1, 99]), scores) == pytest.approx(0.5)


def test_undefined_image_metrics_with_one_class():
    everywhere = np.ones((3, 4, 4), bool)
    out = D.evaluate(everywhere, np.random.default_rng(1).random((3, 4, 4)))
    assert np.isnan(out["image_auroc"]) and np.isnan(out["aupro"]) and np.isnan(out["pixel_auroc"])
    assert out["image_ap"] == pytest.approx(1.0) and out["pixel_ap"] == pytest.approx(1.0)
    good = D.evaluate(np.zeros((3, 4, 4), bool), np.random.default_rng(1).random((3, 4, 4)))
    for key in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro", "iap",
                "iap90"):
        assert np.isnan(good[key]), key
    assert np.isnan(D.average_precision([0, 0], [0.1, 0.2])) and np.isnan(D.f1_max([0, 0], [0.1, 0.2]))


# Two regions in one row (8-connected, so index 1 and 3 do not touch): A = pixels 0-1 (scores .9 .4),
# B = pixel 3 (.7); goods .8 .7 .2 .1 (FPR steps of 1/4).
PRO_ROW = ([0.9, 0.4, 0.8, 0.7, 0.7, 0.2, 0.1], [0, 1, 3])


def test_aupro_of_two_regions_by_hand():
    """PRO = mean over regions of the share of each region flagged; FPR = share of good pixels flagged.
    Threshold .9: PRO (1/2 + 0) / 2 = .25, FPR 0; .8: .25, 1/4; .7: (1/2 + 1) / 2 = .75, 2/4 (a good pixel ties
    with B); .4: 1, 2/4; .2: 1, 3/4; .1: 1, 1.
    Up to FPR 0.3: .25 * .25 + the sloped piece from (.25, .25) towards (.5, .75), which is at .35 at FPR .3:
    (.25 + .35) / 2 * .05 -> (.0625 + .015) / .3. Up to 0.25 (a corner exactly at the limit): .0625 / .25.
    Up to 1: .0625 + (.25 + .75) / 2 * .25 + .5 * 1."""
    mask, scores = _row(*PRO_ROW)
    assert D.aupro(mask, scores) == pytest.approx(0.0775 / 0.3)
    assert D.aupro(mask, scores, fpr_limit=0.25) == pytest.approx(0.25)
    assert D.aupro(mask, scores, fpr_limit=1.0) == pytest.approx(0.6875)
    assert D.evaluate(mask, scores)["aupro"] == pytest.approx(0.0775 / 0.3)
    # per region, not per pixel: the same pixels as one region (A and B joined) give another curve
    joined = mask.copy()
    joined[0, 0, 2] = True  # the good .8 pixel becomes defect and links A and B into one region of 4
    assert D.aupro(joined, scores) != pytest.approx(D.aupro(mask, scores))


# Three regions (DeSTSeg, CVPR 2023, Sec. 4.1): A = pixels 0-1 (.9 .6), B = 3 (.8), C = 5 (.3); goods .85 .5 .2.
# Region score: its scores sorted descending, the one at index int(0.5 * size): A .6, B .8, C .3.
IAP_ROW = ([0.9, 0.6, 0.85, 0.8, 0.5, 0.3, 0.2], [0, 1, 3, 5])


def test_iap_of_three_regions_by_hand():
    """Thresholds = region scores, ascending: .3 -> 4 defect of 6 flagged pixels (recall 3/3); .6 -> 3 of 4 (2/3);
    .8 -> 2 of 3 (1/3), made monotone -> 3/4. IAP = (2/3 + 3/4 + 3/4) / 3. IAP at recall r: the precision at the
    highest threshold whose recall is >= r: r = .9 -> 2/3, r = .5 -> 3/4."""
    mask, scores = _row(*IAP_ROW)
    np.testing.assert_allclose(np.sort(D.instance_scores(mask, scores)), [0.3, 0.6, 0.8])
    np.testing.assert_allclose(np.sort(D.instance_scores(mask, scores, quantile=0.0)), [0.3, 0.8, 0.9])
    value, at90 = D.iap(mask, scores)
    assert value == pytest.approx((2 / 3 + 0.75 + 0.75) / 3) and at90 == pytest.approx(2 / 3)
    assert D.iap(mask, scores, recall_level=0.5)[1] == pytest.approx(0.75)
    assert D.iap(mask, scores, recall_level=1.0)[1] == pytest.approx(2 / 3)
    # quantile 0 (each region's top score): thresholds .3 (4/6), .8 (2/3), .9 (1/1) -> (2/3 + 2/3 + 1) / 3
    assert D.iap(mask, scores, quantile=0.0)[0] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    ev = D.evaluate(mask, scores)
    assert (ev["iap"], ev["iap90"]) == pytest.approx(((2 / 3 + 0.75 + 0.75) / 3, 2 / 3))


def test_iap_recall_levels_with_strictly_rising_precision():
    """Regions A (.75 .65 -> .65), B (1.5), C (-0.2); goods .85 .55 .25 -0.5. Thresholds -0.2: 4 of 7; .65: 3 of 4;
    1.5: 1 of 1 -> IAP (4/7 + 3/4 + 1) / 3; at recall .9: 4/7, .5: 3/4, .3: 1; with ten regions the 0.9 level
    is reached before the lowest threshold."""
    mask, scores = _row([0.75, 0.65, 0.85, 1.5, 0.55, -0.2, 0.25, -0.5], [0, 1, 3, 5])
    assert D.iap(mask, scores)[0] == pytest.approx((4 / 7 + 0.75 + 1) / 3)
    for level, expect in ((0.9, 4 / 7), (0.5, 0.75), (0.3, 1.0)):
        assert D.iap(mask, scores, recall_level=level)[1] == pytest.approx(expect), level
    # ten one-pixel regions at 1.0 .. 0.1 (every other pixel) and good pixels between them scoring 0.95 .. 0.05:
    # at the threshold of the 9th region (0.2), 9 of 10 found: 9 defect and 8 good pixels flagged (.95 .. .25) -> 9/17,
    # not the 10/19 of the lowest threshold
    ten = np.zeros(20)
    ten[0::2] = np.arange(10, 0, -1) / 10
    ten[1::2] = ten[0::2] - 0.05
    m, s = _row(ten, range(0, 20, 2))
    assert D.iap(m, s)[1] == pytest.approx(9 / 17)


def test_top_k_changes_the_image_ranking():
    # image 0 (defect): one pixel at 1, the rest 0; image 1 (good): every pixel 0.5. top-1 ranks the defect first,
    # top-100 (means 0.01 and 0.5) ranks it last
    maps = np.zeros((2, 10, 10))
    maps[0, 0, 0], maps[1] = 1.0, 0.5
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 0, 0] = True
    np.testing.assert_allclose(D.image_scores(maps, top_k=1), [1.0, 0.5])
    np.testing.assert_allclose(D.image_scores(maps, top_k=2), [0.5, 0.5])
    np.testing.assert_allclose(D.image_scores(maps), [0.01, 0.5])
    assert D.evaluate(masks, maps, top_k=1)["image_auroc"] == 1.0
    assert D.evaluate(masks, maps)["image_auroc"] == 0.0
    assert D.pr_curve(masks, maps, level="image", top_k=1).ap == pytest.approx(1.0)
    assert D.pr_curve(masks, maps, level="image").ap == pytest.approx(0.5)  # the defect found last: P 1/2


def test_input_forms_and_error_messages():
    mask, scores = _row(RANKED, RANKED_DEFECT)
    ref = D.pixel_ap(mask, scores)
    assert D.pixel_ap(mask[..., None], scores[..., None]) == pytest.approx(ref)  # (N, H, W, 1) accepted
    assert D.pixel_ap(mask.astype(np.uint8) * 255, scores) == pytest.approx(ref)  # 0/255 masks
    assert D.pixel_ap(mask, (scores * 10).astype(np.int64)) == pytest.approx(ref)  # integer maps
    labels = np.isin(np.arange(5), RANKED_DEFECT)
    assert D.auroc(labels.astype(np.uint8) * 255, RANKED) == pytest.approx(RANKED_AUROC)
    with pytest.raises(DefectlabError, match=r"maps: expected N maps of shape \(H, W\)"):
        D.pixel_ap(mask[0], scores[0])
    with pytest.raises(DefectlabError, match="maps: contains NaN"):
        D.pixel_ap(mask, np.full(scores.shape, np.inf))
    with pytest.raises(DefectlabError, match=r"masks: shape \(1, 1, 4\) differs from the maps' shape \(1, 1, 5\)"):
        D.pixel_ap(mask[..., :4], scores)
    with pytest.raises(DefectlabError, match="top_k: must be at least 1, got 0"):
        D.image_scores(scores, top_k=0)
    with pytest.raises(DefectlabError, match="scores: 4 scores for 5 labels"):
        D.auroc(labels, RANKED[:4])
    with pytest.raises(DefectlabError, match="scores: expected 1 per-image scores"):
        D.evaluate(mask, scores, scores=[1.0, 2.0])
    with pytest.raises(DefectlabError, match="level: expected 'pixel' or 'image', got 'region'"):
        D.pr_curve(mask, scores, level="region")


# Binned statistics, by hand (bins of 0.1). Image 0: regions A (.75 .65), B (1.5, clipped into the top bin),
# C (-0.35, clipped into bin 0); goods .85 .55 .25 -0.5. Image 1: one defect pixel at .9, goods .1 .3.
BIN_ROWS = [([0.75, 0.65, 0.85, 1.5, 0.55, -0.35, 0.25, -0.5], [0, 1, 3, 5]),
            ([0.9, 0.1, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1], [0])]


def _bin_case():
    rows = [_row(*r) for r in BIN_ROWS]
    return np.concatenate([m for m, _ in rows]), np.concatenate([s for _, s in rows])


def test_image_stats_histograms_by_hand():
    masks, maps = _bin_case()
    st = D.image_stats(masks, maps, bins=10)
    assert st["pos_hist"].dtype == np.int32 and st["neg_hist"].dtype == np.int32
    assert st["inst_image"].dtype == np.int32 and st["inst_scores"].dtype == np.float32
    np.testing.assert_array_equal(st["pos_hist"][0], [1, 0, 0, 0, 0, 0, 1, 1, 0, 1])  # -0.35, .65, .75, 1.5
    np.testing.assert_array_equal(st["neg_hist"][0], [1, 0, 1, 0, 0, 1, 0, 0, 1, 0])  # -0.5, .25, .55, .85
    np.testing.assert_array_equal(st["pos_hist"][1], [0] * 9 + [1])
    np.testing.assert_array_equal(st["neg_hist"][1], [0, 6, 0, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(st["inst_scores"], [0.65, 1.5, -0.35, 0.9], rtol=1e-6)
    np.testing.assert_array_equal(st["inst_image"], [0, 0, 0, 1])


def test_binned_metrics_by_hand():
    """Image 0 alone (weights 1, 0), walking down from the top bin: defect / flagged pixels 1/1 (bin 9), 1/2, 2/3,
    3/4 (bin 6), 3/5, 3/5, 3/5, 3/6, 3/6, 4/8 (bin 0: the defect at -0.35 shares it with the good -0.5).
    Pixel AP: a quarter of the recall at bins 9, 7, 6 and 0 -> (1 + 2/3 + 3/4 + 1/2) / 4.
    Regions at bins 0, 6, 9: precision 1/2, 3/4, 1 -> IAP (1/2 + 3/4 + 1) / 3; at recall .9: 1/2, .5: 3/4, .3: 1."""
    masks, maps = _bin_case()
    st = D.image_stats(masks, maps, bins=10)
    only0 = D.binned_metrics(st, weights=[1, 0])
    assert only0["pixel_ap"] == pytest.approx((1 + 2 / 3 + 0.75 + 0.5) / 4)
    assert only0["iap"] == pytest.approx(0.75) and only0["iap90"] == pytest.approx(0.5)
    for level, expect in ((0.5, 0.75), (0.3, 1.0)):
        assert D.binned_metrics(st, weights=[1, 0], recall_level=level)["iap90"] == pytest.approx(expect), level
    # the exact metrics tell -0.35 from -0.5: 4 of 7 at the lowest region; AP (1 + 2/3 + 3/4 + 4/7) / 4
    exact = D.evaluate(masks[:1], maps[:1])
    assert exact["pixel_ap"] == pytest.approx((1 + 2 / 3 + 0.75 + 4 / 7) / 4)
    assert exact["iap"] == pytest.approx((4 / 7 + 0.75 + 1) / 3)
    # image 1 alone: its one defect pixel is above its goods: everything is 1
    assert D.binned_metrics(st, weights=[0, 1]) == pytest.approx({"pixel_ap": 1.0, "iap": 1.0, "iap90": 1.0})
    # an image counted twice (weights 1, 2) = the data set with that image repeated
    dup = D.image_stats(masks[[0, 1, 1]], maps[[0, 1, 1]], bins=10)
    assert D.binned_metrics(st, weights=[1, 2]) == pytest.approx(D.binned_metrics(dup))
    # defects only in the lowest bin: AP = their share of all pixels (1 defect at 0, 3 goods at .5 -> 1/4)
    low_mask, low_map = _row([0.0, 0.5, 0.5, 0.5], [0])
    assert D.binned_metrics(D.image_stats(low_mask, low_map, bins=10))["pixel_ap"] == pytest.approx(0.25)
    nothing = D.binned_metrics(D.image_stats(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2)), bins=10))
    assert set(nothing) == {"pixel_ap", "iap", "iap90"} and all(np.isnan(v) for v in nothing.values())


def test_image_labels_for_a_defect_image_without_annotated_pixels_by_hand():
    """Image 0 good (.1 .2 .3 .4), image 1 a defect at its pixel 0 (.9 .1 .1 .1), image 2 a defect whose mask is
    empty (.95 everywhere). With labels: image level 2 defects above the good one (AUROC 1); pixel level only
    images 0-1 count, the one defect pixel above the 7 good ones (AP 1). From the masks alone image 2 is good: its
    four .95 pixels rank above the defect (pixel AP 1/5) and its score above image 1's (AUROC 1/2)."""
    masks = np.zeros((3, 1, 4), bool)
    masks[1, 0, 0] = True
    maps = np.array([[[0.1, 0.2, 0.3, 0.4]], [[0.9, 0.1, 0.1, 0.1]], [[0.95] * 4]])
    labels, scored = D.image_labels(masks, [False, True, True])
    np.testing.assert_array_equal(labels, [False, True, True])
    np.testing.assert_array_equal(scored, [True, True, False])
    default = D.image_labels(masks)
    np.testing.assert_array_equal(default[0], [False, True, False])
    np.testing.assert_array_equal(default[1], [True, True, True])
    out = D.evaluate(masks, maps, top_k=1, labels=[False, True, True])
    assert out["image_auroc"] == 1.0 and out["pixel_ap"] == 1.0 and out["pixel_auroc"] == 1.0
    plain = D.evaluate(masks, maps, top_k=1)
    assert plain["image_auroc"] == 0.5 and plain["pixel_ap"] == pytest.approx(0.2)
    st = D.image_stats(masks, maps, bins=10, labels=[False, True, True])
    assert st["neg_hist"][2].sum() == 0 and st["pos_hist"][2].sum() == 0 and st["neg_hist"][0].sum() == 4
    assert D.image_stats(masks, maps, bins=10)["neg_hist"][2, 9] == 4
    with pytest.raises(DefectlabError, match="labels: expected 3 image labels, got 2"):
        D.image_labels(masks, [True, True])
    masks[2, 0, :2] = True
    with pytest.raises(DefectlabError, match="labels: image 1 is labelled good but its mask has 1 defect pixels"):
        D.image_labels(masks, [False, False, False])


def test_one_defect_pixel_below_a_good_one_by_hand():
    """Goods .9 .1, one defect .5. Corners, highest first: .9 (the score just above the defect: 1 good flagged, no
    defect), .5 (1 defect + 1 good), .1 (everything). AUROC: the defect beats 1 of 2 goods -> 1/2; AP: precision
    1/2 at the defect; F1 2 * 1/2 * 1 / (3/2) = 2/3."""
    mask, scores = _row([0.9, 0.5, 0.1], [1])
    curve = D.pixel_curve(mask, scores.astype(np.float32))
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.5, 0.1], rtol=1e-6)
    np.testing.assert_array_equal(curve.tps, [0, 1, 1])
    np.testing.assert_array_equal(curve.fps, [1, 1, 2])
    assert curve.thresholds.dtype == np.float32  # float32 maps stay float32
    assert curve.tps.dtype.kind == curve.fps.dtype.kind == "i"  # counts
    assert curve.auroc() == pytest.approx(0.5) and curve.average_precision() == pytest.approx(0.5)
    assert curve.f1_max() == pytest.approx(2 / 3)
    # one good pixel among defects: .9 and .7 beat it, .1 does not -> AUROC 2/3
    assert D.pixel_auroc(*_row([0.9, 0.5, 0.7, 0.1], [0, 2, 3])) == pytest.approx(2 / 3)
    # the defect is the lowest pixel: corners .5 (just above it) and .1 only, no third "everything" corner
    low = D.pixel_curve(*_row([0.9, 0.5, 0.1], [2]))
    np.testing.assert_array_equal(low.thresholds, [0.5, 0.1])
    np.testing.assert_array_equal(low.tps, [0, 1])
    assert low.auroc() == 0.0


def test_f1_max_below_one_half_where_precision_plus_recall_is_below_one():
    # 2 defects in 100 pixels: two goods first, then a defect (P 1/3, R 1/2: F1 = 2 * (1/6) / (5/6) = 0.4), the
    # other defect last (F1 2 * 0.02 / 1.02)
    scores = np.linspace(0.9, 0.0, 100)
    scores[:3] = 1.0, 0.97, 0.95
    assert D.pixel_f1_max(*_row(scores, [2, 99])) == pytest.approx(0.4)


def test_more_input_forms():
    mask, scores = _row(RANKED, RANKED_DEFECT)
    ref = D.pixel_ap(mask, scores)
    column_masks, column_maps = mask.reshape(1, 5, 1), scores.reshape(1, 5, 1)  # images one pixel wide
    assert D.pixel_ap(column_masks, column_maps) == pytest.approx(ref)
    tall = np.repeat(mask, 3, axis=1)[..., None], np.repeat(scores, 3, axis=1)[..., None]  # (N, 3, 5, 1)
    assert D.pixel_ap(*tall) == pytest.approx(ref)
    assert D.pixel_ap(mask.astype(np.int64), scores) == pytest.approx(ref)  # 0/1 integer masks
    assert D.evaluate(mask, mask)["pixel_ap"] == 1.0  # a bool map (a detector's binary output)
    # 8-connected regions: two pixels touching at a corner are one region
    diag = np.zeros((1, 3, 3), bool)
    diag[0, 0, 0] = diag[0, 1, 1] = True
    assert D.instance_scores(diag, np.arange(9.0).reshape(1, 3, 3)).size == 1


def test_defaults_top_k_100_and_1000_bins():
    # image 0 (defect): 100 pixels at 1, 300 at 0 -> top-100 mean 1, top-101 mean 100/101; image 1 (good): all .995
    maps = np.zeros((2, 20, 20))
    maps[0].flat[:100], maps[1] = 1.0, 0.995
    masks = np.zeros((2, 20, 20), bool)
    masks[0, 0, 0] = True
    np.testing.assert_allclose(D.image_scores(maps), [1.0, 0.995])
    assert D.evaluate(masks, maps)["image_auroc"] == 1.0  # would be 0 with the top 101
    assert D.pr_curve(masks, maps, level="image").ap == pytest.approx(1.0)
    assert D.image_stats(masks, maps)["pos_hist"].shape == (2, 1000)


def test_aupro_with_a_vertical_step_at_the_limit():
    """Region A = pixels 0-1 (.9 .4), B = pixel 3 (.7); goods .8 .3 .2 .1, no ties: at FPR 1/4 the PRO climbs from
    .25 (threshold .8) to .75 (.7) to 1 (.4). Up to FPR .25 the area is .25 * .25, the climb adds none: .0625 / .25."""
    mask, scores = _row([0.9, 0.4, 0.8, 0.7, 0.3, 0.2, 0.1], [0, 1, 3])
    assert D.aupro(mask, scores, fpr_limit=0.25) == pytest.approx(0.25)


def test_binned_iap90_with_ten_regions():
    # the ten-region row of test_iap_recall_levels_with_strictly_rising_precision in 100 bins: every score in a
    # bin of its own, so the binned IAP90 is the exact 9/17 (recall 9/10 >= 0.9 before the lowest threshold)
    ten = np.zeros(20)
    ten[0::2] = np.arange(10, 0, -1) / 10
    ten[1::2] = ten[0::2] - 0.05
    m, s = _row(ten, range(0, 20, 2))
    assert D.binned_metrics(D.image_stats(m, s, bins=100))["iap90"] == pytest.approx(9 / 17)


def test_labels_as_0_255():
    labels = np.isin(np.arange(5), RANKED_DEFECT).astype(np.uint8) * 255
    assert D.average_precision(labels, RANKED) == pytest.approx(RANKED_AP)
    assert D.f1_max(labels, RANKED) == pytest.approx(RANKED_F1)
