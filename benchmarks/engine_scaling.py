"""The benchmark engine on more workers (issue 35): measured on this machine, projected for larger grids.

    python benchmarks/engine_scaling.py measure --json benchmarks/results/engine_workers.json
    python benchmarks/engine_scaling.py project --json benchmarks/results/engine_projection.json

`measure`: one 4-unit grid (embedded brick, 2 seeds x {fewshot, cutpaste}, DeSTSeg) run three ways into fresh folders,
side by side in one call, each in a fresh process (wall time includes starting it): `--workers 1` with torch's own threads (the default), `--workers 1 --threads 1`, and
`--workers 2 --threads 1`; wall seconds of each and whether the three results.json are byte-identical.

`project`: the expected wall time of the Magnetic Tile grid (every hand-crafted method, copy-paste and AdaBLDM, each
alone and `+fewshot`; fewshot; patchcore; DeSTSeg and SuperSimpleNet; 5 seeds) and of a 15-category grid of the same
shape, on 1, 4 and 16 workers. Each unit's seconds come from measured runs on this machine (the JSON files named in
`SOURCES`: synthesis, quality, DeSTSeg train + test per run; SuperSimpleNet's seconds per run from
`detector_speed_mt.json`); units are packed longest first onto the workers (list scheduling), one unit per worker at a
time. A projection, not a measurement: it assumes every worker as fast as the machine that measured the units.
"""
from __future__ import annotations

import argparse
import heapq
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent / "results"
SOURCES = {"handcrafted": "downstream_magnetic_tile_400.json", "adabldm": "downstream_mt_adabldm.json",
           "supersimplenet": "detector_speed_mt.json"}
MT_METHODS = ("cutpaste", "cutpaste_scar", "bezier", "draem", "memseg", "glass_local", "copypaste", "adabldm")
WORKERS = (1, 4, 16)


def _one(root: str, out: str, workers: int, threads, size: int, steps: int) -> None:
    """One setting, in a fresh process (nothing cached from another setting), timed from the command line."""
    from defectlab.benchmark import BenchmarkConfig, run_benchmark

    cfg = BenchmarkConfig("brick", ["cutpaste"], data=root, format="mvtec", shots=2, seeds=[0, 1], size=size,
                          steps=steps, n_synthetic=64, quality="none", patchcore=False)
    run_benchmark(cfg, out, workers=workers, threads=threads, show_progress=False)


def measure(args) -> dict:
    import subprocess

    from defectlab.data import build_embedded

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "embedded"
        build_embedded(root=root, size=args.size, n_train=48, n_test_good=16, n_test_defect=8, categories="brick")
        rows, outputs = [], {}
        for label, workers, threads in (("workers 1, torch's threads", 1, None), ("workers 1, 1 thread", 1, 1),
                                        ("workers 2, 1 thread each", 2, 1)):
            out = Path(tmp) / label.replace(" ", "_").replace(",", "").replace("'", "")
            call = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import engine_scaling as e; "
                    f"e._one({str(root)!r}, {str(out)!r}, {workers}, {threads}, {args.size}, {args.steps})")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", call], check=True)
            rows.append({"setting": label, "workers": workers, "threads": threads,
                         "wall_seconds": round(time.perf_counter() - t0, 1)})
            outputs[label] = (out / "results.json").read_bytes()
            print(f"{label:28s} {rows[-1]['wall_seconds']:7.1f} s", flush=True)
    base = rows[0]["wall_seconds"]
    for r in rows:
        r["vs_default"] = round(r["wall_seconds"] / base, 3)
    same_threads = outputs["workers 1, 1 thread"] == outputs["workers 2, 1 thread each"]
    print(f"workers 2 / workers 1 (default threads): {rows[2]['vs_default']:.2f}; one thread each: "
          f"{rows[2]['wall_seconds'] / rows[1]['wall_seconds']:.2f}; results.json identical at 1 thread: {same_threads}")
    return {"units": 4, "size": args.size, "steps": args.steps, "rows": rows,
            "identical_results_at_one_thread": same_threads}


def _load(name: str) -> dict:
    return json.loads((HERE / name).read_text())


def unit_seconds() -> dict:
    """Seconds of one unit per row group (median over the measured seeds), for the MT grid under two detectors."""
    hand, ada, ssn = (_load(SOURCES[k]) for k in ("handcrafted", "adabldm", "supersimplenet"))
    runs = {}
    for res in (hand, ada):
        for r in res["runs"]:
            runs.setdefault(r["run"], []).append(r["train_seconds"] + r["test_seconds"])
    quality = {}
    for res in (hand, ada):
        for q in res.get("quality_runs", []):
            quality.setdefault(q["method"], []).append((q.get("synth_seconds") or 0) + (q.get("quality_seconds") or 0))
    ssn_run = statistics.median(r["run_s"] for r in ssn["rows"] if r["detector"] == "supersimplenet")
    units = {"patchcore": statistics.median(runs["patchcore"]),
             "fewshot": statistics.median(runs["fewshot"]) + ssn_run}
    for m in MT_METHODS:
        own = [statistics.median(runs[r]) for r in (m, f"{m}+fewshot")]
        # synthesis + quality measured for copy-paste and AdaBLDM; the other hand-crafted methods synthesise
        # 200 defects in seconds: copy-paste's figure stands in for them
        extra = statistics.median(quality.get(m) or quality["copypaste"])
        units[m] = sum(own) + 2 * ssn_run + extra
    return units


def makespan(durations: list[float], workers: int) -> float:
    """Wall time of list scheduling, longest unit first: each unit goes to the worker that frees up first."""
    free = [0.0] * workers
    for d in sorted(durations, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def project(args) -> dict:
    per_group = unit_seconds()
    seeds = 5
    grids = {"Magnetic Tile (1 category)": [s for s in per_group.values() for _ in range(seeds)]}
    grids["15 categories"] = grids["Magnetic Tile (1 category)"] * 15
    rows = []
    print("| grid | units | " + " | ".join(f"{w} worker{'s' * (w > 1)}" for w in WORKERS) + " |")
    print("|---|---|" + "---|" * len(WORKERS))
    for name, units in grids.items():
        hours = {w: makespan(units, w) / 3600 for w in WORKERS}
        rows.append({"grid": name, "units": len(units), "hours": {str(w): round(h, 2) for w, h in hours.items()}})
        print(f"| {name} | {len(units)} | " + " | ".join(f"{h:.1f} h" for h in hours.values()) + " |")
    longest = max(per_group, key=per_group.get)
    print(f"longest unit: {longest} ({per_group[longest] / 3600:.2f} h): no grid finishes sooner on any number of workers")
    return {"unit_seconds": {k: round(v, 1) for k, v in per_group.items()}, "seeds": seeds, "rows": rows,
            "sources": SOURCES, "projection": True}


def main(argv=None) -> None:
    from defectlab.bench import write_result

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("measure", "project"))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=400, help="DeSTSeg steps per stage (measure)")
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args(argv)
    result = measure(args) if args.mode == "measure" else project(args)
    if args.json:
        write_result(args.json, result, argv=sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
