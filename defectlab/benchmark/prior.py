"""`defectlab prior train`: the domain prior of each seed's benchmark split (issue #36).

The prior must see the good training images exactly as the benchmark's DiAD and AdaBLDM runs see them (the
seed's split, on the benchmark's canvases), so this command opens the data set through the benchmark's own checks
and split, prepares the good images as the benchmark does, and calls `defectlab.prior.trained_prior` on them. A
run with the same images then finds the cached prior by its fingerprint instead of training one. Where the good
test images are a per-seed hold-out (Magnetic Tile) each seed gets its own prior; where they are fixed (MVTec,
the embedded set) one prior serves every seed.

    defectlab prior train --format embedded --category washer
    defectlab prior train --data ../shared/datasets/magnetic_tile --category magnetic_tile --seeds 0-4
"""
from __future__ import annotations

import argparse
from dataclasses import replace

from .config import BenchmarkConfig


def benchmark_goods(cfg: BenchmarkConfig, seed: int, show_progress: bool = True) -> tuple[list, list]:
    """(the seed's good training images, its good test images), on the benchmark's canvases (what its runs see)."""
    from .checks import validate_config
    from .units import _prepared

    _, splits, _ = validate_config(replace(cfg, seeds=[seed]))
    prepared = _prepared(cfg, seed, splits[seed], show_progress)
    return prepared.goods, [im for im, label in zip(prepared.test_images, prepared.test_labels) if label == "good"]


def train_priors(cfg: BenchmarkConfig, params=None, minutes: float | None = None, show_progress: bool = True) -> dict:
    """{seed: DomainPrior or None (stopped by `minutes`)} for every seed of `cfg`; seeds with the same good images
    share one prior (trained once)."""
    from ..prior import PriorParams, trained_prior

    params = params or PriorParams()
    out = {}
    for seed in cfg.seeds:
        goods, _ = benchmark_goods(cfg, seed, show_progress)
        out[seed] = trained_prior(goods, params, category=cfg.category, minutes=minutes, show_progress=show_progress,
                                  provenance={"data": cfg.data or cfg.format, "format": cfg.format, "seed": seed,
                                              "shots": cfg.shots, "canvas": cfg.size, "keep_aspect": cfg.keep_aspect})
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from ..config import shown_path
    from ..limits import check_int
    from ..prior import PriorParams
    from .cli import _embedded_counts

    if args.threads:
        check_int("--threads", args.threads, low=1)
        torch.set_num_threads(args.threads)
    if args.minutes is not None and not args.minutes > 0:
        from ..errors import DefectlabError

        raise DefectlabError(f"--minutes must be > 0, got {args.minutes}")
    params = PriorParams(size=args.prior_size, **{k: v for k, v in (("steps", args.steps),
                                                                    ("batch_size", args.batch_size)) if v})
    cfg = BenchmarkConfig(args.category, [], data=args.data, format=args.format, shots=args.shots, seeds=args.seeds,
                          size=args.size, keep_aspect=not args.squash, embedded=_embedded_counts(args))
    for seed, prior in train_priors(cfg, params, args.minutes).items():
        if prior is None:
            print(f"seed {seed}: stopped by --minutes before step {params.steps}; run the same command again to resume")
            return 0
        where = shown_path(prior.folder)  # no folder of this machine in logs
        print(f"seed {seed}: prior of {prior.record['goods']} good images, {prior.record['train_seconds']:.0f} s of "
              f"training; {where}")
    return 0


def add_prior_parser(subparsers) -> argparse.ArgumentParser:
    """Register `defectlab prior train` on a CLI's subparsers."""
    from .cli import _at_least, _csv, _seed_list

    p = subparsers.add_parser("prior", help="the domain prior: an unconditional latent diffusion model of a category's "
                                            "good images (AdaBLDM and DiAD start from it)")
    steps = p.add_subparsers(dest="step", metavar="STEP", required=True)
    t = steps.add_parser("train", help="train (or resume, or find cached) the prior of each seed's benchmark split",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--data", help="data set folder (not needed with --format embedded)")
    t.add_argument("--format", default="auto", help="auto, mvtec, magnetic_tile, btad, ksdd2, visa or embedded")
    t.add_argument("--category", required=True, help="the category whose good training images the prior learns")
    t.add_argument("--shots", type=_at_least(0), default=10, help="the benchmark's --shots (it decides the split)")
    t.add_argument("--seeds", type=_seed_list, default=[0, 1, 2], help="the benchmark's seeds (default 0,1,2)")
    t.add_argument("--size", type=int, default=256, help="the benchmark's --size (the canvas the runs see)")
    t.add_argument("--squash", action="store_true", help="the benchmark's --squash")
    t.add_argument("--embedded-counts", type=_csv(int), metavar="TRAIN,GOOD,DEFECT", help="the benchmark's option")
    t.add_argument("--prior-size", type=_at_least(16), default=128, help="the prior's image side (default 128)")
    t.add_argument("--steps", type=_at_least(1), help="training steps (default: PriorParams.steps)")
    t.add_argument("--batch-size", type=_at_least(1), help="training batch (default: PriorParams.batch_size)")
    t.add_argument("--minutes", type=float, help="checkpoint and stop after this many minutes (run again to resume)")
    t.add_argument("--threads", type=_at_least(1), help="torch CPU threads")
    t.set_defaults(handler=run)
    return p
