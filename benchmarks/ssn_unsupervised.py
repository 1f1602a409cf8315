"""SuperSimpleNet's unsupervised mode on Magnetic Tile (issue #34, item 3): trained on the good training images of a
benchmark split alone (feature noise inside Perlin masks, no defect), tested on that split's test set, beside the
`simplenet` row (SimpleNet as published) and `patchcore` of the same split. One seed per call; `--report` gathers.

    python benchmarks/ssn_unsupervised.py --data ../shared/datasets/magnetic_tile --seed 0 --out outputs/ssn_unsup
    python benchmarks/ssn_unsupervised.py --report outputs/ssn_unsup --json benchmarks/results/ssn_unsupervised_mt.json

`--param name=value` overrides a `SuperSimpleNetParams` field (an ablation: `--param unsupervised_perlin_threshold=0.6`
is the supervised setting's mask size); each variant gets its own file. A point file is written atomically and
skipped when present, so a stopped call resumes.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

METRICS = ("image_auroc", "pixel_auroc", "pixel_ap", "aupro")


def _variant(params: dict) -> str:
    return "default" if not params else ",".join(f"{k}={v}" for k, v in sorted(params.items()))


def run(args) -> None:
    import torch

    from defectlab.bench import write_result
    from defectlab.benchmark import BenchmarkConfig
    from defectlab.benchmark.checks import validate_config
    from defectlab.benchmark.prepare import ImageCache, prepare_split
    from defectlab.detect import SuperSimpleNetDetector
    from defectlab.metrics.detection import evaluate

    torch.set_num_threads(args.threads)
    params = dict(kv.split("=", 1) for kv in args.param)
    params = {k: json.loads(v) for k, v in params.items()}
    out = Path(args.out)
    path = out / f"seed{args.seed}_{_variant(params)}.json"
    if path.is_file():
        print(f"{path.name}: done before")
        return
    cfg = BenchmarkConfig(data=args.data, format="magnetic_tile", category="magnetic_tile", methods=[],
                          seeds=[args.seed], size=args.size, detector_name="supersimplenet")
    prepared = prepare_split(validate_config(cfg)[1][args.seed], ImageCache(args.size, keep_aspect=True),
                             show_progress=False)
    t0 = time.time()
    det = SuperSimpleNetDetector(**params).fit(prepared.goods, [], np.random.default_rng([args.seed, 34]),
                                               show_progress=True, desc="supersimplenet (unsupervised)")
    t1 = time.time()
    maps, scores = det.predict(prepared.test_images)
    metrics = evaluate(np.stack(prepared.test_masks), prepared.eval_maps(maps), scores=scores)
    point = {"seed": args.seed, "variant": _variant(params), "params": params, "goods": len(prepared.goods),
             "test_images": len(prepared.test_images), "metrics": {k: float(metrics[k]) for k in METRICS},
             "loss_first": float(np.mean(det.losses[:20])), "loss_last": float(np.mean(det.losses[-20:])),
             "train_seconds": round(t1 - t0, 1), "test_seconds": round(time.time() - t1, 1)}
    write_result(path, point, indent=1)
    print(f"seed {args.seed} {point['variant']}: " + ", ".join(f"{k} {point['metrics'][k]:.3f}" for k in METRICS)
          + f" ({point['train_seconds']:.0f} s train)")


def report(args) -> None:
    from defectlab.benchmark.tables import fmt, mean_std
    from defectlab.imageio import atomic_write_bytes

    points = [json.loads(p.read_text()) for p in sorted(Path(args.report).glob("seed*_*.json"))]
    by_variant: dict[str, list] = {}
    for p in points:
        by_variant.setdefault(p["variant"], []).append(p)
    print("| variant | seeds | " + " | ".join(METRICS) + " | train s |")
    print("|---|---|" + "---|" * (len(METRICS) + 1))
    rows = []
    for variant, ps in sorted(by_variant.items()):
        ps.sort(key=lambda p: p["seed"])
        row = {"variant": variant, "seeds": [p["seed"] for p in ps],
               **{k: mean_std([p["metrics"][k] for p in ps]) for k in METRICS}}
        t = np.mean([p["train_seconds"] for p in ps])
        print(f"| {variant} | {','.join(map(str, row['seeds']))} | " + " | ".join(fmt(row[k]) for k in METRICS)
              + f" | {t:.0f} |")
        rows.append(row)
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps({"table": rows, "points": points}, indent=1).encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--param", action="append", default=[], help="name=value (JSON value) of SuperSimpleNetParams")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="outputs/ssn_unsup")
    ap.add_argument("--report", help="a folder of points: print the table")
    ap.add_argument("--json", help="with --report: write the table and the points here")
    args = ap.parse_args()
    if args.report:
        report(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
