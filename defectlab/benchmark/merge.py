"""`defectlab benchmark-merge`: one table over seeds that ran apart (two processes, two machines), from their
results.json files. The sources must share every setting but the seeds, and no seed may come twice."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DefectlabError
from ..imageio import atomic_write_bytes
from .config import BenchmarkConfig
from .correlation import quality_correlations
from .folder import write_json
from .report import load_results
from .results import aggregate_quality, paired_statistics, quality_records, results_markdown
from .tables import summarize

# config keys allowed to differ between the sources (the command names each source's own --out)
_FREE_KEYS = ("seeds", "command", "grid_images")
_REQUIRED = ("config", "runs", "quality", "format", "versions")


def merge_results(sources: list[str | Path], out: str | Path, overwrite: bool = False) -> dict:
    """Merge finished benchmarks (folders holding results.json, or the JSON files) into `out`/results.json and
    results.md: the runs of every seed, mean ± std over all of them. Returns the merged results. Benchmark folders
    whose data is on this machine merge through the engine (`_merge_units`: the same bytes as one run of all the
    seeds); results.json files alone are combined from their records."""
    loaded = [(Path(src), load_results(src, _REQUIRED)) for src in sources]
    if len(loaded) < 2:
        raise DefectlabError("benchmark-merge: give at least two benchmark results to merge")
    first_path, first = loaded[0]
    seen: dict[int, Path] = {}
    for path, res in loaded:
        for key in sorted(set(first["config"]) | set(res["config"])):
            if key not in _FREE_KEYS and first["config"].get(key) != res["config"].get(key):
                raise DefectlabError(f"{path}: '{key}' is {res['config'].get(key)!r}, but {first_path} has "
                                     f"{first['config'].get(key)!r}; only benchmarks that differ in their seeds merge")
        for seed in res["config"]["seeds"]:
            if seed in seen:
                raise DefectlabError(f"{path}: seed {seed} is also in {seen[seed]}; a seed may come from one source only")
            seen[seed] = path
    config = {**first["config"], "seeds": sorted(seen), "command": None}
    cfg = BenchmarkConfig(**config)
    folders = [p if p.is_dir() else p.parent for p, _ in loaded]
    if all((f / "config.json").is_file() and (f / "runs").is_dir() for f in folders) and cfg.data_available():
        return _merge_units(cfg, folders, Path(out), overwrite)
    order = {name: i for i, name in enumerate(cfg.run_names())}
    runs = sorted((r for _, res in loaded for r in res["runs"]), key=lambda r: (r["seed"], order.get(r["run"], len(order))))
    records = sorted((q for path, res in loaded for q in _quality_records(path, res)), key=lambda q: q["seed"])
    summary = summarize(runs)
    quality = aggregate_quality(records)
    results = {"config": config, "format": first["format"],
               "machine": first.get("machine", {}), "versions": first["versions"],
               "wall_seconds": round(sum(res.get("wall_seconds", 0.0) for _, res in loaded), 1),
               "compute_seconds": round(sum(res.get("compute_seconds", 0.0) for _, res in loaded), 1),
               "runs": runs, "summary": summary, "quality": quality, "quality_runs": records,
               "correlation": quality_correlations(cfg, summary, quality),  # no folder: no per-image bootstrap
               **paired_statistics(cfg, runs),
               "merged_from": [{"source": str(path), "seeds": res["config"]["seeds"], "command": res["config"].get("command"),
                                "machine": res.get("machine"), "versions": res["versions"],
                                "wall_seconds": res.get("wall_seconds")} for path, res in loaded]}
    out = Path(out)
    target = out / "results.json"
    if target.exists() and not overwrite:
        raise DefectlabError(f"{target}: already exists; pass --overwrite to replace it")
    markdown = results_markdown(cfg, results).encode()  # before anything is written: all or nothing
    out.mkdir(parents=True, exist_ok=True)
    write_json(target, results)
    atomic_write_bytes(out / "results.md", markdown)
    return results


def _merge_units(cfg: BenchmarkConfig, folders: list[Path], out: Path, overwrite: bool) -> dict:
    """Benchmark folders merge as units of work: their unit files are copied into `out`, then the benchmark of every
    seed runs there, finds every unit done and writes the tables — the bytes a single run of all the seeds writes."""
    import shutil

    from .folder import DATA_FILE
    from .protocol import run_benchmark

    if (out / "results.json").exists() and not overwrite:
        raise DefectlabError(f"{out / 'results.json'}: already exists; pass --overwrite to replace it")
    if out.exists() and any(out.iterdir()) and not (out / "config.json").is_file() and not overwrite:
        raise DefectlabError(f"{out}: folder exists and is not a benchmark output; choose another --out")
    if overwrite:
        shutil.rmtree(out, ignore_errors=True)
    for folder in folders:
        for path in sorted((folder / "runs").iterdir()):
            if path.is_file() and not path.name.startswith(".") and not (out / "runs" / path.name).exists():
                atomic_write_bytes(out / "runs" / path.name, path.read_bytes())
    for name in ("config.json", DATA_FILE):  # the first source's record: the merged benchmark grows it by seeds
        if (folders[0] / name).is_file() and not (out / name).exists():
            atomic_write_bytes(out / name, (folders[0] / name).read_bytes())
    return run_benchmark(cfg, out, show_progress=False)


def _quality_records(path: Path, res: dict) -> list[dict]:
    """The per-seed quality records: as results.json stores them; else (a result written before it did) from the
    benchmark folder's quality files; else, for a one-seed result, its means (the mean of one value is the value)."""
    if "quality_runs" in res:
        return res["quality_runs"]
    if path.is_dir():
        return quality_records(BenchmarkConfig(**res["config"]), path)
    if len(res["config"]["seeds"]) == 1:
        seed = res["config"]["seeds"][0]
        return [{"method": method, "seed": seed,
                 **{k: v["mean"] if isinstance(v, dict) and "mean" in v else v for k, v in entry.items()}}
                for method, entry in res["quality"].items()]
    raise DefectlabError(f"{path}: results of {len(res['config']['seeds'])} seeds without per-seed quality "
                         "records ('quality_runs'); give its benchmark folder instead, which keeps them")


def add_merge_parser(subparsers) -> argparse.ArgumentParser:
    """Register `defectlab benchmark-merge` on a CLI's subparsers."""
    p = subparsers.add_parser("benchmark-merge", help="one table over benchmark seeds that ran apart",
                              description=__doc__)
    p.add_argument("sources", nargs="+", help="finished benchmark folders (or their results.json files)")
    p.add_argument("--out", required=True, help="output folder for the merged results.json and results.md")
    p.add_argument("--overwrite", action="store_true", help="replace a merged result already in --out")
    p.set_defaults(handler=main)
    return p


def main(args: argparse.Namespace) -> int:
    results = merge_results(args.sources, args.out, overwrite=args.overwrite)
    out = Path(args.out)
    print((out / "results.md").read_text())
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} (seeds {', '.join(map(str, results['config']['seeds']))})")
    return 0
