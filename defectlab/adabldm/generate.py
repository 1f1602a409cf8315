"""Generate defects with a trained AdaBLDM run and write them as a data set, with a picture.

    python -m defectlab.adabldm.generate --checkpoint outputs/adabldm --data embedded --category washer \\
        --n 8 --out outputs/adabldm_samples [--seed 0] [--overwrite]

Uses the same few-shot split as training (`--shots`, `--seed`): each sample takes the mask of one of the
real support defects, jittered and placed inside a good image's foreground, and that defect's type as the
prompt. Writes an MVTec-style folder (`<category>/test/adabldm/00000.png` + `ground_truth/`, and a
manifest; a re-run resumes) and `gallery.png` (good / generated / mask / overlay / zooms on the defect).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import DefectlabError


def generate_samples(checkpoint: str | Path, data: str, category: str | None, n: int, out: str | Path, *,
                     path: str | None = None, shots: int = 2, seed: int = 0, overwrite: bool = False,
                     show_progress: bool = True):
    """Write `n` AdaBLDM samples under `out`; returns (manifest entries, gallery path)."""
    from .. import viz
    from ..data.writer import DatasetWriter
    from ..imageio import read_image, read_mask
    from ..sample import Sample
    from ..synth.batch import synthesize
    from .checkpoint import resolve
    from .method import AdaBLDMMethod
    from .train import _load_data

    if n < 1:
        raise DefectlabError(f"--n must be >= 1, got {n}")
    if resolve(checkpoint) is None:
        raise DefectlabError(f"{checkpoint}: no AdaBLDM checkpoint in this folder (train one with "
                             "python -m defectlab.adabldm.train)")
    args = argparse.Namespace(data=data, path=path, category=category, shots=shots, seed=seed)
    goods, fgs, defects, category = _load_data(args)
    method = AdaBLDMMethod(checkpoint=str(checkpoint), object_name=category)
    method.fit(goods, defects, np.random.default_rng(seed), foregrounds=fgs)
    out = Path(out)
    with DatasetWriter(out, overwrite=overwrite) as writer:
        entries = synthesize(method, goods, writer, seed=seed, n=n, category=category, label="adabldm",
                             foregrounds=fgs)
    rows, labels = [], []
    for i, e in enumerate(entries):
        sample = Sample(read_image(out / e["file"]), read_mask(out / e["mask"]), {})
        good = goods[i % len(goods)]
        rows.append(viz.sample_row(good, sample) + [viz.zoom(good, sample.mask), viz.zoom(sample.image, sample.mask)])
        labels.append(e.get("meta", {}).get("prompt", f"{i:05d}"))
    fig = viz.grid_figure(rows, labels, ("good", "generated", "mask", "overlay", "good (zoom)", "generated (zoom)"))
    gallery = out / "gallery.png"
    viz.save_figure(fig, gallery)
    return entries, gallery


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m defectlab.adabldm.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="trained run folder (python -m defectlab.adabldm.train --out)")
    p.add_argument("--data", default="embedded",
                   help="'embedded' (default), or with --path: 'auto', mvtec, btad, ksdd2, visa, magnetic_tile")
    p.add_argument("--path", help="data set folder (any layout open_dataset reads)")
    p.add_argument("--category", help="category (default: the first)")
    p.add_argument("--shots", type=int, default=2, help="real defects per type whose masks are used (as in training)")
    p.add_argument("--n", type=int, default=8, help="samples to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--out", required=True, help="output folder (a re-run resumes)")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        entries, gallery = generate_samples(args.checkpoint, args.data, args.category, args.n, args.out, path=args.path,
                                            shots=args.shots, seed=args.seed, overwrite=args.overwrite)
    except DefectlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(entries)} samples to {args.out} and {gallery}")
    for line in (entries[0].get("meta", {}).get("deviations", []) if entries else []):
        print(f"deviation from the paper: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
