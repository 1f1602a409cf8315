"""Generate defects with a trained AdaBLDM run and write them as a data set, with a picture.

    defectlab adabldm generate --checkpoint outputs/adabldm --data embedded --category washer \\
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

PROG = "python -m defectlab.adabldm.generate"  # also `defectlab adabldm generate` (defectlab.cli)
MAX_SAMPLES = 10_000  # one gallery row per sample: beyond this the picture alone would not fit in memory


def generate_samples(checkpoint: str | Path, data: str, category: str | None, n: int, out: str | Path, *,
                     path: str | None = None, shots: int | str = 2, seed: int = 0, overwrite: bool = False,
                     show_progress: bool = True, by_type: int = 0):
    """Write `n` AdaBLDM samples under `out`; returns (manifest entries, gallery path). With `by_type` > 0 also
    `gallery_by_type.png` (+ `.json`): that many synthetic defects per type beside the nearest held-out real one."""
    from .. import viz
    from ..data.writer import DatasetWriter
    from ..imageio import read_image, read_mask
    from ..sample import Sample
    from ..synth.batch import synthesize
    from .checkpoint import resolve
    from .method import AdaBLDMMethod
    from .checkpoint import read_state
    from .train import load_training_data

    if n < 1:
        raise DefectlabError(f"--n must be >= 1, got {n}")
    if resolve(checkpoint) is None:
        raise DefectlabError(f"{checkpoint}: no AdaBLDM checkpoint in this folder (train one with "
                             "defectlab adabldm train)")
    split = load_training_data(data, path, category, shots, seed)
    goods, fgs, defects, category = split.goods, split.foregrounds, split.defects, split.category
    if "sources" in read_state(resolve(checkpoint)):
        from .checkpoint import refuse_if_trained_on

        refuse_if_trained_on(checkpoint, split.heldout)  # the same split as training, or a disjoint one
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
        meta = e.get("meta", {})
        labels.append(meta.get("defect_type") or meta.get("prompt") or f"{i:05d}")  # the prompt is too long for a row
    fig = viz.grid_figure(rows, labels, ("good", "generated", "mask", "overlay", "good (zoom)", "generated (zoom)"))
    gallery = out / "gallery.png"
    viz.save_figure(fig, gallery)
    if by_type > 0:
        import json

        from ..imageio import atomic_write_bytes

        fig, info = gallery_by_type(method, split, seed, by_type)
        viz.save_figure(fig, out / "gallery_by_type.png")
        atomic_write_bytes(out / "gallery_by_type.json", json.dumps(info, indent=1).encode())
    return entries, gallery


def _crop(image: np.ndarray, mask: np.ndarray, side: int = 64) -> np.ndarray:
    from .. import viz
    from ..resize import resize_image

    return resize_image(np.ascontiguousarray(viz.zoom(image, mask)), side, interpolation="area")


def gallery_by_type(method, data, seed: int = 0, per_type: int = 1):
    """One row per defect type (`per_type` each): good image, synthetic defect (outlined), a zoom on it, and the
    nearest held-out real defect of that type (smallest pixel distance between the 64 x 64 zooms), zoomed and whole.

    `method` is a fitted AdaBLDMMethod, `data` the `train.TrainingData` it was fitted on (its held-out images were
    never seen in training). Returns (figure, rows as dicts)."""
    from .. import viz

    kinds = sorted({d.meta["label"] for d in data.defects})
    real = {k: [(r.key, *r.load()) for r in data.heldout_records if r.label == k] for k in kinds}
    rows, labels, info = [], [], []
    for ki, kind in enumerate(kinds):
        for j in range(per_type):
            rng = np.random.default_rng([seed, ki, j])
            gi = int(rng.integers(len(data.goods)))
            sample = method(data.goods[gi], rng, foreground=data.foregrounds[gi], defect_type=kind)
            mine = _crop(sample.image, sample.mask)
            near = min(real[kind], key=lambda t: float(np.mean((_crop(t[1], t[2]) - mine) ** 2))) if real[kind] else None
            row = [viz.to_rgb(data.goods[gi]), viz.overlay(sample.image, sample.mask, alpha=0.0), viz.to_rgb(mine)]
            if near is not None:
                row += [viz.to_rgb(_crop(near[1], near[2])), viz.overlay(near[1], near[2], alpha=0.0)]
            rows.append(row)
            labels.append(kind)
            info.append({"type": kind, "good": gi, "nearest_heldout": near[0] if near else None,
                         "window": sample.meta.get("window")})
    cols = ("good", "synthetic (outlined)", "synthetic (zoom)", "nearest held-out real (zoom)", "held-out real")
    return viz.grid_figure(rows, labels, cols, cell=2.2), info


def visibility_by_type(method, data, seed: int = 0, per_type: int = 4, show_progress: bool = True) -> dict:
    """Per defect type: median visibility (`metrics.visibility`: defect vs surround contrast) of `per_type`
    synthetic defects and of the type's held-out real ones, and their ratio (issue #36's goal: 0.7-1.5).
    `method`, `data`: as in `gallery_by_type`. Returns {type: {"ratio", "synthetic", "real", "n_synthetic",
    "n_real", "within"}} and, under "samples", the synthetic Samples by type (for pictures)."""
    from ..metrics.visibility import compare
    from ..progress import progress

    kinds = sorted({d.meta["label"] for d in data.defects})
    out, samples = {}, {}
    for ki, kind in enumerate(progress(kinds, desc="visibility by type") if show_progress else kinds):
        real = [r.load() for r in data.heldout_records if r.label == kind]
        made = []
        for j in range(per_type):
            rng = np.random.default_rng([seed, ki, j, 1])
            gi = int(rng.integers(len(data.goods)))
            made.append(method(data.goods[gi], rng, foreground=data.foregrounds[gi], defect_type=kind))
        c = compare([im for im, _ in real], [m for _, m in real], [m.image for m in made], [m.mask for m in made])
        ratio = c["visibility_ratio"]
        out[kind] = {"ratio": ratio, "synthetic": c["visibility_fake"], "real": c["visibility_real"],
                     "n_synthetic": c["visibility_n_fake"], "n_real": c["visibility_n_real"],
                     "within": bool(np.isfinite(ratio) and 0.7 <= ratio <= 1.5)}
        samples[kind] = made
    return {"types": out, "samples": samples}


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    from .train import shots_arg

    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="trained run folder (defectlab adabldm train --out)")
    p.add_argument("--data", default="embedded",
                   help="'embedded' (default), or with --path: 'auto', mvtec, btad, ksdd2, visa, magnetic_tile")
    p.add_argument("--path", help="data set folder (any layout open_dataset reads)")
    p.add_argument("--category", help="category (default: the first)")
    p.add_argument("--shots", type=shots_arg, default=2,
                   help="real defects per type whose masks are used, as in training (or 'auto')")
    p.add_argument("--by-type", type=int, default=0,
                   help="also gallery_by_type.png: this many per defect type beside the nearest held-out real one")
    p.add_argument("--n", type=int, default=8, help="samples to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--out", required=True, help="output folder (a re-run resumes)")
    p.add_argument("--overwrite", action="store_true")
    return p


def run(args) -> int:
    from ..limits import check_int

    if args.threads is not None:
        check_int("--threads", args.threads, low=1)
        import torch

        torch.set_num_threads(args.threads)
    check_int("--n", args.n, low=1, high=MAX_SAMPLES)
    check_int("--by-type", args.by_type, low=0)
    entries, gallery = generate_samples(args.checkpoint, args.data, args.category, args.n, args.out, path=args.path,
                                        shots=args.shots, seed=args.seed, overwrite=args.overwrite, by_type=args.by_type)
    print(f"wrote {len(entries)} samples to {args.out} and {gallery}")
    for line in (entries[0].get("meta", {}).get("deviations", []) if entries else []):
        print(f"deviation from the paper: {line}")
    return 0


def main(argv=None, prog: str = PROG) -> int:
    """Bad input ends as one line `<prog>: error: ...` and exit status 2 (see `defectlab.cli.run_handler`).
    Also `defectlab adabldm generate ...` (`defectlab.cli`), which passes its own `prog`."""
    from ..cli import run_handler

    return run_handler(run, build_parser(prog).parse_args(argv), prog=prog)


if __name__ == "__main__":
    raise SystemExit(main())
