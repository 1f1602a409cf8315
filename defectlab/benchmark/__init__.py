"""Downstream benchmark: does training a detector on a method's synthetic defects find real ones?

    defectlab benchmark --data PATH --category C --methods copypaste,cutpaste,draem \\
        --shots 10 --seeds 0,1,2 --size 256 --out DIR [--detector destseg|unet] [--detector-steps N]
        [--format mvtec|magnetic_tile|embedded]

Protocol, per seed: split the real defects of each type into `shots` for training and the rest
held out (`defectlab.data.few_shot_split`; held-out defects are never seen in training); build a
pool of synthetic defects with each method (learned methods are first fitted on the few-shot
support set); train one detector per run (default: the DeSTSeg-style `DeSTSegDetector` on the
pretrained EfficientNet-Lite0; `--detector unet`: the compact from-scratch U-Net) and test it on
held-out defects plus held-out good images. Images keep their aspect ratio (long side = `--size`,
zero-padded to a square; see `defectlab.benchmark.prepare`). Runs: `patchcore` (no defects at all: a
memory bank of good patches), `diad` with `--diad` (no defects either: guided latent-diffusion reconstruction,
`defectlab.detect.diad`), `fewshot` (real few-shot defects only), `<method>` (its synthetic
defects only) and `<method>+fewshot` (both); the detectors of one seed start from the same
initialisation, so `fewshot` vs `<method>+fewshot` is a paired comparison. Feature-space methods
(SimpleNet, GLASS global) make their anomalies in feature space and are detectors themselves: their
single run `<method>` tests the method's own `score()` maps, fitted on the good training images.
Transfer (`--transfer-from A`, `--transfer-types T,...`; issue 22): every synthesis method that learns from
defects gets two more runs, `<method>@<source>` and `<method>@<source>+fewshot`, whose method is fitted on
category A's few-shot defects (the same shots / seed rule as A's own benchmark; only the types listed with
`--transfer-types`) and places them on the benchmarked category's good images (its foregrounds, its
textures); the detector's goods, its real support (`+fewshot`) and the test set stay the benchmarked
category's. `--transfer-types` alone keeps A = the benchmarked category and restricts the source to some of
its defect types (Magnetic Tile: a crack learned from the Crack tiles only, tested on every type). Copy-paste
from another category blends in the gradient domain (Poisson, `TRANSFER_PARAMS`), so the pasted defect takes the
new surface's brightness.
Beside the detection metrics,
each pixel-space method's quality (KID, FID, domain distance, IC-LPIPS, IS; also on windows around the
defects, and their visibility: synthetic vs held-out real defects) and the rank correlation of each with
detection, with bootstrap intervals.

Writes `results.json`, `results.md`, `pr_curves.png`, `detections.png` and `runs/` (one JSON per
run and seed: an interrupted benchmark resumes where it stopped). Every file is written atomically. A synthetic
pool is kept item by item in `pools/<method>/seed-<s>/` until its runs are written (a killed pool of a slow method
resumes with the same bytes), and AdaBLDM's training checkpoints per seed stay in `models/adabldm/seed-<s>/`.
Seeds run apart (`--seeds 1` in one folder, `--seeds 2` in another) join with `defectlab benchmark-merge`
(`merge.merge_results`).
"""
from __future__ import annotations

from .cli import add_arguments, add_benchmark_parser, main
from .config import DETECTORS, DIAD, FEWSHOT, PATCHCORE, TRANSFER_PARAMS, BenchmarkConfig, base_method, scores_itself, \
    transferable
from .correlation import correlation_forest, quality_scatter
from .figures import detection_grid, pr_curves, pr_figure
from .protocol import run_benchmark
from .quality import QUALITY_KEYS
from .report import export_report, load_results, metric_figure, quality_vs_detection_figure
from .tables import by_type_table, mean_std, region_table, summarize

__all__ = ["BenchmarkConfig", "DETECTORS", "DIAD", "FEWSHOT", "PATCHCORE", "QUALITY_KEYS", "TRANSFER_PARAMS",
           "add_arguments", "add_benchmark_parser", "base_method", "by_type_table", "correlation_forest", "detection_grid",
           "export_report",
           "load_results", "main", "mean_std", "metric_figure", "pr_curves", "pr_figure", "quality_scatter",
           "quality_vs_detection_figure", "region_table", "run_benchmark", "scores_itself", "summarize",
           "transferable"]
