"""The pretrained-backbone detectors: DeSTSeg-style (supervised) and PatchCore (no defects), and the
aspect-preserving canvas the benchmark puts every image on."""
import numpy as np
import pytest

from defectlab import DefectlabError, Sample
from defectlab.detect import DeSTSegDetector, PatchCore
from defectlab.benchmark.prepare import letterbox, letterbox_box, to_eval_frame

SIZE = 64
TINY = dict(student_width=8, head_width=8, batch_size=4, crop=32, student_steps=3, seg_steps=3, num_threads=1)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _goods(n, rng):
    return [(0.45 + 0.1 * rng.random((SIZE, SIZE, 1))).astype(np.float32) for _ in range(n)]


def _bright_square(goods, rng, n):
    out = []
    for _ in range(n):
        j = int(rng.integers(len(goods)))
        y, x = rng.integers(4, SIZE - 16, 2)
        img, mask = goods[j].copy(), np.zeros((SIZE, SIZE), bool)
        mask[y:y + 12, x:x + 12] = True
        img[mask] = 0.95
        out.append(Sample(img, mask, {"good_index": j}))
    return out


def test_destseg_learns_finds_the_defect_and_is_deterministic(rng):
    goods = _goods(8, rng)
    defects = _bright_square(goods, rng, 8)
    fit = lambda seed: DeSTSegDetector(**{**TINY, "student_steps": 40, "seg_steps": 60}).fit(
        goods, defects, np.random.default_rng(seed), show_progress=False)
    a, b = fit(1), fit(1)
    assert a.losses == b.losses
    assert np.mean(a.seg_losses[-10:]) < np.mean(a.seg_losses[:10])
    assert np.mean(a.student_losses[-10:]) < np.mean(a.student_losses[:10])
    test = _bright_square(_goods(3, np.random.default_rng(5)), np.random.default_rng(6), 3)
    maps, scores = a.predict([s.image for s in test] + _goods(3, np.random.default_rng(7)))
    assert maps.shape == (6, SIZE, SIZE) and maps.min() >= 0 and maps.max() <= 1
    assert np.array_equal(maps, b.predict([s.image for s in test] + _goods(3, np.random.default_rng(7)))[0])
    for m, s in zip(maps[:3], test):  # inside the defect higher than outside
        assert m[s.mask].mean() > m[~s.mask].mean() + 0.1
    assert scores[:3].min() > scores[3:].max()


def test_destseg_paired_runs_share_their_initialisation(rng):
    goods = _goods(6, rng)
    real = [Sample(s.image, s.mask, {}) for s in _bright_square(goods, rng, 3)]  # no clean image known
    synthetic = _bright_square(goods, rng, 3)
    untrained = dict(TINY, student_steps=1, seg_steps=1, lr=0.0)
    a = DeSTSegDetector(**untrained).fit(goods, real, np.random.default_rng(1), init_rng=np.random.default_rng(9),
                                         show_progress=False)
    b = DeSTSegDetector(**untrained).fit(goods, real + synthetic, np.random.default_rng(2),
                                         init_rng=np.random.default_rng(9), show_progress=False)
    for pa, pb in zip(a.student.parameters(), b.student.parameters()):
        assert np.array_equal(pa.detach().numpy(), pb.detach().numpy())


def test_destseg_student_is_not_taught_inside_real_defects(rng):
    goods = _goods(4, rng)
    real = [Sample(s.image, s.mask, {}) for s in _bright_square(goods, rng, 2)]
    det = DeSTSegDetector(**dict(TINY, defect_fraction=1.0))
    det.channels = 1
    items_good, items_defect = det._items(goods, real, (SIZE, SIZE))
    _, y, _, _, weight = det._batch(np.random.default_rng(0), items_good, items_defect)
    y4 = y[:, ::4, ::4].numpy() > 0  # stride-4 cells of the defects
    assert (weight[0].numpy()[y4] == 0).all() and (weight[0].numpy() == 1).any()


def test_destseg_save_load_and_errors(rng, tmp_path):
    goods = _goods(4, rng)
    det = DeSTSegDetector(**TINY).fit(goods, _bright_square(goods, rng, 2), np.random.default_rng(0), show_progress=False)
    sha = det.save(tmp_path / "d.pt")
    again = DeSTSegDetector.load(tmp_path / "d.pt", sha256=sha)
    assert np.array_equal(det.predict(goods[:2])[0], again.predict(goods[:2])[0])
    with pytest.raises(DefectlabError, match="SHA-256"):
        DeSTSegDetector.load(tmp_path / "d.pt", sha256="0" * 64)
    with pytest.raises(DefectlabError, match="unknown destseg parameter"):
        DeSTSegDetector(nonsense=1)
    with pytest.raises(DefectlabError, match="before predict"):
        DeSTSegDetector().predict(goods)
    with pytest.raises(DefectlabError, match="explicit numpy Generator"):
        DeSTSegDetector(**TINY).fit(goods, _bright_square(goods, rng, 1), None)


def test_patchcore_flags_the_odd_patch_without_any_defect(rng):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    stripes = lambda phase: (0.5 + 0.2 * np.sin((xx + phase) / 3.0))[:, :, None].astype(np.float32)
    goods = [stripes(p) for p in rng.integers(0, 20, 10)]
    odd = stripes(3).copy()
    odd[20:36, 24:40] = 0.05
    model = PatchCore(coreset_fraction=0.25, num_threads=1).fit(goods, np.random.default_rng(0), show_progress=False)
    maps, scores = model.predict([odd, stripes(7)])
    assert maps[0, 20:36, 24:40].mean() > 2 * maps[0, :, :8].mean()
    assert scores[0] > scores[1]
    again = PatchCore(coreset_fraction=0.25, num_threads=1).fit(goods, np.random.default_rng(0), show_progress=False)
    assert np.array_equal(maps, again.predict([odd, stripes(7)])[0])


def test_letterbox_keeps_aspect_and_the_eval_frame_undoes_it():
    image = np.random.default_rng(0).random((40, 100, 1)).astype(np.float32)
    mask = np.zeros((40, 100), bool)
    mask[10:20, 30:90] = True
    canvas, canvas_mask, box = letterbox(image, mask, 50)
    assert canvas.shape == (50, 50, 1) and box == letterbox_box((40, 100), 50) == (15, 0, 20, 50)
    assert canvas[:15].max() == 0 and canvas[35:].max() == 0  # zero padding
    ys, xs = np.nonzero(canvas_mask)
    assert (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1) == pytest.approx(6.0, rel=0.2)  # not distorted
    frame = to_eval_frame(canvas_mask[None].astype(np.float32), [box], 50)[0]
    assert frame.shape == (50, 50) and frame[13:24, 16:44].mean() > 0.9  # rows 10:20 of 40, cols 30:90 of 100
    assert frame[:11].max() == 0 and frame[27:].max() == 0 and frame[:, :13].max() == 0


def test_destseg_trains_from_on_the_fly_synthesis(rng):
    """`synth=`: defects drawn through the SyntheticDefects stream, each knowing its clean good image."""
    from defectlab.detect.detector import draw_pool

    goods = _goods(4, rng)

    def square(good, r, foreground=None):
        return _bright_square([good], r, 1)[0]

    pool = draw_pool(square, goods, None, np.random.default_rng(0), 5)
    assert len(pool) == 5 and all(s.mask.any() for s in pool)
    for s in pool:  # the clean image is the good image outside the defect
        assert np.array_equal(s.image[~s.mask], goods[s.meta["good_index"]][~s.mask])
    det = DeSTSegDetector(**dict(TINY, synth_pool=6)).fit(goods, [], np.random.default_rng(1), synth=square,
                                                           show_progress=False)
    assert det.predict(goods[:1])[0].shape == (1, SIZE, SIZE)
    odd = [g[:50, :38] for g in goods[:2]]  # sides that are no multiple of 16 are predicted too
    assert det.predict(odd)[0].shape == (2, 50, 38)
