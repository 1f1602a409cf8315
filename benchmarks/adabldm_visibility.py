"""Issue #36: are AdaBLDM's defects as visible as the real ones of their type? Per type, the median visibility
(defect vs surround contrast, `defectlab.metrics.visibility`) of synthetic defects over that of the held-out real
ones; the goal is a ratio within 0.7-1.5. Also the by-type picture (synthetic beside the nearest held-out real).

    python benchmarks/adabldm_visibility.py                                   # the cached washer checkpoint
    python benchmarks/adabldm_visibility.py --checkpoint RUN --data magnetic_tile \
        --path ../shared/datasets/magnetic_tile --shots auto --name magnetic_tile

Prints a table; writes benchmarks/results/adabldm_visibility_<name>.json (with the machine's description) and
docs/adabldm_<name>_by_type.png.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from defectlab.bench import write_result

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    from defectlab.adabldm.generate import gallery_by_type, visibility_by_type
    from defectlab.adabldm.method import AdaBLDMMethod
    from defectlab.adabldm.train import load_training_data, shots_arg
    from defectlab.viz import save_figure

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="trained run folder (default: the cached washer checkpoint, make adabldm-weights)")
    p.add_argument("--data", default="embedded")
    p.add_argument("--path")
    p.add_argument("--category")
    p.add_argument("--shots", type=shots_arg, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-type", type=int, default=4)
    p.add_argument("--name", default="washer")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from defectlab.adabldm.cache import trained_checkpoint

        checkpoint = str(trained_checkpoint())
    data = load_training_data(args.data, args.path, args.category, args.shots, args.seed)
    method = AdaBLDMMethod(checkpoint=checkpoint, object_name=data.category)
    method.fit(data.goods, data.defects, np.random.default_rng(args.seed), foregrounds=data.foregrounds)
    result = visibility_by_type(method, data, args.seed, args.per_type)
    fig, _ = gallery_by_type(method, data, args.seed, 1)
    figure = HERE.parent / "docs" / f"adabldm_{args.name}_by_type.png"
    save_figure(fig, figure)
    rows = result["types"]
    print("| type | synthetic | real | ratio | within 0.7-1.5 |\n|---|---|---|---|---|")
    for kind, r in rows.items():
        print(f"| {kind} | {r['synthetic']:.2f} (n={r['n_synthetic']}) | {r['real']:.2f} (n={r['n_real']}) | "
              f"{r['ratio']:.2f} | {'yes' if r['within'] else 'no'} |")
    write_result(HERE / "results" / f"adabldm_visibility_{args.name}.json",
                 {"types": rows, "checkpoint_prior": method.pipeline.model.cfg.prior, "deviations": method.deviations(),
                  "per_type": args.per_type, "seed": args.seed, "data": args.data if args.path is None else args.name,
                  "figure": str(figure.relative_to(HERE.parent))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
