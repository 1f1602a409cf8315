"""SuperSimpleNet (the second supervised detector), the detector registry and the training mix (`real_share`)."""
import numpy as np
import pytest

from defectlab import DefectlabError, Sample
from defectlab.detect import DeSTSegDetector, SegmentationDetector, SuperSimpleNetDetector, create_detector
from defectlab.detect.mix import defect_chooser

SIZE = 64
TINY = dict(hidden=16, batch_size=8, steps=3, num_threads=1)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _goods(n, rng):
    return [(0.45 + 0.1 * rng.random((SIZE, SIZE, 1))).astype(np.float32) for _ in range(n)]


def _bright_square(goods, rng, n, real=False):
    out = []
    for _ in range(n):
        j = int(rng.integers(len(goods)))
        y, x = rng.integers(4, SIZE - 20, 2)
        img, mask = goods[j].copy(), np.zeros((SIZE, SIZE), bool)
        mask[y:y + 16, x:x + 16] = True
        img[mask] = 0.95
        out.append(Sample(img, mask, {"real": True} if real else {"good_index": j}))
    return out


def test_supersimplenet_learns_to_find_the_defect_and_is_deterministic(rng):
    goods = _goods(8, rng)
    defects = _bright_square(goods, rng, 8, real=True)
    fit = lambda: SuperSimpleNetDetector(**{**TINY, "steps": 80}).fit(  # noqa: E731
        goods, defects, np.random.default_rng(1), show_progress=False)
    a, b = fit(), fit()
    assert a.losses == b.losses
    assert np.mean(a.losses[-10:]) < 0.5 * np.mean(a.losses[:10])
    test = _bright_square(_goods(3, np.random.default_rng(5)), np.random.default_rng(6), 3)
    images = [s.image for s in test] + _goods(3, np.random.default_rng(7))
    maps, scores = a.predict(images)
    assert maps.shape == (6, SIZE, SIZE) and 0 <= maps.min() and maps.max() <= 1
    assert np.array_equal(maps, b.predict(images)[0])
    for m, s in zip(maps[:3], test):  # inside the defect higher than outside
        assert m[s.mask].mean() > m[~s.mask].mean() + 0.1
    assert scores[:3].min() > scores[3:].max()  # the classification head ranks every defect above every good image


def test_supersimplenet_save_load_init_pairing_and_errors(rng, tmp_path):
    goods = _goods(4, rng)
    real = _bright_square(goods, rng, 2, real=True)
    det = SuperSimpleNetDetector(**TINY).fit(goods, real, np.random.default_rng(0), show_progress=False)
    sha = det.save(tmp_path / "s.pt")
    again = SuperSimpleNetDetector.load(tmp_path / "s.pt", sha256=sha)
    for x, y in zip(det.predict(goods[:2]), again.predict(goods[:2])):
        assert np.array_equal(x, y)
    with pytest.raises(DefectlabError, match="SHA-256"):
        SuperSimpleNetDetector.load(tmp_path / "s.pt", sha256="0" * 64)
    # paired runs: same init_rng, different data -> same initial networks (lr 0 keeps them as initialised)
    frozen = dict(TINY, steps=1, adapt_lr=0.0, head_lr=0.0)
    a = SuperSimpleNetDetector(**frozen).fit(goods, real, np.random.default_rng(1), init_rng=np.random.default_rng(9),
                                             show_progress=False)
    b = SuperSimpleNetDetector(**frozen).fit(goods, real + _bright_square(goods, rng, 3), np.random.default_rng(2),
                                             init_rng=np.random.default_rng(9), show_progress=False)
    assert all(np.array_equal(p.numpy(), q.numpy()) for p, q in zip(a.heads.parameters(), b.heads.parameters()))
    with pytest.raises(DefectlabError, match="before predict"):
        SuperSimpleNetDetector().predict(goods)
    with pytest.raises(DefectlabError, match="real_share"):
        SuperSimpleNetDetector(real_share=1.5)
    with pytest.raises(DefectlabError, match="unknown supersimplenet parameter"):
        SuperSimpleNetDetector(stepz=3)


def test_feature_noise_never_lands_on_a_real_defect_and_half_the_masks_are_empty():
    det = SuperSimpleNetDetector(**TINY)
    masks = det._perlin(400, (16, 16), np.random.default_rng(0), det.params.perlin_threshold).numpy()
    empty = (masks.reshape(400, -1).sum(1) == 0).mean()
    assert 0.4 < empty < 0.75  # half emptied on purpose, a few more empty because the noise stays under 0.6
    assert set(np.unique(masks)) <= {0.0, 1.0}
    loose = det._perlin(400, (16, 16), np.random.default_rng(0), det.params.unsupervised_perlin_threshold).numpy()
    assert loose.mean() > 2 * masks.mean()  # the unsupervised threshold (0.2) marks larger regions


def test_without_defects_the_map_is_not_trained_through_the_classification_head(rng, monkeypatch):
    """The paper's unsupervised setting (no defect given): the classification head reads the map detached, so the
    segmentation head's gradient comes from the map losses alone; with real defects the head trains it too."""
    import torch

    goods = _goods(4, rng)
    seen = []
    original = torch.Tensor.detach

    def spy(t):
        seen.append(tuple(t.shape))
        return original(t)

    monkeypatch.setattr(torch.Tensor, "detach", spy)
    SuperSimpleNetDetector(**dict(TINY, steps=1)).fit(goods, [], np.random.default_rng(1), show_progress=False)
    unsupervised = [s for s in seen if len(s) == 4 and s[1] == 1]  # the (B, 1, h, w) map, detached
    seen.clear()
    SuperSimpleNetDetector(**dict(TINY, steps=1)).fit(goods, _bright_square(goods, rng, 2, real=True),
                                                      np.random.default_rng(1), show_progress=False)
    supervised = [s for s in seen if len(s) == 4 and s[1] == 1]
    assert unsupervised and not supervised


def test_registry_builds_each_supervised_detector_with_its_step_budget():
    assert isinstance(create_detector("supersimplenet", 7), SuperSimpleNetDetector)
    assert create_detector("supersimplenet", 7).params.steps == 7
    d = create_detector("destseg", 9, seg_steps=2)  # an explicit override wins over the budget
    assert isinstance(d, DeSTSegDetector) and (d.params.student_steps, d.params.seg_steps) == (9, 2)
    assert isinstance(create_detector("unet", 5), SegmentationDetector) and create_detector("unet", 5).params.steps == 5
    with pytest.raises(DefectlabError, match="unknown detector 'nope'.*supersimplenet"):
        create_detector("nope")


@pytest.mark.parametrize("share", [0.0, 0.25, 0.9, 1.0])
def test_real_share_sets_the_fraction_of_real_defects_drawn(share):
    defects = [Sample(np.zeros((4, 4, 1), np.float32), np.ones((4, 4), bool), {"real": i < 3}) for i in range(50)]
    choose = defect_chooser(defects, share)
    rng = np.random.default_rng(0)
    picks = np.array([choose(rng) for _ in range(4000)])
    assert abs((picks < 3).mean() - share) < 0.03
    assert set(picks[picks < 3]) <= {0, 1, 2} and (share == 1.0 or (picks >= 3).any())


def test_real_share_none_or_one_kind_is_the_uniform_pooled_draw():
    mixed = [Sample(np.zeros((4, 4, 1), np.float32), np.ones((4, 4), bool), {"real": i < 3}) for i in range(30)]
    only_synthetic = [Sample(s.image, s.mask, {}) for s in mixed]
    for defects, share in ((mixed, None), (only_synthetic, 0.9)):
        a, b = np.random.default_rng(4), np.random.default_rng(4)
        choose = defect_chooser(defects, share)
        assert [choose(a) for _ in range(50)] == [int(b.integers(30)) for _ in range(50)]


def _dark(samples):
    return [Sample(np.where(s.mask[..., None], 0.05, s.image).astype(np.float32), s.mask, s.meta) for s in samples]


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_destseg_and_unet_honour_real_share(rng, share):
    """Real defects bright, synthetic ones dark: with real_share 1 (0) a defective training crop never holds a dark
    (bright) defect pixel."""
    goods = _goods(4, rng)
    real = _bright_square(goods, rng, 2, real=True)
    synthetic = _dark(_bright_square(goods, np.random.default_rng(3), 6))
    tiny = dict(student_width=8, head_width=8, batch_size=16, crop=32, defect_fraction=1.0, num_threads=1)
    det = DeSTSegDetector(**tiny, real_share=share)
    det.channels = 1
    items_good, items_defect = det._items(goods, real + synthetic, (SIZE, SIZE))
    x, y, *_ = det._batch(np.random.default_rng(0), items_good, items_defect)
    inside = x[:, 0][y > 0].numpy()
    assert inside.size and ((inside > 0.9).all() if share == 1.0 else (inside < 0.1).all())
    unet = SegmentationDetector(base_channels=4, depth=2, batch_size=4, steps=2, num_threads=1, real_share=share)
    unet.fit(goods, real + synthetic, np.random.default_rng(1), show_progress=False)
    pool = real + synthetic
    data = unet.training_data(np.random.default_rng(2), np.stack(goods), np.stack([s.image for s in pool]),
                              np.stack([s.mask for s in pool]), None, None)
    assert data.weights.tolist() == [share, 1.0 - share]  # the real pool, then the synthetic one


def test_a_steps_override_wins_over_the_budget():
    assert create_detector("supersimplenet", 9, steps=4).params.steps == 4
    assert create_detector("unet", None, steps=6).params.steps == 6
