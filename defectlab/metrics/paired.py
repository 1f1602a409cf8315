"""Paired differences to a baseline run, over seeds: does adding a method's synthetic defects help the detector?

Why paired: per seed the benchmark trains `fewshot` (real defects only), `<method>` and `<method>+fewshot` on the
same split and from the same initialisation, so the seed-to-seed spread (which split, which start) is shared and
cancels in the per-seed difference `run - fewshot`. The unit of evidence is the seed; test images are not
resampled here.

- `paired_difference`: mean difference, a percentile bootstrap interval over seeds, and an exact two-sided
  sign-flip permutation p (under "no difference" each seed's difference is as likely positive as negative).
- `holm`: Holm-Bonferroni adjustment across the runs of a table (one family per metric).
- `verdict`: the only place the words "helps" / "hurts" / "no detectable difference" come from.
- `paired_table`, `detector_agreement`: the benchmark's per-detector tables and whether two detectors agree.

What a reader needs to know before reading a p: with n seeds an exact two-sided sign-flip test cannot give a p
below 2 / 2^n (all n differences of one sign). 5 seeds: 2/32 = 0.0625, so p < 0.05 is *impossible*; 6 seeds are
the fewest that can reach it (1/32 = 0.031). With Holm over m runs the smallest p must also beat 0.05 / m:
m = 2 or 3 needs 7 seeds (1/64 = 0.016), m = 4 to 6 needs 8 (1/128 = 0.0078), m = 7 to 12 needs 9
(1/256 = 0.0039), m = 13 to 25 needs 10 (1/512 = 0.00195) - e.g. 7 methods, each as `<method>` and
`<method>+fewshot` (m = 14), need 10 seeds before any verdict but "no detectable difference" is possible.
(`seeds_needed(m)` computes it.)
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DefectlabError

HELPS, HURTS, NO_DIFFERENCE = "helps", "hurts", "no detectable difference"
PAIRED_METRICS = ("pixel_ap", "iap", "iap90", "image_auroc", "aupro")
EXACT_MAX_SEEDS = 16  # 2^16 sign vectors enumerated at once; beyond, Monte-Carlo sign flips


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def min_attainable_p(n_nonzero: int) -> float:
    """The smallest two-sided sign-flip p with n non-zero differences: 2 / 2^n (1 for none)."""
    return min(1.0, 2.0 / 2.0 ** n_nonzero) if n_nonzero > 0 else 1.0


def seeds_needed(m: int = 1, alpha: float = 0.05) -> int:
    """The fewest seeds for which the smallest attainable p, Holm-corrected over m runs (m x p), is below alpha."""
    n = 1
    while m * min_attainable_p(n) >= alpha:
        n += 1
    return n


def sign_flip_p(diffs, *, rng: np.random.Generator | None = None, resamples: int = 10000) -> float:
    """Two-sided sign-flip permutation p of the mean of `diffs`: the share of sign vectors whose |mean| is at least
    the observed |mean| (a relative tolerance of 1e-9 keeps float noise from losing ties; the identity counts).
    Exact (all 2^n vectors) for n <= 16; beyond, (1 + count) / (1 + resamples) from random sign vectors (`rng`)."""
    d = np.asarray(diffs, float)
    n = d.size
    if n <= 1:
        return 1.0
    observed = abs(d.mean())
    tol = 1e-9 * max(float(np.abs(d).max()), np.finfo(float).tiny)
    if n <= EXACT_MAX_SEEDS:
        signs = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) * 2.0 - 1.0
        return float(np.mean(np.abs(signs @ d) / n >= observed - tol))
    if rng is None:
        raise DefectlabError(f"sign_flip_p: {n} differences need an rng for the Monte-Carlo test (exact up to "
                             f"{EXACT_MAX_SEEDS})")
    signs = rng.choice([-1.0, 1.0], size=(int(resamples), n))
    count = int(np.sum(np.abs(signs @ d) / n >= observed - tol))
    return (1 + count) / (1 + int(resamples))


def containing(lo: float, hi: float, estimate: float, tol: float = 1e-9) -> tuple[list[float], bool]:
    """[lo, hi] widened to contain `estimate`, and whether it had to be (beyond `tol`): a percentile interval can miss
    its own estimate with skewed data and few resamples, and one that excludes the value beside it only confuses."""
    widened = lo > estimate + tol or hi < estimate - tol
    return [min(lo, estimate), max(hi, estimate)], bool(widened)


def bootstrap_interval(diffs, *, rng: np.random.Generator, resamples: int = 10000,
                       level: float = 0.95) -> tuple[list[float], bool]:
    """Percentile bootstrap interval of the mean, resampling the values (seeds) with replacement, and whether it
    had to be widened to contain the mean itself (`containing`)."""
    d = np.asarray(diffs, float)
    estimate = float(d.mean())
    means = d[rng.integers(0, d.size, (int(resamples), d.size))].mean(1)
    lo, hi = (float(v) for v in np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2]))
    return containing(lo, hi, estimate, 1e-9 * max(float(np.abs(d).max()), np.finfo(float).tiny))


def paired_difference(values: dict, baseline: dict, *, rng: np.random.Generator, resamples: int = 10000,
                      level: float = 0.95) -> dict:
    """`values - baseline` over the seeds present in both with finite values.

    Returns {"mean", "ci" [lo, hi], "ci_widened", "p" (exact two-sided sign-flip), "n_seeds", "min_p" (2 / 2^k for
    k non-zero differences: no data can give a smaller p), "per_seed" {seed: difference}}. No common seed: mean,
    ci and p are None; one seed: p = 1 (a single difference cannot be told from chance)."""
    seeds = [s for s in values if s in baseline and _finite(values[s]) and _finite(baseline[s])]
    per_seed = {s: float(values[s]) - float(baseline[s]) for s in seeds}
    d = np.array(list(per_seed.values()), float)
    n = int(d.size)
    if n == 0:
        return {"mean": None, "ci": None, "ci_widened": False, "p": None, "n_seeds": 0, "min_p": 1.0,
                "per_seed": {}}
    ci, widened = bootstrap_interval(d, rng=rng, resamples=resamples, level=level)
    return {"mean": float(d.mean()), "ci": ci, "ci_widened": widened,
            "p": sign_flip_p(d, rng=rng, resamples=resamples), "n_seeds": n,
            "min_p": min_attainable_p(int(np.count_nonzero(d))), "per_seed": per_seed}


def holm(pvalues):
    """Holm-Bonferroni adjusted p-values, in the shape given (dict or list): the k-th smallest of m p-values is
    multiplied by m - k + 1, made non-decreasing along that order and capped at 1. None (or NaN) passes through
    and does not count towards m."""
    keys = list(pvalues) if isinstance(pvalues, dict) else list(range(len(pvalues)))
    raw = [pvalues[k] for k in keys]
    valid = [i for i, p in enumerate(raw) if _finite(p)]
    order = sorted(valid, key=lambda i: float(raw[i]))
    m = len(order)
    adjusted: list = [None] * len(raw)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(raw[i])))
        adjusted[i] = running
    if isinstance(pvalues, dict):
        return dict(zip(keys, adjusted))
    return adjusted


def verdict(mean, ci, p_adjusted, alpha: float = 0.05) -> str:
    """"helps" only when the adjusted p is below alpha, the whole interval is above 0 and the mean is positive;
    "hurts" the mirror image; anything else (missing values included) "no detectable difference"."""
    if not _finite(mean) or not _finite(p_adjusted) or not ci or not all(_finite(v) for v in ci):
        return NO_DIFFERENCE
    if float(p_adjusted) < alpha and min(ci) > 0 and mean > 0:
        return HELPS
    if float(p_adjusted) < alpha and max(ci) < 0 and mean < 0:
        return HURTS
    return NO_DIFFERENCE


def paired_table(per_seed: dict, baseline: str = "fewshot", metrics=PAIRED_METRICS, *, rng: np.random.Generator,
                 resamples: int = 10000, alpha: float = 0.05) -> dict:
    """{run: {metric: paired_difference(...) + "p_holm", "verdict"}} for every run but the baseline that has
    per-seed values. per_seed: {run: {seed: {metric: value}}}. Holm runs per metric across the runs of the table
    (the family a reader scans for "which methods help"). Empty without the baseline."""
    if baseline not in per_seed:
        return {}
    base = per_seed[baseline]
    runs = [r for r in per_seed if r != baseline and per_seed[r]]
    table: dict = {r: {} for r in runs}
    for metric in metrics:
        for r in runs:
            table[r][metric] = paired_difference({s: v.get(metric) for s, v in per_seed[r].items()},
                                                 {s: v.get(metric) for s, v in base.items()},
                                                 rng=rng, resamples=resamples)
        adjusted = holm({r: table[r][metric]["p"] for r in runs})
        for r in runs:
            row = table[r][metric]
            row["p_holm"] = adjusted[r]
            row["verdict"] = verdict(row["mean"], row["ci"], row["p_holm"], alpha)
    return table


def detector_agreement(paired: dict, metric: str = "pixel_ap") -> dict:
    """Do two detectors tell the same story? paired: {detector: paired_table(...)}.

    With >= 2 detectors: "ranks" {run: {detector: rank}} (1 = largest mean difference; ties share the lowest
    rank), "kendall_tau" {"a vs b": {"tau", "n_runs"}} over the runs both ranked (None below 2 runs or with a
    constant column), and "disagree": the runs whose verdicts differ between the detectors that have them."""
    from scipy.stats import kendalltau, rankdata

    detectors = list(paired)
    out: dict = {"n_detectors": len(detectors)}
    if len(detectors) < 2:
        return out
    means = {det: {str(r): float(row[metric]["mean"]) for r, row in paired[det].items()
                   if metric in row and _finite(row[metric]["mean"])} for det in detectors}
    ranks: dict = {}
    for det, by_run in means.items():
        names = list(by_run)
        for name, rank in zip(names, rankdata([-by_run[r] for r in names], method="min")):
            ranks.setdefault(name, {})[str(det)] = float(rank)
    taus = {}
    for i, a in enumerate(detectors):
        for b in detectors[i + 1:]:
            common = [r for r in means[a] if r in means[b]]
            tau = None
            if len(common) >= 2:
                t = kendalltau([means[a][r] for r in common], [means[b][r] for r in common]).statistic
                tau = float(t) if np.isfinite(t) else None
            taus[f"{a} vs {b}"] = {"tau": tau, "n_runs": len(common)}
    verdicts: dict = {}
    for det in detectors:
        for r, row in paired[det].items():
            if metric in row:
                verdicts.setdefault(str(r), {})[str(det)] = row[metric]["verdict"]
    disagree = [r for r, v in verdicts.items() if len(v) >= 2 and len(set(v.values())) > 1]
    out.update({"metric": metric, "detectors": [str(d) for d in detectors], "ranks": ranks, "kendall_tau": taus,
                "disagree": disagree, "verdicts": {r: verdicts[r] for r in disagree}})
    return out


__all__ = ["HELPS", "HURTS", "NO_DIFFERENCE", "PAIRED_METRICS", "bootstrap_interval", "detector_agreement", "holm",
           "min_attainable_p", "paired_difference", "paired_table", "seeds_needed", "sign_flip_p", "verdict"]
