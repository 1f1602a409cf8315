"""DiAD (guided latent-diffusion reconstruction, no defects): fit on good images, maps of the right shape,
same seed same bytes, a saved detector that loads back (SHA-256 checked), and a pasted blob it flags."""
import hashlib

import numpy as np
import pytest

from defectlab import DefectlabError
from defectlab.data import build_embedded
from defectlab.detect import DiAD
from defectlab.resize import resize_image
from defectlab.weights import missing

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# a tiny random autoencoder and two-level networks: seconds, not minutes
TINY = dict(autoencoder="tiny", size=64, unet_channels=(8, 16), norm_groups=4, guide_embedding=(8, 8, 8, 8),
            steps=6, batch_size=4, ddim_steps=3, timestep=500, num_threads=1)


@pytest.fixture(scope="module")
def washer():
    ds = build_embedded(size=64, categories="washer")
    goods = [r.image() for r in ds.filter(split="train")][:6]
    tests = [r.image() for r in ds.filter(split="test")][:3]
    return goods, tests


def _fit(goods, seed=0, **kw):
    return DiAD(**{**TINY, **kw}).fit(goods, np.random.default_rng(seed), show_progress=False)


def test_maps_have_each_images_shape_and_one_seed_gives_one_result(washer):
    goods, tests = washer
    images = tests
    a = _fit(goods).predict(images)
    b = _fit(goods).predict(images)
    maps, scores = a
    assert maps.shape == (len(images), 64, 64)
    assert maps.dtype == np.float32 and np.isfinite(maps).all() and (maps >= 0).all()
    assert np.allclose(scores, maps.reshape(len(maps), -1).max(axis=1))
    assert maps.tobytes() == b[0].tobytes()
    other = _fit(goods, seed=1).predict(images)[0]
    assert other.tobytes() != maps.tobytes()
    # the noise of an image comes from its bytes, not its place in the batch
    assert np.array_equal(_fit(goods).predict(images[::-1])[0][::-1], maps)


def test_odd_sized_image_gets_a_map_of_its_own_size(washer):
    goods, tests = washer
    model = _fit(goods)
    odd = np.ascontiguousarray(tests[0][:48, :40])
    assert model.score(odd).shape == (48, 40)
    assert model.reconstruct([odd])[0].shape == (64, 64, 3)
    # the image is brought to the working size first: its reconstruction (noise included) is the resized image's
    resized = resize_image(odd, (64, 64))
    assert np.array_equal(model.reconstruct([odd])[0], model.reconstruct([resized])[0])
    with pytest.raises(DefectlabError, match="share a size"):
        model.predict([odd, tests[0]])


def test_save_load_round_trip_checks_the_sha256(washer, tmp_path):
    goods, tests = washer
    model = _fit(goods)
    path = tmp_path / "diad.pt"
    sha = model.save(path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    again = DiAD.load(path, sha256=sha)
    assert again.params == model.params
    assert again.predict(tests)[0].tobytes() == model.predict(tests)[0].tobytes()
    with pytest.raises(DefectlabError, match="SHA-256"):
        DiAD.load(path, sha256="0" * 64)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DefectlabError, match="not a saved DiAD"):
        DiAD.load(tmp_path / "junk.pt")


def test_bad_use_is_a_defectlab_error(washer):
    goods, tests = washer
    with pytest.raises(DefectlabError, match="unknown diad parameter"):
        DiAD(noise=3)
    with pytest.raises(DefectlabError, match="multiple of"):
        DiAD(size=100)
    with pytest.raises(DefectlabError, match="timestep"):
        DiAD(timestep=1000)
    with pytest.raises(DefectlabError, match="fit"):
        DiAD(**TINY).predict(tests)
    with pytest.raises(DefectlabError, match="rng"):
        DiAD(**TINY).fit(goods)


@pytest.mark.skipif(missing("taef2_encoder") or missing("taef2_decoder"), reason="TAEF2 weights not in ../shared/weights")
def test_the_reconstruction_repairs_a_pasted_blob_and_keeps_a_good_image(rng):
    """Trained on smooth grey textures, the partly noised reconstruction of an image with a dark blob is nearer
    the clean image inside the blob than the input is, while a good image comes back nearly as it was."""
    from scipy.ndimage import gaussian_filter

    goods = [(0.5 + 0.3 * gaussian_filter(rng.random((64, 64)) - 0.5, 2))[:, :, None].astype(np.float32)
             for _ in range(9)]
    clean = goods.pop()
    test, mask = clean.copy(), np.zeros((64, 64), bool)
    mask[24:40, 20:36] = True
    test[mask] = 0.1
    model = DiAD(size=64, unet_channels=(16, 32), norm_groups=4, guide_embedding=(8, 8, 16, 16), steps=80, lr=1e-3,
                 batch_size=4, ddim_steps=4, timestep=300, num_threads=1).fit(goods, np.random.default_rng(0),
                                                                            show_progress=False)
    rec_test, rec_clean = model.reconstruct([test, clean])
    before = np.abs(test - clean)[mask].mean()
    assert np.abs(rec_test - clean)[mask].mean() < 0.8 * before  # the blob is (partly) repaired
    assert np.abs(rec_clean - clean).mean() < 0.25 * before  # a good image is kept
    # with no noise there is nothing to repair: the blob comes back through the autoencoder
    assert np.abs(model.reconstruct([test], timestep=0)[0] - clean)[mask].mean() > 0.9 * before


def test_benchmark_adds_the_diad_row_only_when_asked():
    import argparse

    from defectlab.benchmark import BenchmarkConfig, add_arguments
    from defectlab.benchmark.cli import command_line

    assert "diad" not in BenchmarkConfig(category="x", methods=["cutpaste"], shots=1).run_names()
    names = BenchmarkConfig(category="x", methods=["cutpaste"], shots=1, diad=True).run_names()
    assert names[:3] == ["patchcore", "diad", "fewshot"]
    args = add_arguments(argparse.ArgumentParser()).parse_args(
        ["--format", "embedded", "--category", "washer", "--methods", "cutpaste", "--diad", "--out", "o"])
    assert args.diad and "--diad" in command_line(args)
