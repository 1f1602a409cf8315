"""The domain prior (issue #36): trained once and found by its fingerprint, resumable to the same bytes, checked
when loaded, learning the good images' latents, and the start of DiAD's and AdaBLDM's denoisers."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from defectlab import DefectlabError
from defectlab.prior import PriorParams, build_unet, init_from_prior, load_prior, resolve_prior, tiny_params, trained_prior
from defectlab.prior.store import RECORD, WEIGHTS, folder_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = tiny_params(size=32, steps=12, batch_size=4, checkpoint_every=5)


def _goods(n=6, seed=0, side=40):
    rng = np.random.default_rng(seed)
    return [rng.random((side, side + 8, 3)).astype(np.float32) for _ in range(n)]


def _sha(prior) -> str:
    return prior.record["sha256"]


def test_a_prior_is_trained_once_then_found_by_its_images(tmp_path):
    goods = _goods()
    first = trained_prior(goods, TINY, category="tile", root=tmp_path, show_progress=False)
    folder = folder_for("tile", TINY, first.record["fingerprint"], tmp_path)
    stamp = (folder / WEIGHTS).stat().st_mtime_ns
    again = trained_prior(goods, TINY, category="tile", root=tmp_path, show_progress=False)
    assert _sha(again) == _sha(first) and (folder / WEIGHTS).stat().st_mtime_ns == stamp  # loaded, not retrained
    assert first.record["goods"] == 6 and first.record["size"] == 32
    other = trained_prior(goods[:5] + _goods(1, seed=9), TINY, category="tile", root=tmp_path, show_progress=False)
    assert other.record["fingerprint"] != first.record["fingerprint"]  # one image changed: another prior
    with pytest.raises(DefectlabError, match="no trained prior"):
        trained_prior(_goods(seed=5), TINY, category="tile", root=tmp_path, train=False)


def test_an_interrupted_prior_resumes_to_the_same_bytes(tmp_path):
    goods = _goods()
    whole = trained_prior(goods, TINY, category="tile", root=tmp_path / "a", show_progress=False)
    assert trained_prior(goods, TINY, category="tile", root=tmp_path / "b", minutes=1e-9, show_progress=False) is None
    run = folder_for("tile", TINY, whole.record["fingerprint"], tmp_path / "b") / "run"
    assert (run / "latest").read_text().startswith("step-0000001")  # stopped after one step, checkpointed
    resumed = trained_prior(goods, TINY, category="tile", root=tmp_path / "b", show_progress=False)
    assert _sha(resumed) == _sha(whole)


def test_bad_priors_are_refused_with_one_line(tmp_path):
    with pytest.raises(DefectlabError, match="3 good training images, fewer than the prior's batch of 4"):
        trained_prior(_goods(3), TINY, category="tile", root=tmp_path)
    prior = trained_prior(_goods(), TINY, category="tile", root=tmp_path, show_progress=False)
    folder = folder_for("tile", TINY, prior.record["fingerprint"], tmp_path)
    with pytest.raises(DefectlabError, match="a prior of category 'tile', not 'washer'"):
        load_prior(folder, category="washer")
    with pytest.raises(DefectlabError, match="trained at 32 px, not 64 px"):
        load_prior(folder, size=64)
    with pytest.raises(DefectlabError, match="latent space of 'tiny', DiAD works in 'taef2'"):
        resolve_prior(str(folder), [], PriorParams(size=32), who="DiAD")
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-1] ^= 1
    (folder / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(DefectlabError, match="differs from the recorded"):
        load_prior(folder)
    (folder / RECORD).unlink()
    with pytest.raises(DefectlabError, match="no trained domain prior here"):
        load_prior(folder)


def test_too_few_goods_for_auto_warns_and_starts_from_scratch():
    with pytest.warns(UserWarning, match="no prior"):
        assert resolve_prior("auto", _goods(2), TINY, who="DiAD") is None
    assert resolve_prior(None, _goods(), TINY) is None


def test_the_prior_learns_to_denoise_the_good_latents(tmp_path):
    """On two flat colours it predicts the noise added to their latents far better than its untrained start, and
    its free samples are finite images of the right shape."""
    from defectlab.prior.autoencoders import build
    from defectlab.prior.model import ddpm_scheduler

    colours = np.array([[0.9, 0.2, 0.1], [0.1, 0.3, 0.9]], np.float32)
    goods = [np.broadcast_to(colours[i % 2], (32, 32, 3)).copy() for i in range(8)]
    params = tiny_params(size=32, steps=300, batch_size=8, lr=1e-3, warmup=10, ema_decay=0.95, checkpoint_every=300)
    prior = trained_prior(goods, params, category="flat", root=tmp_path, show_progress=False)
    z0 = build("tiny").encode(torch.from_numpy(colours)[:, :, None, None].expand(-1, -1, 32, 32).contiguous())
    z0 = z0.repeat(8, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    noise, t = torch.randn(z0.shape, generator=gen), torch.linspace(50, 950, len(z0)).long()
    zt = ddpm_scheduler().add_noise(z0, noise, t)
    with torch.no_grad():
        trained = torch.nn.functional.mse_loss(prior.unet(zt, t).sample, noise)
        fresh = torch.nn.functional.mse_loss(build_unet(params, 4, seed=0)(zt, t).sample, noise)
    assert trained < 0.5 * fresh
    images = prior.sample(3, np.random.default_rng(0), steps=5)
    assert images.shape == (3, 32, 32, 3) and np.isfinite(images).all() and 0 <= images.min() <= images.max() <= 1


@pytest.mark.parametrize("who", ["diad", "adabldm"])
def test_a_conditioned_denoiser_started_from_the_prior_computes_the_prior(who):
    """Shared ResNet blocks copied, the attention the prior lacks starting at zero: same noise, whatever the text."""
    params = tiny_params(unet_channels=(32, 64), norm_groups=8)
    prior = build_unet(params, 4, seed=3)
    if who == "diad":
        from defectlab.detect.diad_nets import build_unet as build

        unet = build(4, (32, 64), 1, 8, "UNetMidBlock2DCrossAttn")
    else:
        from defectlab.adabldm.model import _offline_unet
        from defectlab.adabldm.params import tiny_config

        cfg = tiny_config()
        cfg.unet_channels = (32, 64)
        unet = _offline_unet(cfg)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    copied = init_from_prior(unet, prior)
    assert copied and all(not torch.equal(before[k], unet.state_dict()[k]) for k in copied if "resnets" in k and "conv1.weight" in k)
    z, t = torch.randn(2, 4, 8, 8), torch.tensor([20, 700])
    text = torch.randn(2, 3, unet.config.cross_attention_dim)
    torch.testing.assert_close(unet(z, t, encoder_hidden_states=text).sample, prior(z, t).sample, rtol=0, atol=1e-5)
    with pytest.raises(DefectlabError, match="does not share the prior's ResNet blocks"):
        init_from_prior(build_unet(tiny_params(unet_channels=(16, 16), norm_groups=8), 4), prior)


def test_diad_keeps_the_prior_locked_and_trains_its_guide(tmp_path):
    from defectlab.detect import DiAD

    goods = _goods(8, side=64)
    prior = trained_prior(goods, tiny_params(size=64, unet_channels=(8, 16), norm_groups=4, steps=6), category="g",
                          root=tmp_path, show_progress=False)
    folder = folder_for("g", prior.params, prior.record["fingerprint"], tmp_path)
    model = DiAD(autoencoder="tiny", size=64, guide_embedding=(8, 8, 8, 8), steps=4, batch_size=4, ddim_steps=2,
                 timestep=300, num_threads=1, prior=str(folder)).fit(goods, np.random.default_rng(0), show_progress=False)
    theirs = prior.unet.state_dict()
    mine = model.net.unet.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in theirs.items())  # locked: still the prior's weights
    assert model.params.unet_channels == (8, 16) and model.prior_record["sha256"] == prior.record["sha256"]
    path = tmp_path / "diad.pt"
    again = DiAD.load(path, model.save(path))
    x = [goods[0]]
    np.testing.assert_array_equal(again.predict(x)[0], model.predict(x)[0])


def test_adabldm_training_moves_only_the_prompt_attention_of_a_prior_started_unet():
    from defectlab.adabldm import AdaBLDMModel, TrainParams, tiny_config
    from defectlab.adabldm.pairs import make_pairs
    from defectlab.adabldm.train import train
    from defectlab.sample import Sample

    goods = _goods(8, side=32)
    mask = np.zeros((32, 40), bool)
    mask[10:20, 12:22] = True
    defects = [Sample(goods[0], mask, {"category": "tile", "label": "crack"})]
    pairs = make_pairs(goods, defects, np.random.default_rng(0), 8, 32)
    prior = trained_prior(goods, tiny_params(size=32, steps=4), category="tile", root=None, show_progress=False)
    cfg = tiny_config(["a", "crack", "tile", "with"])
    model = AdaBLDMModel(cfg, prior=prior)
    assert cfg.prior["fingerprint"] == prior.record["fingerprint"]
    before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    train(model, pairs, TrainParams(size=32, steps=3, batch_size=2, lr=1e-3, unet_lr=1e-3), show_progress=False)
    after = model.unet.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(".attentions." in k for k in moved)


def test_prior_train_command_trains_one_prior_for_seeds_that_share_their_goods(tmp_path):
    import os

    env = {**os.environ, "DEFECTLAB_PRIOR_CACHE": str(tmp_path), "DEFECTLAB_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "defectlab.cli", "prior", "train", "--format", "embedded", "--category", "washer",
           "--shots", "1", "--seeds", "0,1", "--size", "64", "--prior-size", "32", "--threads", "1"]
    small = ["--batch-size", "4", "--steps", "3"]
    done = subprocess.run(cmd + small, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("seed ")]
    assert len(lines) == 2 and lines[0].split(";")[-1] == lines[1].split(";")[-1]  # the same folder for both seeds
    assert len(list(tmp_path.rglob(RECORD))) == 1
    for extra, message in ((["--minutes", "0"], "--minutes must be > 0, got 0.0"),
                           ([], "good training images, fewer than the prior's batch of 32")):
        bad = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=300, env=env)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_each_diffusion_model_says_what_stands_in_for_its_pretrained_model(tmp_path):
    from defectlab import create
    from defectlab.detect import DiAD

    goods = _goods(8, side=64)
    prior = trained_prior(goods, tiny_params(size=64, unet_channels=(8, 16), norm_groups=4, steps=3), category="g",
                          root=tmp_path, show_progress=False)
    folder = str(folder_for("g", prior.params, prior.record["fingerprint"], tmp_path))
    common = dict(autoencoder="tiny", size=64, guide_embedding=(8, 8, 8, 8), steps=2, batch_size=4, ddim_steps=2,
                  num_threads=1)
    with_prior = DiAD(**common, prior=folder).fit(goods, np.random.default_rng(0), show_progress=False)
    scratch = DiAD(**common, prior=None, unet_channels=(8, 16), norm_groups=4).fit(goods, np.random.default_rng(0),
                                                                                    show_progress=False)
    assert "domain prior of the good images (g" in with_prior.deviations()[0]
    assert "from scratch" in scratch.deviations()[0]
    assert "latent domain prior (`defectlab.prior`) is not used" in create("defectfill").deviations()[0]


def test_realnet_sdas_samples_the_prior_with_its_noise_scaled(tmp_path):
    from defectlab.synth.generative.realnet import RealNetSDAS

    goods = [g.mean(axis=2, keepdims=True) for g in _goods(6, side=32)]
    prior = trained_prior(goods, TINY, category="g", root=tmp_path, show_progress=False)
    folder = str(folder_for("g", TINY, prior.record["fingerprint"], tmp_path))
    method = RealNetSDAS(prior=folder, prior_size=32, autoencoder="tiny", inference_steps=4)
    method.fit(goods, [], np.random.default_rng(0))
    assert method.history == [] and "domain prior of the g good images" in method.deviations()[0]
    x0, _ = method.sample_images(2, np.random.default_rng(4), strength=0.0)
    x1, _ = method.sample_images(2, np.random.default_rng(4), strength=0.5)
    assert x0.shape == (2, 1, 32, 32) and 0 <= float(x0.min()) <= float(x0.max()) <= 1
    assert not torch.equal(x0, x1)  # same noise, larger variance: a different trajectory
    sample = method(goods[0], np.random.default_rng(1))
    assert sample.image.shape == goods[0].shape and sample.mask.any()


def test_sample_kid_puts_an_untrained_prior_far_above_the_floor(tmp_path):
    """Real good images against real good images (the floor) are close; a prior trained for three steps draws
    noise, far from them. The goal is max(2 x floor, 0.01)."""
    from defectlab.data import build_embedded
    from defectlab.prior.quality import sample_kid, samples_beside_real

    ds = build_embedded(size=64, categories="washer")
    goods = [r.image() for r in ds.filter(split="train", label="good")]
    heldout = [r.image() for r in ds.filter(split="test", label="good")]
    prior = trained_prior(goods, tiny_params(size=32, steps=3), category="washer", root=tmp_path, show_progress=False)
    out = sample_kid(prior, goods, heldout, n_samples=6, rng=np.random.default_rng(0), steps=3)
    assert out["kid"] > out["floor"] + 0.05 and out["goal"] == max(2 * out["floor"], 0.01) and out["met"] is False
    fig = samples_beside_real(out["_samples"], out["_heldout"], n=6, columns=3)
    rows = 2 + -(-min(6, len(heldout)) // 3)  # two rows of samples over the held-out rows
    assert len(fig.axes) == 3 * rows


def test_adabldm_method_fits_from_a_prior_folder_and_says_so(tmp_path):
    from defectlab import create
    from defectlab.sample import Sample

    goods = _goods(6, side=32)
    mask = np.zeros((32, 40), bool)
    mask[8:20, 10:24] = True
    defects = [Sample(goods[0], mask, {"category": "tile", "label": "crack"})]
    prior = trained_prior(goods, tiny_params(size=32, steps=3), category="tile", root=tmp_path, show_progress=False)
    folder = str(folder_for("tile", prior.params, prior.record["fingerprint"], tmp_path))
    method = create("adabldm", size=32, autoencoder="tiny", prior=folder,
                    train={"steps": 2, "pairs": 4, "batch_size": 2})
    method.fit(goods, defects, np.random.default_rng(0))
    assert method.pipeline.model.cfg.prior["fingerprint"] == prior.record["fingerprint"]
    assert "domain prior of the tile good images" in method.deviations()[0]
    assert "a tile with a {defect}" in method.deviations()[1]
    with pytest.raises(DefectlabError, match="trained at 32 px, not 64 px"):
        create("adabldm", size=64, autoencoder="tiny", prior=folder).fit(goods, defects, np.random.default_rng(0))


def test_a_prior_is_found_by_its_images_whatever_category_label_the_caller_gives(tmp_path):
    goods = _goods()
    first = trained_prior(goods, TINY, category="magnetic_tile", root=tmp_path, show_progress=False)
    again = trained_prior(goods, TINY, category="goods", root=tmp_path, train=False)  # DiAD does not know the name
    assert again.record["sha256"] == first.record["sha256"] and len(list(tmp_path.iterdir())) == 1
    assert again.folder == first.folder == next(tmp_path.iterdir())  # the folder it was found in, not its label's
