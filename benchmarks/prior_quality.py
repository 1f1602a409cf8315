"""Issue #36: do the domain prior's free samples look like the surface? KID(samples, held-out good) beside the
floor KID(good train, held-out good), and 16 samples beside 16 real images (docs/prior_<category>.png).

    python benchmarks/prior_quality.py --data embedded --category washer
    python benchmarks/prior_quality.py --data ../shared/datasets/magnetic_tile --category magnetic_tile --seed 0

Trains the prior first when it is not cached (`defectlab prior train`, `make prior-weights`); prints a table and
writes benchmarks/results/prior_quality_<category>.json with the machine's description.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from defectlab.bench import write_result
from defectlab.viz import save_figure

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="embedded", help="'embedded' or a data set folder (benchmark split)")
    p.add_argument("--format", default="auto")
    p.add_argument("--category", default="washer")
    p.add_argument("--seed", type=int, default=0, help="the benchmark seed whose split the prior learned")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.data == "embedded":
        from defectlab.prior.embedded import embedded_goods, embedded_prior

        goods, heldout = embedded_goods(args.category)
        prior = embedded_prior(args.category)
        where = "embedded (rendered good images)"
    else:
        from defectlab.benchmark.config import BenchmarkConfig
        from defectlab.benchmark.prior import benchmark_goods, train_priors

        cfg = BenchmarkConfig(args.category, [], data=args.data, format=args.format, seeds=[args.seed])
        goods, heldout = benchmark_goods(cfg, args.seed)
        prior = train_priors(cfg)[args.seed]
        where = f"{args.category}, benchmark split of seed {args.seed}"
    from defectlab.prior.quality import sample_kid, samples_beside_real

    out = sample_kid(prior, goods, heldout, args.samples, np.random.default_rng(args.seed))
    fig = samples_beside_real(out.pop("_samples"), out.pop("_heldout"),
                              title=f"{args.category}: domain prior samples (top) and held-out good images (bottom)")
    figure = HERE.parent / "docs" / f"prior_{args.category}.png"
    save_figure(fig, figure)
    print(f"| data | prior train s | KID samples | KID floor | goal | met |\n|---|---|---|---|---|---|\n"
          f"| {where} | {prior.record['train_seconds']:.0f} | {out['kid']:.4f} ± {out['kid_std']:.4f} | "
          f"{out['floor']:.4f} ± {out['floor_std']:.4f} | {out['goal']:.4f} | {'met' if out['met'] else 'missed'} |")
    write_result(HERE / "results" / f"prior_quality_{args.category}.json",
                 {**out, "category": args.category, "data": where, "prior": {k: prior.record[k] for k in
                  ("fingerprint", "sha256", "goods", "train_seconds", "params")}, "figure": str(figure.relative_to(HERE.parent))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
