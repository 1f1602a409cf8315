"""A small guidance sweep for AdaBLDM on a trained checkpoint: the same good image, mask and seed at several
guidance scales, per defect type; mean |final - good| inside the mask and seconds per image.

    python benchmarks/adabldm_guidance.py [--checkpoint RUN] [--guidance 1.5 3 5 9] [--threads 1]

Default checkpoint: the cached washer one (`make adabldm-weights`). No decoder adaptation (guidance acts on
sampling only). Writes benchmarks/results/adabldm_guidance.json and outputs/adabldm_guidance_<type>.png.
This is a qualitative sweep, not the quality-metric sweep on held-out defects that issue #18 asks for.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from defectlab import viz
from defectlab.adabldm import AdaBLDM
from defectlab.adabldm import notebook as nbk
from defectlab.adabldm.cache import trained_checkpoint
from defectlab.bench import write_result

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "adabldm_guidance.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="run folder (default: the cached washer checkpoint)")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.5, 3.0, 5.0, 9.0])
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ckpt = args.checkpoint or trained_checkpoint(train=False)
    data = nbk.few_shot_data("washer", shots=2, seed=0, size=128)
    model = AdaBLDM.from_checkpoint(ckpt)
    good, fg = data.goods[0], data.foregrounds[0]
    mask = nbk.make_mask(nbk.MASK_SOURCES[0], good.shape[:2], np.random.default_rng(0), fg, [d.mask for d in data.defects])
    rows = []
    print(f"{'type':<14}" + "".join(f"{'g=' + format(g, 'g'):>10}" for g in args.guidance) + "   (mean |final - good| in mask)")
    for kind in data.defect_types:
        fig, res = nbk.guidance_figure(model, good, mask, fg, "washer", kind, guidances=args.guidance, seed=args.seed)
        viz.save_figure(fig, ROOT.parent / "outputs" / f"adabldm_guidance_{kind}.png")
        change = [float(np.abs(r.image - good)[mask].mean()) for r in res]
        rows.append({"type": kind, "guidance": args.guidance, "change_in_mask": change,
                     "seconds": [sum(r.seconds.values()) for r in res]})
        print(f"{kind:<14}" + "".join(f"{c:>10.4f}" for c in change))
    write_result(OUT, {"checkpoint": str(ckpt), "rows": rows}, argv=argv, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
