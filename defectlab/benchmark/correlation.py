"""Quality vs detection: rank correlation over methods, bootstrap intervals over seeds and test images, the
scatter figure (`quality_scatter`) and the forest plot of the correlations (`correlation_forest`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import FEWSHOT, BenchmarkConfig
from .folder import quality_file, run_file, stats_file
from .quality import QUALITY_KEYS

# detection metrics of the method-alone runs the quality metrics are correlated with
CORRELATION_TARGETS = ("pixel_ap", "iap", "iap90")
GAIN = "pixel_ap_gain"  # and the downstream gain: pixel AP of `<method>+fewshot` minus that of `fewshot`
BOOTSTRAP_RESAMPLES = 1000


def quality_correlations(cfg: BenchmarkConfig, summary: dict, quality: dict, out: Path | None = None) -> list[dict]:
    """Rank correlation over methods between each quality metric and pixel AP / IAP / IAP90 of the
    method-alone runs (synthetic defects only, so the detector sees nothing but the method), and the
    downstream gain `pixel_ap_gain` (pixel AP of `<method>+fewshot` minus `fewshot`) when those runs exist.

    With `out` (a benchmark folder): a bootstrap 95 % interval over seeds and test images
    (`metrics.correlation.bootstrap_rank_correlations`, from the per-image statistics of each run; seeds only when
    those are missing), and `quality_vs_ap.png`, one scatter panel per quality metric.

    Each row also carries `spearman_p` / `kendall_p`, the exact two-sided permutation p over the methods (is this
    ranking chance?), and `spearman_p_holm`, Holm-corrected across all rows of the table (many quality x detection
    pairs are scanned at once). Below `MIN_METHODS` (4) methods a row says `"verdict": "too few to say"` and has
    no p or interval (3 methods: the smallest attainable p is 1/3)."""
    from ..metrics.correlation import MIN_METHODS, TOO_FEW, permutation_p, rank_correlation
    from ..metrics.paired import holm

    rows = []
    methods = [m for m in cfg.methods if m in summary and m in quality]
    if len(methods) < 3:
        return rows
    per_seed = _per_seed(cfg, out, methods) if out is not None else None
    for qk, label, _ in QUALITY_KEYS:
        for dk in (*CORRELATION_TARGETS, GAIN):
            if any(qk not in quality[m] for m in methods):
                continue
            qv = {m: quality[m][qk]["mean"] for m in methods}
            dv = {m: _target(summary, m, dk) for m in methods}
            if any(v is None for v in (*qv.values(), *dv.values())):
                continue
            rho, tau, n = rank_correlation(qv, dv)
            row = {"quality": qk, "label": _quality_label(quality, methods, qk, label), "detection": dk,
                   "n_methods": n, "spearman": rho, "kendall": tau, "spearman_p": None, "kendall_p": None}
            if n >= MIN_METHODS:
                prng = np.random.default_rng([n, 29])  # used beyond 8 methods only (Monte-Carlo)
                row["spearman_p"] = _none_if_nan(permutation_p(qv, dv, "spearman", rng=prng))
                row["kendall_p"] = _none_if_nan(permutation_p(qv, dv, "kendall", rng=prng))
            else:
                row["verdict"] = TOO_FEW
            rows.append(row)
    for row, p in zip(rows, holm([r["spearman_p"] for r in rows])):
        row["spearman_p_holm"] = p
    if per_seed is not None and rows:
        boot = _bootstrap(per_seed, methods, sorted({r["quality"] for r in rows}))
        for row in rows:
            row.update(boot.get((row["quality"], row["detection"]), {}))
            if row["n_methods"] < MIN_METHODS:  # no interval reported as evidence
                row.update(spearman_ci=None, kendall_ci=None)
    if out is not None:
        _scatter(out, methods, summary, quality)
    return rows


def _none_if_nan(value: float):
    return None if value is None or not np.isfinite(value) else float(value)


def _quality_label(quality: dict, methods: list, key: str, label: str) -> str:
    """A metric's name with its network, e.g. "IC-LPIPS (ST-LPIPS alex)", "IS (EfficientNet-Lite0)"."""
    first = quality[methods[0]]
    if key == "isc" and first.get("isc_network"):
        return first["isc_network"]
    if key == "ic_lpips" and first.get("ic_lpips_network"):
        return f"IC-LPIPS ({first['ic_lpips_network']})"
    if key == "fid" and first.get("n_fake"):
        return f"FID (n = {first['n_real']['mean']:.0f} real, {first['n_fake']['mean']:.0f} synthetic)" \
            if isinstance(first.get("n_real"), dict) else label
    return label


def _target(summary: dict, method: str, key: str):
    """A detection target's mean over seeds: a method-alone metric, or GAIN (None when a run is missing)."""
    if key == GAIN:
        both, base = summary.get(f"{method}+{FEWSHOT}", {}), summary.get(FEWSHOT, {})
        a, b = both.get("pixel_ap", {}).get("mean"), base.get("pixel_ap", {}).get("mean")
        return None if a is None or b is None else a - b
    return summary.get(method, {}).get(key, {}).get("mean")


def _per_seed(cfg: BenchmarkConfig, out: Path, methods: list) -> dict:
    """Per seed: each method's quality values; the image statistics (or metrics) of its method-alone run, its
    `+fewshot` run and the `fewshot` run, keyed by run name."""
    data: dict = {"quality": {}, "stats": {}, "metrics": {}}
    for m in methods:
        for s in cfg.seeds:
            qf = quality_file(out, m, s)
            if qf.is_file():
                data["quality"].setdefault(m, {})[s] = json.loads(qf.read_text())
    for run in {*methods, *(f"{m}+{FEWSHOT}" for m in methods), FEWSHOT}:
        for s in cfg.seeds:
            rf, sf = run_file(out, run, s), stats_file(out, run, s)
            if rf.is_file():
                data["metrics"].setdefault(run, {})[s] = json.loads(rf.read_text())["metrics"]
            if sf.is_file():
                with np.load(sf) as z:
                    data["stats"].setdefault(run, {})[s] = {k: z[k] for k in z.files}
    return data


def _bootstrap(per_seed: dict, methods: list, keys: list) -> dict:
    """Bootstrap intervals of every (quality key, detection target) pair at once (one set of resamples)."""
    from ..metrics.correlation import bootstrap_rank_correlations
    from ..metrics.detection import binned_metrics

    seeds = sorted(set.intersection(*(set(per_seed["quality"].get(m, {})) & set(per_seed["metrics"].get(m, {}))
                                      for m in methods)))
    keys = [k for k in keys if all(per_seed["quality"][m][s].get(k) is not None for m in methods for s in seeds)]
    if not seeds or not keys:
        return {}
    stats, metrics = per_seed["stats"], per_seed["metrics"]
    by_image = all(s in stats.get(m, {}) for m in methods for s in seeds)
    n_images = {s: len(stats[methods[0]][s]["pos_hist"]) if by_image else 1 for s in seeds}
    runs = [f"{m}+{FEWSHOT}" for m in methods] + [FEWSHOT]
    gain = all(s in (stats if by_image else metrics).get(r, {}) for r in runs for s in seeds)

    def values(run, s, w):
        if by_image and w is not None:
            return binned_metrics(stats[run][s], w)
        return metrics[run][s]

    def detection(m, s, w):
        out = {k: values(m, s, w)[k] for k in CORRELATION_TARGETS}
        if gain:
            out[GAIN] = values(f"{m}+{FEWSHOT}", s, w)["pixel_ap"] - values(FEWSHOT, s, w)["pixel_ap"]
        return out

    quality = {k: {m: {s: per_seed["quality"][m][s][k] for s in seeds} for m in methods} for k in keys}
    boot = bootstrap_rank_correlations(quality, detection, seeds, n_images, resamples=BOOTSTRAP_RESAMPLES,
                                       rng=np.random.default_rng([len(seeds), len(methods), 17]))
    how = "seeds and test images" if by_image else "seeds only"
    return {pair: {"spearman_ci": r["spearman_ci"], "kendall_ci": r["kendall_ci"], "n_boot": r["n_boot"],
                   "spearman_ci_widened": r["spearman_ci_widened"], "kendall_ci_widened": r["kendall_ci_widened"],
                   "bootstrap": how, "n_seeds": len(seeds)} for pair, r in boot.items()}


def quality_scatter(results: dict, methods: Sequence[str] | None = None, detection: str = "pixel_ap"):
    """The quality <-> usefulness figure from a benchmark's `results.json` content: one panel per quality metric
    (x: its mean over seeds, y: the method-alone run's `detection` mean; error bars: std over seeds), or None
    when no quality metric was measured for every method."""
    from ..metrics.correlation import scatter_figure

    summary, quality = results["summary"], results["quality"]
    methods = [m for m in (methods or quality) if m in summary and m in quality]
    points = {}
    for qk, label, lower in QUALITY_KEYS:
        if methods and all(isinstance(quality[m].get(qk), dict) and quality[m][qk]["mean"] is not None
                           for m in methods):
            name = _quality_label(quality, methods, qk, label) + (" ↓" if lower else " ↑")
            points[name] = {m: (quality[m][qk]["mean"], quality[m][qk]["std"], summary[m][detection]["mean"],
                                summary[m][detection]["std"]) for m in methods}
    name = {"pixel_ap": "pixel AP", "iap": "IAP", "iap90": "IAP90"}.get(detection, detection)
    return scatter_figure(points, f"{name} (method alone)") if points else None


TARGET_NAMES = {"pixel_ap": "pixel AP", "iap": "IAP", "iap90": "IAP90", GAIN: "pixel AP gain over fewshot"}


def correlation_rows(results: dict, detection: str = "pixel_ap") -> list[dict]:
    """The rows of a benchmark's `correlation` (results.json content) for one detection target, as the forest plot
    reads them: {"label", "rho" (Spearman), "ci" (its bootstrap interval or None), "p", "n_methods"}. p is the
    stored exact permutation p; a results.json written before p was stored gets it recomputed from the stored
    means over the same methods (none below `MIN_METHODS` methods)."""
    from ..metrics.correlation import MIN_METHODS, permutation_p, rank_correlation

    summary, quality = results["summary"], results["quality"]
    methods = [m for m in results["config"]["methods"] if m in quality and m in summary]
    rows = []
    for c in results.get("correlation") or []:
        if c["detection"] != detection:
            continue
        p = c.get("spearman_p")
        if p is None and c["n_methods"] >= MIN_METHODS and c.get("verdict") is None:
            qv = {m: quality[m][c["quality"]]["mean"] for m in methods if isinstance(quality[m].get(c["quality"]), dict)}
            dv = {m: _target(summary, m, detection) for m in qv}
            if len(qv) == c["n_methods"] and abs(rank_correlation(qv, dv)[0] - c["spearman"]) < 1e-9:
                p = _none_if_nan(permutation_p(qv, dv, "spearman", rng=np.random.default_rng([c["n_methods"], 29])))
        rows.append({"label": c.get("label", c["quality"]), "rho": c["spearman"], "ci": c.get("spearman_ci"), "p": p,
                     "n_methods": c["n_methods"]})
    return rows


def correlation_forest(results: dict, detections: Sequence[str] = ("pixel_ap", GAIN), title: str = ""):
    """The quality <-> usefulness result as a forest plot (`metrics.correlation.forest_figure`): one panel per
    detection target (default: pixel AP of the method alone, and the gain over `fewshot`), one row per quality
    metric with Spearman ρ, its bootstrap interval over seeds and test images, and the permutation p. None when the
    benchmark has no correlation rows."""
    from ..metrics.correlation import forest_figure

    panels = {f"vs {TARGET_NAMES.get(d, d)}": correlation_rows(results, d) for d in detections}
    panels = {k: v for k, v in panels.items() if v}
    return forest_figure(panels, title) if panels else None


def _scatter(out: Path, methods: list, summary: dict, quality: dict) -> None:
    import matplotlib.pyplot as plt

    from ..viz import save_figure

    fig = quality_scatter({"summary": summary, "quality": quality}, methods)
    if fig is not None:
        save_figure(fig, out / "quality_vs_ap.png")
        plt.close(fig)
