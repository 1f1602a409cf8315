"""Seconds per benchmark run of each supervised detector, its backbone features already cached (as for every run
of a seed but the first), on the Magnetic Tile `fewshot` split of one seed (issue 34: <= 5 min per run on 2 cores).

    python benchmarks/detector_speed.py --data ../shared/datasets/magnetic_tile --threads 2 \\
        --json benchmarks/results/detector_speed_mt.json

Per detector: fit at its default steps on the real support (the benchmark's `fewshot` fit), then predict the
seed's test images. The backbone features of every image are computed first and timed apart (once per seed).
"""
from __future__ import annotations

import argparse


def main() -> None:
    import torch

    from defectlab.bench import time_call, write_result
    from defectlab.benchmark import FEWSHOT, BenchmarkConfig
    from defectlab.benchmark.checks import validate_config
    from defectlab.benchmark.detector_runs import fit_detector, make_detector
    from defectlab.benchmark.prepare import ImageCache, prepare_split
    from defectlab.detect.destseg import teacher_features

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detectors", type=lambda t: t.split(","), default=["destseg", "supersimplenet"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.detectors:
        cfg = BenchmarkConfig(data=args.data, format="magnetic_tile", category="magnetic_tile", methods=[],
                              seeds=[args.seed], detector_name=name)
        splits = validate_config(cfg)[1]
        prepared = prepare_split(splits[args.seed], ImageCache(cfg.size, keep_aspect=True), show_progress=False)
        params = make_detector(cfg).params
        backbone = teacher_features(params.backbone, params.strides, params.device or "cpu")  # loads the weights
        images = prepared.goods + [s.image for s in prepared.support] + prepared.test_images
        features = time_call(lambda: backbone(images), warmup=0, repeats=1)["min"]
        fitted = time_call(lambda: fit_detector(FEWSHOT, args.seed, cfg, prepared, prepared.support, False),
                           warmup=0, repeats=1)
        det, fit = fitted["value"], fitted["min"]
        predict = time_call(lambda: det.predict(prepared.test_images), warmup=0, repeats=1)["min"]
        steps = getattr(det.params, det.STEP_FIELDS[0])
        rows.append({"detector": name, "steps": steps, "features_s": round(features, 1), "fit_s": round(fit, 1),
                     "predict_s": round(predict, 1), "run_s": round(fit + predict, 1), "images": len(images),
                     "test_images": len(prepared.test_images)})
        print(f"| {name} | {steps} | {features:.0f} ({len(images)} images) | {fit:.0f} | {predict:.0f} | "
              f"{fit + predict:.0f} |", flush=True)
    if args.json:
        write_result(args.json, {"rows": rows, "threads": args.threads}, indent=1)


if __name__ == "__main__":
    main()
