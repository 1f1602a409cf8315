"""Learning curve of a benchmark detector (`--detector`, default the DeSTSeg-style one) trained on the real few-shot
defects only (`fewshot`): test metrics after 100 ... 1600 optimiser steps (per stage for DeSTSeg), on Magnetic Tile,
one seed per call. Evidence for issues 16 and 34 (is the detector trained to its plateau?); keep one --out folder
per detector.

    python benchmarks/detector_learning_curve.py --data ../shared/datasets/magnetic_tile --seed 0 \
        --steps 100,200,400,800,1600 --out outputs/learning_curve
    python benchmarks/detector_learning_curve.py --report outputs/learning_curve \
        --json benchmarks/results/detector_learning_curve_magnetic_tile.json

Each point is one detector trained from scratch with `student_steps = seg_steps = steps` and the benchmark's
generators for the `fewshot` run of that seed (the 400-step point is the benchmark's own `fewshot` run). One JSON
file per (seed, steps) under --out, written atomically: a stopped call resumes where it stopped. The teacher's
features are computed once per call and shared by every point.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

METRICS = ("image_auroc", "pixel_auroc", "pixel_ap", "iap", "iap90", "aupro")


def _point_file(out: Path, seed: int, steps: int) -> Path:
    return out / f"seed{seed}_steps{steps}.json"


def run(args) -> None:
    from dataclasses import replace

    import torch

    from defectlab.bench import write_result
    from defectlab.benchmark import FEWSHOT, BenchmarkConfig
    from defectlab.benchmark.checks import validate_config
    from defectlab.benchmark.detector_runs import fit_detector
    from defectlab.benchmark.prepare import ImageCache, prepare_split
    from defectlab.metrics.detection import evaluate

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = BenchmarkConfig(data=args.data, format="magnetic_tile", category="magnetic_tile", methods=[],
                          seeds=[args.seed], size=args.size, shots=args.shots, detector_name=args.detector)
    splits = validate_config(cfg)[1]
    prepared = prepare_split(splits[args.seed], ImageCache(args.size, keep_aspect=True), show_progress=False)
    masks = np.stack(prepared.test_masks)
    for steps in args.steps:
        path = _point_file(out, args.seed, steps)
        if path.is_file():
            print(f"seed {args.seed} steps {steps}: done before", flush=True)
            continue
        t0 = time.time()
        # the benchmark's own `fewshot` fit (its generators, its detector) at `steps` per stage
        det = fit_detector(FEWSHOT, args.seed, replace(cfg, steps=steps), prepared, prepared.support, False)
        t1 = time.time()
        maps, scores = det.predict(prepared.test_images)
        metrics = evaluate(masks, prepared.eval_maps(maps), scores=scores, top_k=det.params.top_k)
        every = max(1, steps // 50)  # at most ~50 points of each loss curve, each a mean over `every` steps
        curve = lambda losses: [float(np.mean(losses[i:i + every])) for i in range(0, len(losses), every)]  # noqa: E731
        stages = {"student_loss": curve(det.student_losses), "seg_loss": curve(det.seg_losses)} \
            if hasattr(det, "seg_losses") else {"loss": curve(det.losses)}
        point = {"seed": args.seed, "steps": steps, "detector": args.detector,
                 "metrics": {k: float(metrics[k]) for k in METRICS}, **stages, "loss_every": every,
                 "train_seconds": round(t1 - t0, 1), "test_seconds": round(time.time() - t1, 1)}
        write_result(path, point, indent=1)
        print(f"seed {args.seed} steps {steps}: " + ", ".join(f"{k} {point['metrics'][k]:.3f}" for k in METRICS)
              + f" ({point['train_seconds']:.0f} s train)", flush=True)


def report(args) -> None:
    from defectlab.imageio import atomic_write_bytes

    points = [json.loads(p.read_text()) for p in sorted(Path(args.report).glob("seed*_steps*.json"))]
    by_steps: dict[int, list] = {}
    for p in points:
        by_steps.setdefault(p["steps"], []).append(p)
    print("| steps | seeds | " + " | ".join(METRICS) + " | student (or only) loss last | seg loss last | train s |")
    print("|---|---|" + "---|" * (len(METRICS) + 3))
    rows = []
    for steps in sorted(by_steps):
        ps = sorted(by_steps[steps], key=lambda p: p["seed"])
        row = {"steps": steps, "seeds": [p["seed"] for p in ps]}
        cells = []
        for k in METRICS:
            v = np.array([p["metrics"][k] for p in ps])
            row[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None}
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}")
        s_last = np.mean([p.get("student_loss", p.get("loss"))[-1] for p in ps])
        g_last = np.mean([p.get("seg_loss", [np.nan])[-1] for p in ps])
        t = np.mean([p["train_seconds"] for p in ps])
        print(f"| {steps} | {','.join(map(str, row['seeds']))} | " + " | ".join(cells)
              + f" | {s_last:.3f} | {'–' if np.isnan(g_last) else f'{g_last:.3f}'} | {t:.0f} |")
        rows.append(row)
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps({"table": rows, "points": points}, indent=1).encode())
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=90)
        xs = [r["steps"] for r in rows]
        common = sorted(set.intersection(*(set(r["seeds"]) for r in rows)))  # the seeds every step count has
        for i, k in enumerate(("pixel_auroc", "pixel_ap", "image_auroc", "aupro")):
            line = [np.mean([p["metrics"][k] for p in points if p["steps"] == x and p["seed"] in common]) for x in xs]
            axes[0].plot(xs, line, marker="o", c=f"C{i}", label=f"{k} (seed{'s' if len(common) > 1 else ''} "
                         f"{','.join(map(str, common))})")
            for r in rows:
                if len(r["seeds"]) > len(common):  # more seeds at this step: their mean ± std
                    axes[0].errorbar([r["steps"]], [r[k]["mean"]], yerr=[r[k]["std"] or 0.0], fmt="s", c=f"C{i}",
                                     mfc="none", capsize=3)
        axes[0].axhline(0.90, ls=":", c="C2", lw=1, label="goal: image AUROC 0.90")
        axes[0].axhline(0.45, ls=":", c="C1", lw=1, label="goal: pixel AP 0.45")
        axes[0].set(xscale="log", xlabel="optimiser steps", ylabel="test metric")
        axes[0].set_title("lines: seeds at every step; squares: mean ± std of all seeds", fontsize=8)
        axes[0].legend(fontsize=6, loc="lower right")
        for p in points:
            if p["steps"] == max(xs):
                for i, key in enumerate(k for k in ("student_loss", "seg_loss", "loss") if k in p):
                    steps = np.arange(len(p[key])) * p["loss_every"]
                    axes[1].plot(steps, p[key], c=f"C{i}", alpha=.6, label=key if p["seed"] == 0 else None)
        axes[1].set(xlabel="step", ylabel="training loss", title=f"{max(xs)} steps, each seed")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.figure)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detector", default="destseg", help="destseg (default), supersimplenet or unet")
    ap.add_argument("--steps", type=lambda t: [int(x) for x in t.split(",")], default=[100, 200, 400, 800, 1600])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="outputs/learning_curve")
    ap.add_argument("--report", metavar="FOLDER", help="print the table of the points in FOLDER (trains nothing)")
    ap.add_argument("--json", help="with --report: write the table and points here")
    ap.add_argument("--figure", help="with --report: save the curves here (PNG)")
    args = ap.parse_args()
    report(args) if args.report else run(args)


if __name__ == "__main__":
    main()
