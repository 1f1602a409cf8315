"""Train on real, test on synthetic (issue 23) for a finished or running `defectlab benchmark` folder.

For each seed of the folder's config: the seed's `fewshot` detector (`benchmark.detector_runs.fewshot_detector`: the
one the benchmark saved, else trained again exactly as the benchmark trains it) scores each pixel-space method's
synthetic pool (`benchmark.runs.build_method` + `benchmark.prepare.synthesize_pool`: rebuilt byte-identically from
the same seeds); `defectlab.metrics.trts` gives pixel AP / AUPRO against the synthetic masks. Prints a table (mean ±
std over seeds, with each method's method-alone pixel AP from the benchmark's run files and the rank correlation of
TRTS with it) and writes JSON.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trts_benchmark.py --out outputs/q17_washer \\
        --json benchmarks/results/trts_washer.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from defectlab.bench import write_result
from defectlab.benchmark import FEWSHOT, BenchmarkConfig, mean_std, scores_itself
from defectlab.benchmark.checks import validate_config
from defectlab.benchmark.detector_runs import fewshot_detector
from defectlab.benchmark.prepare import ImageCache, prepare_split, synthesize_pool
from defectlab.benchmark.runs import build_method
from defectlab.metrics.correlation import rank_correlation
from defectlab.metrics.detection import evaluate
from defectlab.metrics.trts import trts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="a defectlab benchmark output folder (config.json, runs/)")
    ap.add_argument("--json", required=True, help="where to write the TRTS results")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    saved = json.loads((out / "config.json").read_text())
    cfg = BenchmarkConfig(**{k: v for k, v in saved.items() if k in BenchmarkConfig.__dataclass_fields__})
    splits = validate_config(cfg)[1]
    methods = [m for m in cfg.methods if not scores_itself(m)]
    per: dict = {m: [] for m in methods}
    t0 = time.time()
    for seed in cfg.seeds:
        prepared = prepare_split(splits[seed], ImageCache(cfg.size, keep_aspect=cfg.keep_aspect), show_progress=False)
        det = fewshot_detector(seed, cfg, prepared, out, False)
        recorded = out / "runs" / f"{FEWSHOT}__seed{seed}.json"
        if recorded.is_file():  # the same detector as the benchmark's? its test pixel AP must match
            maps = prepared.eval_maps(det.predict(prepared.test_images)[0])
            again = evaluate(np.stack(prepared.test_masks), maps)["pixel_ap"]
            before = json.loads(recorded.read_text())["metrics"]["pixel_ap"]
            print(f"seed {seed} fewshot detector: test pixel AP {again:.4f} (benchmark run file: {before:.4f})")
            per.setdefault("_fewshot_check", []).append({"seed": seed, "pixel_ap_again": again, "pixel_ap_recorded": before})
        for m in methods:
            method = build_method(m, prepared, seed, cfg.method_params.get(m))
            pool = synthesize_pool(method, prepared, cfg.n_synthetic, seed, m, show_progress=False)
            r = trts(lambda ims: det.predict(ims)[0], pool)
            run = out / "runs" / f"{m}__seed{seed}.json"
            r["pixel_ap_method_alone"] = json.loads(run.read_text())["metrics"]["pixel_ap"] if run.is_file() else None
            r["seed"] = seed
            per[m].append(r)
            print(f"seed {seed} {m:14s} TRTS pixel AP {r['trts_pixel_ap']:.3f} AUPRO {r['trts_aupro']:.3f}", flush=True)
    summary = {m: {k: mean_std([r[k] for r in rs]) for k in ("trts_pixel_ap", "trts_aupro", "pixel_ap_method_alone")}
               for m, rs in per.items() if not m.startswith("_")}
    corr = {}
    for k in ("trts_pixel_ap", "trts_aupro"):
        rho, tau, n = rank_correlation({m: s[k]["mean"] for m, s in summary.items()},
                                       {m: s["pixel_ap_method_alone"]["mean"] for m, s in summary.items()})
        corr[k] = {"spearman": rho, "kendall": tau, "n_methods": n}
    print(f"\n{'method':14s} {'TRTS pixel AP':>16s} {'TRTS AUPRO':>16s} {'pixel AP (method alone)':>24s}")
    for m, s in summary.items():
        cells = [f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}" if s[k]["mean"] is not None else "–"
                 for k in ("trts_pixel_ap", "trts_aupro", "pixel_ap_method_alone")]
        print(f"{m:14s} {cells[0]:>16s} {cells[1]:>16s} {cells[2]:>24s}")
    for k, c in corr.items():
        print(f"rank correlation of {k} with pixel AP over {c['n_methods']} methods: Spearman {c['spearman']:+.2f}, "
              f"Kendall {c['kendall']:+.2f}")
    write_result(args.json, {"config": saved, "per_seed": per, "summary": summary, "correlation": corr,
                             "seconds": round(time.time() - t0, 1)}, indent=1)


if __name__ == "__main__":
    main()
