"""Markdown tables of the benchmark: mean ± std over seeds of every run's detection metrics and its methods'
quality, the region / visibility / TRTS table, pixel AP by held-out defect type."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .config import BenchmarkConfig

# (key in the metrics dict, column title) of the results table
TABLE_METRICS = (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("pixel_ap", "pixel AP"),
                 ("iap", "IAP"), ("iap90", "IAP90"), ("aupro", "AUPRO"))
# (key in the quality dict, column title, digits); titles name the network when the quality entry does
QUALITY_METRICS = (("kid", "KID ↓", 4), ("fid", "FID ↓", 1), ("domain_frechet", "domain Fréchet ↓", 2),
                   ("domain_kernel", "domain KD ↓", 3), ("ic_lpips", "IC-LPIPS ↑", 3), ("isc", "IS", 2))


def mean_std(values: Sequence[float]) -> dict:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if not len(v):
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v))}


def summarize(runs: list[dict], key: str = "metrics") -> dict[str, dict[str, dict]]:
    """{run name: {metric: {mean, std, n}}} over seeds."""
    by_run: dict[str, list[dict]] = {}
    for r in runs:
        by_run.setdefault(r["run"], []).append(r[key])
    return {name: {m: mean_std([d.get(m) for d in dicts]) for m in dicts[0]} for name, dicts in by_run.items()}


def fmt(stat: dict | None, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    if stat.get("n") == 1:  # one value: a spread of 0 would claim a precision nobody measured
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _quality_title(key: str, title: str, quality: dict) -> str:
    """Column title with the network and n from the first quality entry that names them."""
    for q in quality.values():
        if key == "ic_lpips" and isinstance(q.get("ic_lpips_network"), str):
            return f"IC-LPIPS ({q['ic_lpips_network']}) ↑"
        if key == "isc" and isinstance(q.get("isc_network"), str):
            return q["isc_network"]
        if key == "fid" and isinstance(q.get("n_fake"), dict) and q["n_fake"].get("mean"):
            return f"FID ↓ (n {q['n_real']['mean']:.0f}/{q['n_fake']['mean']:.0f})"
    return title


def markdown_table(summary: dict, quality: dict, order: Sequence[str]) -> str:
    """Two Markdown tables (each at most 8 columns, so neither wraps on a page): one row per run name in `order`
    with its detection metrics; then one row per synthesis method with the quality of its synthetic defects (only
    the quality columns some method has; a method's `+fewshot` run shares them, so they are not repeated)."""
    head = ["run"] + [t for _, t in TABLE_METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in order:
        if name in summary:
            lines.append("| " + " | ".join([f"`{name}`"] + [fmt(summary[name].get(k)) for k, _ in TABLE_METRICS]) + " |")
    methods = [m for m in dict.fromkeys(name.split("+")[0] for name in order) if quality.get(m)]
    quality_part = method_quality_table(quality, methods)
    return "\n".join(lines) + ("\n\n" + quality_part if quality_part else "")


def method_quality_table(quality: dict, methods: Sequence[str]) -> str:
    """One row per method: the QUALITY_METRICS measured for some method (mean ± std over seeds), their titles
    naming the networks; "" when none was."""
    cols = [(k, _quality_title(k, t, quality), d) for k, t, d in QUALITY_METRICS
            if any(k in quality.get(m, {}) for m in methods)]
    if not cols:
        return ""
    lines = ["| method | " + " | ".join(t for _, t, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for m in methods:
        q = quality.get(m, {})
        lines.append(f"| `{m}` | " + " | ".join(fmt(q.get(k) if isinstance(q.get(k), dict) else None, d)
                                              for k, _, d in cols) + " |")
    return "\n".join(lines)


# quality on windows around the defects, visibility and TRTS (issue 23): (key, column title, digits), in two tables
REGION_METRICS = (("region_n_fake", "windows (synthetic / real)", 0), ("region_kid", "region KID ↓", 4),
                  ("region_fid", "region FID ↓", 1), ("region_domain_frechet", "region domain Fréchet ↓", 2),
                  ("region_ic_lpips", "region IC-LPIPS ↑", 3))
VISIBILITY_METRICS = (("visibility_fake", "visibility (synthetic)", 2), ("visibility_ratio", "visibility ratio to real", 2),
                      ("trts_pixel_ap", "TRTS pixel AP", 3), ("trts_aupro", "TRTS AUPRO", 3))


def region_table(quality: dict, methods: Sequence[str], flag_ratio: float = 0.5) -> str:
    """Up to two Markdown tables, one row per method: the REGION_METRICS, then the VISIBILITY_METRICS it has (mean ±
    std over seeds; columns only for what was measured); a method whose synthetic defects are far less visible than
    the real ones (ratio below `flag_ratio`) is marked ⚠. "" when nothing was measured."""
    tables = []
    for group in (REGION_METRICS, VISIBILITY_METRICS):
        cols = [c for c in group if any(c[0] in quality.get(m, {}) for m in methods)]
        if not cols:
            continue
        lines = ["| method | " + " | ".join(t for _, t, _ in cols) + " |", "|---|" + "---|" * len(cols)]
        for m in methods:
            q = quality.get(m)
            if not q:
                continue
            cells = []
            for k, _, d in cols:
                if k == "region_n_fake":
                    n_real = q.get("region_n_real")
                    cells.append(f"{q[k]['mean']:.0f} / {n_real['mean']:.0f}" if isinstance(q.get(k), dict)
                                 and isinstance(n_real, dict) and q[k].get("mean") is not None else "–")
                else:
                    cells.append(fmt(q.get(k) if isinstance(q.get(k), dict) else None, d))
            ratio = q.get("visibility_ratio")
            flagged = isinstance(ratio, dict) and ratio.get("mean") is not None and ratio["mean"] < flag_ratio
            lines.append(f"| `{m}`{' ⚠' if flagged else ''} | " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def by_type_table(cfg: BenchmarkConfig, runs: list[dict], metric: str = "pixel_ap") -> str:
    """Markdown: one row per run, one column per held-out defect type, `metric` as the mean over seeds."""
    types = sorted({t for r in runs for t in r.get("by_type", {})})
    if not types:
        return ""
    lines = ["| run | " + " | ".join(types) + " |", "|---|" + "---:|" * len(types)]
    for name in cfg.run_names():
        rows = [r["by_type"] for r in runs if r["run"] == name and "by_type" in r]
        if not rows:
            continue
        cells = []
        for t in types:
            vals = [row[t][metric] for row in rows if row.get(t, {}).get(metric) is not None]
            cells.append(f"{np.mean(vals):.3f}" if vals else "–")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_num(v, digits: int = 2) -> str:
    return f"{v:+.{digits}f}" if isinstance(v, float) and np.isfinite(v) else "–"


def fmt_interval(ci, digits: int = 2) -> str:
    if not ci or any(v is None or not np.isfinite(v) for v in ci):
        return "–"
    return f"[{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]"
