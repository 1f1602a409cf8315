"""SimpleNet / GLASS on Magnetic Tile seed 0 under a few parameter variants: pixel AUROC / AP and image AUROC on a
fixed subset of the test split (50 good + 80 defect images, chosen by `default_rng(0)`), and the training loss at
the start and the end (a flat loss = a discriminator that separates nothing). Evidence for issue 16, not a goal.

    python benchmarks/feature_space_probe.py --data ../shared/datasets/magnetic_tile \
        '{"paper": {"steps": 400}, "sigma0.75_lr": {"steps": 400, "noise_std": 0.75, "lr_discriminator": 0.002}}'

Each variant is `{name: {parameter: value}}` over the method's defaults; `"method": "glass_global"` picks GLASS.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    import torch

    from defectlab import methods
    from defectlab.benchmark import BenchmarkConfig
    from defectlab.benchmark.checks import validate_config
    from defectlab.benchmark.prepare import ImageCache, prepare_split
    from defectlab.metrics.detection import evaluate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", help="JSON {name: {parameter: value}}")
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = BenchmarkConfig(data=args.data, format="magnetic_tile", category="magnetic_tile", methods=["simplenet"],
                            seeds=[0], size=args.size)
    splits = validate_config(cfg)[1]
    prepared = prepare_split(splits[0], ImageCache(args.size, keep_aspect=True), show_progress=False)
    rng = np.random.default_rng(0)
    labels = np.array(prepared.test_labels)
    good, bad = np.where(labels == "good")[0], np.where(labels != "good")[0]
    chosen = np.concatenate([rng.choice(good, 50, replace=False), rng.choice(bad, 80, replace=False)])
    masks = np.stack([prepared.test_masks[i] for i in chosen])
    print("| variant | parameters | pixel AUROC | pixel AP | image AUROC | loss first 20 → last 20 | s |")
    print("|---|---|---|---|---|---|---|")
    for name, over in json.loads(args.variants).items():
        over = dict(over)
        t0 = time.time()
        method = methods.create(over.pop("method", "simplenet"), **over)
        method.fit(prepared.goods, prepared.support, np.random.default_rng([0, 1]), foregrounds=prepared.foregrounds)
        maps = prepared.eval_maps(np.stack([method.score(prepared.test_images[i]) for i in chosen]))
        metrics = evaluate(masks, maps, scores=maps.reshape(len(maps), -1).max(axis=1))  # image score: the map's max
        h = method.history
        print(f"| {name} | {method.name} {over} | {metrics['pixel_auroc']:.3f} | {metrics['pixel_ap']:.3f} | "
              f"{metrics['image_auroc']:.3f} | {np.mean(h[:20]):.3f} → {np.mean(h[-20:]):.3f} | {time.time() - t0:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
