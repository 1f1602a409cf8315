"""The placement prior learned from real support masks (issue #36, item 3), and copy-paste / AdaBLDM using it."""
import numpy as np
import pytest

import defectlab
from defectlab import masks
from defectlab.errors import DefectlabError
from defectlab.placement import PlacementPrior, axial_stats, centre, orientation, oriented_angle
from defectlab.sample import Sample

SIDE = 96


def flat(value=0.7):
    return np.full((SIDE, SIDE, 1), value, np.float32)


def bar_defects(rng, n=6, x_max=SIDE, label="crack"):
    """Thin horizontal dark bars on flat images, their centres at x < x_max."""
    out = []
    for _ in range(n):
        length = int(rng.integers(16, 26))
        x = int(rng.integers(2, x_max - length - 2))
        y = int(rng.integers(10, SIDE - 12))
        img, mask = flat(), np.zeros((SIDE, SIDE), bool)
        mask[y:y + 3, x:x + length] = True
        img[mask] = 0.2
        out.append(Sample(img, mask, {"label": label, "source": f"tile/test/{label}/{len(out):03d}.png"}))
    return out


def off_horizontal(mask) -> float:
    """Degrees between the mask's principal axis and the horizontal."""
    angle, _ = orientation(mask)
    return min(angle, 180 - angle)


def test_orientation_follows_cv2_rotation_and_reads_regions_not_their_arrangement():
    import cv2

    bar = np.zeros((64, 64), bool)
    bar[30:33, 10:50] = True
    turned = cv2.warpAffine(bar.astype(np.uint8), cv2.getRotationMatrix2D((32, 32), 30, 1.0), (64, 64),
                            flags=cv2.INTER_NEAREST) > 0
    assert orientation(bar)[0] == pytest.approx(0, abs=0.5) and orientation(turned)[0] == pytest.approx(30, abs=2)
    stacked = np.zeros((100, 100), bool)  # two horizontal scratches one above the other: horizontal, not vertical
    stacked[10:13, 20:60] = True
    stacked[70:73, 20:60] = True
    assert off_horizontal(stacked) < 1 and orientation(stacked)[1] > 0.9
    yy, xx = np.ogrid[:64, :64]
    assert oriented_angle((yy - 30) ** 2 + (xx - 30) ** 2 < 100) is None  # a disc has no orientation
    mean, spread = axial_stats([178.0, 2.0])  # axial: 178 and 2 degrees are 4 degrees apart, around 0
    assert min(mean, 180 - mean) < 1e-6 and spread == pytest.approx(2, abs=0.1)


def test_fit_skips_empty_masks_keeps_one_example_types_and_refuses_nothing():
    rng = np.random.default_rng(0)
    masks_ = [s.mask for s in bar_defects(rng, 3)]
    prior = PlacementPrior.fit({"crack": masks_ + [np.zeros((SIDE, SIDE), bool)], "single": masks_[:1],
                                "none": [np.zeros((8, 8), bool)]})
    assert sorted(prior.types) == ["crack", "single"] and prior["crack"].count == 3
    one = prior["single"]
    assert one.count == 1 and one.jitter == prior.params.min_jitter  # one example: the least jitter, not zero
    assert np.isclose(one.heat.sum(), 1) and one.heat.min() > 0  # the floor: every cell stays possible
    draws = [prior.draw_angle("single", np.random.default_rng(k)) for k in range(50)]
    assert max(min(a, 180 - a) for a in draws) <= prior.params.min_jitter + 1e-9
    with pytest.raises(DefectlabError, match="no non-empty mask"):
        PlacementPrior.fit({"crack": [np.zeros((8, 8), bool)]})
    with pytest.raises(DefectlabError, match="unknown defect type 'hole'"):
        prior.draw_angle("hole", rng)


def test_copypaste_keeps_horizontal_defects_horizontal_and_uniform_does_not():
    """The issue's test: on a data set whose defects all run horizontally, every placed defect lies within +-15
    degrees of horizontal; uniform placement (the former default) puts some far off it."""
    defects = bar_defects(np.random.default_rng(1))
    angles = {}
    for mode in ("prior", "uniform"):
        cp = defectlab.create("copypaste", placement=mode).fit([], defects)
        samples = [cp(flat(), np.random.default_rng(seed)) for seed in range(40)]
        angles[mode] = [off_horizontal(s.mask) for s in samples]
        assert all(s.meta["drawn"]["placement"]["mode"] == mode for s in samples)
        assert all(s.meta["drawn"]["defect_type"] == "crack" for s in samples)
    assert max(angles["prior"]) <= 15, angles["prior"]
    assert max(angles["uniform"]) > 15 and np.mean(np.array(angles["uniform"]) > 15) > 0.5


def test_copypaste_places_defects_where_the_type_occurs():
    """Defects seen only in the left third are placed (almost) only there: the 8 x 8 heat-map's third cell
    straddles x = 1/3 and the floor keeps 5 % for the rest, so about 9 in 10 land in the left third, all but a
    few in the left half."""
    defects = bar_defects(np.random.default_rng(2), n=8, x_max=SIDE // 3)
    assert all(centre(d.mask)[1] < 1 / 3 for d in defects)
    share = {}
    for mode in ("prior", "uniform"):
        cp = defectlab.create("copypaste", placement=mode).fit([], defects)
        xs = np.array([cp(flat(), np.random.default_rng(seed)).meta["drawn"]["placement"]["center"][1]
                       for seed in range(100)])
        share[mode] = (np.mean(xs < 1 / 3), np.mean(xs < 1 / 2))
    assert share["prior"][0] >= 0.8 and share["prior"][1] >= 0.95 and share["uniform"][0] < 0.5, share


def test_placement_stays_inside_the_foreground_and_is_reproducible():
    defects = bar_defects(np.random.default_rng(3), x_max=SIDE // 3)
    cp = defectlab.create("copypaste").fit([], defects)
    fg = np.zeros((SIDE, SIDE), bool)
    fg[:, SIDE // 2:] = True  # the heat-map's cells hold no foreground: the floor still lets it place
    for seed in range(5):
        a, b = (cp(flat(), np.random.default_rng(seed), foreground=fg) for _ in range(2))
        assert not (a.mask & ~fg).any()
        assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes() and a.meta == b.meta
    assert cp(flat(), np.random.default_rng(0)).image.tobytes() != cp(flat(), np.random.default_rng(1)).image.tobytes()


def test_uniform_placement_is_the_former_behaviour():
    defects = bar_defects(np.random.default_rng(4))
    cp = defectlab.create("copypaste", placement="uniform").fit([], defects)
    s = cp(flat(), np.random.default_rng(7))
    rng = np.random.default_rng(7)
    index = int(rng.integers(len(defects)))
    placed, _ = masks.affine_jitter_place(defects[index].mask, np.ones((SIDE, SIDE), bool), rng, on_fail="clip")
    assert np.array_equal(s.mask, placed)
    with pytest.raises(DefectlabError, match="placement"):
        defectlab.create("copypaste", placement="anywhere")


def test_round_blobs_turn_freely():
    rng = np.random.default_rng(5)
    defects = []
    for _ in range(4):
        img, mask = flat(), np.zeros((SIDE, SIDE), bool)
        (cy, cx), r = rng.integers(20, 76, 2), int(rng.integers(5, 9))
        yy, xx = np.ogrid[:SIDE, :SIDE]
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = True
        img[mask] = rng.random((int(mask.sum()), 1), dtype=np.float32)
        defects.append(Sample(img, mask, {"label": "blowhole"}))
    cp = defectlab.create("copypaste").fit([], defects)
    assert cp.prior["blowhole"].n_round == 4 and len(cp.prior["blowhole"].angles) == 0
    turns = np.array([cp(flat(), np.random.default_rng(seed)).meta["drawn"]["placement"]["rotation"]
                      for seed in range(40)])
    assert np.histogram(turns, bins=4, range=(0, 360))[0].min() >= 4  # every quarter turn is used
    assert all(cp.prior.draw_angle("blowhole", np.random.default_rng(k)) is None for k in range(5))


def test_adabldm_places_support_masks_by_the_prior():
    """AdaBLDM's own placement step (no training needed to test it)."""
    from defectlab.adabldm.method import AdaBLDMMethod

    defects = bar_defects(np.random.default_rng(6))
    for mode in ("prior", "uniform"):
        method = AdaBLDMMethod(placement=mode)
        method.real = [(d.mask, "crack") for d in defects]
        method.prior = PlacementPrior.from_samples(defects)
        placed = [method.place_mask((SIDE, SIDE), None, np.random.default_rng(seed)) for seed in range(30)]
        assert all(kind == "crack" and where["mode"] == mode for _, kind, where in placed)
        worst = max(off_horizontal(m) for m, _, _ in placed)
        assert worst <= 15 if mode == "prior" else worst > 15


def test_figure_shows_a_heat_map_and_a_rose_per_type():
    import matplotlib.pyplot as plt

    defects = bar_defects(np.random.default_rng(8)) + bar_defects(np.random.default_rng(9), 2, label="scratch")
    prior = PlacementPrior.from_samples(defects)
    fig = prior.figure()
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "crack (n=6)"
    plt.close(fig)


def test_magnetic_tile_cracks_keep_their_orientation(magnetic_tile_root):
    """Fitted on one split's 10-per-type support, copy-paste's cracks are about as concentrated around the real
    (held-out) cracks' axis as the real ones, uniform placement's are not (axial mean resultant length R)."""
    from defectlab.data import few_shot_split, open_dataset

    ds = open_dataset(magnetic_tile_root, "magnetic_tile")
    split = few_shot_split(ds, ds.categories()[0], 10, seed=0)
    support = [Sample(*r.load(), {"label": r.label, "source": r.key}) for r in split.support]
    real = [a for r in split.heldout if r.label == "Crack" for a in [oriented_angle(r.mask())] if a is not None]
    good = split.good_train[0].image()

    def concentration(angles):
        return abs(np.exp(2j * np.radians(angles)).mean())

    r = {}
    for mode in ("prior", "uniform"):
        cp = defectlab.create("copypaste", placement=mode).fit([], support)
        drawn = [cp(good, np.random.default_rng(seed)).meta["drawn"] for seed in range(150)]
        angles = [d["placement"]["angle"] for d in drawn if d["defect_type"] == "Crack"]
        assert len(angles) >= 20 and None not in angles  # every support crack is elongated
        r[mode] = concentration(angles)
    r["real"] = concentration(real)
    assert sorted(cp.prior.types) == ["Blowhole", "Break", "Crack", "Fray", "Uneven"]
    assert r["real"] > 0.6 and abs(r["prior"] - r["real"]) < abs(r["uniform"] - r["real"]), r
