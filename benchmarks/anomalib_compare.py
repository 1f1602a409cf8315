"""defectlab beside anomalib, in one run on the same inputs: synthesis speed and AUPRO.

    make anomalib-bench            # builds .venv-anomalib (anomalib from the registry) if needed, then runs:
    .venv/bin/python benchmarks/anomalib_compare.py [--n 100] [--rounds 5] [--maps 100] [--passes 2]

anomalib is never imported by defectlab: this script runs in the project's environment, writes the inputs to
a temporary folder and starts itself again under anomalib's own Python (`--anomalib-python`, default
`.venv-anomalib/bin/python`) with `--worker FOLDER`, which times anomalib there and writes JSON back.

- Synthesis at 256 x 256 RGB, one thread everywhere (torch, OpenCV): anomalib's `PerlinAnomalyGenerator`
  (probability 1, the anomaly texture read from a folder: the textures below) against defectlab's `draem`,
  `memseg` and `glass_local` given the *same* texture folder (`texture_folder=`), on the same four good
  images. Best of `--rounds` rounds of `--n` images; the anomalib and defectlab timings alternate
  `--passes` times and the best of all passes is kept (the machine may be shared). Goal: >= 5x anomalib.
- AUPRO (FPR limit 0.3) on the same `--maps` anomaly maps and masks: anomalib's `_AUPRO` torchmetrics
  class against `defectlab.metrics.detection.aupro`; both values and the best of 3 timings.
Writes benchmarks/results/anomalib_compare.json with both environments' descriptions.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "anomalib_compare.json"
METHODS = ["draem", "memseg", "glass_local"]
FPR_LIMIT = 0.3  # MVTec AD (Bergmann et al., IJCV 2021), Sec. 4.2; both libraries' default


@functools.cache
def bench():
    """`defectlab/bench.py`, loaded by path: anomalib's environment has no defectlab (the file imports only the
    standard library at module level), and both sides are timed by the same loop, `time_call`."""
    spec = importlib.util.spec_from_file_location("defectlab_bench", ROOT / "defectlab" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_rate(fn, n: int, rounds: int) -> float:
    """Best-of-`rounds` images per second of fn(i) for i in range(n), after one warm-up call."""
    fn(0)
    return n / bench().time_call(lambda: [fn(i) for i in range(n)], warmup=0, repeats=rounds)["min"]


def best_time(fn, rounds: int = 3):
    """(value of fn(), best wall seconds over `rounds` calls)."""
    t = bench().time_call(fn, warmup=0, repeats=rounds)
    return t["value"], t["min"]


# ------------------------------------------------------------------ the anomalib side (its own venv)
def worker(folder: Path, n: int, rounds: int) -> None:
    import torch

    torch.set_num_threads(1)
    import anomalib
    from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator
    from anomalib.metrics.aupro import _AUPRO

    # anomalib draws from torch's global generator; seeding it here (anomalib's process only) fixes its draws
    torch.manual_seed(0)
    goods = torch.from_numpy(np.load(folder / "goods.npy")).permute(0, 3, 1, 2).contiguous()
    gen = PerlinAnomalyGenerator(anomaly_source_path=folder / "textures", probability=1.0)
    out = {}
    out["masks_non_empty"] = float(np.mean([bool(gen(goods[i % len(goods)])[1].any()) for i in range(20)]))
    out["images_per_s"] = best_rate(lambda i: gen(goods[i % len(goods)]), n, rounds)

    data = np.load(folder / "maps.npz")
    preds, target = torch.from_numpy(data["maps"]), torch.from_numpy(data["masks"].astype(np.uint8))

    def aupro():
        metric = _AUPRO(fpr_limit=FPR_LIMIT)
        metric.update(preds, target)
        return float(metric.compute())

    out["aupro"], out["aupro_s"] = best_time(aupro)
    out["env"] = {"python": platform.python_version(), "torch": torch.__version__, "anomalib": anomalib.__version__,
                  "torch_threads": torch.get_num_threads()}
    (folder / "anomalib.json").write_text(json.dumps(out))


def run_worker(python: Path, folder: Path, n: int, rounds: int) -> dict:
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", str(folder), "--n", str(n), "--rounds", str(rounds)]
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise SystemExit(f"anomalib worker failed ({' '.join(cmd)}):\n{run.stderr[-4000:]}")
    return json.loads((folder / "anomalib.json").read_text())


# ------------------------------------------------------------------ shared inputs
def write_inputs(folder: Path, size: int, n_maps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import cv2
    import skimage.data
    from scipy import ndimage

    from defectlab import masks as dmasks
    from defectlab.synth.handcrafted.anomaly_source import SKIMAGE_PHOTOS

    photos = [skimage.data.coffee(), skimage.data.astronaut(), skimage.data.rocket(), skimage.data.chelsea()]
    goods = np.stack([cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255 for p in photos])
    np.save(folder / "goods.npy", goods)
    tex = folder / "textures"
    tex.mkdir()
    for name in SKIMAGE_PHOTOS:  # the offline texture set defectlab uses by default, as JPEG files
        a = getattr(skimage.data, name)()
        a = cv2.cvtColor(a, cv2.COLOR_GRAY2BGR) if a.ndim == 2 else cv2.cvtColor(a[:, :, :3], cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(tex / f"{name}.jpg"), a)
    # anomaly maps: every other image has Perlin-shaped defects; the map is a blurred, noisy view of the mask
    rng = np.random.default_rng(0)
    masks = np.zeros((n_maps, size, size), bool)
    for i in range(0, n_maps, 2):
        masks[i] = dmasks.perlin_mask((size, size), np.random.default_rng([0, i]))
    maps = np.stack([ndimage.gaussian_filter(m.astype(np.float32), 4) * rng.uniform(0.3, 1.0)
                     + 0.5 * rng.random((size, size), dtype=np.float32) for m in masks]).astype(np.float32)
    np.savez(folder / "maps.npz", maps=maps, masks=masks)
    return goods, maps, masks


# ------------------------------------------------------------------ the defectlab side
def defectlab_pass(goods, texture_folder: Path, n: int, rounds: int) -> dict:
    """Images/s of each method with the shared texture folder, and with defectlab's offline default source."""
    import defectlab

    rates = {}
    for name in METHODS:
        for key, params in ((name, {"texture_folder": str(texture_folder)}), (f"{name} (offline default textures)", {})):
            method = defectlab.create(name, **params)
            rates[key] = best_rate(lambda i: method(goods[i % len(goods)], np.random.default_rng([0, i])), n, rounds)
    return rates


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="images per timing round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--maps", type=int, default=100, help="anomaly maps for the AUPRO comparison")
    ap.add_argument("--passes", type=int, default=2, help="alternations of anomalib and defectlab timings")
    ap.add_argument("--anomalib-python", type=Path, default=ROOT / ".venv-anomalib" / "bin" / "python")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.n, args.rounds)
        return 0
    if not args.anomalib_python.is_file():
        raise SystemExit(f"{args.anomalib_python}: anomalib's environment not found; run `make anomalib-venv`")

    import cv2
    import torch

    from defectlab.bench import write_result
    from defectlab.metrics.detection import aupro

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        goods, maps, masks = write_inputs(folder, args.size, args.maps)
        anomalib_runs, ours_runs = [], []
        for _ in range(args.passes):
            anomalib_runs.append(run_worker(args.anomalib_python, folder, args.n, args.rounds))
            ours_runs.append(defectlab_pass(goods, folder / "textures", args.n, args.rounds))
        ours_aupro, ours_aupro_s = best_time(lambda: aupro(masks, maps, fpr_limit=FPR_LIMIT))
    load_after = os.getloadavg()

    ref = max(r["images_per_s"] for r in anomalib_runs)
    rows = [{"path": "anomalib PerlinAnomalyGenerator", "images_per_s": ref, "x_anomalib": 1.0}]
    for name in ours_runs[0]:
        ips = max(r[name] for r in ours_runs)
        rows.append({"path": f"defectlab {name}", "images_per_s": ips, "x_anomalib": ips / ref, "goal_5x": ips / ref >= 5})
    a = anomalib_runs[-1]
    metric = {"anomalib_aupro": a["aupro"], "defectlab_aupro": ours_aupro, "abs_diff": abs(a["aupro"] - ours_aupro),
              "within_1e-3": abs(a["aupro"] - ours_aupro) <= 1e-3, "anomalib_s": min(r["aupro_s"] for r in anomalib_runs),
              "defectlab_s": ours_aupro_s}

    print(f"{args.size}x{args.size} RGB, one thread (torch, OpenCV), same 4 good images and texture folder; "
          f"best of {args.rounds} rounds of {args.n} images, {args.passes} alternating passes")
    print(f"anomalib {a['env']['anomalib']} (torch {a['env']['torch']}), load average {load_before[0]:.1f} -> {load_after[0]:.1f}\n")
    print(f"{'path':52s} {'img/s':>8s} {'x anomalib':>11s}  goal >= 5x")
    for r in rows:
        goal = "" if "goal_5x" not in r else ("met" if r["goal_5x"] else "MISSED")
        print(f"{r['path']:52s} {r['images_per_s']:8.1f} {r['x_anomalib']:11.1f}  {goal}")
    print(f"\nAUPRO (FPR <= {FPR_LIMIT}) on {args.maps} maps of {args.size}x{args.size}: anomalib {metric['anomalib_aupro']:.6f} "
          f"in {metric['anomalib_s']:.3f} s, defectlab {metric['defectlab_aupro']:.6f} in {metric['defectlab_s']:.3f} s "
          f"(|diff| {metric['abs_diff']:.2e}, {'within' if metric['within_1e-3'] else 'NOT within'} 1e-3)")
    result = {"size": args.size, "n": args.n, "rounds": args.rounds, "passes": args.passes, "threads": 1,
              "synthesis": rows, "anomalib_masks_non_empty": a["masks_non_empty"], "aupro": metric,
              "anomalib_runs": anomalib_runs, "defectlab_runs": ours_runs,
              "load_average": {"before": load_before, "after": load_after},
              "anomalib_env": a["env"]}
    write_result(args.out, result, argv=argv)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
