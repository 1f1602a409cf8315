"""The training mix of `<method>+fewshot` runs: pixel AP (and IAP, image AUROC) against `real_share`, the share of
defective draws taken from the real few-shot defects, as paired differences to `fewshot` (issue 34, item 1).

    python benchmarks/real_share_sweep.py --data ../shared/datasets/magnetic_tile --detector destseg \\
        --methods copypaste,draem --shares none,0,0.25,0.5,0.75 --seed 0 --out outputs/real_share_destseg
    python benchmarks/real_share_sweep.py --report outputs/real_share_destseg --json benchmarks/results/real_share_destseg.json

Each point is the benchmark's own run (`benchmark.detector_runs.fit_detector`: the seed's generators and shared
initialisation, so every point of a seed is paired with its `fewshot` run), trained on the method's pool of
`--n-synthetic` defects (`benchmark.runs.build_method` + `benchmark.prepare.synthesize_pool`, as the benchmark makes
it) plus the real support. `none` is the uniform pooled draw (the share then follows the counts). One JSON file per
point under --out, written atomically: a stopped call resumes.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

METRICS = ("image_auroc", "pixel_ap", "iap", "iap90", "aupro")


def _share(text: str):
    return None if text == "none" else float(text)


def run(args) -> None:
    from dataclasses import replace

    import torch

    from defectlab.bench import write_result
    from defectlab.benchmark import FEWSHOT, BenchmarkConfig
    from defectlab.benchmark.checks import validate_config
    from defectlab.benchmark.detector_runs import fit_detector
    from defectlab.benchmark.prepare import ImageCache, prepare_split, synthesize_pool
    from defectlab.benchmark.runs import build_method
    from defectlab.metrics.detection import evaluate

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = BenchmarkConfig(data=args.data, format=args.format, category=args.category, methods=args.methods,
                          seeds=[args.seed], size=args.size, shots=args.shots, detector_name=args.detector,
                          steps=args.steps, n_synthetic=args.n_synthetic)
    splits = validate_config(cfg)[1]
    prepared = prepare_split(splits[args.seed], ImageCache(args.size, keep_aspect=True), show_progress=False)
    masks = np.stack(prepared.test_masks)

    def point(run: str, share, defects) -> None:
        path = out / f"seed{args.seed}_{run}_share{share}.json"
        if path.is_file():
            return
        t0 = time.time()
        det = fit_detector(run, args.seed, replace(cfg, real_share=share), prepared, defects, False)
        maps, scores = det.predict(prepared.test_images)
        metrics = evaluate(masks, prepared.eval_maps(maps), scores=scores, top_k=det.params.top_k)
        record = {"seed": args.seed, "run": run, "real_share": share, "detector": args.detector,
                  "steps": args.steps, "n_synthetic": args.n_synthetic, "real": len(prepared.support),
                  "metrics": {k: float(metrics[k]) for k in METRICS}, "seconds": round(time.time() - t0, 1)}
        write_result(path, record, indent=1)
        print(f"seed {args.seed} {run} share {share}: " + ", ".join(f"{k} {record['metrics'][k]:.3f}" for k in METRICS),
              flush=True)

    point(FEWSHOT, None, prepared.support)
    for name in args.methods:
        pool = None
        for share in args.shares:
            if (out / f"seed{args.seed}_{name}+{FEWSHOT}_share{share}.json").is_file():
                continue
            if pool is None:
                method = build_method(name, prepared, args.seed)
                pool = synthesize_pool(method, prepared, args.n_synthetic, args.seed, name, show_progress=False)
            point(f"{name}+{FEWSHOT}", share, pool + prepared.support)


def report(args) -> None:
    from defectlab.imageio import atomic_write_bytes
    from defectlab.metrics.paired import paired_difference

    points = [json.loads(p.read_text()) for p in sorted(Path(args.report).glob("seed*_share*.json"))]
    base = {p["seed"]: p["metrics"] for p in points if p["run"] == "fewshot"}
    rows = []
    print("| run | real_share | seeds | " + " | ".join(f"Δ {k} (95 % interval)" for k in ("pixel_ap", "iap", "image_auroc"))
          + " | p (pixel AP) |")
    print("|---|---|---|---|---|---|---|")
    for run in sorted({p["run"] for p in points} - {"fewshot"}):
        for share in sorted({p["real_share"] for p in points if p["run"] == run}, key=lambda s: -1 if s is None else s):
            ps = {p["seed"]: p["metrics"] for p in points if p["run"] == run and p["real_share"] == share}
            row = {"run": run, "real_share": share, "seeds": sorted(ps)}
            cells = []
            for k in ("pixel_ap", "iap", "image_auroc"):
                d = paired_difference({s: m[k] for s, m in ps.items()}, {s: m[k] for s, m in base.items()},
                                      rng=np.random.default_rng([len(ps), 31]))
                row[k] = d
                cells.append(f"{d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]" if d["mean"] is not None else "–")
            print(f"| {run} | {'none' if share is None else share} | {len(ps)} | " + " | ".join(cells)
                  + f" | {row['pixel_ap']['p']:.3g} |")
            rows.append(row)
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps({"table": rows, "points": points}, indent=1).encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data")
    ap.add_argument("--format", default="magnetic_tile")
    ap.add_argument("--category", default="magnetic_tile")
    ap.add_argument("--detector", default="destseg")
    ap.add_argument("--steps", type=int, default=None, help="detector steps (default: the detector's own)")
    ap.add_argument("--methods", type=lambda t: t.split(","), default=["copypaste", "draem"])
    ap.add_argument("--shares", type=lambda t: [_share(x) for x in t.split(",")], default=[None, 0.0, 0.25, 0.5, 0.75])
    ap.add_argument("--n-synthetic", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="outputs/real_share")
    ap.add_argument("--report", metavar="FOLDER", help="print the table of the points in FOLDER (trains nothing)")
    ap.add_argument("--json", help="with --report: write the table and points here")
    args = ap.parse_args()
    report(args) if args.report else run(args)


if __name__ == "__main__":
    main()
