"""Turn a benchmark run (`results.json`) into figures and a report for a paper or a slide.

    from defectlab.benchmark.report import load_results, metric_figure, export_report
    results = load_results("outputs/mt")          # a folder written by `defectlab benchmark`
    export_report("outputs/mt", "outputs/mt_report")  # report.md, report.html, PNG figures
"""
from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import numpy as np

from ..config import shown_path
from ..errors import DefectlabError

DETECTION = (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("pixel_ap", "pixel AP"),
             ("iap", "IAP"), ("iap90", "IAP90"), ("aupro", "AUPRO"))


def load_results(source: str | Path, required: tuple[str, ...] = ("summary", "config", "runs")) -> dict:
    """The content of `<source>/results.json` (or of `source`, a results.json file), checked for the fields the
    caller needs (`required`; by default those the report needs)."""
    source = Path(source)
    path = source if source.is_file() else source / "results.json"
    if not path.is_file():
        raise DefectlabError(f"{path}: not found; run `defectlab benchmark --out {source}` first")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DefectlabError(f"{path}: not valid JSON ({exc})") from exc
    timings = path.parent / "timings.json"  # the machine and the seconds, kept apart from the results' bytes
    if timings.is_file():
        try:
            results = {**json.loads(timings.read_text()), **results}
        except json.JSONDecodeError as exc:
            raise DefectlabError(f"{timings}: not valid JSON ({exc})") from exc
    for key in required:
        if key not in results:
            raise DefectlabError(f"{path}: missing '{key}'; is this a defectlab benchmark result?")
    results["folder"] = str(path.parent)
    return results


def run_order(results: dict) -> list[str]:
    """fewshot first, then each method alone and with the few-shot defects, as the runner lists them."""
    return [r for r in dict.fromkeys(run["run"] for run in results["runs"])]


def table_rows(results: dict, metrics=DETECTION) -> tuple[list[str], list[list[str]]]:
    """Header and rows (mean ± std) of the comparison table, best mean per column in bold."""
    s = results["summary"]
    order = run_order(results)
    best = {k: max((s[r][k]["mean"] for r in order if s[r].get(k, {}).get("mean") is not None), default=None)
            for k, _ in metrics}
    rows = []
    for r in order:
        cells = [r]
        for k, _ in metrics:
            st = s[r].get(k) or {}
            if st.get("mean") is None:
                cells.append("–")
                continue
            text = f"{st['mean']:.3f} ± {st.get('std') or 0:.3f}"
            cells.append(f"**{text}**" if st["mean"] == best[k] else text)
        rows.append(cells)
    return ["run"] + [t for _, t in metrics], rows


def markdown_table(results: dict, metrics=DETECTION) -> str:
    head, rows = table_rows(results, metrics)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(f"`{c}`" if i == 0 else c for i, c in enumerate(row)) + " |" for row in rows]
    return "\n".join(lines)


# what a run trained on -> (legend text, bar colour); `run_kind` says which a run is
RUN_KINDS = {"none": ("no defects (patchcore, diad)", "tab:green"),
             "real": ("real few-shot defects only (fewshot)", "0.5"),
             "synthetic": ("synthetic defects only (<method>)", "tab:orange"),
             "both": ("synthetic + real (<method>+fewshot)", "tab:blue")}


def run_kind(run: str) -> str:
    """"none", "real", "synthetic" or "both": what the run's detector was trained on (a key of RUN_KINDS)."""
    from .config import DIAD, FEWSHOT, PATCHCORE, base_run

    name = base_run(run)
    if name in (PATCHCORE, DIAD):
        return "none"
    if name == FEWSHOT:
        return "real"
    return "both" if name.endswith(f"+{FEWSHOT}") else "synthetic"


def metric_figure(results: dict, metrics=(("pixel_ap", "pixel AP"), ("iap90", "IAP90"), ("image_auroc", "image AUROC"))):
    """Bar chart, one panel per metric, one bar per run (mean, std as error bar), coloured by what the run trained
    on (legend below), the few-shot baseline as a dashed line."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    s, order = results["summary"], run_order(results)
    kinds = [run_kind(r) for r in order]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.35 * len(order) + 2.2), squeeze=False)
    for ax, (k, title) in zip(axes[0], metrics):
        means = np.array([s[r].get(k, {}).get("mean") or np.nan for r in order], float)
        stds = np.array([s[r].get(k, {}).get("std") or 0 for r in order], float)
        ax.barh(range(len(order)), means, xerr=stds, color=[RUN_KINDS[kind][1] for kind in kinds])
        if "fewshot" in order:
            ax.axvline(means[order.index("fewshot")], color="0.3", ls="--", lw=1)
        ax.set_yticks(range(len(order)), order if ax is axes[0][0] else [""] * len(order), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, 1)
    handles = [Patch(color=RUN_KINDS[kind][1], label=RUN_KINDS[kind][0]) for kind in RUN_KINDS if kind in kinds]
    if "fewshot" in order:
        handles.append(Line2D([], [], color="0.3", ls="--", lw=1, label="fewshot's mean"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.9 / (0.35 * len(order) + 2.2), 1, 1))
    return fig


def quality_vs_detection_figure(results: dict, quality: str = "kid", detection: str = "pixel_ap"):
    """Scatter of a method's synthetic-defect quality against its detector's score (method alone)."""
    import matplotlib.pyplot as plt

    s, q = results["summary"], results.get("quality") or {}
    pts = [(m, (q[m].get(quality) or {}).get("mean"), s[m][detection]["mean"]) for m in q if m in s
           and (q[m].get(quality) or {}).get("mean") is not None and s[m].get(detection, {}).get("mean") is not None]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for name, x, y in pts:
        ax.scatter(x, y)
        ax.annotate(name, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{quality.upper()} of synthetic vs real defects (lower = closer)")
    ax.set_ylabel(detection)
    fig.tight_layout()
    return fig, pts


def export_report(folder: str | Path, out: str | Path, overwrite: bool = False) -> dict[str, Path]:
    """Write `report.md`, `report.html`, `metrics.png`, `quality_vs_ap.png` (and copy the run's own plots)
    into `out`, atomically (built beside it, then renamed)."""
    import matplotlib.pyplot as plt

    from ..staging import staged_folder
    from ..viz import save_figure

    results = load_results(folder)
    out = Path(out)
    with staged_folder(out, overwrite) as tmp:
        fig = metric_figure(results)
        save_figure(fig, tmp / "metrics.png")
        plt.close(fig)
        fig, pts = quality_vs_detection_figure(results)
        save_figure(fig, tmp / "quality_vs_ap.png")
        plt.close(fig)
        copied = [p.name for p in (Path(folder) / n for n in ("pr_curves.png", "detections.png")) if p.is_file()]
        for name in copied:
            shutil.copy(Path(folder) / name, tmp / name)
        cfg = results["config"]
        md = [f"# Synthetic defects for `{cfg['category']}`: which method helps a detector?", "",
              f"{cfg['shots']} real defects per type, seeds {cfg['seeds']}, {cfg['size']} px "
              f"(data: `{shown_path(cfg['data']) if cfg.get('data') else 'embedded'}`).", "", markdown_table(results), "",
              "![metrics](metrics.png)", "", "![quality vs AP](quality_vs_ap.png)", ""]
        md += [f"![{n}]({n})" for n in copied]
        (tmp / "report.md").write_text("\n".join(md) + "\n")
        head, rows = table_rows(results)
        cell = lambda c: html.escape(c).replace("**", "") if not c.startswith("**") else f"<b>{html.escape(c[2:-2])}</b>"
        table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(
            "<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows) + "</table>"
        imgs = "".join(f'<p><img src="{n}" style="max-width:100%"></p>' for n in ["metrics.png", "quality_vs_ap.png", *copied])
        (tmp / "report.html").write_text(f"<!doctype html><meta charset=utf-8><title>defectlab report</title>"
                                         f"<style>td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}</style>"
                                         f"<h1>{html.escape(md[0][2:])}</h1><p>{html.escape(md[2])}</p>{table}{imgs}")
    return {p.stem + p.suffix: out / p.name for p in sorted(out.iterdir())}
