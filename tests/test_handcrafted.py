"""Hand-crafted synthesis methods: one contract, checked for every method, plus batch writing."""
import numpy as np
import pytest

import defectlab
from defectlab import DefectlabError, Sample
from defectlab.data import DatasetWriter, read_manifest
from defectlab.synth import synthesize
from defectlab.synth.handcrafted.anomaly_source import AnomalySource, draem_augment

METHODS = ["cutpaste", "cutpaste_scar", "bezier", "draem", "memseg", "glass_local", "copypaste"]


def build(name, image):
    method = defectlab.create(name)
    if getattr(method, "needs_fit", False):
        src = np.random.default_rng(99).random(image.shape, dtype=np.float32) * 0.3
        mask = np.zeros(image.shape[:2], bool)
        mask[5:12, 6:15] = True
        method.fit([image], [Sample(src, mask)], np.random.default_rng(0))
    return method


def object_foreground(shape):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.hypot((yy - shape[0] / 2) / shape[0], (xx - shape[1] / 2) / shape[1]) < 0.35


def test_registry_lists_every_handcrafted_method():
    assert set(METHODS) <= set(defectlab.available("handcrafted"))
    for name in METHODS:
        assert defectlab.get(name).family == "handcrafted"


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("shape", [(64, 80, 3), (45, 33, 1), (31, 97, 3)])
def test_contract(name, shape):
    image = np.random.default_rng(1).random(shape, dtype=np.float32) * 0.5 + 0.25
    fg = object_foreground(shape)
    method = build(name, image)
    for seed in range(3):
        s = method(image, np.random.default_rng(seed), foreground=fg)
        assert s.image.shape == shape and s.image.dtype == np.float32
        assert 0 <= s.image.min() and s.image.max() <= 1
        assert s.mask.shape == shape[:2] and s.mask.dtype == bool and s.mask.any()
        assert not (s.mask & ~fg).any(), "defect outside the foreground"
        changed = (s.image != image).any(axis=2)
        assert not (changed & ~s.mask).any(), "pixels changed outside the mask"
        assert changed.any()
        assert s.meta["method"] == name and isinstance(s.meta["params"], dict)
        again = method(image, np.random.default_rng(seed), foreground=fg)
        assert np.array_equal(again.image, s.image) and np.array_equal(again.mask, s.mask)
    assert image.dtype == np.float32 and (image >= 0.25).all()  # the input is not modified


@pytest.mark.parametrize("name", METHODS)
def test_different_seeds_differ_and_input_untouched(name, rgb_image):
    image = rgb_image.copy()
    method = build(name, image)
    a, b = method(image, np.random.default_rng(0)), method(image, np.random.default_rng(1))
    assert not np.array_equal(a.image, b.image)
    assert np.array_equal(image, rgb_image)


@pytest.mark.parametrize("name", ["cutpaste", "bezier", "draem", "memseg", "glass_local"])
def test_requested_mask_is_respected(name, grey_image):
    want = np.zeros(grey_image.shape[:2], bool)
    want[10:30, 20:40] = True
    s = build(name, grey_image)(grey_image, np.random.default_rng(0), mask=want)
    assert s.mask.any() and not (s.mask & ~want).any()


@pytest.mark.parametrize("blend", ["hard", "feather", "poisson"])
def test_copypaste_blends_move_the_real_defect(blend):
    good = np.full((64, 64, 3), 0.8, np.float32)
    src = np.full((64, 64, 3), 0.8, np.float32)
    mask = np.zeros((64, 64), bool)
    mask[20:30, 20:34] = True
    src[mask] = 0.1  # a dark defect on the same surface
    cp = defectlab.create("copypaste", source=src, mask=mask, blend=blend)
    s = cp(good, np.random.default_rng(0))
    assert 0.6 < s.mask.sum() / mask.sum() < 1.5
    inside = s.image[s.mask].mean()
    assert inside < 0.7, f"{blend}: the dark defect should show up (mean {inside:.2f})"
    assert (s.image[~s.mask] == 0.8).all()


def test_copypaste_needs_defects_and_checks_input():
    cp = defectlab.create("copypaste")
    assert cp.needs_fit
    with pytest.raises(DefectlabError, match="fit"):
        cp(np.zeros((16, 16, 3), np.float32), np.random.default_rng(0))
    with pytest.raises(DefectlabError, match="at least one"):
        cp.fit([], [Sample(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), bool))], np.random.default_rng(0))
    with pytest.raises(DefectlabError, match="both"):
        defectlab.create("copypaste", source=np.zeros((8, 8, 3), np.float32))


def test_unknown_parameter_and_bad_choice_are_errors():
    with pytest.raises(DefectlabError, match="unknown parameter"):
        defectlab.create("draem", betamax=0.5)
    with pytest.raises(DefectlabError, match="fill"):
        defectlab.create("bezier", fill="paint")


def test_bad_foreground_is_an_error(rgb_image):
    with pytest.raises(DefectlabError, match="foreground"):
        defectlab.create("draem")(rgb_image, np.random.default_rng(0), foreground=np.ones((3, 3), bool))


class FixedDraws:
    """Stands in for the numpy Generator where a method draws only its blend weight: fixed values, so the blended
    pixel can be computed by hand."""

    def __init__(self, random=0.5, normal=0.5, uniform=0.5):
        self._random, self._normal, self._uniform = random, normal, uniform

    def random(self):
        return self._random

    def normal(self, mean, std):
        return self._normal

    def uniform(self, low, high):
        return self._uniform


def blend_case(monkeypatch, module, texture_value=0.9, image_value=0.2):
    """A flat grey image, an L-shaped requested mask (its box holds pixels outside it) and a flat texture."""
    def flat_texture(source, shape, channels, rng, box, n_augment):
        return np.full((box[2], box[3], channels), texture_value, np.float32), ["none"]

    monkeypatch.setattr(module, "texture_for", flat_texture)
    image = np.full((20, 24, 1), image_value, np.float32)
    mask = np.zeros((20, 24), bool)
    mask[4:12, 5:8] = True
    mask[9:12, 5:15] = True
    return image, mask


def check_blend(s, image, mask, expect):
    assert s.image[6, 6, 0] == pytest.approx(expect, abs=1e-6)  # inside the mask
    np.testing.assert_allclose(s.image[mask], expect, atol=1e-6)
    assert s.image[5, 12, 0] == image[5, 12, 0]  # in the texture's box, outside the mask: untouched
    assert np.array_equal(s.image[~mask], image[~mask]) and np.array_equal(s.mask, mask)


def test_draem_blend_formula_by_hand(monkeypatch):
    """DRAEM Sec. 3.2: I' = (1 - beta) A + beta I inside M, beta = 0.8 U. U = 0.5: beta = 0.4, A = 0.9, I = 0.2
    -> 0.6 * 0.9 + 0.4 * 0.2 = 0.62."""
    from defectlab.synth.handcrafted import draem

    image, mask = blend_case(monkeypatch, draem)
    s = defectlab.create("draem")(image, FixedDraws(random=0.5), mask=mask)
    assert s.meta["drawn"]["beta"] == pytest.approx(0.4)
    check_blend(s, image, mask, 0.62)


def test_glass_blend_clips_beta_by_hand(monkeypatch):
    """GLASS Sec. 3.4: beta ~ N(0.5, 0.1) clipped to [0.2, 0.8]. A draw of 0.95 -> beta = 0.8:
    0.2 * 0.9 + 0.8 * 0.2 = 0.34; a draw of 0.3 -> 0.7 * 0.9 + 0.3 * 0.2 = 0.69."""
    from defectlab.synth.handcrafted import glass_local

    image, mask = blend_case(monkeypatch, glass_local)
    s = defectlab.create("glass_local")(image, FixedDraws(normal=0.95), mask=mask)
    assert s.meta["drawn"]["beta"] == pytest.approx(0.8) and s.meta["drawn"]["mask_mode"] == "requested"
    check_blend(s, image, mask, 0.34)
    check_blend(defectlab.create("glass_local")(image, FixedDraws(normal=0.3), mask=mask), image, mask, 0.69)


def test_memseg_texture_blend_by_hand(monkeypatch):
    """MemSeg Sec. 3.2: I_A = (1 - M) I + delta M N + (1 - delta) M I. A draw of 0.7 >= structure_prob 0.5 picks the
    texture anomaly; delta = 0.6: 0.6 * 0.9 + 0.4 * 0.2 = 0.62."""
    from defectlab.synth.handcrafted import memseg

    image, mask = blend_case(monkeypatch, memseg)
    s = defectlab.create("memseg")(image, FixedDraws(random=0.7, uniform=0.6), mask=mask)
    assert s.meta["drawn"]["anomaly"] == "texture" and s.meta["drawn"]["transparency"] == pytest.approx(0.6)
    check_blend(s, image, mask, 0.62)


def test_glass_beta_range():
    g = defectlab.create("glass_local")
    img = np.full((40, 40, 3), 0.5, np.float32)
    betas = [g(img, np.random.default_rng(s)).meta["drawn"]["beta"] for s in range(20)]
    assert min(betas) >= 0.2 and max(betas) <= 0.8 and np.std(betas) > 0.02


def test_anomaly_source_folder(tmp_path, rng):
    from defectlab.imageio import write_png

    with pytest.raises(DefectlabError, match="no images"):
        AnomalySource(tmp_path)
    write_png(tmp_path / "a.png", rng.random((50, 70, 3), dtype=np.float32))
    tex = AnomalySource(tmp_path).sample((40, 40), np.random.default_rng(0), box=(5, 5, 10, 20))
    assert tex.shape == (10, 20, 3) and tex.dtype == np.uint8
    flat = tmp_path / "flat"
    flat.mkdir()
    write_png(flat / "f.png", np.full((30, 40, 3), [0.8, 0.2, 0.4], np.float32))
    # the texture comes from the folder's image (any crop of a flat image is flat), not from the bundled photos
    assert (AnomalySource(flat).sample((40, 40), np.random.default_rng(1), box=(5, 5, 10, 20)) == [204, 51, 102]).all()
    out, names = draem_augment(tex, np.random.default_rng(0))
    assert out.shape == tex.shape and len(set(names)) == 3
    s = defectlab.create("draem", texture_folder=str(tmp_path))(rng.random((40, 40, 3), dtype=np.float32), rng)
    assert s.mask.any()


def test_batch_writes_and_resumes(tmp_path):
    goods = [np.random.default_rng(i).random((32, 40, 3), dtype=np.float32) for i in range(3)]
    fgs = [object_foreground((32, 40))] * 3
    full = synthesize("draem", goods, DatasetWriter(tmp_path / "full"), seed=7, n=5, category="toy", foregrounds=fgs)
    assert [e["key"] for e in full] == [f"toy/test/draem/{i:05d}" for i in range(5)]
    assert all(e["method"] == "draem" and e["seed"] == 7 and e["params"]["beta_max"] == 0.8 for e in full)

    part = synthesize("draem", goods, DatasetWriter(tmp_path / "part"), seed=7, n=2, category="toy", foregrounds=fgs)
    assert len(part) == 2
    resumed = synthesize("draem", goods, DatasetWriter(tmp_path / "part"), seed=7, n=5, category="toy", foregrounds=fgs)
    assert [e["sha256"] for e in resumed] == [e["sha256"] for e in full]  # same bytes as one uninterrupted run
    assert len(read_manifest(tmp_path / "part")) == 5
    assert DatasetWriter(tmp_path / "part").verify() == []


def test_batch_label_and_errors(tmp_path):
    goods = [np.random.default_rng(0).random((24, 24, 1), dtype=np.float32)]
    out = synthesize(defectlab.create("cutpaste"), goods, DatasetWriter(tmp_path / "o"), seed=0, category="c", label="crack")
    assert out[0]["label"] == "crack" and out[0]["mask"].endswith("_mask.png")
    with pytest.raises(DefectlabError, match="foregrounds"):
        synthesize("cutpaste", goods, DatasetWriter(tmp_path / "p"), seed=0, category="c", foregrounds=[None, None])
