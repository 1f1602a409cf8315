"""Inception feature throughput on this machine (images/s at 299x299), the offline FID network.

Run: .venv/bin/python benchmarks/feature_speed.py [--images 16] [--batch 8]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from defectlab.bench import machine_info
from defectlab.metrics import inception


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    source = inception.resolve_weights()
    t0 = time.perf_counter()
    net = inception.extractor()
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    batch = torch.from_numpy(rng.integers(0, 256, (args.batch, 3, 299, 299), dtype=np.uint8))
    with torch.no_grad():
        net(batch[:1])  # warm-up
        t0 = time.perf_counter()
        for _ in range(max(1, args.images // args.batch)):
            net(batch)
        seconds = time.perf_counter() - t0
    n = max(1, args.images // args.batch) * args.batch
    result = {"weights": source.kind, "images": n, "batch": args.batch, "seconds": round(seconds, 3),
              "images_per_s": round(n / seconds, 3), "build_s": round(build_s, 2), "machine": machine_info()}
    print(f"{'weights':<12} {'images':>6} {'batch':>5} {'seconds':>8} {'images/s':>9} {'build s':>8}")
    print(f"{source.kind:<12} {n:>6} {args.batch:>5} {seconds:>8.2f} {n / seconds:>9.2f} {build_s:>8.2f}")
    out = Path(__file__).parent / "results" / "feature_speed.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
