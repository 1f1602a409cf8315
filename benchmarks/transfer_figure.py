"""The figure of docs/transfer_washer_to_pcb_chip.png: washer defects (few-shot support) drawn on pcb_chip good
images by hard copy-paste, Poisson copy-paste and `texture_gan` (fitted on pcb_chip goods + washer defects).

    DEFECTLAB_QUICK=1 python benchmarks/transfer_figure.py --size 128 --out docs/transfer_washer_to_pcb_chip.png
"""
import argparse

import numpy as np

import defectlab
from defectlab import viz
from defectlab.data import build_embedded, few_shot_split
from defectlab.benchmark.prepare import ImageCache, load_support, prepare_split

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--size", type=int, default=128)
parser.add_argument("--shots", type=int, default=1)
parser.add_argument("--out", required=True)
args = parser.parse_args()

two = build_embedded(size=args.size, categories=["washer", "pcb_chip"], n_train=8, n_test_good=3, n_test_defect=3)
cache_b = ImageCache(args.size)
board = prepare_split(few_shot_split(two, "pcb_chip", shots=args.shots, seed=0), cache_b, show_progress=False)
washer = load_support(few_shot_split(two, "washer", shots=args.shots, seed=0).support,
                      ImageCache(args.size, channels=cache_b.channels))
gan = defectlab.create("texture_gan").fit(board.goods, washer, np.random.default_rng(0), foregrounds=board.foregrounds)
rows = []
for k in range(3):
    good, fg = board.goods[k], board.foregrounds[k]
    hard = defectlab.create("copypaste", blend="hard").fit(board.goods, washer)(good, np.random.default_rng(10 + k), foreground=fg)
    poisson = defectlab.create("copypaste", blend="poisson").fit(board.goods, washer)(good, np.random.default_rng(10 + k), foreground=fg)
    fused = gan(good, np.random.default_rng(10 + k), foreground=fg)
    src = washer[hard.meta["drawn"]["defect_index"]]
    rows.append([viz.overlay(src.image, src.mask), hard.image, poisson.image, fused.image,
                 viz.overlay(poisson.image, poisson.mask)])
fig = viz.grid_figure(rows, col_labels=["A: washer defect", "hard paste on B", "Poisson on B", "texture_gan on B",
                                        "mask"], cell=2.5)
viz.save_figure(fig, args.out)
print("wrote", args.out)
