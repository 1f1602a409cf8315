"""AdaBLDM guidance sweep against the quality metrics on held-out real defects (issue #18).

    python benchmarks/adabldm_guidance_quality.py --checkpoint RUN --data DIR [--format magnetic_tile] \
        [--category magnetic_tile] [--guidance 1.5 3 5 9] [--n 24] [--seed 0] [--adapt 0] [--threads 1]

The benchmark's split for `--seed` (10 shots per type, 256 px canvas): `n` synthetic defects per guidance scale,
drawn exactly as a benchmark pool (same generators for every scale, so the scales differ only in guidance), scored
with the benchmark's quality step (`benchmark.quality.method_quality`: KID, FID, domain distance, IC-LPIPS, the
region metrics and the visibility ratio) against the seed's held-out real defects. The checkpoint must not have seen
those (checked). `--adapt 0` (default) skips the online decoder adaptation: guidance acts on sampling only, and the
sweep is then four times cheaper. Writes benchmarks/results/adabldm_guidance_quality.json (resumes per scale).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "adabldm_guidance_quality.json"
SHOWN = (("kid", "KID"), ("fid", "FID"), ("region_kid", "region KID"), ("region_fid", "region FID"),
         ("ic_lpips", "IC-LPIPS"), ("visibility_ratio", "visibility"))


def main(argv=None) -> int:
    from defectlab.adabldm.params import AdaptParams, SamplerParams
    from defectlab.bench import write_result
    from defectlab.benchmark import BenchmarkConfig
    from defectlab.benchmark.checks import validate_config
    from defectlab.benchmark.prepare import ImageCache, prepare_split, synthesize_pool
    from defectlab.benchmark.quality import method_quality
    from defectlab.benchmark.runs import build_method
    from defectlab.detect.detector import torch_threads

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="trained AdaBLDM run folder")
    p.add_argument("--data", required=True, help="data set folder")
    p.add_argument("--format", default="auto")
    p.add_argument("--category", default="magnetic_tile")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.5, 3.0, 5.0, 9.0])
    p.add_argument("--n", type=int, default=24, help="synthetic defects per scale (and at most this many real ones)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adapt", type=int, default=0, help="decoder adaptation iterations (0: none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.is_file() else {}
    setup = {"checkpoint": str(args.checkpoint), "data": args.data, "category": args.category, "seed": args.seed,
             "n": args.n, "adapt_iterations": args.adapt}
    rows = done.get("rows", []) if done.get("setup") == setup else []
    cfg = BenchmarkConfig(category=args.category, methods=["adabldm"], data=args.data, format=args.format,
                          seeds=[args.seed])
    with torch_threads(args.threads):
        splits = validate_config(cfg)[1]
        prepared = prepare_split(splits[args.seed], ImageCache(cfg.size, keep_aspect=cfg.keep_aspect), show_progress=False)
        for g in args.guidance:
            if any(r["guidance"] == g for r in rows):
                continue
            t0 = time.time()
            params = {"checkpoint": args.checkpoint, "sampler": SamplerParams(guidance=g),
                      "adapt": AdaptParams(iterations=args.adapt)}
            method = build_method("adabldm", prepared, args.seed, params)
            pool = synthesize_pool(method, prepared, args.n, args.seed, "adabldm", show_progress=True)
            seconds = time.time() - t0
            q = method_quality(prepared, pool, args.n, args.seed)
            rows.append({"guidance": g, "synth_seconds": round(seconds, 1),
                         **{k: q[k] for k in q if isinstance(q[k], (int, float, str))}})
            rows.sort(key=lambda r: r["guidance"])
            write_result(out, {"setup": setup, "rows": rows}, argv=argv, indent=1)
            print(f"guidance {g:g}: {seconds:.0f} s", flush=True)
    print("| guidance | " + " | ".join(label for _, label in SHOWN) + " | s / image |")
    print("|---:|" + "---:|" * (len(SHOWN) + 1))
    for r in rows:
        print(f"| {r['guidance']:g} | " + " | ".join(f"{r.get(k, float('nan')):.4g}" for k, _ in SHOWN)
              + f" | {r['synth_seconds'] / args.n:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
