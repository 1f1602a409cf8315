"""Feature-space synthesis (SimpleNet, GLASS global): the fit/call/score contract."""
import json

import numpy as np
import pytest
import torch

import defectlab
from defectlab import DefectlabError
from defectlab.synth.feature.space import grid_mask, upsample_grid_mask
from defectlab.synth.feature.glass_global import GlassGlobal
from defectlab.synth.feature.simplenet import SimpleNet
from defectlab.synth.learned import first_last_means

METHODS = [SimpleNet, GlassGlobal]
TINY = dict(encoder="random", image_size=64, quick_image_size=64, steps=40, quick_steps=40, hidden=32)


@pytest.fixture
def goods():
    rng = np.random.default_rng(5)
    base = np.indices((64, 64)).sum(0) % 8 / 8.0  # a stripe texture, so features vary over the image
    return [np.clip(base[..., None] * 0.6 + 0.2 + 0.05 * rng.standard_normal((64, 64, 3)), 0, 1).astype(np.float32)
            for _ in range(6)]


def _defective(image):
    bad = image.copy()
    bad[24:40, 20:44] = [1.0, 0.0, 1.0]  # a saturated magenta blob: far off the normal features
    return bad


def test_registered_in_feature_family():
    assert {"simplenet", "glass_global"} <= set(defectlab.available("feature"))
    assert isinstance(defectlab.create("simplenet", noise_std=0.03), SimpleNet)
    assert defectlab.create("glass_global").needs_fit


@pytest.mark.parametrize("cls", METHODS)
def test_use_before_fit_raises(cls, goods, rng):
    m = cls(**TINY)
    with pytest.raises(DefectlabError, match="fit"):
        m(goods[0], rng)
    with pytest.raises(DefectlabError, match="fit"):
        m.score(goods[0])


@pytest.mark.parametrize("cls", METHODS)
def test_fit_rejects_no_goods(cls, rng):
    with pytest.raises(DefectlabError, match="good image"):
        cls(**TINY).fit([], [], rng)


@pytest.mark.parametrize("cls", METHODS)
def test_deterministic_and_global_rng_untouched(cls, goods):
    state = torch.random.get_rng_state()
    a = cls(**TINY).fit(goods, [], np.random.default_rng(3))
    b = cls(**TINY).fit(goods, [], np.random.default_rng(3))
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.history == b.history
    assert a.score(goods[0]).tobytes() == b.score(goods[0]).tobytes()
    sa, sb = a(goods[1], np.random.default_rng(9)), b(goods[1], np.random.default_rng(9))
    assert np.array_equal(sa.mask, sb.mask)


@pytest.mark.parametrize("cls", METHODS)
def test_loss_decreases(cls, goods):
    # a larger learning rate than the papers' so that 100 steps show the trend (GLASS's negatives get
    # harder as the discriminator learns, so its loss falls slowly)
    fast = {"steps": 100, "quick_steps": 100, "lr_adaptor": 1e-3, "lr_discriminator": 1e-3}
    m = cls(**{**TINY, **fast}).fit(goods, [], np.random.default_rng(0))
    first, last = first_last_means(m.history, 10)
    assert last < first


@pytest.mark.parametrize("cls", METHODS)
def test_call_returns_unchanged_image_and_grid_snapped_mask(cls, goods):
    m = cls(**TINY).fit(goods, [], np.random.default_rng(0))
    requested = np.zeros((64, 64), bool)
    requested[10:13, 30:45] = True
    s = m(goods[2], np.random.default_rng(1), mask=requested)
    assert np.array_equal(s.image, goods[2])  # no pixel changes: the anomaly lives in feature space
    assert s.mask.dtype == bool and s.mask.shape == (64, 64)
    assert s.mask[requested].all()  # covers the requested region ...
    assert np.array_equal(s.mask, upsample_grid_mask(grid_mask(s.mask, m.grid_), (64, 64)))  # ... in whole cells
    assert s.meta["perturbed_cells"] == grid_mask(requested, m.grid_).sum()
    json.dumps(s.meta)
    fg = np.zeros((64, 64), bool)
    fg[:32] = True
    auto = m(goods[2], np.random.default_rng(2), foreground=fg)
    assert auto.mask.any() and not auto.mask[40:].any()  # Perlin region in the foreground (cells may round up)


def test_synthesized_features_differ_only_on_chosen_cells(goods):
    m = SimpleNet(**TINY).fit(goods, [], np.random.default_rng(0))
    cells = np.zeros(m.grid_, bool)
    cells[2:4, 3:6] = True
    normal, fake = m.synthesize_features(goods[0], np.random.default_rng(4), cells)
    assert normal.shape == fake.shape == (*m.grid_, normal.shape[-1])
    changed = np.abs(fake - normal).max(-1) > 0
    assert np.array_equal(changed, cells)


def test_glass_negatives_lie_in_the_annulus(goods):
    m = GlassGlobal(**TINY).fit(goods, [], np.random.default_rng(0))
    normal, fake = m.synthesize_features(goods[0], np.random.default_rng(4))
    dist = np.linalg.norm(fake - normal, axis=-1)
    r = m.radius_
    assert r > 0
    assert dist.min() >= r * (1 - 1e-4) and dist.max() <= 2 * r * (1 + 1e-4)


@pytest.mark.parametrize("cls", METHODS)
def test_score_map_ranks_an_obvious_defect_higher(cls, goods, shared_root):
    m = cls(image_size=64, quick_image_size=64, steps=150, quick_steps=150).fit(goods[:5], [], np.random.default_rng(0))
    heldout = goods[5]
    amap = m.score(_defective(heldout))
    assert amap.shape == (64, 64) and amap.dtype == np.float32
    assert m.image_score(_defective(heldout)) > m.image_score(heldout)


def test_standardize_makes_the_noise_relative_to_each_channel(goods):
    """With `standardize`, the encoder's features of the good images enter the adaptor with zero mean and unit
    std per channel (so `noise_std` is relative to the features' spread), and a fitted method scores as before."""
    from defectlab.synth.feature.space import encode

    m = SimpleNet(**TINY, standardize=True).fit(goods, [], np.random.default_rng(0))
    z = (encode(m.encoder_, goods, m.size_) - m.feature_mean_) / m.feature_std_
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(z.shape[1]), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(z.shape[1]), atol=1e-3)
    raw = SimpleNet(**TINY).fit(goods, [], np.random.default_rng(0))
    assert not np.allclose(m.adapted_features(goods[0]), raw.adapted_features(goods[0]))  # the switch is used
    assert m.score(goods[0]).shape == goods[0].shape[:2]


def test_a_torchvision_resnet_from_a_weights_file_is_an_encoder_spec(goods, tmp_path):
    """`encoder="ARCH=FILE@SHA256"`: the papers' recipe (ResNet layers 2 + 3 at stride 8) on a user's weights file,
    checked by its SHA-256; a wrong checksum or a missing file is a DefectlabError naming the file."""
    import torchvision

    from defectlab.weights import sha256_of

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    spec = f"resnet18={path}@{sha256_of(path)}"
    m = SimpleNet(**{**TINY, "encoder": spec}).fit(goods, [], np.random.default_rng(0))
    assert m.grid_ == (8, 8) and m.adapted_features(goods[0]).shape == (8, 8, 128 + 256)  # layer2 + layer3 channels
    assert m.score(goods[0]).shape == goods[0].shape[:2]
    with pytest.raises(DefectlabError, match="resnet18.pth: SHA-256 differs"):
        SimpleNet(**{**TINY, "encoder": f"resnet18={path}@{'0' * 64}"}).fit(goods, [], np.random.default_rng(0))
    with pytest.raises(DefectlabError, match="nowhere.pth: not found"):
        SimpleNet(**{**TINY, "encoder": f"resnet18={tmp_path / 'nowhere.pth'}@{'0' * 64}"}).fit(goods, [], np.random.default_rng(0))
