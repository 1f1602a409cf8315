"""How much does AdaBLDM's online decoder adaptation change a benchmark sample, and what does it cost? (issue #18)

    python benchmarks/adabldm_adaptation_budget.py --checkpoint RUN --reference POOL --data DIR \
        [--format magnetic_tile] [--category magnetic_tile] [--iterations 0 50] [--n 20] [--seed 0] [--threads 1]

`--reference`: a benchmark's kept pool folder (`<out>/pools/adabldm/seed-<s>`, copied before the benchmark removes
it), made with `--checkpoint` at the default 200 adaptation iterations. The script remakes its first `n` items with
the same generators (`synthesize_pool`, the benchmark's split for `--seed`, 256 px canvas) at each `--iterations`
budget and compares each with the reference item: the masks must be identical (the same draw), and the image
differs only where adaptation changed it. The method pastes its output through the defect mask (the good image
outside), so only pixels inside the mask can differ. Reported per defect type: PSNR inside the mask against the
200-iteration item, the largest pixel change (grey levels of 255), the *boundary step* (mean absolute difference
between 4-neighbour pixels on either side of the mask's edge, of 255: a seam shows as a larger step) of the remade
and the reference items, the same step on the seed's held-out real defects (their own edges), and seconds per
image. Writes benchmarks/results/adabldm_adaptation_budget.json (resumes per budget).
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "adabldm_adaptation_budget.json"


def boundary_step(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean |I(p) - I(q)| (of 255) over 4-neighbour pairs with p inside the mask and q outside."""
    img = np.asarray(image, np.float64).mean(axis=2)
    steps = []
    for a, b, ma, mb in ((img[1:], img[:-1], mask[1:], mask[:-1]), (img[:, 1:], img[:, :-1], mask[:, 1:], mask[:, :-1])):
        cross = ma != mb
        steps.append(np.abs(a - b)[cross])
    both = np.concatenate(steps)
    return round(float(both.mean()) * 255, 2) if both.size else float("nan")


def compare(item, reference) -> dict:
    """PSNR (dB) and the largest change (of 255) inside the mask, item vs reference; masks must match."""
    if not np.array_equal(item.mask, reference.mask):
        raise SystemExit("a remade item's mask differs from the reference: not the same draw (checkpoint or split?)")
    diff = (np.asarray(item.image, np.float64) - np.asarray(reference.image, np.float64))[item.mask]
    mse = float(np.mean(diff ** 2))
    return {"psnr_in_mask": float("inf") if mse == 0 else round(10 * np.log10(1 / mse), 2),
            "max_change_255": round(float(np.abs(diff).max()) * 255, 1),
            "mean_change_255": round(float(np.abs(diff).mean()) * 255, 2),
            "boundary_step": boundary_step(item.image, item.mask),
            "reference_boundary_step": boundary_step(reference.image, reference.mask)}


def save(out: Path, setup: dict, budgets: dict, real: dict) -> None:
    from defectlab.bench import write_result

    write_result(out, {"setup": setup, "budgets": budgets, "real_boundary_step": real}, indent=1)


def main(argv=None) -> int:
    from defectlab.adabldm.params import AdaptParams
    from defectlab.benchmark import BenchmarkConfig
    from defectlab.benchmark.checks import validate_config
    from defectlab.benchmark.prepare import ImageCache, prepare_split, read_pool_item, synthesize_pool
    from defectlab.benchmark.runs import build_method
    from defectlab.detect.detector import torch_threads

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="the trained AdaBLDM run folder that made the reference pool")
    p.add_argument("--reference", required=True, help="kept pool folder made at 200 iterations ({i:05d}.npz)")
    p.add_argument("--data", required=True, help="data set folder")
    p.add_argument("--format", default="auto")
    p.add_argument("--category", default="magnetic_tile")
    p.add_argument("--iterations", type=int, nargs="+", default=[0, 50])
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    out = Path(args.out)
    reference = [read_pool_item(Path(args.reference) / f"{i:05d}.npz") for i in range(args.n)]
    done = json.loads(out.read_text()) if out.is_file() else {}
    setup = {"checkpoint": str(args.checkpoint), "reference": str(args.reference), "data": args.data,
             "category": args.category, "seed": args.seed, "n": args.n}
    budgets = done.get("budgets", {}) if done.get("setup") == setup else {}
    cfg = BenchmarkConfig(category=args.category, methods=["adabldm"], data=args.data, format=args.format,
                          seeds=[args.seed])
    with torch_threads(args.threads):
        splits = validate_config(cfg)[1]
        prepared = prepare_split(splits[args.seed], ImageCache(cfg.size, keep_aspect=cfg.keep_aspect), show_progress=False)
        real = defaultdict(list)  # per defect type
        for im, m, lab in zip(prepared.test_images, prepared.test_canvas_masks, prepared.test_labels):
            if lab != "good" and m.any():
                real[lab].append(boundary_step(im, m))
        for k in args.iterations:
            if str(k) in budgets:
                continue
            method = build_method("adabldm", prepared, args.seed, {"checkpoint": args.checkpoint,
                                                                    "adapt": AdaptParams(iterations=k)})
            t0 = time.time()
            pool = synthesize_pool(method, prepared, args.n, args.seed, "adabldm", show_progress=True)
            seconds = time.time() - t0
            budgets[str(k)] = {"seconds_per_image": round(seconds / args.n, 1),
                               "items": [{"defect_type": r.meta["defect_type"], "window": r.meta.get("window"),
                                          **compare(s, r)} for s, r in zip(pool, reference)]}
            save(out, setup, budgets, real)
            print(f"{k} iterations: {seconds / args.n:.1f} s / image", flush=True)
        save(out, setup, budgets, real)  # the real defects' steps too when every budget was on record
    print("| iterations | defect type | items | PSNR in mask vs 200 (dB), min / median | largest change (of 255) "
          "| boundary step, median: this / 200 it. / held-out real | s / image (all types) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for k, b in sorted(budgets.items(), key=lambda kv: int(kv[0])):
        by_type = defaultdict(list)
        for row in b["items"]:
            by_type[row["defect_type"]].append(row)
        for kind, rows in sorted(by_type.items()):
            psnr = [r["psnr_in_mask"] for r in rows]
            print(f"| {k} | {kind} | {len(rows)} | {min(psnr):.1f} / {np.median(psnr):.1f} | "
                  f"{max(r['max_change_255'] for r in rows):.0f} | {np.median([r['boundary_step'] for r in rows]):.1f} "
                  f"/ {np.median([r['reference_boundary_step'] for r in rows]):.1f} / {np.median(real[kind]):.1f} "
                  f"| {b['seconds_per_image']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
