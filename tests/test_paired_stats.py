"""Statistics that carry claims: paired differences to `fewshot` over seeds (sign-flip p, bootstrap interval, Holm,
verdict words), detector agreement, exact permutation p of rank correlations over methods, "too few to say"."""
import itertools
import json
import math

import numpy as np
import pytest

from defectlab.benchmark import BenchmarkConfig
from defectlab.benchmark.correlation import quality_correlations
from defectlab.metrics import correlation
from defectlab.metrics.paired import (HELPS, HURTS, NO_DIFFERENCE, detector_agreement, holm, paired_difference,
                                      paired_table, seeds_needed, sign_flip_p, verdict)


def _paired(diffs, rng=None, **kw):
    values = {s: float(d) for s, d in enumerate(diffs)}
    return paired_difference(values, {s: 0.0 for s in values}, rng=rng or np.random.default_rng(0), **kw)


def _brute_sign_flip(d):
    d = np.asarray(d, float)
    obs = abs(d.mean())
    hits = [abs(np.mean(np.array(s) * d)) >= obs - 1e-12 for s in itertools.product((-1, 1), repeat=len(d))]
    return sum(hits) / len(hits)


# ---------------------------------------------------------------- sign-flip p

def test_sign_flip_p_of_three_positive_differences_is_two_eighths():
    # only +++ and --- reach |mean| = 2 among the 8 sign vectors
    out = _paired([1, 2, 3])
    assert out["p"] == 2 / 8 and out["mean"] == pytest.approx(2.0) and out["n_seeds"] == 3
    assert out["per_seed"] == {0: 1.0, 1: 2.0, 2: 3.0}


def test_five_seeds_cannot_reach_p_below_005():
    out = _paired([0.1, 0.2, 0.15, 0.3, 0.25])
    assert out["p"] == 0.0625 and out["min_p"] == 0.0625  # 2 / 32: every difference positive is the best case
    assert verdict(out["mean"], out["ci"], out["p"]) == NO_DIFFERENCE
    assert seeds_needed(1) == 6 and seeds_needed(2) == 7  # 2/64 < 0.05; 2 * 2/128 < 0.05 but 2 * 2/64 is not


def test_sign_flip_p_matches_brute_force_with_ties_and_a_zero():
    d = [0.3, -0.1, 0.0, 0.25, 0.1, -0.1, 0.4]  # a zero and two equal magnitudes of opposite sign
    assert sign_flip_p(d) == pytest.approx(_brute_sign_flip(d), abs=1e-15)
    noisy = np.random.default_rng(5).normal(0.1, 0.3, 9)
    assert sign_flip_p(noisy) == pytest.approx(_brute_sign_flip(noisy), abs=1e-15)
    # a zero difference cannot flip: the smallest attainable p is that of the non-zero ones
    assert _paired([0.0, 1.0, 2.0])["min_p"] == 2 / 4 and _paired([0.0, 0.0])["min_p"] == 1.0


def test_monte_carlo_sign_flip_beyond_16_seeds_is_seeded_and_near_the_exact_p():
    d = np.random.default_rng(2).normal(0.15, 1.0, 17)
    signs = ((np.arange(2 ** 17)[:, None] >> np.arange(17)) & 1) * 2.0 - 1.0  # exact, computed here by hand
    exact = np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-9)
    a = sign_flip_p(d, rng=np.random.default_rng(1), resamples=20000)
    assert a == sign_flip_p(d, rng=np.random.default_rng(1), resamples=20000)
    assert a == pytest.approx(exact, abs=0.015) and 0.05 < exact < 0.95
    # all 20 differences positive: no random sign vector reaches them, p = 1 / (1 + B)
    assert sign_flip_p(np.ones(20), rng=np.random.default_rng(1), resamples=999) == 1 / 1000


def test_no_common_seed_one_seed_and_non_finite_values():
    empty = paired_difference({0: 0.5}, {1: 0.2}, rng=np.random.default_rng(0))
    assert empty["n_seeds"] == 0 and empty["mean"] is None and empty["p"] is None
    one = paired_difference({0: 0.5, 1: float("nan")}, {0: 0.2, 1: 0.3}, rng=np.random.default_rng(0))
    assert one["n_seeds"] == 1 and one["p"] == 1.0 and one["mean"] == pytest.approx(0.3)
    assert one["ci"] == pytest.approx([0.3, 0.3])


# ---------------------------------------------------------------- bootstrap interval

def test_paired_bootstrap_interval_always_contains_the_estimate_on_skewed_data():
    rng = np.random.default_rng(11)
    widened = 0
    for i in range(200):
        n = 1 + i % 5
        diffs = rng.lognormal(0, 2.0, n) - rng.lognormal(0, 0.5, n)  # right-skewed differences
        level = (0.95, 0.5, 0.01)[i % 3]  # the narrowest central intervals miss a skewed mean most often
        out = _paired(diffs, rng=np.random.default_rng(i), resamples=300, level=level)
        lo, hi = out["ci"]
        assert lo <= out["mean"] <= hi, (diffs, out)
        widened += out["ci_widened"]
    assert widened > 0  # the percentile interval did miss some: the widening was needed, not idle


def test_bootstrap_over_seeds_is_seeded():
    diffs = [0.1, -0.05, 0.3, 0.2]
    assert _paired(diffs, rng=np.random.default_rng(4)) == _paired(diffs, rng=np.random.default_rng(4))


def test_rank_correlation_bootstrap_interval_contains_the_estimate_with_one_to_five_seeds():
    rng = np.random.default_rng(7)
    widened = 0
    for i in range(40):
        n_seeds, methods = 1 + i % 5, "abcde"[: 4 + i % 2]
        seeds = list(range(n_seeds))
        quality = {"kid": {m: {s: float(rng.lognormal()) for s in seeds} for m in methods}}
        per_image = {(m, s): rng.lognormal(0, 1.5, 6) for m in methods for s in seeds}

        def det(m, s, w, per_image=per_image):
            return {"pixel_ap": float(np.average(per_image[m, s], weights=np.ones(6) if w is None else w + 1e-12))}

        out = correlation.bootstrap_rank_correlations(quality, det, seeds, {s: 6 for s in seeds}, resamples=100,
                                                      rng=np.random.default_rng(i), level=(0.95, 0.2)[i % 2])
        row = out[("kid", "pixel_ap")]
        for name in ("spearman", "kendall"):
            lo, hi = row[f"{name}_ci"]
            assert lo <= row[name] <= hi, (name, row)
            widened += row[f"{name}_ci_widened"]
    assert widened > 0


# ---------------------------------------------------------------- Holm, verdict

def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> made monotone: 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm({"a": 0.5, "b": None, "c": 0.6})  # None passes and does not count: m = 2
    assert out["b"] is None and out["a"] == 1.0 and out["c"] == 1.0  # capped at 1
    raw = list(np.random.default_rng(3).random(12) ** 3)
    adj = holm(raw)
    order = np.argsort(raw)
    assert all(a >= p for a, p in zip(adj, raw)) and np.all(np.diff(np.array(adj)[order]) >= 0)


def test_verdict_words_on_constructed_runs():
    rng = np.random.default_rng(9)
    seeds = range(9)
    base = {s: {"pixel_ap": 0.3 + 0.05 * rng.standard_normal()} for s in seeds}
    noise = [0.02, -0.03, 0.01, -0.01, 0.03, -0.02, 0.015, -0.025, 0.005]
    per_seed = {"fewshot": base,
                "good+fewshot": {s: {"pixel_ap": base[s]["pixel_ap"] + 0.1 + 0.01 * rng.standard_normal()} for s in seeds},
                "bad": {s: {"pixel_ap": base[s]["pixel_ap"] - 0.1 + 0.01 * rng.standard_normal()} for s in seeds},
                "same": {s: {"pixel_ap": base[s]["pixel_ap"] + noise[s]} for s in seeds}}
    table = paired_table(per_seed, metrics=("pixel_ap",), rng=np.random.default_rng(0), resamples=2000)
    assert set(table) == {"good+fewshot", "bad", "same"}
    # 9 seeds of one sign: p = 2/512, Holm over 3 runs keeps it below 0.05
    assert table["good+fewshot"]["pixel_ap"]["p"] == 2 / 512
    assert table["good+fewshot"]["pixel_ap"]["p_holm"] == pytest.approx(3 * 2 / 512)
    assert table["good+fewshot"]["pixel_ap"]["verdict"] == HELPS
    assert table["bad"]["pixel_ap"]["verdict"] == HURTS
    assert table["same"]["pixel_ap"]["verdict"] == NO_DIFFERENCE
    # a clear mean but an interval touching 0, or a p not small enough, is no verdict
    assert verdict(0.1, [0.0, 0.2], 0.001) == NO_DIFFERENCE and verdict(0.1, [0.05, 0.2], 0.05) == NO_DIFFERENCE
    assert verdict(None, None, None) == NO_DIFFERENCE
    assert paired_table({"a": {0: {"pixel_ap": 0.1}}}, rng=np.random.default_rng(0)) == {}  # no baseline


# ---------------------------------------------------------------- detector agreement

def _table(means: dict, verdicts: dict | None = None) -> dict:
    return {r: {"pixel_ap": {"mean": m, "verdict": (verdicts or {}).get(r, NO_DIFFERENCE)}} for r, m in means.items()}


def test_detector_agreement_ranks_tau_and_the_run_whose_verdict_flips():
    means = {"a": 0.3, "b": 0.1, "c": -0.2, "d": 0.05}
    same = detector_agreement({"destseg": _table(means), "unet": _table({r: 2 * m for r, m in means.items()})})
    assert same["kendall_tau"]["destseg vs unet"] == {"tau": pytest.approx(1.0), "n_runs": 4}
    assert same["ranks"]["a"] == {"destseg": 1.0, "unet": 1.0} and same["ranks"]["c"]["unet"] == 4.0
    assert same["disagree"] == []
    flipped = detector_agreement({"destseg": _table(means, {"a": HELPS}),
                                  "unet": _table({r: -m for r, m in means.items()}, {"a": HURTS, "b": NO_DIFFERENCE})})
    assert flipped["kendall_tau"]["destseg vs unet"]["tau"] == pytest.approx(-1.0)
    assert flipped["disagree"] == ["a"]
    json.dumps(flipped, allow_nan=False)
    assert detector_agreement({"destseg": _table(means)}) == {"n_detectors": 1}


# ---------------------------------------------------------------- permutation p of rank correlations

def test_exact_permutation_p_of_four_concordant_methods_is_two_of_24():
    q = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    d = {"a": 0.1, "b": 0.2, "c": 0.5, "d": 0.9}
    # |rho| = 1 only for the identity and the reversed ordering of the 4! = 24
    assert correlation.permutation_p(q, d, "spearman") == pytest.approx(2 / 24)
    assert correlation.permutation_p(q, d, "kendall") == pytest.approx(2 / 24)
    assert math.isnan(correlation.permutation_p({"a": 1, "b": 2}, {"a": 1, "b": 2}))


def test_permutation_p_matches_brute_force_over_all_orderings():
    from scipy.stats import kendalltau, spearmanr

    rng = np.random.default_rng(8)
    names = list("abcdef")
    q = dict(zip(names, rng.random(6)))
    d = dict(zip(names, np.round(list(q.values()), 1) + rng.normal(0, 0.3, 6)))
    d["f"] = d["e"]  # a tie in the detection values
    qv, dv = np.array(list(q.values())), np.array(list(d.values()))
    for name, stat in (("spearman", spearmanr), ("kendall", kendalltau)):
        obs = abs(stat(qv, dv).statistic)
        perms = list(itertools.permutations(range(6)))
        brute = sum(abs(stat(qv, dv[list(p)]).statistic) >= obs - 1e-9 for p in perms) / len(perms)
        assert correlation.permutation_p(q, d, name) == pytest.approx(brute, abs=1e-12), name


def test_monte_carlo_permutation_p_beyond_eight_methods():
    q = {m: float(i) for i, m in enumerate("abcdefghijkl")}
    d = {m: float(i) ** 2 for i, m in enumerate("abcdefghijkl")}
    # a perfect order of 12 methods: 2 of 12! (4.8e8) orderings match it, none of 999 random ones will
    assert correlation.permutation_p(q, d, rng=np.random.default_rng(0), resamples=999) == 1 / 1000
    # a weak association: the Monte-Carlo p is seeded and near the share of orderings at least as strong
    d2 = dict(zip(d, np.random.default_rng(4).permutation(12) + np.arange(12) * 0.4))
    a = correlation.permutation_p(q, d2, rng=np.random.default_rng(1), resamples=4000)
    assert a == correlation.permutation_p(q, d2, rng=np.random.default_rng(1), resamples=4000)
    big = correlation.permutation_p(q, d2, rng=np.random.default_rng(2), resamples=40000)
    assert a == pytest.approx(big, abs=0.03) and 0.01 < big < 0.99


def test_three_methods_are_too_few_to_say():
    ap = {"a": 0.9, "b": 0.5, "c": 0.1}
    quality = {"kid": {m: {0: 1 - v, 1: 1.05 - v} for m, v in ap.items()}}
    row = correlation.bootstrap_rank_correlations(quality, lambda m, s, w: {"pixel_ap": ap[m]}, [0, 1],
                                                  {0: 3, 1: 3}, rng=np.random.default_rng(0),
                                                  resamples=20)[("kid", "pixel_ap")]
    assert row["verdict"] == correlation.TOO_FEW and row["spearman_ci"] is None and row["spearman"] == -1.0
    cfg = BenchmarkConfig(category="x", methods=list(ap))
    summary = {m: {"pixel_ap": {"mean": v}} for m, v in ap.items()}
    rows = quality_correlations(cfg, summary, {m: {"kid": {"mean": 1 - v}} for m, v in ap.items()})
    assert rows and all(r["verdict"] == correlation.TOO_FEW and r["spearman_p"] is None for r in rows)


def test_benchmark_correlations_carry_exact_and_holm_p():
    ap = {"a": 0.9, "b": 0.5, "c": 0.3, "d": 0.1}
    cfg = BenchmarkConfig(category="x", methods=list(ap))
    summary = {m: {"pixel_ap": {"mean": v}, "iap90": {"mean": v / 2}} for m, v in ap.items()}
    quality = {m: {"kid": {"mean": 1 - v}, "fid": {"mean": 100 * (1 - v)}} for m, v in ap.items()}
    rows = quality_correlations(cfg, summary, quality)
    assert len(rows) == 4
    for r in rows:  # perfect orders: p = 2/24 each; Holm over the 4 rows: 4 x 2/24 = 1/3 for all
        assert "verdict" not in r
        assert r["spearman_p"] == pytest.approx(2 / 24) and r["kendall_p"] == pytest.approx(2 / 24)
        assert r["spearman_p_holm"] == pytest.approx(4 * 2 / 24)


# ---------------------------------------------------------------- results.json / results.md

def _runs(seeds, shift):
    rng = np.random.default_rng(1)
    out = []
    for s in seeds:
        base = 0.3 + 0.05 * rng.standard_normal()
        for run, delta in (("fewshot", 0.0), ("cutpaste", -0.2), ("cutpaste+fewshot", shift)):
            keys = ("pixel_ap", "iap", "iap90", "image_auroc", "pixel_auroc", "aupro")
            m = {k: base + delta + 0.001 * rng.standard_normal() for k in keys}
            out.append({"run": run, "seed": s, "metrics": m, "split": {"heldout": 3, "good_test": 2, "good_train": 6}})
    return out


def test_paired_results_do_not_depend_on_the_order_of_the_runs():
    from defectlab.benchmark.results import paired_statistics

    cfg = BenchmarkConfig(category="x", methods=["cutpaste"], seeds=list(range(7)), shots=1, patchcore=False)
    runs = _runs(cfg.seeds, 0.1)
    a = paired_statistics(cfg, runs)
    b = paired_statistics(cfg, runs[::-1])
    assert a == b and a["detector_agreement"] == {"n_detectors": 1}
    table = a["paired"][cfg.detector_name]
    assert set(table) == {"cutpaste", "cutpaste+fewshot"}
    # 7 seeds of one sign, Holm over 2 runs: 2 x 2/128 < 0.05 (6 seeds would give 2 x 2/64 > 0.05)
    assert table["cutpaste+fewshot"]["pixel_ap"]["p_holm"] == pytest.approx(2 * 2 / 128)
    assert table["cutpaste+fewshot"]["pixel_ap"]["verdict"] == HELPS
    assert table["cutpaste"]["pixel_ap"]["verdict"] == HURTS


def test_results_markdown_shows_the_paired_table_and_the_smallest_p():
    from defectlab.benchmark.results import paired_statistics, results_markdown
    from defectlab.benchmark.tables import summarize

    cfg = BenchmarkConfig(category="x", methods=["cutpaste"], seeds=list(range(5)), shots=1, patchcore=False)
    runs = _runs(cfg.seeds, 0.1)
    results = {"runs": runs, "summary": summarize(runs), "quality": {}, "format": "mvtec", "correlation": [],
               "machine": {}, "wall_seconds": 1.0, "compute_seconds": 1.0, **paired_statistics(cfg, runs)}
    md = results_markdown(cfg, results)
    assert "## Paired difference to `fewshot`" in md
    header = next(line for line in md.splitlines() if line.startswith("| run | metric | Δ mean"))
    assert header.count("|") - 1 <= 8
    assert "| `cutpaste+fewshot` | pixel AP | +0.100 |" in md
    assert "2/2^5 = 0.0625" in md and "out of reach here" in md
    # the correlation table: permutation and Holm p columns; three methods say "too few to say" instead
    few = dict(quality="kid", detection="pixel_ap", n_methods=3, spearman=-1.0, kendall=-1.0, spearman_p=None,
               kendall_p=None, spearman_p_holm=None, verdict=correlation.TOO_FEW)
    many = {**few, "detection": "iap", "n_methods": 4, "spearman_p": 2 / 24, "spearman_p_holm": 4 / 24}
    del many["verdict"]
    corr = results_markdown(cfg, {**results, "correlation": [many, few]}).split("rank correlation over methods")[1]
    assert "| Spearman ρ | 95 % interval | Kendall τ | 95 % interval | p (perm.) | p (Holm) |" in corr
    assert "| 0.0833 | 0.167 |" in corr and f"| {correlation.TOO_FEW} | {correlation.TOO_FEW} |" in corr
    assert "exact two-sided permutation p" in corr
    section = md.split("## Paired difference")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `cutpaste")]
    assert len(rows) == 6 and all(line.endswith(f"| {NO_DIFFERENCE} |") for line in rows)  # 5 seeds: no claim
