"""The downstream benchmark: split handling, errors before training, a tiny end-to-end run, resume."""
import json

import numpy as np
import pytest

import defectlab
from defectlab import DefectlabError
from defectlab.benchmark import BenchmarkConfig, run_benchmark
from defectlab.benchmark.correlation import quality_correlations
from defectlab.data import build_embedded, few_shot_split
from defectlab.benchmark.prepare import ImageCache, prepare_split, synthesize_pool
from defectlab.resize import resize_mask

METHODS = ["cutpaste", "copypaste"]  # one that needs nothing, one that reuses the few-shot defects
RUNS = ["patchcore", "fewshot", "cutpaste", "cutpaste+fewshot", "copypaste", "copypaste+fewshot"]
FAST = dict(size=32, steps=3, n_synthetic=4, threads=1, show_progress=False,
            detector={"student_width": 4, "head_width": 4, "batch_size": 4, "crop": 16})
FAST_UNET = dict(FAST, detector_name="unet", detector={"base_channels": 4, "depth": 2, "batch_size": 4})
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """brick: 6 good training images, 2 good test images, 3 defects of each of 3 types, 32 px."""
    root = tmp_path_factory.mktemp("tiny") / "embedded"
    build_embedded(root=root, size=32, n_train=6, n_test_good=2, n_test_defect=3, categories="brick")
    return root


def test_prepared_split_never_trains_on_heldout_defects(tiny_root):
    ds = defectlab.data.open_dataset(tiny_root, "mvtec")
    prep = prepare_split(few_shot_split(ds, "brick", 1, seed=0), ImageCache(24), show_progress=False)
    support = {s.meta["source"] for s in prep.support}
    assert len(support) == 3 and {s.meta["label"] for s in prep.support} == {"crack", "hole", "stain"}
    assert not support & set(prep.test_keys)
    assert prep.test_labels.count("good") == 2 and len(prep.heldout_images) == 6
    assert all(im.shape == (24, 24, 1) for im in prep.goods + prep.test_images)
    assert all(m.any() for m, lab in zip(prep.test_masks, prep.test_labels) if lab != "good")


def test_resizing_keeps_a_hair_thin_defect():
    mask = np.zeros((100, 100), bool)
    mask[:, 37] = True  # one pixel wide: nearest-neighbour resizing to 10 px would drop it
    small = resize_mask(mask, 10, keep_thin=True)
    assert small.any() and small.sum() <= 20


def test_synthetic_pool_is_reproducible_and_reports_failing_methods(tiny_root):
    ds = defectlab.data.open_dataset(tiny_root, "mvtec")
    prep = prepare_split(few_shot_split(ds, "brick", 1, seed=0), ImageCache(32), show_progress=False)
    a, b = (synthesize_pool(defectlab.create("cutpaste"), prep, 3, 0, "cutpaste", show_progress=False) for _ in range(2))
    assert all(x.mask.any() and x.image.tobytes() == y.image.tobytes() for x, y in zip(a, b))

    def refuses(image, rng, foreground=None):
        raise DefectlabError("no room for a defect")

    with pytest.raises(DefectlabError, match="refuses.*no room"):
        synthesize_pool(refuses, prep, 1, 0, "refuses", show_progress=False)


def test_a_kept_pool_resumes_with_the_same_bytes(tiny_root, tmp_path):
    ds = defectlab.data.open_dataset(tiny_root, "mvtec")
    prep = prepare_split(few_shot_split(ds, "brick", 1, seed=0), ImageCache(32), show_progress=False)
    whole = synthesize_pool(defectlab.create("cutpaste"), prep, 5, 0, "cutpaste", show_progress=False)
    calls = []
    method = defectlab.create("cutpaste")

    def counting(image, rng, foreground=None):
        calls.append(1)
        return method(image, rng, foreground=foreground)

    def killed_at_the_fourth(image, rng, foreground=None):
        if len(calls) == 3:
            raise KeyboardInterrupt
        return counting(image, rng, foreground=foreground)

    with pytest.raises(KeyboardInterrupt):
        synthesize_pool(killed_at_the_fourth, prep, 5, 0, "cutpaste", show_progress=False, keep=tmp_path / "pool")
    assert sorted(p.name for p in (tmp_path / "pool").iterdir()) == ["00000.npz", "00001.npz", "00002.npz"]
    calls.clear()  # the resumed call makes only items 3 and 4
    resumed = synthesize_pool(counting, prep, 5, 0, "cutpaste", show_progress=False, keep=tmp_path / "pool")
    assert len(calls) == 2
    assert [(s.image.tobytes(), s.mask.tobytes(), s.meta["good_index"]) for s in resumed] == \
        [(s.image.tobytes(), s.mask.tobytes(), s.meta["good_index"]) for s in whole]
    (tmp_path / "pool" / "00001.npz").write_bytes(b"not an npz")
    with pytest.raises(DefectlabError, match="00001.npz.*delete it"):
        synthesize_pool(method, prep, 5, 0, "cutpaste", show_progress=False, keep=tmp_path / "pool")


@pytest.mark.parametrize("kwargs, message", [
    (dict(methods=["cutpaste", "no_such_method"]), "unknown synthesis method 'no_such_method'"),
    (dict(category="carpet"), "unknown category 'carpet'"),
    (dict(shots=3), "brick/.* has 3 defect images; 3 shots need at least 4"),
    (dict(seeds=[]), "--seeds"),
    (dict(methods=["cutpaste", "cutpaste"]), "listed twice"),
    (dict(detector={"base": 4}), "unknown destseg parameter"),
    (dict(detector_name="unet", detector={"base": 4}), "unknown detector parameter"),
    (dict(detector_name="yolo"), "--detector"),
    (dict(quality="some"), "--quality"),
])
def test_bad_requests_fail_before_any_training(tmp_path, tiny_root, kwargs, message):
    args = dict(category="brick", methods=["cutpaste"], shots=1, seeds=[0], **FAST)
    args.update(kwargs)
    with pytest.raises(DefectlabError, match=message):
        run_benchmark(tiny_root, out=tmp_path / "out", format="mvtec", **args)
    assert not (tmp_path / "out").exists()  # nothing was written, nothing was trained


def test_refuses_a_foreign_output_folder(tmp_path, tiny_root):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(DefectlabError, match="not a benchmark output"):
        run_benchmark(tiny_root, "brick", ["cutpaste"], tmp_path / "out", format="mvtec", shots=1, seeds=[0], **FAST)


def test_tiny_benchmark_end_to_end_then_refuse_then_resume(tmp_path, tiny_root):
    out = tmp_path / "bench"
    res = run_benchmark(tiny_root, "brick", METHODS, out, format="mvtec", shots=1, seeds=[0, 1], **FAST)
    for name in ("results.json", "results.md", "config.json"):
        assert (out / name).is_file()
    for name in ("pr_curves.png", "detections.png"):
        assert (out / name).read_bytes()[:8] == PNG
    saved = json.loads((out / "results.json").read_text())
    assert saved["summary"] == res["summary"]
    assert {(r["run"], r["seed"]) for r in saved["runs"]} == {(n, s) for n in RUNS for s in (0, 1)}
    keys = {"image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "aupro", "iap", "iap90"}
    for r in saved["runs"]:
        assert keys <= set(r["metrics"])
        assert r["split"] == {"good_train": 6, "support": 3, "good_test": 2, "heldout": 6, "keep_aspect": True}
        expected = {"patchcore": 0, "fewshot": 3, "cutpaste": 4, "copypaste": 4}.get(r["run"], 4 + 3)
        assert r["train_defects"] == expected
    assert saved["summary"]["cutpaste"]["pixel_ap"]["n"] == 2
    assert set(saved["quality"]) == set(METHODS)
    assert all(np.isfinite(saved["quality"][m]["kid"]["mean"]) for m in METHODS)
    assert np.isfinite(saved["quality"]["cutpaste"]["fid"]["mean"]) and saved["quality"]["cutpaste"]["fid"]["n"] == 2
    timings = json.loads((out / "timings.json").read_text())  # apart: results.json's bytes depend on data and seeds only
    assert timings["machine"]["cpu_count"] and saved["versions"]["torch"] and timings["wall_seconds"] > 0
    assert not {"machine", "wall_seconds"} & set(saved) and not any("train_seconds" in r for r in saved["runs"])
    assert set(timings["run_seconds"]) == {f"{n}__seed{s}" for n in RUNS for s in (0, 1)}
    assert not list((out / "pools").rglob("*.npz"))  # kept pools are for a resume only: gone once their runs are written
    md = (out / "results.md").read_text()
    assert all(f"| `{n}` |" in md for n in RUNS) and "rank correlation" in md

    with pytest.raises(DefectlabError, match="--overwrite"):
        run_benchmark(tiny_root, "brick", METHODS, out, format="mvtec", shots=1, seeds=[0, 1], **FAST)
    with pytest.raises(DefectlabError, match="different size"):
        (out / "results.json").unlink()
        run_benchmark(tiny_root, "brick", METHODS, out, format="mvtec", shots=1, seeds=[0, 1], **{**FAST, "size": 40})

    # an interrupted benchmark: one run missing -> only it is redone, with the very same numbers
    (out / "runs" / "copypaste+fewshot__seed1.json").unlink()
    kept = (out / "runs" / "cutpaste__seed0.json").stat().st_mtime_ns
    again = run_benchmark(tiny_root, "brick", METHODS, out, format="mvtec", shots=1, seeds=[0, 1], **FAST)
    assert (out / "runs" / "cutpaste__seed0.json").stat().st_mtime_ns == kept
    assert again["summary"] == res["summary"]

    stale = out / "pools" / "cutpaste" / "seed-0" / "00000.npz"  # left by a killed run of the old configuration
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    run_benchmark(tiny_root, "brick", ["cutpaste"], out, format="mvtec", shots=1, seeds=[0], overwrite=True, **FAST)
    assert not stale.exists()
    assert not (out / "runs" / "copypaste__seed0.json").exists()


def test_rank_correlation_of_quality_with_detection():
    cfg = BenchmarkConfig(category="x", methods=["a", "b", "c", "d"])
    ap = {"a": 0.9, "b": 0.5, "c": 0.3, "d": 0.1}
    summary = {m: {"pixel_ap": {"mean": v}, "iap90": {"mean": v / 2}} for m, v in ap.items()}
    quality = {m: {"kid": {"mean": 1 - v}, "fid": {"mean": 100 * (1 - v)}} for m, v in ap.items()}
    rows = quality_correlations(cfg, summary, quality)
    assert {(r["quality"], r["detection"]) for r in rows} == {(q, d) for q in ("kid", "fid") for d in ("pixel_ap", "iap90")}
    for r in rows:  # better quality (lower KID/FID) goes with better detection: a perfect negative rank order
        assert r["n_methods"] == 4
        assert min(v for k, v in r.items() if isinstance(v, float)) == pytest.approx(-1.0)


def test_cli_subcommand(tmp_path, tiny_root, capsys):
    from defectlab.cli import main

    base = ["benchmark", "--data", str(tiny_root), "--format", "mvtec", "--category", "brick", "--shots", "1",
            "--seeds", "0", "--size", "32", "--detector-steps", "2", "--n-synthetic", "2", "--threads", "1", "--quality", "none"]
    assert main(base + ["--methods", "cutpaste,nope", "--out", str(tmp_path / "a")]) == 2
    assert "unknown synthesis method 'nope'" in capsys.readouterr().err
    assert main(base + ["--methods", "cutpaste", "--out", str(tmp_path / "b")]) == 0
    assert "| `cutpaste+fewshot` |" in capsys.readouterr().out
    assert "defectlab benchmark --data" in (tmp_path / "b" / "results.md").read_text()


def test_feature_methods_are_tested_through_their_own_score_maps(tmp_path, tiny_root):
    """SimpleNet returns images unchanged: its one run tests `score()`, not a detector trained on no-op samples."""
    from defectlab.benchmark.runs import build_method
    from defectlab.config import quick
    from defectlab.detect.detector import torch_threads
    from defectlab.metrics.detection import evaluate

    out = tmp_path / "bench"
    with quick():
        res = run_benchmark(tiny_root, "brick", ["cutpaste", "simplenet"], out, format="mvtec", shots=1, seeds=[0],
                            quality="none", **FAST)
        assert {r["run"] for r in res["runs"]} == {"patchcore", "fewshot", "cutpaste", "cutpaste+fewshot", "simplenet"}
        run = next(r for r in res["runs"] if r["run"] == "simplenet")
        assert run["train_defects"] == 0 and run["detector"] == "the method's own score()"
        # the same fit (same seed) scored by hand gives the same rank metrics: min-max scaling changes none
        ds = defectlab.data.open_dataset(tiny_root, "mvtec")
        prep = prepare_split(few_shot_split(ds, "brick", 1, seed=0), ImageCache(32), show_progress=False)
        with torch_threads(1):
            method = build_method("simplenet", prep, 0)
    with torch_threads(1):
        maps = np.stack([method.score(im) for im in prep.test_images])
    expected = evaluate(np.stack(prep.test_masks), maps, scores=maps.reshape(len(maps), -1).max(axis=1))
    for key in ("image_auroc", "pixel_auroc", "pixel_ap", "aupro"):
        assert run["metrics"][key] == pytest.approx(expected[key], abs=1e-6)
    assert "| `simplenet` |" in (out / "results.md").read_text()


def test_method_parameters_reach_the_method_and_are_checked_first(tmp_path, tiny_root, capsys):
    from defectlab.cli import main

    base = ["benchmark", "--data", str(tiny_root), "--format", "mvtec", "--category", "brick", "--shots", "1",
            "--seeds", "0", "--size", "32", "--detector-steps", "2", "--n-synthetic", "2", "--threads", "1", "--quality", "none",
            "--methods", "cutpaste"]
    assert main(base + ["--method-param", "cutpaste.no_such=1", "--out", str(tmp_path / "a")]) == 2
    assert "cutpaste: unknown parameter(s) no_such" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert main(base + ["--method-param", "draem.steps=3", "--out", str(tmp_path / "b")]) == 2
    assert "'draem' is not among --methods" in capsys.readouterr().err
    out = tmp_path / "c"
    assert main(base + ["--method-param", "cutpaste.area_ratio=[0.3, 0.4]", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method_params"] == {"cutpaste": {"area_ratio": [0.3, 0.4]}}
    assert "--method-param 'cutpaste.area_ratio=[0.3, 0.4]'" in (out / "results.md").read_text()
    # a different parameter is a different benchmark: no silent resume into the same folder
    (out / "results.json").unlink()
    assert main(base + ["--method-param", "cutpaste.area_ratio=[0.1, 0.2]", "--out", str(out)]) == 2
    assert "different method_params" in capsys.readouterr().err


def test_unet_detector_and_squashed_images_still_run(tmp_path, tiny_root):
    res = run_benchmark(tiny_root, "brick", ["cutpaste"], tmp_path / "u", format="mvtec", shots=1, seeds=[0],
                        quality="none", keep_aspect=False, patchcore=False, **FAST_UNET)
    assert {r["run"] for r in res["runs"]} == {"fewshot", "cutpaste", "cutpaste+fewshot"}
    assert all(r["detector"] == "unet" and not r["split"]["keep_aspect"] for r in res["runs"])


def test_paired_runs_start_from_one_initialisation(tiny_root, monkeypatch):
    """fewshot and method+fewshot of a seed get the same init_rng, whatever the run's data order."""
    from defectlab.benchmark.detector_runs import train_and_test
    from defectlab.detect import DeSTSegDetector

    seen = []
    original = DeSTSegDetector.fit

    def spy(self, goods, defects=(), rng=None, **kw):
        seen.append(kw["init_rng"].bit_generator.state["state"]["state"])
        return original(self, goods, defects, rng, **kw)

    monkeypatch.setattr(DeSTSegDetector, "fit", spy)
    cfg = BenchmarkConfig(category="brick", methods=["cutpaste"], steps=2, detector=FAST["detector"])
    ds = defectlab.data.open_dataset(tiny_root, "mvtec")
    prep = prepare_split(few_shot_split(ds, "brick", 1, seed=0), ImageCache(32), show_progress=False)
    import tempfile
    from pathlib import Path
    out = Path(tempfile.mkdtemp())
    (out / "runs").mkdir()
    for run in ("fewshot", "cutpaste+fewshot"):
        train_and_test(run, 0, cfg, prep, prep.support, out, False)
    assert len(seen) == 2 and seen[0] == seen[1]


def test_a_checkpoint_trained_on_a_test_image_is_refused(tiny_root, monkeypatch):
    """AdaBLDM with `checkpoint=`: the benchmark refuses a model whose training defects include a held-out image."""
    from types import SimpleNamespace

    from defectlab import methods
    from defectlab.benchmark.runs import build_method
    from defectlab.adabldm import checkpoint

    ds = defectlab.data.open_dataset(tiny_root, "mvtec")
    prep = prepare_split(few_shot_split(ds, "brick", 1, seed=0), ImageCache(32), show_progress=False)
    leaked = next(k for k, lab in zip(prep.test_keys, prep.test_labels) if lab != "good")
    monkeypatch.setattr(checkpoint, "training_sources", lambda folder: [leaked])
    monkeypatch.setattr(checkpoint, "resolve", lambda folder: folder)
    fake = SimpleNamespace(params=SimpleNamespace(checkpoint="runs/adabldm"), needs_fit=False)
    monkeypatch.setattr(methods, "create", lambda name, **kw: fake)
    with pytest.raises(DefectlabError, match="trained on held-out test image"):
        build_method("adabldm", prep, 0)
    monkeypatch.setattr(checkpoint, "training_sources", lambda folder: [])
    assert build_method("adabldm", prep, 0) is fake


def test_adabldm_fit_in_the_benchmark_keeps_resumable_checkpoints(tiny_root, tmp_path, monkeypatch):
    """The benchmark gives AdaBLDM a work folder per seed: a second fit resumes from the finished checkpoint
    (no step is trained again) and draws the same bytes; a caller's own `work_dir` is kept."""
    from defectlab.adabldm import checkpoint, train as train_module
    from defectlab.benchmark.runs import build_method

    monkeypatch.setenv("DEFECTLAB_QUICK", "1")
    ds = defectlab.data.open_dataset(tiny_root, "mvtec")
    prep = prepare_split(few_shot_split(ds, "brick", 1, seed=0), ImageCache(32), show_progress=False)
    work = tmp_path / "models" / "adabldm" / "seed-0"
    first = build_method("adabldm", prep, 0, {"size": 32}, work_dir=work)
    state = checkpoint.read_state(checkpoint.resolve(work))
    assert state["step"] == first.params.train.steps
    assert sorted(state["sources"]) == sorted(s.meta["source"] for s in prep.support)
    steps = []
    real_loss = train_module._Denoiser.forward
    monkeypatch.setattr(train_module._Denoiser, "forward", lambda self, *a, **k: (steps.append(1), real_loss(self, *a, **k))[1])
    again = build_method("adabldm", prep, 0, {"size": 32}, work_dir=work)
    assert not steps
    a, b = (m(prep.goods[0], np.random.default_rng(3), foreground=prep.foregrounds[0]) for m in (first, again))
    assert a.image.tobytes() == b.image.tobytes()
    mine = build_method("adabldm", prep, 0, {"size": 32, "work_dir": str(tmp_path / "mine")}, work_dir=work)
    assert mine.params.work_dir == str(tmp_path / "mine") and (tmp_path / "mine").is_dir()


def test_a_finished_benchmark_grows_by_seeds_but_is_not_redone(tmp_path, tiny_root):
    out = tmp_path / "bench"
    args = dict(format="mvtec", shots=1, **FAST)
    run_benchmark(tiny_root, "brick", ["cutpaste"], out, seeds=[1], **args)
    kept = (out / "runs" / "cutpaste__seed1.json").stat().st_mtime_ns
    grown = run_benchmark(tiny_root, "brick", ["cutpaste"], out, seeds=[0, 1], **args)  # one seed more: only it runs
    assert (out / "runs" / "cutpaste__seed1.json").stat().st_mtime_ns == kept
    assert {r["seed"] for r in grown["runs"]} == {0, 1} and grown["summary"]["cutpaste"]["pixel_ap"]["n"] == 2
    for fewer in ([0], [0, 1]):  # dropping a seed, or asking again for the same: still refused
        with pytest.raises(DefectlabError, match="already holds benchmark results"):
            run_benchmark(tiny_root, "brick", ["cutpaste"], out, seeds=fewer, **args)
