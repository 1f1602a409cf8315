"""Generative synthesis (texture GAN, RealNet SDAS, DefectFill inpainting): the fit/call contract."""
import json

import numpy as np
import pytest
import torch

import defectlab
from defectlab import DefectlabError, Sample
from defectlab.synth.generative.defectfill import DefectFill
from defectlab.synth.generative.gan import TextureDefectGAN
from defectlab.synth.generative.patches import crop, defect_windows
from defectlab.synth.generative.realnet import RealNetSDAS
from defectlab.synth.learned import first_last_means

TINY = {
    TextureDefectGAN: dict(encoder="random", size=16, quick_size=16, width=16, batch_size=4, steps=8, quick_steps=8),
    RealNetSDAS: dict(size=16, quick_size=16, widths=(16, 32), batch_size=4, steps=8, quick_steps=8, inference_steps=4,
                      prior=None),
    DefectFill: dict(size=16, quick_size=16, widths=(16, 32), token_dim=16, batch_size=4, steps=6, quick_steps=6,
                     inference_steps=4),
}
METHODS = list(TINY)


def make(cls, **kw):
    return cls(**{**TINY[cls], **kw})


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    goods = [np.clip(0.55 + 0.08 * rng.standard_normal((48, 48, 1)), 0, 1).astype(np.float32) for _ in range(5)]
    defects = []
    for i in range(2):
        img, m = goods[i].copy(), np.zeros((48, 48), bool)
        m[18 + i:26, 12:30 - i] = True
        img[m] = 0.05  # dark scratches
        defects.append(Sample(img, m, {"label": "scratch"}))
    return goods[2:], defects


def test_registered_in_generative_family():
    assert {"texture_gan", "realnet_sdas", "defectfill"} <= set(defectlab.available("generative"))
    assert defectlab.create("texture_gan", loss="nonsaturating").params.loss == "nonsaturating"
    with pytest.raises(DefectlabError, match="loss"):
        defectlab.create("texture_gan", loss="hinge")


@pytest.mark.parametrize("cls", METHODS)
def test_call_before_fit_raises(cls, data, rng):
    with pytest.raises(DefectlabError, match="fit"):
        make(cls)(data[0][0], rng)


@pytest.mark.parametrize("cls", [TextureDefectGAN, DefectFill])
def test_fit_needs_real_defects(cls, data, rng):
    with pytest.raises(DefectlabError, match="defect"):
        make(cls).fit(data[0], [], rng)


@pytest.mark.parametrize("cls", METHODS)
def test_sample_contract_and_determinism(cls, data):
    goods, defects = data
    state = torch.random.get_rng_state()
    a = make(cls).fit(goods, defects, np.random.default_rng(1))
    b = make(cls).fit(goods, defects, np.random.default_rng(1))
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.history == b.history
    fg = np.zeros((48, 48), bool)
    fg[4:44, 4:44] = True
    s = a(goods[0], np.random.default_rng(3), foreground=fg)
    t = b(goods[0], np.random.default_rng(3), foreground=fg)
    assert s.image.tobytes() == t.image.tobytes() and np.array_equal(s.mask, t.mask)
    assert s.image.shape == goods[0].shape and s.image.dtype == np.float32
    assert s.mask.dtype == bool and s.mask.any() and not s.mask[~fg].any()
    changed = np.abs(s.image - goods[0]).max(axis=2) > 0
    assert changed.any() and not changed[~s.mask].any()  # the mask covers every changed pixel
    assert 0 <= s.image.min() and s.image.max() <= 1
    json.dumps(s.meta)


@pytest.mark.parametrize("cls", METHODS)
def test_requested_mask_is_used(cls, data):
    goods, defects = data
    m = make(cls).fit(goods, defects, np.random.default_rng(1))
    want = np.zeros((48, 48), bool)
    want[30:36, 5:20] = True
    s = m(goods[1], np.random.default_rng(2), mask=want)
    assert np.array_equal(s.mask, want)
    with pytest.raises(DefectlabError, match="channels"):
        m(np.repeat(goods[1], 3, axis=2), np.random.default_rng(2))


@pytest.mark.parametrize("cls", [RealNetSDAS, DefectFill])
def test_diffusion_losses_decrease(cls, data):
    goods, defects = data
    m = make(cls, steps=30, quick_steps=30).fit(goods, defects, np.random.default_rng(0))
    first, last = first_last_means(m.history, 5)
    assert last < first


def test_defectfill_records_each_loss_term(data):
    goods, defects = data
    m = make(DefectFill).fit(goods, defects, np.random.default_rng(0))
    assert set(m.parts) == {"defect", "object", "attention", "prior"}
    assert all(len(v) == len(m.history) and np.isfinite(v).all() for v in m.parts.values())


@pytest.mark.parametrize("loss", ["r3gan", "nonsaturating"])
def test_gan_learns_the_defect_appearance(data, loss):
    """After a few steps the fused defect region moves toward the real defects' darkness."""
    goods, defects = data
    window = crop(goods[0], defects[0].mask, (8, 4, 32), 16)
    imgs, masks, _ = defect_windows(defects, 16, 2.0)
    target = float(imgs[masks.expand_as(imgs) > 0].mean())

    def gap(steps):
        g = make(TextureDefectGAN, loss=loss, steps=steps, quick_steps=steps).fit(goods, defects, np.random.default_rng(0))
        out = g.generate(*window, np.random.default_rng(1))
        return abs(float(out[window[1].expand_as(out) > 0].mean()) - target)

    assert gap(25) < gap(0)


def test_realnet_strength_moves_samples(data):
    goods, _ = data
    m = make(RealNetSDAS).fit(goods, [], np.random.default_rng(0))
    x0, s0 = m.sample_images(2, np.random.default_rng(4), strength=0.0)
    x1, s1 = m.sample_images(2, np.random.default_rng(4), strength=0.5)
    assert (s0, s1) == (0.0, 0.5) and x0.shape == (2, 1, 16, 16)
    assert not torch.equal(x0, x1)  # same noise, larger variance: a different trajectory
