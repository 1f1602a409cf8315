"""AdaBLDM on tiny random models: the three stages, adaptation, determinism, checkpoints, the registry."""
from dataclasses import replace

import numpy as np
import pytest
import torch

import defectlab
from defectlab import DefectlabError, Sample
from defectlab import weights as weight_files
from defectlab.adabldm import AdaBLDM, AdaptParams, SamplerParams, tiny_config
from defectlab.adabldm.adapt import adapt_decoder
from defectlab.adabldm.checkpoint import load_model, resolve
from defectlab.adabldm.model import AdaBLDMModel
from defectlab.adabldm.pairs import make_pairs
from defectlab.adabldm.params import TrainParams
from defectlab.adabldm.train import train

VOCAB = ["a", "with", "washer", "scratch", "crack"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    return AdaBLDM.tiny(VOCAB, seed=0, sampler=SamplerParams(steps=10), adapt=AdaptParams(iterations=3))


@pytest.fixture
def scene():
    rng = np.random.default_rng(5)
    good = rng.random((48, 64, 3), dtype=np.float32)
    mask = np.zeros((48, 64), bool)
    mask[18:27, 20:37] = True
    return good, mask


def _run(model, scene, seed=1, trace=None, **kw):
    good, mask = scene
    return model.generate(good, mask, rng=np.random.default_rng(seed), object_name="washer", defect_name="scratch",
                          trace=trace, **kw)


def test_default_stage_boundaries_match_reference():
    assert SamplerParams().stage_indices() == (26, 46)
    model = AdaBLDM.tiny(VOCAB, sampler=SamplerParams(guidance=1.0), adapt=AdaptParams(iterations=0))
    good, mask = np.full((16, 16, 3), 0.5, np.float32), np.zeros((16, 16), bool)
    mask[4:10, 4:10] = True
    trace = []
    model.generate(good, mask, rng=np.random.default_rng(0), prompt="a washer with a crack", trace=trace)
    latent_steps = [e["step"] for e in trace if e["stage"] == "latent_edit"]
    pixel_steps = [e["step"] for e in trace if e["stage"] == "pixel_edit"]
    assert latent_steps == list(range(26, 46))  # steps 26-45 edited before the step
    assert pixel_steps == list(range(45, 50))  # after 45-49: steps 46-49 and the output see pixel edits


def test_latent_editing_keeps_noised_source_outside_dilated_mask(tiny, scene):
    trace = []
    res = _run(tiny, scene, trace=trace)
    edits = [e for e in trace if e["stage"] == "latent_edit"]
    assert edits
    lm = torch.from_numpy(edits[0]["latent_mask"])
    small = torch.from_numpy(scene[1].reshape(6, 8, 8, 8).any(axis=(1, 3)))
    assert bool((lm >= small).all()) and lm.sum() > small.sum()  # dilated beyond the mask's own cells
    for e in edits:
        outside, inside = ~lm[None, None].expand_as(e["after"]), lm[None, None].expand_as(e["after"])
        assert torch.equal(e["after"][outside], e["source"][outside])
        assert torch.equal(e["after"][inside], e["before"][inside])
        assert not torch.equal(e["before"][outside], e["source"][outside])
    assert res.latent_mask.shape == (6, 8) and np.array_equal(res.latent_mask, lm.numpy())


def test_pixel_editing_pastes_onto_good_image(tiny, scene):
    trace = []
    _run(tiny, scene, trace=trace)
    edits = [e for e in trace if e["stage"] == "pixel_edit"]
    assert edits
    good = torch.from_numpy(scene[0]).permute(2, 0, 1)[None]
    m = torch.from_numpy(scene[1])[None, None].expand_as(good)
    for e in edits:
        assert torch.equal(e["pasted"][~m], good[~m])
        assert torch.equal(e["pasted"][m], e["decoded"][m])


def test_result_holds_every_stage_and_is_deterministic(tiny, scene):
    a, b, c = _run(tiny, scene, seed=3), _run(tiny, scene, seed=3), _run(tiny, scene, seed=4)
    assert list(a.stages) == ["free", "latent_edit", "pixel_edit", "adapted"]
    assert a.image.shape == scene[0].shape and a.image.dtype == np.float32
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, scene[1])
    assert not np.array_equal(a.image, c.image)
    assert a.trimap.shape == (48, 64, 3)
    assert np.allclose(np.unique(a.trimap), [127 / 255, 1.0])  # no foreground given: object everywhere, defect


def test_renoise_option_and_grey_input(tiny, scene):
    good, mask = scene
    ref = _run(tiny, scene)
    cur = _run(tiny, scene, sampler=replace(tiny.sampler, renoise="current"))
    assert not np.array_equal(ref.stages["pixel_edit"], cur.stages["pixel_edit"])
    for stage in ("free", "latent_edit"):  # the option acts in stage 3 only: the stages before it are the same bytes
        assert np.array_equal(ref.stages[stage], cur.stages[stage]), stage
    grey = tiny.generate(good[:, :, :1], mask, rng=np.random.default_rng(0), prompt="a washer with a crack")
    assert grey.image.shape == (48, 64, 1)
    # a grey image runs as its channel repeated to RGB, and the result is that RGB result's channel mean
    rgb = tiny.generate(np.repeat(good[:, :, :1], 3, axis=2), mask, rng=np.random.default_rng(0),
                        prompt="a washer with a crack")
    np.testing.assert_allclose(grey.image, rgb.image.mean(axis=2, keepdims=True), atol=1e-6)


def test_bad_inputs_are_refused(tiny, scene):
    good, mask = scene
    with pytest.raises(DefectlabError, match="empty"):
        tiny.generate(good, np.zeros_like(mask), rng=np.random.default_rng(0), prompt="x")
    with pytest.raises(DefectlabError, match="multiples of 8"):
        tiny.generate(good[:44], mask[:44], rng=np.random.default_rng(0), prompt="x")
    with pytest.raises(DefectlabError, match="renoise"):
        tiny.generate(good, mask, rng=np.random.default_rng(0), prompt="x", sampler=SamplerParams(renoise="later"))


def test_adaptation_lowers_its_loss_and_leaves_the_decoder_alone(tiny, scene):
    dec = tiny.model.autoencoder.decoder
    before = {k: v.clone() for k, v in dec.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 6, 8, generator=g)
    good = torch.from_numpy(scene[0]).permute(2, 0, 1)[None]
    mask = torch.from_numpy(scene[1].astype(np.float32))[None, None]
    with torch.no_grad():
        target = dec(z)
    adapted, losses = adapt_decoder(dec, z, target, good, mask, AdaptParams(iterations=40, lr=1e-2))
    assert len(losses) == 40 and np.mean(losses[-5:]) < 0.97 * np.mean(losses[:5])  # measured ratio 0.94
    assert adapted is not dec
    assert all(torch.equal(before[k], v) for k, v in dec.state_dict().items())
    assert not all(torch.equal(before[k], v) for k, v in adapted.state_dict().items())


def test_windowed_adaptation_keeps_good_image_far_from_defect(tiny, scene):
    res = _run(tiny, scene, adapt=AdaptParams(iterations=3, window_margin=1), sampler=replace(tiny.sampler, dilation=1))
    good = scene[0]
    # mask on latent columns 2-4, window (margin 1) on 1-5: pixel columns 0-7 and 48-63 keep the good image
    assert np.array_equal(res.image[:, :8], good[:, :8]) and np.array_equal(res.image[:, 48:], good[:, 48:])
    assert not np.array_equal(res.image[:, 8:16], good[:, 8:16])
    assert not np.array_equal(res.image[18:27, 20:37], good[18:27, 20:37])


def _pairs(rng, n=8):
    goods = [rng.random((40, 40, 3), dtype=np.float32) for _ in range(2)]
    dimg = rng.random((40, 40, 3), dtype=np.float32)
    dmask = np.zeros((40, 40), bool)
    dmask[10:18, 12:20] = True
    d = Sample(dimg, dmask, {"label": "scratch", "source": "washer/test/scratch/000.png"})
    return make_pairs(goods, [d], rng, n, 32)


def test_pairs_change_only_the_pasted_defect(rng):
    pairs = _pairs(rng)
    assert pairs.images.shape == (8, 32, 32, 3) and pairs.prompts[0] == "a washer with a scratch"
    for tri, m in zip(pairs.trimaps, pairs.masks):
        assert m.any() and np.array_equal(tri == 255, m) and set(np.unique(tri)) <= {127, 255}


def _tiny_model(seed=0):
    return AdaBLDMModel(tiny_config(VOCAB), seed=seed)


def test_training_lowers_loss_and_checkpoint_resume_matches_uninterrupted_run(tmp_path, rng):
    pairs = _pairs(rng)
    p = TrainParams(size=32, steps=6, batch_size=2, lr=1e-3, unet_lr=1e-3, prompt_dropout=0.2, pairs=8,
                    checkpoint_every=3)
    straight = _tiny_model()
    train(straight, pairs, p, out=tmp_path / "a", show_progress=False)
    first = _tiny_model()
    train(first, pairs, replace(p, steps=3), out=tmp_path / "b", show_progress=False)
    resumed = _tiny_model(seed=9)  # different init: everything must come from the checkpoint
    hist = train(resumed, pairs, p, out=tmp_path / "b", show_progress=False)
    assert len(hist) == 3
    for name in ("unet", "controlnet", "prompt"):
        a, b = straight.trainable(True)[name].state_dict(), resumed.trainable(True)[name].state_dict()
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), name
    assert resolve(tmp_path / "b").name == "step-0000006"
    loaded = load_model(tmp_path / "b")
    x = {k: v for k, v in loaded.unet.state_dict().items()}
    assert all(torch.equal(x[k], v) for k, v in resumed.unet.state_dict().items())
    assert not list((tmp_path / "b").glob(".*part"))


def test_training_reduces_the_noise_prediction_loss(rng):
    pairs = _pairs(rng, n=4)
    model = _tiny_model()
    hist = train(model, pairs, TrainParams(size=32, steps=24, batch_size=4, lr=2e-3, unet_lr=2e-3, pairs=4),
                 show_progress=False)
    assert np.mean(hist[-6:]) < np.mean(hist[:6])


def test_registered_method_fits_and_generates(monkeypatch, rng):
    monkeypatch.setenv("DEFECTLAB_QUICK", "1")
    assert "adabldm" in defectlab.available("adabldm")
    method = defectlab.create("adabldm", size=32, prior=None)  # the two-image support: no prior
    good = rng.random((40, 48, 3), dtype=np.float32)
    with pytest.raises(DefectlabError, match="fit"):
        method(good, rng)
    dmask = np.zeros((40, 48), bool)
    dmask[12:20, 10:22] = True
    defects = [Sample(rng.random((40, 48, 3), dtype=np.float32), dmask, {"label": "crack", "category": "washer"})]
    defects.append(Sample(defects[0].image, dmask[::-1].copy(), {"label": "scratch", "category": "washer"}))
    method.fit([good, good[::-1].copy()], defects, np.random.default_rng(0))
    out = method(good, np.random.default_rng(1), defect_type="crack")
    again = method(good, np.random.default_rng(1), defect_type="crack")
    assert out.image.shape == good.shape and out.mask.any() and out.meta["prompt"] == "a washer with a crack"
    assert np.array_equal(out.image, again.image)
    assert np.array_equal(out.image[~out.mask], good[~out.mask])  # resized back: original pixels outside the mask
    assert any("renoise='next'" in d for d in out.meta["deviations"]) and any("window" in d for d in out.meta["deviations"])
    # a caller-given mask keeps the caller-given defect type, whatever the seed
    mine = np.zeros((40, 48), bool)
    mine[5:9, 30:44] = True
    for seed in range(4):
        s = method(good, np.random.default_rng(seed), mask=mine, defect_type="scratch")
        assert s.meta["defect_type"] == "scratch" and s.meta["prompt"] == "a washer with a scratch"
        assert np.array_equal(s.mask, mine)
    with pytest.raises(DefectlabError, match="not learned"):
        method(good, np.random.default_rng(0), mask=mine, defect_type="hole")


def test_generate_cli_writes_samples_and_a_gallery_then_resumes(tmp_path, capsys):
    from defectlab.adabldm.checkpoint import save_checkpoint
    import json

    from defectlab.adabldm.generate import main
    from defectlab.adabldm.train import load_training_data
    from defectlab.config import quick
    from defectlab.data import read_manifest

    run = tmp_path / "run"
    save_checkpoint(run, AdaBLDMModel(tiny_config(VOCAB + ["contamination"]), seed=0), step=1)
    out = tmp_path / "samples"
    args = ["--checkpoint", str(run), "--data", "embedded", "--category", "washer", "--shots", "1", "--n", "2",
            "--out", str(out)]
    with quick():  # 10 sampling steps and 10 adaptation iterations
        assert main(args) == 0
        entries = read_manifest(out)
        assert len(entries) == 2 and all(e["label"] == "adabldm" and e["meta"]["prompt"].startswith("a washer with a")
                                         for e in entries)
        assert (out / "gallery.png").read_bytes()[:4] == b"\x89PNG"
        first = (out / entries[0]["file"]).stat().st_mtime_ns
        assert main(args[:-4] + ["--n", "3", "--out", str(out), "--by-type", "1"]) == 0  # resumes: one more
        assert len(read_manifest(out)) == 3 and (out / entries[0]["file"]).stat().st_mtime_ns == first
        rows = json.loads((out / "gallery_by_type.json").read_text())
        assert sorted(r["type"] for r in rows) == ["contamination", "crack", "scratch"]
        heldout = load_training_data("embedded", category="washer", shots=1).heldout
        assert all(r["nearest_heldout"] in heldout and r["nearest_heldout"].split("/")[2] == r["type"] for r in rows)
        trained = tmp_path / "trained"  # a checkpoint trained on one of this split's held-out images is refused
        train(AdaBLDMModel(tiny_config(VOCAB), seed=0), _pairs(np.random.default_rng(0), n=2),
              TrainParams(size=32, steps=1, batch_size=1, pairs=2, unet_lr=1e-3), out=trained, show_progress=False,
              provenance={"sources": heldout[:1]})
        assert main(["--checkpoint", str(trained)] + args[2:-1] + [str(tmp_path / "refused")]) == 2
        assert "held-out" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    assert "no AdaBLDM checkpoint" in capsys.readouterr().err


def _stage_run(model, scene, latent_from, pixel_from, iterations=3):
    trace = []
    res = _run(model, scene, trace=trace, sampler=replace(model.sampler, latent_edit_from=latent_from,
                                                          pixel_edit_from=pixel_from),
               adapt=replace(model.adapt, iterations=iterations))
    steps = {k: [e["step"] for e in trace if e["stage"] == k] for k in ("latent_edit", "pixel_edit")}
    return res, steps


def test_stage_three_switches_off_and_pictures_are_labelled_by_what_ran(tiny, scene):
    res, steps = _stage_run(tiny, scene, 1.0, 1.0)  # no editing at all (issue #18: (1, 1) used to pixel-edit)
    assert steps == {"latent_edit": [], "pixel_edit": []} and list(res.stages) == ["free", "adapted"]
    res, steps = _stage_run(tiny, scene, 1.0, 1.0, iterations=0)
    assert list(res.stages) == ["free"] and np.array_equal(res.image, res.stages["free"])
    res, steps = _stage_run(tiny, scene, 0.5, 1.0)  # stage 3 off: latent editing to the end
    assert steps == {"latent_edit": list(range(5, 10)), "pixel_edit": []}
    assert list(res.stages) == ["free", "latent_edit", "adapted"]
    res, steps = _stage_run(tiny, scene, 0.0, 0.0)  # pixel editing after every step
    assert steps == {"latent_edit": [], "pixel_edit": list(range(10))} and list(res.stages) == ["pixel_edit", "adapted"]
    res, steps = _stage_run(tiny, scene, 0.5, 0.9)
    assert steps == {"latent_edit": [5, 6, 7, 8], "pixel_edit": [8, 9]}
    assert list(res.stages) == ["free", "latent_edit", "pixel_edit", "adapted"]
    assert set(res.seconds) == {"sampling", "adaptation"} and res.seconds["sampling"] > 0


def test_adaptation_loss_is_taken_before_the_clamp(tiny):
    from defectlab.adabldm.adapt import adaptation_loss, unclamped

    dec = copy_with_wide_output(tiny.model.autoencoder.decoder)
    z = torch.randn(1, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw, clamped = unclamped(dec, z), dec(z)
    assert raw.min() < 0 and raw.max() > 1 and torch.equal(clamped, raw.clamp(0, 1))  # the clamp bites here
    good = torch.full_like(raw, 0.5)
    mask = torch.zeros_like(raw[:, :1])
    mask[..., :8, :8] = 1
    _, losses = adapt_decoder(dec, z, clamped, good, mask, AdaptParams(iterations=1, preservation=100.0))
    assert losses[0] == pytest.approx(float(adaptation_loss(raw, clamped, good, mask, 100.0)), rel=1e-5)
    assert losses[0] != pytest.approx(float(adaptation_loss(clamped, clamped, good, mask, 100.0)), rel=1e-3)


def copy_with_wide_output(decoder):
    import copy

    dec = copy.deepcopy(decoder)
    with torch.no_grad():
        dec[-1].weight.mul_(300.0)
    return dec


def test_sd_decoder_adaptation_trains_the_decoder_only():
    from diffusers import AutoencoderKL

    from defectlab.prior.autoencoders import _SDDecoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                            up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4).eval()
    dec = _SDDecoder(vae)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    good = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 2:5] = 1
    with torch.no_grad():
        target = dec(z)
    adapted, losses = adapt_decoder(dec, z, target, good, mask, AdaptParams(iterations=3, lr=1e-2))
    pqc, old = adapted.post_quant_conv.state_dict(), dec.post_quant_conv.state_dict()
    assert all(torch.equal(pqc[k], old[k]) for k in old)  # frozen, as the reference code
    new, before = adapted.decoder.state_dict(), dec.decoder.state_dict()
    assert not all(torch.equal(new[k], before[k]) for k in before)


def test_prompt_suffix_option(tiny, scene):
    assert tiny.prompt("washer", "scratch") == "a washer with a scratch"  # offline model: no suffix by default
    res = _run(tiny, scene, sampler=replace(tiny.sampler, prompt_suffix=", black background."))
    assert res.prompt == "a washer with a scratch, black background."
    sd_like = AdaBLDM(_with_cfg(tiny.model, pretrained="sd-folder"), tiny.sampler, tiny.adapt)  # the SD path
    assert sd_like.prompt("washer", "scratch") == "a washer with a scratch, black background."
    assert sd_like.prompt("washer", "scratch", replace(tiny.sampler, prompt_suffix="")) == "a washer with a scratch"


def _with_cfg(model, **changes):
    import copy

    other = copy.copy(model)  # shares the networks; only the config differs
    other.cfg = replace(model.cfg, **changes)
    return other


def test_deviations_are_listed_only_where_they_apply():
    from defectlab.adabldm.params import deviations

    both = deviations(SamplerParams(), AdaptParams())
    assert len(both) == 2 and "renoise" in both[0] and "window" in both[1]
    assert deviations(SamplerParams(renoise="current"), AdaptParams(window_margin=None)) == []
    assert deviations(SamplerParams(pixel_edit_from=1.0), AdaptParams(iterations=0)) == []  # nothing of theirs ran


def test_checkpoints_record_their_training_images_and_refuse_heldout_ones(tmp_path, rng):
    from defectlab.adabldm.checkpoint import refuse_if_trained_on, save_checkpoint, training_sources

    pairs = _pairs(rng, n=4)
    p = TrainParams(size=32, steps=1, batch_size=2, lr=1e-3, unet_lr=1e-3, pairs=4)
    seen = ["washer/test/scratch/000", "washer/test/crack/003"]
    train(_tiny_model(), pairs, p, out=tmp_path / "run", show_progress=False, provenance={"sources": seen})
    assert training_sources(tmp_path / "run") == seen
    refuse_if_trained_on(tmp_path / "run", ["washer/test/scratch/001", "washer/test/good/000"])  # fine
    with pytest.raises(DefectlabError, match="held-out test image.*washer/test/crack/003"):
        refuse_if_trained_on(tmp_path / "run", ["washer/test/crack/003", "washer/test/scratch/001"])
    save_checkpoint(tmp_path / "old", _tiny_model(), step=1)  # no record: cannot be vouched for
    with pytest.raises(DefectlabError, match="records no training images"):
        refuse_if_trained_on(tmp_path / "old", [])


def test_training_data_from_any_open_dataset_layout():
    from defectlab.adabldm.train import load_training_data
    from defectlab.config import quick
    from defectlab.data import build_embedded

    with quick():
        emb = load_training_data("embedded", category="washer", shots=1)
        root = build_embedded().root  # the embedded set is an MVTec layout on disk
        mvtec = load_training_data("mvtec", path=root, category="washer", shots=1)
        auto = load_training_data("auto", path=root, category="washer", shots=1)
    assert emb.sources == mvtec.sources == auto.sources and len(emb.sources) == len(emb.defects) > 0
    assert not set(emb.sources) & set(emb.heldout)
    with pytest.raises(DefectlabError, match="needs --path"):
        load_training_data("btad")
    with pytest.raises(DefectlabError, match="no category"):
        load_training_data("mvtec", path=root, category="carpet")


@pytest.mark.skipif(weight_files.missing("taef2_encoder") or weight_files.missing("taef2_decoder"),
                    reason="the cached checkpoint trains on TAEF2 latents: weights not in ../shared/weights")
def test_trained_checkpoint_is_cached_with_its_sha256(tmp_path, monkeypatch):
    from defectlab.adabldm import cache
    from defectlab.config import quick

    monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
    recipe = cache.Recipe(shots=1, size=32, steps=1)
    assert cache.cached_checkpoint(recipe) is None
    with pytest.raises(DefectlabError, match="make adabldm-weights"):
        cache.trained_checkpoint(recipe, train=False)
    with quick():
        folder = cache.trained_checkpoint(recipe, show_progress=False)
    assert folder.parent.parent == tmp_path / "cache" and load_model(folder) is not None
    import defectlab.adabldm.train as train_module

    monkeypatch.setattr(train_module, "train_run", lambda *a, **k: pytest.fail("trained again"))
    assert cache.trained_checkpoint(recipe) == folder  # reused, not retrained
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"x")
    with pytest.raises(DefectlabError, match="SHA-256"):
        cache.trained_checkpoint(recipe)


def test_defect_window_is_native_resolution_around_the_defect():
    from defectlab.adabldm.windows import defect_window

    mask = np.zeros((300, 500), bool)
    mask[100:130, 200:290] = True  # box 30 x 90: side max(128, 180) -> 192
    rows, cols = defect_window(mask, 128)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (192, 192)
    assert rows.start <= 100 and rows.stop >= 130 and cols.start <= 200 and cols.stop >= 290
    small = np.zeros((300, 500), bool)
    small[5:9, 490:496] = True  # a small defect at the border: the working size, inside the image
    rows, cols = defect_window(small, 128)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (0, 128, 372, 500)
    narrow = np.zeros((240, 115), bool)  # a Magnetic Tile 115 px wide: the window is cut to 96 (a multiple of 32)
    narrow[50:60, 40:70] = True
    rows, cols = defect_window(narrow, 128)
    assert rows.stop - rows.start == 128 and cols.stop - cols.start == 96
    starts = {defect_window(mask, 128, np.random.default_rng(k))[1].start for k in range(20)}
    assert len(starts) > 5  # jittered ...
    for k in range(20):  # ... with the defect always inside
        r, c = defect_window(mask, 128, np.random.default_rng(k))
        assert r.start <= 100 and r.stop >= 130 and c.start <= 200 and c.stop >= 290


def test_window_pairs_are_fresh_native_pixels():
    from defectlab.adabldm.windows import WindowPairs

    good = np.full((160, 200, 3), 0.25, np.float32)
    dmask = np.zeros((160, 200), bool)
    dmask[60:70, 80:100] = True
    defect = Sample(np.full((160, 200, 3), 0.75, np.float32), dmask, {"label": "crack", "category": "tile"})
    pairs = WindowPairs([good], None, [defect], size=64)
    draws = [pairs.one(np.random.default_rng(k)) for k in range(4)]
    for img, tri, prompt in draws:
        assert img.shape[0] % 32 == 0 and img.shape[1] % 32 == 0 and min(img.shape[:2]) >= 64
        assert prompt == "a tile with a crack" and (tri == 255).any()
        inside = tri == 255
        assert np.all(img[~inside] == 0.25)  # native pixels: nothing resized or blended outside the defect
        assert np.allclose(img[inside], 0.75, atol=1e-6)
    assert len({d[1].tobytes() for d in draws}) == 4  # fresh: a new placement each draw


def test_windowed_method_pastes_native_pixels_back(monkeypatch, rng):
    monkeypatch.setenv("DEFECTLAB_QUICK", "1")
    method = defectlab.create("adabldm", size=32, prior=None, train=replace(TrainParams(), window=True, batch_size=2))
    goods = [rng.random((80, 96, 3), dtype=np.float32) for _ in range(2)]
    dmask = np.zeros((80, 96), bool)
    dmask[30:40, 20:45] = True
    defects = [Sample(rng.random((80, 96, 3), dtype=np.float32), dmask, {"label": "crack", "category": "tile"})]
    method.fit(goods, defects, np.random.default_rng(0))
    mine = np.zeros((80, 96), bool)
    mine[50:58, 60:75] = True
    out = method(goods[0], np.random.default_rng(1), mask=mine)
    r0, r1, c0, c1 = out.meta["window"]
    assert (r1 - r0) % 32 == 0 and (c1 - c0) % 32 == 0 and r0 <= 50 and r1 >= 58 and c0 <= 60 and c1 >= 75
    assert np.array_equal(out.image[~mine], goods[0][~mine]) and not np.array_equal(out.image[mine], goods[0][mine])
    assert any("native-resolution window" in d for d in out.meta["deviations"])


def test_window_crops_hold_the_defect_and_share_one_shape():
    from defectlab.adabldm.windows import WindowPairs, defect_crop

    good = np.full((320, 400, 3), 0.25, np.float32)
    dmask = np.zeros((320, 400), bool)
    dmask[100:200, 120:300] = True  # box 100 x 180: window 384 wide, larger than the crop
    defect = Sample(np.full((320, 400, 3), 0.75, np.float32), dmask, {"label": "fray", "category": "tile"})
    pairs = WindowPairs([good], None, [defect], size=64)
    draws = [pairs.one(np.random.default_rng(k), crop=64) for k in range(6)]
    for img, tri, _ in draws:
        assert img.shape == (64, 64, 3) and tri.shape == (64, 64) and (tri == 255).any()
        assert np.all(img[tri != 255] == 0.25)  # still native pixels
    assert len({d[1].tobytes() for d in draws}) == 6
    again = pairs.one(np.random.default_rng(3), crop=64)
    assert np.array_equal(again[0], draws[3][0]) and np.array_equal(again[1], draws[3][1])
    tri = np.zeros((96, 128), np.uint8)
    tri[90:96, 0:4] = 255  # a defect in a corner of a window narrower than the crop
    img = np.zeros((96, 128, 3), np.float32)
    for k in range(10):
        _, t = defect_crop(img, tri, 128, np.random.default_rng(k))
        assert t.shape == (96, 96) and (t == 255).any()
    with pytest.raises(DefectlabError, match="no defect pixel"):
        defect_crop(img, np.zeros_like(tri), 64, np.random.default_rng(0))


def test_window_training_batches_crops_and_weighs_every_pair_equally(rng):
    from defectlab.adabldm.train import _window_loss
    from defectlab.adabldm.windows import WindowPairs

    goods = [rng.random((96, 128, 3), dtype=np.float32) for _ in range(2)]
    dmask = np.zeros((96, 128), bool)
    dmask[40:52, 50:80] = True
    defects = [Sample(rng.random((96, 128, 3), dtype=np.float32), dmask, {"label": "crack", "category": "tile"})]
    pairs = WindowPairs(goods, None, defects, size=32)
    model = _tiny_model()
    calls = []

    class Recorder(torch.nn.Module):  # the denoiser, counting its batches
        def forward(self, latents, t, prompts, trimap):
            calls.append(latents.shape[0])
            return torch.zeros_like(latents)

    p = TrainParams(size=32, batch_size=4, window=True, crop=32)
    loss = _window_loss(model, Recorder(), pairs, np.random.default_rng(0), p, 1000, "cpu")
    assert calls == [4]  # four crops of one shape: one batch
    # a zero prediction: the loss is the mean square of the noise, pair by pair, then over the pairs
    assert 0.7 < float(loss) < 1.3
    calls.clear()
    _window_loss(model, Recorder(), pairs, np.random.default_rng(0), replace(p, crop=None), 1000, "cpu")
    assert sum(calls) == 4
    with pytest.raises(DefectlabError, match="multiple of 32"):
        train(model, pairs, replace(p, crop=48, steps=1), show_progress=False)


def test_train_cli_checks_crop_before_reading_data(tmp_path, capsys):
    from defectlab.adabldm.train import main

    assert main(["--recipe", "window", "--crop", "48", "--out", str(tmp_path / "run")]) == 2
    assert "--crop must be 0 (whole windows) or a multiple of 32, got 48" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_recipe_by_name_or_fields_as_the_command_line_gives_it(monkeypatch):
    monkeypatch.delenv("DEFECTLAB_QUICK", raising=False)  # quick mode would shorten every recipe
    from defectlab.adabldm.params import OFFLINE_TRAIN, WINDOW_TRAIN
    from defectlab.paramcheck import check_overrides
    from defectlab.adabldm.method import AdaBLDMMethodParams

    assert defectlab.create("adabldm", train="window").params.train == WINDOW_TRAIN
    assert defectlab.create("adabldm").params.train == OFFLINE_TRAIN
    fields = defectlab.create("adabldm", train={"window": True, "steps": 600}).params.train
    assert fields.window and fields.crop == WINDOW_TRAIN.crop and fields.steps == 600
    assert defectlab.create("adabldm", train={"steps": 7}).params.train == replace(OFFLINE_TRAIN, steps=7)
    check_overrides("adabldm", AdaBLDMMethodParams, {"train": "window"})  # accepted before anything trains
    with pytest.raises(DefectlabError, match="offline, window, gpu"):
        defectlab.create("adabldm", train="windows")
    with pytest.raises(DefectlabError, match="unknown train field"):
        defectlab.create("adabldm", train={"stepz": 3})


def test_visibility_by_type_compares_each_types_synthetic_defects_with_its_held_out_real_ones():
    """A stand-in method that paints its mask black is far more visible than one that changes nothing, type by type;
    the ratio is synthetic over real, counted over the type's held-out images."""
    from defectlab.adabldm.generate import visibility_by_type
    from defectlab.adabldm.train import load_training_data
    from defectlab.sample import Sample

    data = load_training_data("embedded", category="washer", shots=1)

    def painter(value):
        def make(good, rng, foreground=None, defect_type=None):
            mask = np.zeros(good.shape[:2], bool)
            top, left = (int(v) for v in rng.integers(20, min(good.shape[:2]) - 40, 2))
            mask[top:top + 12, left:left + 12] = True
            image = good.copy()
            if value is not None:
                image[mask] = value
            return Sample(image, mask, {"label": defect_type})
        return make

    black = visibility_by_type(painter(0.0), data, per_type=3, show_progress=False)["types"]
    same = visibility_by_type(painter(None), data, per_type=3, show_progress=False)["types"]
    kinds = sorted({d.meta["label"] for d in data.defects})
    assert sorted(black) == kinds
    for kind in kinds:
        b, s = black[kind], same[kind]
        assert b["n_real"] == sum(r.label == kind for r in data.heldout_records) and b["n_synthetic"] == 3
        assert b["ratio"] == pytest.approx(b["synthetic"] / b["real"]) and b["within"] == (0.7 <= b["ratio"] <= 1.5)
        assert b["synthetic"] > 3 * s["synthetic"] and b["real"] == s["real"]
