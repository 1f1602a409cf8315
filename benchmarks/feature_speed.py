"""Inception feature throughput on this machine (images/s at 299x299), the offline FID network.

Run: .venv/bin/python benchmarks/feature_speed.py [--images 16] [--batch 8] [--out FILE]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from defectlab.bench import time_call, write_result
from defectlab.metrics import inception

OUT = Path(__file__).resolve().parent / "results" / "feature_speed.json"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path, default=OUT, help="JSON file to write")
    args = parser.parse_args(argv)
    source = inception.resolve_weights()
    built = time_call(inception.extractor, warmup=0, repeats=1)
    net, build_s = built["value"], built["min"]
    rng = np.random.default_rng(0)
    batch = torch.from_numpy(rng.integers(0, 256, (args.batch, 3, 299, 299), dtype=np.uint8))
    batches = max(1, args.images // args.batch)
    with torch.no_grad():
        net(batch[:1])  # warm-up
        seconds = time_call(lambda: [net(batch) for _ in range(batches)], warmup=0, repeats=1)["min"]
    n = batches * args.batch
    result = {"weights": source.kind, "images": n, "batch": args.batch, "seconds": round(seconds, 3),
              "images_per_s": round(n / seconds, 3), "build_s": round(build_s, 2)}
    print(f"{'weights':<12} {'images':>6} {'batch':>5} {'seconds':>8} {'images/s':>9} {'build s':>8}")
    print(f"{source.kind:<12} {n:>6} {args.batch:>5} {seconds:>8.2f} {n / seconds:>9.2f} {build_s:>8.2f}")
    write_result(args.out, result, argv=argv)


if __name__ == "__main__":
    main()
