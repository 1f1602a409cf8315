"""Detection-metric speed: pixel metrics (AUROC, AP, F1-max, AUPRO, IAP) for 100 maps of 256x256.

Goal (issue 17): `detection.evaluate` (all nine metrics) <= 1.5 s on one idle core; AUPRO reuses the one sorted
pixel curve. Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/metrics_speed.py [--out FILE]
Prints a table, writes benchmarks/results/metrics_speed.json with the machine's description and load average.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from defectlab.bench import time_call, write_result
from defectlab.metrics import detection


def case(n: int = 100, size: int = 256, seed: int = 0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    for i in range(0, n, 2):
        for _ in range(1 + i % 3):
            y, x = rng.integers(0, size - 40, 2)
            masks[i, y:y + rng.integers(4, 40), x:x + rng.integers(4, 40)] = True
    maps = (rng.random((n, size, size)) + masks * rng.random((n, size, size))).astype(np.float32)
    return masks, maps


OUT = Path(__file__).resolve().parent / "results" / "metrics_speed.json"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="JSON file to write")
    args = ap.parse_args(argv)
    masks, maps = case()
    detection.evaluate(masks[:2], maps[:2])  # imports (scikit-learn) outside the timing
    curve = detection.pixel_curve(masks, maps)
    rows = {
        "pixel_curve (auroc+ap+f1)": lambda: detection.pixel_curve(masks, maps).auroc(),
        "aupro (own sort)": lambda: detection.aupro(masks, maps),
        "aupro (given the curve)": lambda: detection.aupro(masks, maps, curve=curve),
        "iap": lambda: detection.iap(masks, maps),
        "evaluate (all 9)": lambda: detection.evaluate(masks, maps),
    }
    load = os.getloadavg()[0]
    results = {name: round(time_call(fn, warmup=0, repeats=3)["min"], 3) for name, fn in rows.items()}
    print(f"{'metric (100 maps 256x256)':<28} {'best of 3 (s)':>13}")
    for name, s in results.items():
        print(f"{name:<28} {s:>13.3f}")
    print(f"goal: evaluate <= 1.5 s on one idle core; load average at start {load:.1f} "
          f"on {os.cpu_count()} cores")
    write_result(args.out, {"seconds": results, "maps": [100, 256, 256], "goal_evaluate_s": 1.5,
                            "load_average_1min": round(load, 2)}, argv=argv)


if __name__ == "__main__":
    main()
