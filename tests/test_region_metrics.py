"""Quality where the defect is (issue 23): defect windows, region metrics, visibility and TRTS."""
import numpy as np
import pytest
from scipy import ndimage

from defectlab import DefectlabError, Sample
from defectlab.metrics import inception as F
from defectlab.metrics import region, trts, visibility


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFECTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEFECTLAB_PROGRESS", "0")
    F.clear_memory_cache()


def texture(rng, size=96, sigma=2.0):
    x = ndimage.gaussian_filter(rng.random((size, size)), sigma)
    return ((x - x.min()) / (x.max() - x.min()) * 0.6 + 0.2).astype(np.float32)[..., None]


def with_defect(rng, strength, size=96, box=(40, 50, 30, 44)):
    im = texture(rng, size)
    m = np.zeros((size, size), bool)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = True
    im[m] = np.clip(im[m] + strength, 0, 1)
    return im, m


def test_windows_surround_each_defect_with_the_stated_margin():
    m = np.zeros((100, 100), bool)
    m[40:50, 30:50] = True  # 10 x 20 box
    m[90:99, 0:3] = True  # 9 x 3 box at the edge
    m[5, 5] = True  # one pixel: below min_area
    p = region.RegionParams(margin=0.5, min_side=16)
    wins = region.windows(m, p)
    assert len(wins) == 2
    top, left, side = wins[0]
    assert side == 40 and (top, left) == (25, 20)  # 20 * (1 + 2 * 0.5), centred on the box
    top, left, side = wins[1]
    assert side == 18 and top + side <= 100 and left == 0  # moved inside the image
    crops, where = region.crops([np.zeros((100, 100, 3), np.float32)], [m], p)
    assert len(crops) == 2 and crops[0].shape == (p.size, p.size, 3) and where[0] == (0, 25, 20, 40)
    with pytest.raises(DefectlabError, match="masks"):
        region.crops([np.zeros((8, 8, 1), np.float32)], [], p)


def test_region_quality_tells_matching_windows_from_foreign_ones(rng):
    real = [with_defect(rng, 0.3) for _ in range(4)]
    like = [with_defect(rng, 0.3) for _ in range(4)]
    unlike = [(np.clip(texture(rng, sigma=6.0) * 0.2, 0, 1), m) for _, m in like]  # flat dark: nothing alike
    a = region.region_quality(*zip(*real), *zip(*like), ic_lpips=False)
    b = region.region_quality(*zip(*real), *zip(*unlike), ic_lpips=False)
    assert a["region_n_real"] == a["region_n_fake"] == 4 and a["region_margin"] == 0.5
    assert a["region_kid_subset_size"] == 2
    assert a["region_domain_frechet"] < b["region_domain_frechet"] and a["region_fid"] < b["region_fid"]
    few = region.region_quality(*zip(*real[:1]), *zip(*like), ic_lpips=False)
    assert few["region_n_real"] == 1 and "region_kid" not in few  # too few windows: said, not computed


def test_visibility_ranks_and_flags_faint_defects(rng):
    strong = [with_defect(rng, 0.35) for _ in range(5)]
    faint = [with_defect(rng, 0.02) for _ in range(5)]
    vs = visibility.visibility(*zip(*strong))
    vf = visibility.visibility(*zip(*faint))
    assert np.all(vs > vf)
    out = visibility.compare(*zip(*strong), *zip(*faint))
    assert out["visibility_flag"] and out["visibility_ratio"] < 0.5 and out["visibility_n_fake"] == 5
    assert not visibility.compare(*zip(*strong), *zip(*strong))["visibility_flag"]
    im, _ = strong[0]
    assert np.isnan(visibility.defect_visibility(im, np.zeros(im.shape[:2], bool))["visibility"])


def test_trts_scores_a_detector_against_synthetic_masks(rng):
    samples = [Sample(*with_defect(rng, 0.3), {}) for _ in range(3)]

    by_image = {id(s.image): s.mask.astype(np.float32) for s in samples}

    def oracle(images):  # a detector that sees exactly the synthetic defects, returning (maps, scores)
        return np.stack([by_image[id(im)] for im in images]), None

    perfect = trts.trts(oracle, samples)
    assert perfect["trts_pixel_ap"] == pytest.approx(1.0) and perfect["trts_aupro"] == pytest.approx(1.0)
    blind = trts.trts(lambda ims: (rng.random((len(ims), 96, 96)), None), samples,
                      goods=[texture(rng) for _ in range(2)])
    assert blind["trts_pixel_ap"] < 0.3 and blind["trts_n"] == 3
    with pytest.raises(DefectlabError, match="maps"):
        trts.trts(lambda ims: np.zeros((1, 96, 96)), samples, batch_size=16)
    with pytest.raises(DefectlabError, match="no synthetic"):
        trts.trts(oracle, [])


def test_window_gallery_shows_the_least_and_most_visible(rng):
    samples = [with_defect(rng, s) for s in (0.02, 0.4, 0.1, 0.01, 0.15)]
    fig, shown = region.window_gallery(*zip(*samples), n=2)
    assert set(shown[:2]) == {0, 3} and shown[2] == 1  # the two faintest, then the most visible first
    assert len(fig.axes) == 4
    fig, shown = region.window_gallery(*zip(*samples), scores=[5, 4, 3, 2, 1], n=1)
    assert shown == [4, 0]
    with pytest.raises(DefectlabError, match="scores"):
        region.window_gallery(*zip(*samples), scores=[1, 2])
