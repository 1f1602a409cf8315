"""Seconds per AdaBLDM image: three-stage sampling plus online decoder adaptation.

    python benchmarks/adabldm_speed.py [--size 128] [--checkpoint outputs/adabldm] [--threads 1] [--out FILE]

CPU: the offline model (TAEF2 autoencoder, learned-word prompts) at 128 px, goal <= 20 s per image, with
the paper's whole-image decoder adaptation and with the default window around the defect (and how close
the window's result is to the whole-image one inside the mask, in PSNR).
GPU (when CUDA is present): the same at --size 256. Weights do not change the time, so without a
checkpoint an untrained model of the same architecture is timed. Writes benchmarks/results/adabldm_speed.json.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from defectlab.adabldm import AdaBLDM, AdaBLDMModel, AdaptParams, ModelConfig
from defectlab.bench import time_call, write_result

OUT = Path(__file__).resolve().parent / "results" / "adabldm_speed.json"


def scene(size: int):
    from skimage import data, transform

    good = transform.resize(data.coffee(), (size, size), anti_aliasing=True).astype(np.float32)
    mask = np.zeros((size, size), bool)
    mask[size * 3 // 8: size * 5 // 8, size * 7 // 16: size * 9 // 16] = True  # a 1/4 x 1/8 scratch-like box
    return good, mask


def timed(model: AdaBLDM, good, mask, adapt: AdaptParams, device):
    """(sampling seconds, adaptation seconds, final image) for one image: sampling alone, then sampling + adaptation."""
    sync = torch.cuda.synchronize if device == "cuda" else None

    def generate(params: AdaptParams):
        return model.with_params(adapt=params).generate(good, mask, rng=np.random.default_rng(0),
                                                        prompt="a washer with a scratch")

    sampling = time_call(lambda: generate(replace(adapt, iterations=0)), warmup=0, repeats=1, sync=sync)["min"]
    both = time_call(lambda: generate(adapt), warmup=0, repeats=1, sync=sync)
    return sampling, both["min"] - sampling, both["value"].image


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = float(np.mean((a[where] - b[where]) ** 2))
    return round(10 * np.log10(1 / max(mse, 1e-12)), 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=None, help="image side (default 128 on CPU, 256 on GPU)")
    p.add_argument("--checkpoint", help="trained run folder (optional)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--iterations", type=int, default=200, help="adaptation iterations")
    p.add_argument("--out", type=Path, default=OUT, help="JSON file to write")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = args.size or (256 if device == "cuda" else 128)
    model = AdaBLDM.from_checkpoint(args.checkpoint) if args.checkpoint else \
        AdaBLDM(AdaBLDMModel(ModelConfig(vocabulary=["a", "with", "washer", "scratch"])))
    model.model.to(device)
    model.model.autoencoder.to(device)
    model = model.with_params(steps=args.steps)
    good, mask = scene(size)
    model.with_params(steps=2, adapt=AdaptParams(iterations=1)).generate(good, mask, rng=np.random.default_rng(0),
                                                                        prompt="warm up")
    rows, images = [], {}
    for name, adapt in [("paper (whole image)", AdaptParams(iterations=args.iterations, window_margin=None)),
                        ("window, margin 2", AdaptParams(iterations=args.iterations, window_margin=2)),
                        ("default (window, margin 1)", AdaptParams(iterations=args.iterations))]:
        sample_s, adapt_s, images[name] = timed(model, good, mask, adapt, device)
        rows.append({"adaptation": name, "size": size, "steps": args.steps, "iterations": args.iterations,
                     "sampling_s": round(sample_s, 2), "adaptation_s": round(adapt_s, 2),
                     "total_s": round(sample_s + adapt_s, 2), "psnr_outside_vs_good": psnr(images[name], good, ~mask)})
    for r in rows[1:]:  # how far each window's result is from the paper's, inside the defect mask
        r["psnr_inside_vs_whole"] = psnr(images[r["adaptation"]], images[rows[0]["adaptation"]], mask)
    print(f"{'adaptation':<28}{'size':>6}{'sampling s':>12}{'adapt s':>10}{'total s':>10}{'PSNR out':>10}{'PSNR in vs whole':>18}")
    for r in rows:
        print(f"{r['adaptation']:<28}{r['size']:>6}{r['sampling_s']:>12.2f}{r['adaptation_s']:>10.2f}{r['total_s']:>10.2f}"
              f"{r['psnr_outside_vs_good']:>10.1f}{r.get('psnr_inside_vs_whole', float('nan')):>18.1f}")
    report = {"benchmark": "adabldm_speed", "device": device, "goal_s_per_image_cpu_128": 20.0, "rows": rows}
    write_result(args.out, report, argv=argv, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
