"""Defect transfer (issue 22): a defect learned on one category's few shots, drawn on another's good images."""
import json
import shutil

import numpy as np
import pytest

import defectlab
from defectlab import DefectlabError
from defectlab.benchmark import run_benchmark
from defectlab.data import build_embedded, few_shot_split, open_dataset
from defectlab.benchmark.prepare import ImageCache, load_support, prepare_split, synthesize_pool

FAST = dict(size=32, steps=3, n_synthetic=4, threads=1, show_progress=False, quality="none", patchcore=False,
            detector={"student_width": 4, "head_width": 4, "batch_size": 4, "crop": 16})

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """washer and pcb_chip (RGB objects sharing contamination and scratch) and brick (grey), 32 px."""
    root = tmp_path_factory.mktemp("transfer") / "embedded"
    build_embedded(root=root, size=32, n_train=6, n_test_good=2, n_test_defect=3,
                   categories=["washer", "pcb_chip", "brick"])
    return root


def _split(root, category, cache, seed=0):
    ds = open_dataset(root, "mvtec")
    return ds, prepare_split(few_shot_split(ds, category, 1, seed=seed), cache, show_progress=False)


def test_benchmark_adds_transferred_rows_and_records_their_source(tmp_path, root):
    out = tmp_path / "bench"
    res = run_benchmark(root, "pcb_chip", ["copypaste", "cutpaste"], out, format="mvtec", shots=1, seeds=[0],
                        transfer_from="washer", **FAST)
    runs = {r["run"]: r for r in res["runs"]}
    assert list(runs) == ["fewshot", "copypaste", "copypaste+fewshot", "copypaste@washer",
                          "copypaste@washer+fewshot", "cutpaste", "cutpaste+fewshot"]  # cutpaste learns no defect
    washer_support = {r.key for r in few_shot_split(open_dataset(root, "mvtec"), "washer", 1, seed=0).support}
    for name in ("copypaste@washer", "copypaste@washer+fewshot"):
        t = runs[name]["transfer"]
        assert t["from"] == "washer" and set(t["support"]) == washer_support and t["params"] == {"blend": "poisson"}
    assert runs["copypaste@washer"]["train_defects"] == 4 and runs["copypaste@washer+fewshot"]["train_defects"] == 4 + 3
    assert "transfer" not in runs["copypaste"] and runs["fewshot"]["train_defects"] == 3  # pcb_chip's own support
    assert all(set(r["by_type"]) == {"contamination", "scratch", "stain"} for r in runs.values())  # per held-out type
    config = json.loads((out / "config.json").read_text())
    assert config["transfer_from"] == "washer" and config["transfer_types"] == []
    assert any(k.startswith("0@washer") for k in config["data_fingerprint"]["splits"])
    md = (out / "results.md").read_text()
    assert "| `copypaste@washer+fewshot` |" in md and "Transferred rows" in md and "by held-out defect type" in md
    with pytest.raises(DefectlabError, match="different transfer_from"):  # resuming with another source is refused
        (out / "results.json").unlink()
        run_benchmark(root, "pcb_chip", ["copypaste"], out, format="mvtec", shots=1, seeds=[0],
                      transfer_from="brick", **FAST)


def test_transfer_types_restrict_the_source_within_the_category(tmp_path, root):
    res = run_benchmark(root, "washer", ["copypaste"], tmp_path / "b", format="mvtec", shots=1, seeds=[0],
                        transfer_types=["CRACK"], **FAST)
    t = {r["run"]: r for r in res["runs"]}["copypaste@crack"]["transfer"]
    assert t["from"] == "washer" and t["types"] == ["crack"] and len(t["support"]) == 1
    assert t["params"] == {}  # same surface: copy-paste keeps its own blending (Poisson only across categories)
    assert t["support"][0].startswith("washer/test/crack/")
    assert "synthesis learned from crack only" in (tmp_path / "b" / "results.md").read_text()


def test_transferred_pool_draws_source_defects_on_target_goods(root):
    cache = ImageCache(32)
    ds, target = _split(root, "pcb_chip", cache)
    source = few_shot_split(ds, "washer", 1, seed=0).support
    support = load_support(source, ImageCache(32, channels=cache.channels))
    method = defectlab.create("copypaste", blend="poisson").fit(target.goods, support)
    pool = synthesize_pool(method, target, 6, 0, "copypaste", show_progress=False)
    for s in pool:
        assert s.meta["drawn"]["defect_source"].startswith("washer/test/")  # the defect is the washer's
        good = target.goods[s.meta["good_index"]]  # the canvas is a pcb_chip good image, changed only in the mask
        assert np.array_equal(s.image[~s.mask], good[~s.mask]) and not np.allclose(s.image[s.mask], good[s.mask])
    # grey brick defects on the RGB washer: brought to the target's channel count
    grey = load_support(few_shot_split(ds, "brick", 1, seed=0).support, ImageCache(32, channels=3))
    assert all(s.image.shape == (32, 32, 3) and np.allclose(s.image[..., 0], s.image[..., 2]) for s in grey)


def test_texture_gan_fuses_a_source_defect_into_target_texture(root):
    from defectlab.config import quick

    cache = ImageCache(32)
    ds, target = _split(root, "washer", cache)
    support = load_support(few_shot_split(ds, "brick", 1, seed=0).support, ImageCache(32, channels=cache.channels))
    with quick():
        gan = defectlab.create("texture_gan").fit(target.goods, support, np.random.default_rng(0),
                                                  foregrounds=target.foregrounds)
    s = gan(target.goods[0], np.random.default_rng(1), foreground=target.foregrounds[0])
    assert s.image.shape == target.goods[0].shape and s.mask.any() and not (s.mask & ~target.foregrounds[0]).any()
    assert np.array_equal(s.image[~s.mask], target.goods[0][~s.mask])


def test_adabldm_checkpoint_of_one_category_samples_on_another(tmp_path, root):
    from defectlab.adabldm.model import AdaBLDMModel
    from defectlab.adabldm.pairs import make_pairs
    from defectlab.adabldm.params import TrainParams, tiny_config
    from defectlab.adabldm.prompts import vocabulary_for
    from defectlab.adabldm.train import train
    from defectlab.config import quick

    cache = ImageCache(32)
    ds, washer = _split(root, "washer", cache)
    pairs = make_pairs(washer.goods, washer.support, np.random.default_rng(0), 2, 32, washer.foregrounds)
    train(AdaBLDMModel(tiny_config(vocabulary_for(pairs.prompts)), seed=0), pairs,
          TrainParams(size=32, steps=1, batch_size=1, pairs=2, unet_lr=1e-3), out=tmp_path / "ckpt",
          show_progress=False, provenance={"sources": [s.meta["source"] for s in washer.support]})
    _, pcb = _split(root, "pcb_chip", ImageCache(32))
    with quick():
        method = defectlab.create("adabldm", checkpoint=str(tmp_path / "ckpt"), size=32)
        method.fit(pcb.goods, washer.support, np.random.default_rng(0))
        s = method(pcb.goods[1], np.random.default_rng(2), foreground=pcb.foregrounds[1])
    assert s.meta["prompt"].startswith("a washer with a") and s.meta["defect_type"] in {"contamination", "crack", "scratch"}
    assert s.image.shape == pcb.goods[1].shape and not (s.mask & ~pcb.foregrounds[1]).any()
    assert np.array_equal(s.image[~s.mask], pcb.goods[1][~s.mask])  # pcb_chip outside the mask


@pytest.mark.parametrize("kwargs, message", [
    (dict(transfer_from="carpet"), "unknown category 'carpet'"),
    (dict(transfer_from="pcb_chip"), "the category benchmarked itself"),
    (dict(transfer_from="washer", transfer_types=["hole"]), "hole not among washer's defect types"),
    (dict(transfer_from="washer", methods=["cutpaste"]), "none of --methods .* learns from defects"),
    (dict(transfer_from="washer", shots=0), "--shots > 0"),
])
def test_bad_transfer_requests_fail_before_anything_is_written(tmp_path, root, kwargs, message):
    args = dict(category="pcb_chip", methods=["copypaste"], shots=1, seeds=[0], **FAST)
    args.update(kwargs)
    with pytest.raises(DefectlabError, match=message):
        run_benchmark(root, out=tmp_path / "out", format="mvtec", **args)
    assert not (tmp_path / "out").exists()


def test_a_source_category_without_defects_is_refused(tmp_path, root):
    bare = tmp_path / "bare"
    shutil.copytree(root, bare)
    for part in ("test", "ground_truth"):
        for folder in (bare / "washer" / part).iterdir():
            if folder.name != "good":
                shutil.rmtree(folder)
    with pytest.raises(DefectlabError, match="washer: the category has no defect images"):
        run_benchmark(bare, "pcb_chip", ["copypaste"], tmp_path / "out", format="mvtec", shots=1, seeds=[0],
                      transfer_from="washer", **FAST)


def test_command_line_takes_and_records_the_transfer(tmp_path, root):
    import argparse

    from defectlab.benchmark.cli import command_line, add_arguments

    args = add_arguments(argparse.ArgumentParser()).parse_args(
        ["--data", str(root), "--category", "pcb_chip", "--methods", "copypaste", "--transfer-from", "washer",
         "--transfer-types", "scratch,crack", "--out", str(tmp_path / "o")])
    assert args.transfer_from == "washer" and args.transfer_types == ["scratch", "crack"]
    assert "--transfer-from washer --transfer-types scratch,crack" in command_line(args)
