"""Fit time and images/s of the feature-space and generative synthesizers on the embedded data set.

Each method is fitted in quick mode (its `quick_steps` at its quick working size: a short fit, the
speed figure, not the quality one) on one category's good training images and 1-shot support defects,
then called on `--n` good images; feature-space methods also time `score` (anomaly maps/s).

Run: .venv/bin/python benchmarks/learned_synth_speed.py [--category pcb_chip] [--n 8] [--threads 1] [--out FILE]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import defectlab
from defectlab import Sample
from defectlab.bench import time_call, write_result
from defectlab.config import quick
from defectlab.data import build_embedded, few_shot_split, foreground_for

OUT = Path(__file__).resolve().parent / "results" / "learned_synth_speed.json"
METHODS = ("simplenet", "glass_global", "texture_gan", "realnet_sdas", "defectfill", "defect_gan")


def bench(name: str, goods, fgs, support, n: int) -> dict:
    method = defectlab.create(name)

    def fit():
        with quick():
            method.fit(goods, support, np.random.default_rng(0), foregrounds=fgs)

    def generate():
        for i in range(n):
            method(goods[i % len(goods)], np.random.default_rng([1, i]), foreground=fgs[i % len(goods)])

    fit_s = time_call(fit, warmup=0, repeats=1)["min"]
    row = {"method": name, "family": defectlab.get(name).family, "fit_s": round(fit_s, 2),
           "fit_steps": len(method.history),
           "images_per_s": round(n / time_call(generate, warmup=0, repeats=1)["min"], 3)}
    if hasattr(method, "score"):
        scored = time_call(lambda: [method.score(goods[i % len(goods)]) for i in range(n)], warmup=0, repeats=1)
        row["maps_per_s"] = round(n / scored["min"], 3)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--category", default="pcb_chip")
    parser.add_argument("--size", type=int, default=128, help="embedded image size (px)")
    parser.add_argument("--n", type=int, default=8, help="images generated (and scored) per method")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", type=Path, default=OUT, help="JSON file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = build_embedded(size=args.size)
    split = few_shot_split(data, args.category, shots=1, seed=0)
    goods = [r.image() for r in split.good_train]
    fgs = [foreground_for(r, g) for r, g in zip(split.good_train, goods)]
    support = [Sample(*r.load(), {"label": r.label}) for r in split.support]
    rows = [bench(name, goods, fgs, support, args.n) for name in args.methods.split(",")]
    print(f"{args.category}, {args.size} px, {len(goods)} goods, {len(support)} support defects, "
          f"{args.threads} thread(s), quick-mode fits")
    print(f"{'method':14s} {'family':11s} {'fit s':>7s} {'steps':>6s} {'images/s':>9s} {'maps/s':>7s}")
    for r in rows:
        print(f"{r['method']:14s} {r['family']:11s} {r['fit_s']:7.1f} {r['fit_steps']:6d} {r['images_per_s']:9.3f} "
              f"{r.get('maps_per_s', float('nan')):7.2f}")
    write_result(args.out, {"args": vars(args), "n_goods": len(goods), "n_support": len(support), "rows": rows},
                 argv=argv)


if __name__ == "__main__":
    main()
