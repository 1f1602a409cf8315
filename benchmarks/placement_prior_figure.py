"""The figure of docs/placement_prior_mt.png: the placement prior (issue #36) learned from Magnetic Tile's few-shot
support (10 per type, split seed 0): per defect type, where the defects' centres fall (smoothed heat-map over
normalised image coordinates, the centres as dots) and how they are turned (a rose of principal-axis angles).

    python benchmarks/placement_prior_figure.py --out docs/placement_prior_mt.png
"""
import argparse
import json

from defectlab import viz
from defectlab.config import magnetic_tile_dir
from defectlab.data import few_shot_split, open_dataset
from defectlab.placement import PlacementPrior

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data", default=None, help="Magnetic Tile folder (default: ../shared/datasets/magnetic_tile)")
parser.add_argument("--shots", type=int, default=10)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", required=True)
args = parser.parse_args()

ds = open_dataset(args.data or magnetic_tile_dir(), "magnetic_tile")
split = few_shot_split(ds, ds.categories()[0], shots=args.shots, seed=args.seed)
by_type = {}
for r in split.support:
    by_type.setdefault(r.label, []).append(r.mask())
prior = PlacementPrior.fit(by_type)
fig = prior.figure(f"Magnetic Tile placement prior ({args.shots} support masks per type, split seed {args.seed}): "
                   "centres and heat-map (top), orientations (bottom)")
viz.save_figure(fig, args.out)
print(json.dumps(prior.summary(), indent=1))
print("wrote", args.out)
