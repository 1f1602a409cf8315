"""Compute the quality files of a benchmark folder for one seed (the quality step of `defectlab benchmark`),
without training any detector run: synthesis pools are rebuilt exactly as the runs built them, the seed's
`fewshot` detector (for TRTS) is reloaded or retrained identically. Lets the quality step run beside the
training runs; a later `defectlab benchmark ... --quality first|all` on the same folder then finds every file.

    python benchmarks/quality_only.py --out outputs/bench_mt --seed 0 [--quality-images 60]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    from defectlab.benchmark import BenchmarkConfig, scores_itself
    from defectlab.benchmark.checks import validate_config
    from defectlab.benchmark.detector_runs import fewshot_detector
    from defectlab.benchmark.folder import quality_file, write_json
    from defectlab.benchmark.quality import method_quality, trts_scores
    from defectlab.benchmark.runs import build_method
    from defectlab.detect.detector import torch_threads
    from defectlab.benchmark.prepare import ImageCache, prepare_split, synthesize_pool

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--quality-images", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    out = Path(args.out)
    saved = json.loads((out / "config.json").read_text())
    fields = set(BenchmarkConfig.__dataclass_fields__)
    cfg = BenchmarkConfig(**{k: v for k, v in saved.items() if k in fields})
    cfg.seeds, cfg.quality_images = [args.seed], args.quality_images
    with torch_threads(args.threads):
        splits = validate_config(cfg)[1]
        prepared = prepare_split(splits[args.seed], ImageCache(cfg.size, keep_aspect=cfg.keep_aspect), show_progress=False)
        for m in cfg.methods:
            if scores_itself(m) or quality_file(out, m, args.seed).is_file():
                continue
            t0 = time.time()
            method = build_method(m, prepared, args.seed, cfg.method_params.get(m))
            pool = synthesize_pool(method, prepared, cfg.n_synthetic, args.seed, m, show_progress=False)
            synth_seconds = time.time() - t0
            t1 = time.time()
            q = {"method": m, "seed": args.seed, **method_quality(prepared, pool, cfg.quality_images, args.seed),
                 "synth_seconds": round(synth_seconds, 2)}
            if cfg.shots > 0:
                q.update(trts_scores(fewshot_detector(args.seed, cfg, prepared, out, False), pool, cfg.quality_images))
            q["quality_seconds"] = round(time.time() - t1, 2)
            write_json(quality_file(out, m, args.seed), q)
            print(m, {k: q[k] for k in ("kid", "fid", "trts_pixel_ap") if k in q}, f"{time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
