"""`make demo`: the embedded data set, every mask generator and every synthesis method, as pictures.

    python -m defectlab.demo --out outputs/demo [--seed 0] [--overwrite]

Writes `dataset.png` (ground-truth defects of the embedded set), `masks.png` (every mask
generator), `methods.png` (good / synthetic / mask / overlay per method) and `report.md`, then
prints their paths. The folder is built beside the target and renamed into place, so an
interrupted run leaves the previous result untouched.
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from . import methods, viz
from .config import quick
from .data import build_embedded, foreground_for, few_shot_split
from .errors import DefectlabError
from .progress import progress
from .sample import Sample
from .staging import staged_folder

# one texture and one object category show every method
DEMO_CATEGORIES = ("brick", "washer")


def dataset_rows(dataset, rng) -> tuple[list, list]:
    """Per category: a good image, then one test image per defect type with its ground truth outlined."""
    rows, labels = [], []
    for cat in dataset.categories():
        ds = dataset.filter(category=cat)
        row = [viz.to_rgb(ds.filter(split="train", label="good")[0].image())]
        for dtype in ds.defect_types():
            img, mask = ds.filter(label=dtype)[0].load()
            row.append(viz.overlay(img, mask))
        rows.append(row)
        labels.append(cat)
    return rows, labels


def mask_rows(shape, rng, foreground=None) -> tuple[list, list[str]]:
    """One panel per mask generator of `defectlab.masks`."""
    from . import masks

    panels, names = masks.gallery(shape, rng, foreground=foreground)
    return panels, names


def method_samples(dataset, category: str, seed: int, learned: bool = True) -> list[tuple]:
    """Run every registered method once on `category` (learned ones only if `learned`):
    (name, family, good, sample, seconds per image, fit seconds)."""
    split = few_shot_split(dataset, category, shots=1, seed=seed)
    goods = [r.image() for r in split.good_train]
    fgs = [foreground_for(r, g) for r, g in zip(split.good_train, goods)]
    defects = [Sample(*r.load(), {"label": r.label, "source": r.key}) for r in split.support]
    out = []
    names = [n for n in methods.available() if learned or not _learned(n)]
    for i, name in enumerate(progress(names, desc=f"methods on {category}")):
        rng = np.random.default_rng([seed, i])
        # learned methods get a short fit (quick mode): the demo shows the mechanics, benchmarks the quality
        with quick(True) if _learned(name) else nullcontext():
            t0 = time.perf_counter()
            method = methods.create(name)
            if getattr(method, "needs_fit", False):
                method.fit(goods, defects, rng, foregrounds=fgs)
            t_fit = time.perf_counter() - t0
            t0 = time.perf_counter()
            sample = method(goods[0], rng, foreground=fgs[0])
        out.append((name, methods.get(name).family, goods[0], sample, time.perf_counter() - t0, t_fit))
    return out


def _learned(name: str) -> bool:
    """Trained models, as opposed to copy-paste, which `fit`s by only keeping the defects."""
    return getattr(methods.get(name), "needs_fit", False) and methods.get(name).family != "handcrafted"


def run_demo(out: str | Path, seed: int = 0, overwrite: bool = False, learned: bool = False) -> dict[str, Path]:
    out = Path(out)
    with staged_folder(out, overwrite) as stage:  # complete or absent: built beside `out`, then renamed
        paths = _build(stage, seed, learned)
    return {k: out / p.name for k, p in paths.items()}


def _build(folder: Path, seed: int, learned: bool) -> dict[str, Path]:
    import matplotlib.pyplot as plt

    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    dataset = build_embedded(seed=seed)
    paths = {}

    rows, labels = dataset_rows(dataset, rng)
    fig = viz.grid_figure(rows, labels, col_labels=["good"] + ["defect (ground truth)"] * (max(map(len, rows)) - 1))
    viz.save_figure(fig, paths.setdefault("dataset", folder / "dataset.png"))
    plt.close(fig)

    obj = dataset.filter(category="washer", split="train", label="good")[0]
    panels, names = mask_rows(obj.image().shape[:2], rng, foreground=foreground_for(obj))
    fig = viz.grid_figure([panels], None, col_labels=names)
    viz.save_figure(fig, paths.setdefault("masks", folder / "masks.png"))
    plt.close(fig)

    results, rows, labels = [], [], []
    for k, cat in enumerate(DEMO_CATEGORIES):
        # learned methods (short quick-mode fits) run on the object category only, to keep the demo short
        for name, family, good, sample, secs, fit_secs in method_samples(dataset, cat, seed, learned=learned and k == len(DEMO_CATEGORIES) - 1):
            rows.append(viz.sample_row(good, sample))
            labels.append(f"{name}\n({cat})")
            changed = np.abs(sample.image - good).max(axis=2) > 1 / 255
            results.append({"method": name, "family": family, "category": cat, "seconds": secs, "fit_seconds": fit_secs,
                            "mask_fraction": float(sample.mask.mean()),
                            "changed_outside_mask": float((changed & ~sample.mask).mean())})
    if rows:
        fig = viz.grid_figure(rows, labels)
        viz.save_figure(fig, paths.setdefault("methods", folder / "methods.png"))
        plt.close(fig)

    lines = ["# defectlab demo", "", f"Seed {seed}; embedded data set at `{dataset.root}`.", "",
             "| category | " + " | ".join(sorted({k for v in dataset.summary().values() for k in v})) + " |"]
    keys = sorted({k for v in dataset.summary().values() for k in v})
    lines.append("|---" * (len(keys) + 1) + "|")
    for cat, counts in dataset.summary().items():
        lines.append(f"| {cat} | " + " | ".join(str(counts.get(k, 0)) for k in keys) + " |")
    lines += ["", "| method | family | category | fit s | s / image | mask % | changed outside mask % |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['method']} | {r['family']} | {r['category']} | {r['fit_seconds']:.2f} | {r['seconds']:.3f} | "
                     f"{100 * r['mask_fraction']:.1f} | {100 * r['changed_outside_mask']:.2f} |")
    skipped = [n for n in methods.available() if _learned(n)] if not learned else []
    if skipped:
        lines += ["", f"Learned methods not run (each trains a model; `python -m defectlab.demo --learned` runs them "
                      f"with short quick-mode fits): {', '.join(skipped)}."]
    lines += ["", f"Total wall time: {time.perf_counter() - t_start:.1f} s.", ""]
    from .imageio import atomic_write_bytes

    atomic_write_bytes(paths.setdefault("report", folder / "report.md"), "\n".join(lines).encode())
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m defectlab.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs/demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    ap.add_argument("--learned", action="store_true", help="also fit and run the learned methods (short quick-mode fits)")
    args = ap.parse_args(argv)
    try:
        paths = run_demo(args.out, seed=args.seed, overwrite=args.overwrite, learned=args.learned)
    except DefectlabError as exc:
        print(f"defectlab demo: error: {exc}", file=sys.stderr)
        return 2
    for kind, path in paths.items():
        print(f"{kind:8s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
