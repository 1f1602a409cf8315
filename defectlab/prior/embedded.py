"""The embedded data set's domain priors: the procedural renderer draws as many good images as a prior needs, so
the prior of an embedded category learns from `GOODS` of them, not from the dozen a few-shot split holds. Its
held-out good images (`HELDOUT`, drawn apart from the training ones) are what its samples are compared with.

    prior = embedded_prior("washer")                     # trained once (progress bar), cached, then loaded
    python -m defectlab.prior.embedded --category washer  # the same from a shell (`make prior-weights`)
"""
from __future__ import annotations

import argparse
import sys

from ..errors import DefectlabError
from .params import PriorParams

GOODS = 256  # ours: good images an embedded category's prior learns from (about 24 min of training, 2 cores)
HELDOUT = 64  # ours: held-out good images its samples are measured against (KID)


def embedded_goods(category: str = "washer", n_train: int = GOODS, n_heldout: int = HELDOUT,
                   show_progress: bool = False) -> tuple[list, list]:
    """(good training images, held-out good images) of an embedded category, rendered at its default size."""
    from ..config import quick_mode
    from ..data import build_embedded

    if quick_mode():  # quick mode: a handful, for the tiny recipe
        n_train, n_heldout = min(n_train, 16), min(n_heldout, 8)
    ds = build_embedded(categories=[category], n_train=n_train, n_test_good=n_heldout, n_test_defect=0)
    train = [r.image() for r in ds.filter(category=category, split="train", label="good")]
    heldout = [r.image() for r in ds.filter(category=category, split="test", label="good")]
    return train, heldout


def embedded_prior(category: str = "washer", params: PriorParams | None = None, *, train: bool = True,
                   minutes: float | None = None, show_progress: bool = True):
    """The cached prior of an embedded category (trained first when missing, unless `train=False`)."""
    from .store import quick_params, trained_prior

    goods, _ = embedded_goods(category)
    return trained_prior(goods, quick_params(params or PriorParams()), category=category, train=train, minutes=minutes,
                         show_progress=show_progress, provenance={"data": "embedded", "rendered_goods": GOODS})


def embedded_prior_folder(category: str = "washer", params: PriorParams | None = None, **kw) -> str:
    """The folder of `embedded_prior(category)` (trained first when missing): what a `prior=` parameter takes."""
    return str(embedded_prior(category, params, **kw).folder)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m defectlab.prior.embedded", description=__doc__.split("\n\n")[0])
    p.add_argument("--category", default="washer")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--minutes", type=float, help="checkpoint and stop after this many minutes (run again to resume)")
    args = p.parse_args(argv)
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        prior = embedded_prior(args.category, minutes=args.minutes)
    except DefectlabError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    if prior is None:
        print("stopped by --minutes; run again to resume")
    else:
        print(f"{args.category}: prior of {prior.record['goods']} good images, {prior.record['train_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
