"""Defect-GAN (whole-image translation): registration, the fit / call contract, the composition's mask, bad input."""
import json

import numpy as np
import pytest
import torch

import defectlab
from defectlab import DefectlabError, Sample
from defectlab.data import build_embedded, few_shot_split, foreground_for
from defectlab.synth.generative.defect_gan import NORMAL, DefectGAN, translation_panels
from defectlab.synth.learned import first_last_means

TINY = dict(size=32, quick_size=32, width=8, d_width=8, batch_size=4, steps=6, quick_steps=6)


@pytest.fixture(scope="module")
def washer(tmp_path_factory):
    """Goods, their foregrounds and 1-shot real defects (three types) of the embedded washer."""
    data = build_embedded(tmp_path_factory.mktemp("emb"), seed=0, size=48, n_train=4, n_test_good=1,
                          n_test_defect=2, categories=["washer"])
    split = few_shot_split(data, "washer", shots=1, seed=0)
    goods = [r.image() for r in split.good_train]
    fgs = [foreground_for(r, g) for r, g in zip(split.good_train, goods)]
    support = [Sample(*r.load(), {"label": r.label}) for r in split.support]
    return goods, fgs, support


@pytest.fixture(scope="module")
def fitted(washer, one_torch_thread):
    goods, fgs, support = washer
    return DefectGAN(**TINY).fit(goods, support, np.random.default_rng(1), foregrounds=fgs)


def test_registered_and_creatable():
    assert "defect_gan" in defectlab.available("generative")
    m = defectlab.create("defect_gan", threshold=0.3)
    assert isinstance(m, DefectGAN) and m.params.threshold == 0.3 and m.needs_fit
    for bad in (dict(threshold=1.5), dict(size=30), dict(quick_size=8), dict(width=0), dict(colour=1)):
        with pytest.raises(DefectlabError):
            defectlab.create("defect_gan", **bad)


def test_call_before_fit_raises(washer, rng):
    with pytest.raises(DefectlabError, match="fit"):
        DefectGAN(**TINY)(washer[0][0], rng)


def test_sample_contract(washer, fitted):
    goods, fgs, _ = washer
    s = fitted(goods[0], np.random.default_rng(3), foreground=fgs[0])
    assert s.image.shape == goods[0].shape and s.image.dtype == np.float32
    assert 0 <= s.image.min() and s.image.max() <= 1
    assert s.mask.dtype == bool and s.mask.any() and not (s.mask & ~fgs[0]).any()
    changed = np.abs(s.image - goods[0]).max(axis=2) > 0
    assert not changed[~s.mask].any()  # the composition keeps every pixel outside the returned mask
    assert s.meta["defect_type"] in fitted.types_ and s.meta["threshold"] == fitted.params.threshold
    assert s.meta["control"] == "real_mask" and set(fitted.types_) == {"contamination", "crack", "scratch"}
    json.dumps(s.meta)


def test_same_seed_same_bytes(washer, fitted, one_torch_thread):
    goods, fgs, support = washer
    state = torch.random.get_rng_state()
    again = DefectGAN(**TINY).fit(goods, support, np.random.default_rng(1), foregrounds=fgs)
    assert torch.equal(state, torch.random.get_rng_state())  # no global seeding
    assert again.history == fitted.history
    a = fitted(goods[1], np.random.default_rng(5), foreground=fgs[1])
    b = again(goods[1], np.random.default_rng(5), foreground=fgs[1])
    assert a.image.tobytes() == b.image.tobytes() and np.array_equal(a.mask, b.mask)
    c = fitted(goods[1], np.random.default_rng(6), foreground=fgs[1])
    assert c.image.tobytes() != a.image.tobytes()


def test_mask_follows_alpha_not_the_control_map(washer, fitted):
    goods, fgs, _ = washer
    control = np.zeros(goods[0].shape[:2], bool)
    control[10:16, 8:30] = True
    s, region, alpha = fitted.deface(goods[0], np.random.default_rng(2), foreground=fgs[0], mask=control)
    assert np.array_equal(region, control) and s.meta["control"] == "mask"
    if s.meta["mask_from"] == "alpha":
        assert np.array_equal(s.mask, (alpha > fitted.params.threshold) & fgs[0])
    # a threshold below every alpha: the mask is all the foreground, far beyond the control map
    low = DefectGAN(**{**TINY, "threshold": 1e-6})
    low.__dict__.update({k: v for k, v in fitted.__dict__.items() if k != "params"})
    t = low(goods[0], np.random.default_rng(2), foreground=fgs[0], mask=control)
    assert np.array_equal(t.mask, fgs[0]) and t.mask.sum() > 2 * control.sum()


def test_restoration_and_panels(washer, fitted):
    goods, fgs, _ = washer
    panels, s = translation_panels(fitted, goods[2], np.random.default_rng(4), foreground=fgs[2])
    normal, control, defaced, alpha, restored = panels
    assert normal.shape == defaced.shape == restored.shape == goods[2].shape
    assert control.shape == alpha.shape == goods[2].shape[:2] and control.any()
    assert np.array_equal(defaced, s.image) and 0 <= alpha.min() and alpha.max() <= 1
    out, a, layer = fitted.translate(goods[2], control > 0, NORMAL, np.random.default_rng(0))
    assert out.shape == layer.shape == goods[2].shape and a.shape == goods[2].shape[:2]


def test_training_teaches_where_to_paint(washer, one_torch_thread):
    """After a short fit, G's alpha is higher inside the control map than outside, more than untrained."""
    goods, fgs, support = washer
    control = support[0].mask

    def contrast(steps):
        m = DefectGAN(**{**TINY, "steps": steps, "quick_steps": steps}).fit(goods, support, np.random.default_rng(0),
                                                                             foregrounds=fgs)
        _, alpha, _ = m.translate(goods[0], control, m.mask_types_[0], np.random.default_rng(1))
        return float(alpha[control].mean() - alpha[~control].mean()), m

    before, _ = contrast(0)
    after, m = contrast(80)
    assert after > before + 0.05
    assert set(m.parts) == {"adv", "cls", "rec", "sd_cyc", "sd_con", "mask"}
    assert all(len(v) == len(m.history) == 80 and np.isfinite(v).all() for v in m.parts.values())
    assert first_last_means(m.parts["mask"])[1] < first_last_means(m.parts["mask"])[0]


def test_bad_input(washer, fitted):
    goods, fgs, support = washer
    rng = np.random.default_rng(0)
    with pytest.raises(DefectlabError, match="defect"):
        DefectGAN(**TINY).fit(goods, [], rng)
    with pytest.raises(DefectlabError, match="good"):
        DefectGAN(**TINY).fit([], support, rng)
    with pytest.raises(DefectlabError, match="rng"):
        DefectGAN(**TINY).fit(goods, support, None)
    with pytest.raises(DefectlabError, match="foregrounds"):
        DefectGAN(**TINY).fit(goods, support, rng, foregrounds=fgs[:1])
    bad = Sample(support[0].image, np.ones((5, 5), bool), {"label": "crack"})
    with pytest.raises(DefectlabError, match="size"):
        DefectGAN(**TINY).fit(goods, [bad], rng)
    with pytest.raises(DefectlabError, match="channels"):
        DefectGAN(**TINY).fit(goods, [Sample(support[0].image[:, :, :1], support[0].mask, {})], rng)
    with pytest.raises(DefectlabError, match="size"):
        fitted(goods[0], rng, mask=np.ones((7, 7), bool))
    with pytest.raises(DefectlabError, match="empty"):
        fitted(goods[0], rng, mask=np.zeros(goods[0].shape[:2], bool))
    with pytest.raises(DefectlabError, match="channels"):
        fitted(goods[0][:, :, :1], rng)
    with pytest.raises(DefectlabError, match="unknown"):
        fitted(goods[0], rng, defect_type="dent")
