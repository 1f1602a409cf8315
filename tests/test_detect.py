"""The downstream segmentation detector: shapes, determinism, learning, errors, save/load."""
import numpy as np
import pytest

import defectlab
from defectlab import DefectlabError, Sample
from defectlab.detect import CompactUNet, SegmentationDetector, image_scores, match_channels

SIZE = 32
TINY = dict(base_channels=4, depth=2, batch_size=4, num_threads=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _goods(n, rng, channels=1):
    return [(0.45 + 0.1 * rng.random((SIZE, SIZE, channels))).astype(np.float32) for _ in range(n)]


def _dark_square(good, rng, foreground=None):
    """A stand-in synthesis method: a dark square somewhere."""
    y, x = rng.integers(2, SIZE - 10, 2)
    mask = np.zeros(good.shape[:2], bool)
    mask[y:y + 8, x:x + 8] = True
    img = good.copy()
    img[mask] = 0.05
    return Sample(img, mask, {"method": "dark_square"})


def test_unet_keeps_any_size_and_channel_count():
    import torch

    for channels, (h, w) in ((1, (37, 50)), (3, (32, 32))):
        net = CompactUNet(channels, base=4, depth=3).init_weights(torch.Generator().manual_seed(0))
        out = net(torch.rand(2, channels, h, w))
        assert out.shape == (2, h, w)
        # the head starts at the focal-loss prior 0.01 (RetinaNet): bias logit(0.01) = -ln 99, tiny weights
        assert net.head.bias.item() == pytest.approx(-np.log(99))
        assert torch.sigmoid(out).mean().item() == pytest.approx(0.01, abs=0.003)


def test_image_scores_is_mean_of_top_k():
    maps = np.zeros((2, 10, 10), np.float32)
    maps[0, 0, :4] = [1.0, 0.8, 0.6, 0.4]
    s = image_scores(maps, top_k=2)
    assert s[0] == pytest.approx(0.9) and s[1] == 0
    assert image_scores(maps, top_k=1000)[0] == pytest.approx(2.8 / 100)


def test_match_channels():
    g = np.full((4, 4, 1), 0.5, np.float32)
    assert match_channels(g, 3).shape == (4, 4, 3)
    assert match_channels(np.dstack([g, g * 0, g * 2]), 1)[0, 0, 0] == pytest.approx(0.5)


def test_same_seed_same_bytes_other_seed_differs(rng):
    goods = _goods(6, rng)
    defects = [_dark_square(g, rng) for g in goods[:3]]
    fit = lambda seed: SegmentationDetector(steps=3, **TINY).fit(goods, defects, np.random.default_rng(seed),
                                                                  show_progress=False)
    a, b, c = fit(1), fit(1), fit(2)
    assert a.losses == b.losses
    ma, mb, mc = (d.predict(goods[:2])[0] for d in (a, b, c))
    assert ma.tobytes() == mb.tobytes()
    assert not np.array_equal(ma, mc)


def test_detector_learns_to_find_dark_squares(rng):
    goods = _goods(16, rng)
    pool = [_dark_square(g, np.random.default_rng(i)) for i, g in enumerate(goods)]
    det = SegmentationDetector(steps=80, lr=3e-3, base_channels=8, depth=2, batch_size=8, num_threads=1)
    det.fit(goods, pool, np.random.default_rng(0), show_progress=False)
    assert np.mean(det.losses[-10:]) < np.mean(det.losses[:10])
    test_good = _goods(6, np.random.default_rng(99))
    test_bad = [_dark_square(g, np.random.default_rng(100 + i)) for i, g in enumerate(_goods(6, np.random.default_rng(98)))]
    maps, scores = det.predict(test_good + [s.image for s in test_bad])
    assert maps.shape == (12, SIZE, SIZE) and 0 <= maps.min() and maps.max() <= 1
    assert scores[6:].min() > scores[:6].max()  # every defective image outranks every good one
    inside = np.mean([m[s.mask].mean() for m, s in zip(maps[6:], test_bad)])
    outside = np.mean([m[~s.mask].mean() for m, s in zip(maps[6:], test_bad)])
    assert inside > outside + 0.2


def test_on_the_fly_synthesis_is_called_with_foregrounds(rng):
    goods = _goods(4, rng)
    calls = []

    def synth(good, r, foreground=None):
        calls.append(foreground is not None)
        return _dark_square(good, r)

    det = SegmentationDetector(steps=3, defect_fraction=1.0, **TINY)
    det.fit(goods, (), np.random.default_rng(0), synth=synth, foregrounds=[np.ones((SIZE, SIZE), bool)] * 4,
            show_progress=False)
    assert len(calls) == 3 * TINY["batch_size"] and all(calls)


def test_rgb_defects_for_grey_detector_are_converted(rng):
    goods = _goods(3, rng, channels=1)
    rgb = _dark_square(np.repeat(goods[0], 3, axis=2), rng)
    det = SegmentationDetector(steps=2, **TINY).fit(goods, [rgb], np.random.default_rng(0), show_progress=False)
    assert det.channels == 1
    maps = det.predict([np.repeat(goods[1], 3, axis=2)])[0]
    assert maps.shape == (1, SIZE, SIZE)
    # an RGB image of equal channels is read as the grey image it repeats
    np.testing.assert_allclose(maps, det.predict([goods[1]])[0], atol=1e-6)


def test_errors_are_clear(rng):
    goods = _goods(3, rng)
    with pytest.raises(DefectlabError, match="defects"):
        SegmentationDetector(steps=1).fit(goods, (), np.random.default_rng(0))
    with pytest.raises(DefectlabError, match="rng"):
        SegmentationDetector(steps=1).fit(goods, [_dark_square(goods[0], rng)])
    with pytest.raises(DefectlabError, match="before predict"):
        SegmentationDetector().predict(goods)
    with pytest.raises(DefectlabError, match="unknown detector parameter"):
        SegmentationDetector(stepz=3)
    with pytest.raises(DefectlabError, match="steps"):
        SegmentationDetector(steps=0)
    unfitted = defectlab.create("copypaste")
    with pytest.raises(DefectlabError, match="needs fitting"):
        SegmentationDetector(steps=1, **TINY).fit(goods, (), np.random.default_rng(0), synth=unfitted, show_progress=False)
    small = Sample(np.zeros((16, 16, 1), np.float32), np.ones((16, 16), bool))
    with pytest.raises(DefectlabError, match=r"defects\[0\].*differs"):
        SegmentationDetector(steps=1, **TINY).fit(goods, [small], np.random.default_rng(0), show_progress=False)


def test_save_and_load_round_trip(tmp_path, rng):
    goods = _goods(4, rng)
    det = SegmentationDetector(steps=2, **TINY).fit(goods, [_dark_square(goods[0], rng)], np.random.default_rng(0),
                                                    show_progress=False)
    sha = det.save(tmp_path / "det.pt")
    back = SegmentationDetector.load(tmp_path / "det.pt", sha256=sha)
    assert np.array_equal(back.predict(goods)[0], det.predict(goods)[0])
    with pytest.raises(DefectlabError, match="SHA-256"):
        SegmentationDetector.load(tmp_path / "det.pt", sha256="0" * 64)
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(DefectlabError, match="not a saved detector"):
        SegmentationDetector.load(tmp_path / "bad.pt")
