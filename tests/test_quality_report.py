"""The quality <-> usefulness analysis: per-image statistics, binned metrics, the bootstrap interval over seeds
and images, the scatter plot and the report's labelled quality columns."""
import json

import numpy as np
import pytest

from defectlab.benchmark import BenchmarkConfig
from defectlab.benchmark.correlation import quality_correlations
from defectlab.benchmark.folder import save_image_stats
from defectlab.benchmark.results import load_runs
from defectlab.benchmark.tables import markdown_table
from defectlab.metrics import correlation, detection

PNG = b"\x89PNG\r\n\x1a\n"


def case(rng, n=12, size=32, strength=0.8):
    masks = np.zeros((n, size, size), bool)
    for i in range(n // 2, n):
        y, x = rng.integers(0, size - 8, 2)
        masks[i, y:y + rng.integers(3, 8), x:x + rng.integers(3, 8)] = True
    maps = np.clip(0.5 * rng.random((n, size, size)) + strength * masks * rng.random((n, size, size)), 0, 1)
    return masks, maps.astype(np.float32)


def test_binned_metrics_approximate_the_exact_ones_and_follow_weights(rng):
    masks, maps = case(rng)
    stats = detection.image_stats(masks, maps)
    exact = detection.evaluate(masks, maps)
    binned = detection.binned_metrics(stats)
    for k in ("pixel_ap", "iap", "iap90"):
        assert binned[k] == pytest.approx(exact[k], abs=0.02), k
    # counting an image twice = the data set with that image duplicated
    w = np.ones(len(masks), int)
    w[7] = 2
    dup = np.concatenate([np.arange(len(masks)), [7]])
    assert detection.binned_metrics(stats, w)["pixel_ap"] == pytest.approx(
        detection.binned_metrics(detection.image_stats(masks[dup], maps[dup]))["pixel_ap"], abs=1e-12)
    assert stats["inst_image"].tolist() == list(range(6, 12))


def test_bootstrap_interval_contains_point_and_is_seeded():
    from scipy.stats import kendalltau, spearmanr

    # quality exactly anti-ordered with AP for every seed: rho = -1 and every resample agrees
    ap = {"a": 0.9, "b": 0.6, "c": 0.4, "d": 0.1}
    quality = {"kid": {m: {0: 1 - v, 1: 1.1 - v} for m, v in ap.items()}}

    def det(m, s, w):
        return {"pixel_ap": ap[m] + 0.01 * s}

    out = correlation.bootstrap_rank_correlations(quality, det, [0, 1], {0: 5, 1: 5}, rng=np.random.default_rng(0),
                                                  resamples=50)[("kid", "pixel_ap")]
    assert out["spearman"] == pytest.approx(-1) and out["spearman_ci"] == pytest.approx([-1, -1])
    assert out["n_methods"] == 4 and out["n_boot"] == 50 and out["spearman_ci_widened"] is False
    # noisy detection values: the interval widens, a fixed seed repeats it, and the point values are scipy's
    noise = np.random.default_rng(3).normal(0, 1.0, (4, 2, 7))
    noise[0, :, :3] = 0.0  # ties in some resamples

    def noisy(m, s, w):
        w = np.ones(7) if w is None else w
        return {"pixel_ap": ap[m] + float(np.average(noise["abcd".index(m), s], weights=w + 1e-9))}

    args = (quality, noisy, [0, 1], {0: 7, 1: 7})
    a = correlation.bootstrap_rank_correlations(*args, rng=np.random.default_rng(1), resamples=200)
    b = correlation.bootstrap_rank_correlations(*args, rng=np.random.default_rng(1), resamples=200)
    a, b = a[("kid", "pixel_ap")], b[("kid", "pixel_ap")]
    assert a == b and a["spearman_ci"][1] - a["spearman_ci"][0] > 0.5
    for name in ("spearman", "kendall"):  # the interval holds the value reported beside it
        assert a[f"{name}_ci"][0] <= a[name] <= a[f"{name}_ci"][1]
    # a narrow central interval of a rank statistic can miss the point value: it is widened to hold it, and says so
    # (here rho = -0.8 while most resamples give -0.6)
    widened = 0
    for seed in range(10):
        c = correlation.bootstrap_rank_correlations(*args, rng=np.random.default_rng(seed), resamples=100,
                                                    level=0.05)[("kid", "pixel_ap")]
        for name in ("spearman", "kendall"):
            lo, hi = c[f"{name}_ci"]
            assert lo <= c[name] <= hi
            assert not c[f"{name}_ci_widened"] or c[name] in (lo, hi)
            widened += c[f"{name}_ci_widened"]
    assert widened > 0
    q = [np.mean([quality["kid"][m][s] for s in (0, 1)]) for m in "abcd"]
    d = [np.mean([noisy(m, s, None)["pixel_ap"] for s in (0, 1)]) for m in "abcd"]
    assert a["spearman"] == pytest.approx(spearmanr(q, d).statistic)
    assert a["kendall"] == pytest.approx(kendalltau(q, d).statistic)
    rows = np.array([[1.0, 2, 2, 3], [4, 3, 2, 1]])
    other = np.array([[1.0, 1, 2, 5], [1, 2, 2, 3]])
    for r, o in zip(rows, other):
        assert correlation._kendall_rows(r[None], o[None])[0] == pytest.approx(kendalltau(r, o).statistic)
        assert correlation._spearman_rows(r[None], o[None])[0] == pytest.approx(spearmanr(r, o).statistic)


def test_benchmark_correlations_with_bootstrap_scatter_and_labelled_columns(tmp_path, rng):
    out = tmp_path / "bench"
    (out / "runs").mkdir(parents=True)
    methods = ["m1", "m2", "m3", "m4"]
    cfg = BenchmarkConfig(category="x", methods=methods, seeds=[0, 1], shots=0, patchcore=False)
    for k, m in enumerate(methods):
        for s in (0, 1):
            masks, maps = case(np.random.default_rng([k, s]), strength=0.2 + 0.25 * k)
            metrics = detection.evaluate(masks, maps)
            (out / "runs" / f"{m}__seed{s}.json").write_text(json.dumps(
                {"run": m, "method": m, "seed": s, "metrics": metrics, "train_seconds": 1, "test_seconds": 1}))
            save_image_stats(out, m, s, masks, maps)
            q = {"method": m, "seed": s, "kid": 0.5 - 0.1 * k + 0.01 * s, "fid": 100 - 10 * k, "isc": 1 + k,
                 "isc_network": "IS (EfficientNet-Lite0)", "ic_lpips": 0.1 * k, "ic_lpips_network": "ST-LPIPS alex",
                 "n_real": 6, "n_fake": 8}
            (out / "runs" / f"quality__{m}__seed{s}.json").write_text(json.dumps(q))
    runs, quality = load_runs(cfg, out)
    assert quality["m1"]["kid"]["n"] == 2 and quality["m1"]["isc_network"] == "IS (EfficientNet-Lite0)"
    from defectlab.benchmark.tables import summarize

    summary = summarize(runs)
    rows = quality_correlations(cfg, summary, quality, out)
    kid_ap = next(r for r in rows if r["quality"] == "kid" and r["detection"] == "pixel_ap")
    assert kid_ap["spearman"] == pytest.approx(-1.0)  # stronger maps were given lower KID
    assert kid_ap["bootstrap"] == "seeds and test images" and kid_ap["n_seeds"] == 2
    lo, hi = kid_ap["spearman_ci"]
    assert lo <= kid_ap["spearman"] <= hi
    labels = {r["label"] for r in rows}
    assert "IS (EfficientNet-Lite0)" in labels and "IC-LPIPS (ST-LPIPS alex)" in labels
    assert {r["detection"] for r in rows} == {"pixel_ap", "iap", "iap90"}
    assert (out / "quality_vs_ap.png").read_bytes()[:8] == PNG
    table = markdown_table(summary, quality, methods)
    assert "IC-LPIPS (ST-LPIPS alex) ↑" in table and "| IS (EfficientNet-Lite0) |" in table
    assert "FID ↓ (n 6/8)" in table
    # without per-image statistics the bootstrap falls back to seeds only
    for f in (out / "runs").glob("*.stats.npz"):
        f.unlink()
    rows = quality_correlations(cfg, summary, quality, out)
    assert rows[0]["bootstrap"] == "seeds only"


def test_region_table_flags_far_less_visible_methods():
    from defectlab.benchmark.tables import region_table

    def ms(v):
        return {"mean": v, "std": 0.0, "n": 2}

    quality = {"good": {"region_n_fake": ms(40), "region_n_real": ms(12), "region_kid": ms(0.01),
                        "visibility_fake": ms(3.0), "visibility_ratio": ms(0.9)},
               "faint": {"region_n_fake": ms(40), "region_n_real": ms(12), "region_kid": ms(0.002),
                         "visibility_fake": ms(0.4), "visibility_ratio": ms(0.12)}}
    table = region_table(quality, ["good", "faint"])
    assert "| `faint` ⚠ |" in table and "| `good` |" in table and "40 / 12" in table
    assert "TRTS" not in table  # columns only for what was measured
    assert region_table({}, ["good"]) == ""


def test_correlation_with_the_downstream_gain(tmp_path):
    from defectlab.benchmark.tables import summarize

    out = tmp_path / "bench"
    (out / "runs").mkdir(parents=True)
    methods = ["cutpaste", "draem", "bezier"]  # real names: run_names() asks the registry
    cfg = BenchmarkConfig(category="x", methods=methods, seeds=[0], shots=1, patchcore=False)
    runs = ["fewshot"] + methods + [f"{m}+fewshot" for m in methods]
    for k, run in enumerate(runs):
        strength = {"fewshot": 0.4}.get(run, 0.2 + 0.2 * (k % 4))
        masks, maps = case(np.random.default_rng([k, 0]), strength=strength)
        (out / "runs" / f"{run}__seed0.json").write_text(json.dumps(
            {"run": run, "method": run.split("+")[0], "seed": 0, "metrics": detection.evaluate(masks, maps),
             "train_seconds": 1, "test_seconds": 1}))
        save_image_stats(out, run, 0, masks, maps)
    for k, m in enumerate(methods):
        (out / "runs" / f"quality__{m}__seed0.json").write_text(json.dumps({"method": m, "seed": 0, "kid": float(k)}))
    runs_loaded, quality = load_runs(cfg, out)
    summary = summarize(runs_loaded)
    rows = quality_correlations(cfg, summary, quality, out)
    gain = next(r for r in rows if r["detection"] == "pixel_ap_gain")
    expect = {m: summary[f"{m}+fewshot"]["pixel_ap"]["mean"] - summary["fewshot"]["pixel_ap"]["mean"] for m in methods}
    rho, _, _ = correlation.rank_correlation({m: float(k) for k, m in enumerate(methods)}, expect)
    assert gain["spearman"] == pytest.approx(rho) and gain["bootstrap"] == "seeds and test images"
    # three methods: a point value, but no interval or p offered as evidence
    assert gain["spearman_ci"] is None and gain["spearman_p"] is None and gain["verdict"] == "too few to say"


def _results(p_stored: bool) -> dict:
    """A results.json content: four methods whose KID ranks them exactly against pixel AP, IS not at all."""
    methods = ["a", "b", "c", "d"]
    ms = lambda v: {"mean": v, "std": 0.01, "n": 2}  # noqa: E731
    summary = {m: {"pixel_ap": ms(0.1 * (i + 1))} for i, m in enumerate(methods)}
    summary["fewshot"] = {"pixel_ap": ms(0.2)}
    summary.update({f"{m}+fewshot": {"pixel_ap": ms(0.2 + 0.05 * i)} for i, m in enumerate(methods)})
    quality = {m: {"kid": ms(0.4 - 0.1 * i), "isc": ms([2.0, 1.0, 4.0, 3.0][i])} for i, m in enumerate(methods)}
    rows = [{"quality": "kid", "label": "KID", "detection": "pixel_ap", "n_methods": 4, "spearman": -1.0,
             "spearman_ci": [-1.0, -0.8]},
            {"quality": "isc", "label": "IS (EfficientNet-Lite0)", "detection": "pixel_ap", "n_methods": 4,
             "spearman": 0.6, "spearman_ci": [-0.4, 0.8]},
            {"quality": "kid", "label": "KID", "detection": "pixel_ap_gain", "n_methods": 4, "spearman": -1.0,
             "spearman_ci": None}]
    if p_stored:
        for r in rows:
            r["spearman_p"] = 0.5
    return {"config": {"methods": methods}, "summary": summary, "quality": quality, "correlation": rows}


def test_correlation_forest_one_row_per_metric_with_interval_p_and_zero_line():
    import matplotlib.pyplot as plt

    from defectlab.benchmark import correlation_forest
    from defectlab.benchmark.correlation import correlation_rows

    rows = correlation_rows(_results(p_stored=False))
    assert [r["label"] for r in rows] == ["KID", "IS (EfficientNet-Lite0)"]
    assert rows[0]["p"] == pytest.approx(2 / 24)  # recomputed from the means: exact over the 4! orderings
    assert rows[1]["ci"] == [-0.4, 0.8] and 0 < rows[1]["p"] <= 1
    wrong = _results(p_stored=False)
    wrong["correlation"][1]["spearman"] = 0.4  # not what the stored means give: no p is made up for it
    assert correlation_rows(wrong)[1]["p"] is None
    assert [r["p"] for r in correlation_rows(_results(p_stored=True))] == [0.5, 0.5]  # the stored p is kept
    fig = correlation_forest(_results(p_stored=False), title="toy")
    left, right = fig.axes
    assert [t.get_text() for t in left.get_yticklabels()] == ["KID", "IS (EfficientNet-Lite0)"]
    texts = [t.get_text() for t in left.texts]
    assert texts[0] == "-1.00 [-1.00, -0.80]  p 0.083" and texts[1].startswith("+0.60 [-0.40, +0.80]  p 0.")
    assert right.get_title() == "vs pixel AP gain over fewshot" and [t.get_text() for t in right.texts] == ["-1.00  p 0.083"]  # no interval
    assert any(list(line.get_xdata()) == [0, 0] for line in left.get_lines())  # the zero line
    plt.close(fig)
    assert correlation_forest({**_results(False), "correlation": []}) is None


def test_scatter_figure_colours_each_method_alike_in_every_panel_with_a_legend():
    import matplotlib.pyplot as plt

    points = {"KID ↓": {"a": (0.1, 0.01, 0.5, 0.02), "b": (0.2, 0.01, 0.3, 0.02)},
              "IS": {"b": (1.5, 0.1, 0.3, 0.02), "a": (1.2, 0.1, 0.5, 0.02)}}
    fig = correlation.scatter_figure(points, "pixel AP")
    panels = [ax for ax in fig.axes if ax.get_xlabel()]
    assert [ax.get_xlabel() for ax in panels] == ["KID ↓", "IS"] and all(ax.get_ylabel() == "pixel AP" for ax in panels)
    colour = lambda ax, m: next(t.get_color() for t in ax.texts if t.get_text() == m)  # noqa: E731
    assert colour(panels[0], "a") == colour(panels[1], "a") != colour(panels[0], "b")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b"]
    plt.close(fig)


def test_results_md_tables_fit_a_page_and_say_how_many_seeds():
    """No table wider than 8 columns (detection and quality apart, region and visibility apart), quality once per
    method, "one seed" instead of a spread nobody measured, no empty correlation section."""
    from defectlab.benchmark.results import results_markdown
    from defectlab.benchmark.tables import summarize

    keys = ("image_auroc", "pixel_auroc", "pixel_ap", "iap", "iap90", "aupro")
    runs = [{"run": r, "seed": 0, "metrics": {k: 0.5 for k in keys}, "split": {"heldout": 3, "good_test": 2,
                                                                                "good_train": 6}}
            for r in ("fewshot", "cutpaste", "cutpaste+fewshot")]
    one = lambda v: {"mean": v, "std": 0.0, "n": 1}  # noqa: E731
    quality = {"cutpaste": {k: one(0.1) for k in ("kid", "fid", "domain_frechet", "domain_kernel", "ic_lpips", "isc",
                                                   "region_kid", "region_fid", "region_domain_frechet",
                                                   "region_ic_lpips", "visibility_fake", "visibility_ratio",
                                                   "trts_pixel_ap", "trts_aupro")}}
    quality["cutpaste"].update(region_n_fake=one(20), region_n_real=one(3))
    cfg = BenchmarkConfig(category="x", methods=["cutpaste"], seeds=[0], shots=1, patchcore=False)
    md = results_markdown(cfg, {"runs": runs, "summary": summarize(runs), "quality": quality, "format": "mvtec",
                                "correlation": [], "machine": {}, "wall_seconds": 1.0, "compute_seconds": 1.0})
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert rows and max(line.count("|") - 1 for line in rows) <= 8
    assert "## Detection (one seed)" in md and "mean ± std over" not in md
    import re

    # detection, quality, region, visibility (flagged: 0.1 of the real defects' visibility)
    assert [bool(re.match(r"\| `cutpaste` ⚠ \|", line)) for line in rows if re.match(r"\| `cutpaste`( ⚠)? \|", line)] \
        == [False, False, True, True]
    assert "| `cutpaste+fewshot` | 0.500 |" in md and "`cutpaste+fewshot` | 0.1000" not in md
    assert "## Quality vs detection" not in md and "No rank correlation" in md
    two = BenchmarkConfig(category="x", methods=["cutpaste"], seeds=[0, 1], shots=1, patchcore=False)
    both = runs + [dict(r, seed=1) for r in runs]
    md = results_markdown(two, {"runs": both, "summary": summarize(both), "quality": {}, "format": "mvtec",
                                "correlation": [], "machine": {}, "wall_seconds": 1.0, "compute_seconds": 1.0})
    assert "## Detection (mean ± std over 2 seeds)" in md
