"""On-the-fly synthesis through a DataLoader vs the detector's training step, 256 x 256 RGB.

    python benchmarks/synth_dataloader_speed.py [--items 400] [--workers 0,1,2] [--steps 30] [--out FILE]

- Loader: `defectlab.data.SyntheticDefects` on four good photos, methods draem + memseg + cutpaste (equal
  weights), p_good 0.5 (DRAEM's mix), batches of 8 through `synthetic_loader` with 0, 1, 2 worker processes;
  images/s in the steady state (from the first batch to the last, so worker start-up is left out).
- Detector: `SegmentationDetector`'s default network (DetectorParams) on the same batch size, one torch
  thread: seconds per optimiser step (forward + focal loss + backward + Adam) on a fixed batch, best of
  `--steps`; the images/s that training consumes = batch / step time.
- End to end: `SegmentationDetector.fit` for `--steps` steps with `loader_workers` 0 and 2.
Synthesis must never be the bottleneck: loader images/s should exceed the detector's. Writes
benchmarks/results/synth_dataloader_speed.json.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from defectlab.bench import time_call, write_result

OUT = Path(__file__).resolve().parent / "results" / "synth_dataloader_speed.json"
METHODS = ["draem", "memseg", "cutpaste"]
BATCH = 8  # DetectorParams.batch_size (DRAEM, Sec. 4.1)


def goods(size: int) -> list[np.ndarray]:
    from skimage import data

    photos = [data.coffee(), data.astronaut(), data.rocket(), data.chelsea()]
    return [cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255 for p in photos]


def loader_rate(data, workers: int, items: int) -> float:
    from defectlab.data import synthetic_loader

    data.length = items
    it = iter(synthetic_loader(data, BATCH, np.random.default_rng(0), workers=workers))
    next(it)  # workers started, first batch made
    rest = time_call(lambda: sum(len(image) for image, *_ in it), warmup=0, repeats=1)
    return rest["value"] / rest["min"]


def step_seconds(size: int, steps: int) -> float:
    from torchvision.ops import sigmoid_focal_loss

    from defectlab.detect import DetectorParams
    from defectlab.detect.unet import CompactUNet

    p = DetectorParams()
    net = CompactUNet(3, p.base_channels, p.depth).init_weights(torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(net.parameters(), lr=p.lr)
    x = torch.rand(BATCH, 3, size, size, generator=torch.Generator().manual_seed(1))
    y = (torch.rand(BATCH, size, size, generator=torch.Generator().manual_seed(2)) > 0.9).float()

    def step():
        loss = sigmoid_focal_loss(net(x), y, alpha=p.focal_alpha, gamma=p.focal_gamma, reduction="mean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return time_call(step, warmup=1, repeats=steps)["min"]


def fit_seconds(imgs, workers: int, steps: int) -> float:
    import defectlab
    from defectlab.detect import SegmentationDetector

    synth = defectlab.create("draem")
    det = SegmentationDetector(steps=steps, num_threads=1, loader_workers=workers)
    fit = time_call(lambda: det.fit(imgs, (), np.random.default_rng(0), synth=synth, show_progress=False), warmup=0,
                    repeats=1)
    return fit["min"]


def main(argv=None) -> int:
    from defectlab.data import SyntheticDefects

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--items", type=int, default=400, help="items per loader measurement")
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--steps", type=int, default=30, help="detector steps timed (and fitted end to end)")
    ap.add_argument("--out", type=Path, default=OUT, help="JSON file to write")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    imgs = goods(args.size)
    load_before = os.getloadavg()

    data = SyntheticDefects(imgs, METHODS, p_good=0.5, seed=0)
    loaders = {int(w): loader_rate(data, int(w), args.items) for w in args.workers.split(",")}
    step = step_seconds(args.size, args.steps)
    detector_rate = BATCH / step
    fits = {w: fit_seconds(imgs, w, args.steps) for w in (0, 2)}
    load_after = os.getloadavg()

    print(f"{args.size}x{args.size} RGB, batch {BATCH}, methods {'+'.join(METHODS)}, p_good 0.5, torch/OpenCV threads 1 "
          f"(workers: 1 torch thread each); load average {load_before[0]:.1f} -> {load_after[0]:.1f}\n")
    print(f"{'path':34s} {'images/s':>9s} {'x detector':>11s}")
    rows = []
    for w, ips in loaders.items():
        rows.append({"path": f"SyntheticDefects, {w} workers", "workers": w, "images_per_s": ips, "x_detector": ips / detector_rate})
    rows.append({"path": "detector training step", "images_per_s": detector_rate, "x_detector": 1.0, "step_s": step})
    for r in rows:
        print(f"{r['path']:34s} {r['images_per_s']:9.1f} {r['x_detector']:11.2f}")
    print(f"\ndetector step {step * 1000:.0f} ms; fit of {args.steps} steps end to end: "
          + ", ".join(f"{w} workers {s:.1f} s ({s / args.steps * 1000:.0f} ms/step)" for w, s in fits.items())
          + f"; pure steps {step * args.steps:.1f} s")
    result = {"size": args.size, "batch": BATCH, "methods": METHODS, "p_good": 0.5, "items": args.items, "rows": rows,
              "detector_step_s": step, "fit_s": {str(w): s for w, s in fits.items()}, "fit_steps": args.steps,
              "load_average": {"before": load_before, "after": load_after}}
    write_result(args.out, result, argv=argv)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
