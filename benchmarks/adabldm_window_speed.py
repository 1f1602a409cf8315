"""AdaBLDM speed on real data with the window recipe (issue #18): seconds per training step, and seconds per image
(sampling + online decoder adaptation) for one defect of each type.

    python benchmarks/adabldm_window_speed.py --path ../shared/datasets/magnetic_tile \
        --checkpoint outputs/adabldm_mt_crop_s0 [--steps 30] [--threads 2]

Training: `--steps` steps of the default window recipe (`WINDOW_TRAIN`: fresh 128-px crops of native-resolution
windows, batch 8) from a fresh model on seed 0's support (`--shots auto`); the first 3 steps are warm-up and not
timed; the script projects the recipe's 1200 steps. Generation: one sample per defect type from `--checkpoint` at
the defaults (50 DDIM steps, guidance 9, 200 adaptation iterations) on a good image, with the method's default
mask (a real support mask of that type, turned and moved). Goals (issue #18, idle two cores): training <= 20 min
per category and seed, generation <= 10 s per image. Writes benchmarks/results/adabldm_window_speed.json.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "results" / "adabldm_window_speed.json"
WARMUP = 3


def main(argv=None) -> int:
    from defectlab.adabldm.model import AdaBLDMModel
    from defectlab.adabldm.params import WINDOW_TRAIN, ModelConfig
    from defectlab.adabldm.prompts import vocabulary_for
    from defectlab.adabldm.train import load_training_data, train
    from defectlab.adabldm.windows import WindowPairs
    from defectlab.bench import time_call, write_result

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="magnetic_tile")
    p.add_argument("--path", required=True)
    p.add_argument("--category")
    p.add_argument("--checkpoint", help="trained window-recipe run for the generation rows (none: training only)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    data = load_training_data(args.data, args.path, args.category, "auto", 0)
    pairs = WindowPairs(data.goods, data.foregrounds, data.defects, WINDOW_TRAIN.size, WINDOW_TRAIN.rotation,
                        WINDOW_TRAIN.scale, WINDOW_TRAIN.hflip)
    model = AdaBLDMModel(ModelConfig(vocabulary=vocabulary_for(pairs.prompts + [""])), seed=0)
    train(model, pairs, replace(WINDOW_TRAIN, steps=WARMUP), show_progress=False)
    trained = time_call(lambda: train(model, pairs, replace(WINDOW_TRAIN, steps=args.steps), show_progress=False),
                        warmup=0, repeats=1)
    per_step = trained["min"] / args.steps
    rows = [{"what": f"training step (window recipe, batch {WINDOW_TRAIN.batch_size}, crop {WINDOW_TRAIN.crop})",
             "seconds": round(per_step, 3),
             "projected_minutes": round(per_step * WINDOW_TRAIN.steps / 60, 1), "goal": "<= 20 min for 1200 steps"}]
    print(f"training: {per_step:.2f} s/step -> {per_step * WINDOW_TRAIN.steps / 60:.1f} min for {WINDOW_TRAIN.steps} steps")
    if args.checkpoint:
        from defectlab import methods

        method = methods.create("adabldm", checkpoint=args.checkpoint)
        method.fit(data.goods, data.defects, np.random.default_rng(0), foregrounds=data.foregrounds)
        for i, kind in enumerate(sorted({d.meta["label"] for d in data.defects})):
            good, fg = data.goods[i], data.foregrounds[i]
            # the default mask: a support mask of this type, turned and moved
            made = time_call(lambda: method(good, np.random.default_rng(i), foreground=fg, defect_type=kind),
                             warmup=0, repeats=1)
            s, wall = made["value"], made["min"]
            r0, r1, c0, c1 = s.meta["window"]
            rows.append({"what": f"generate {kind}", "window": f"{r1 - r0} x {c1 - c0}", "seconds": round(wall, 1),
                         "goal": "<= 10 s per image"})
            print(f"generate {kind:<10} window {r1 - r0} x {c1 - c0}: {wall:.1f} s", flush=True)
    write_result(args.out, {"rows": rows, "threads": args.threads, "load_average_at_start": load}, argv=argv, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
