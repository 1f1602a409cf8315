"""`run_benchmark`: the whole protocol (the package docstring), from the checks to results.json and results.md."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ..errors import DefectlabError
from ..imageio import atomic_write_bytes
from ..progress import progress, tqdm
from ..staging import check_outside
from .checks import validate_config
from .config import BenchmarkConfig
from .correlation import quality_correlations
from .figures import write_plots
from .folder import TIMINGS_FILE, prepare_out, write_json
from .results import (empty_masks_record, load_runs, package_versions, paired_statistics, quality_records,
                      results_markdown)
from .tables import summarize
from .transfer import benchmark_fingerprint, transfer_sources


TIMING_KEYS = ("train_seconds", "test_seconds", "synth_seconds", "quality_seconds", "pool_items_resumed")


def benchmark_config(data: str | Path | None, category: str, methods: Sequence[str], *, format: str = "auto",
                     shots: int = 10, seeds: Sequence[int] = (0, 1, 2), size: int = 256, steps: int | None = None,
                     n_synthetic: int = 200, quality: bool | str = "all", detector: dict | None = None,
                     detector_name: str = "destseg", real_share: float | None = None, keep_aspect: bool = True,
                     patchcore: bool = True, diad: bool = False, embedded: dict | None = None, quality_images: int = 100,
                     method_params: dict | None = None, command: str | None = None, transfer_from: str | None = None,
                     transfer_types: Sequence[str] = ()) -> BenchmarkConfig:
    """A `BenchmarkConfig` from keyword settings (the data path resolved, `quality` True / False as "all" / "none")."""
    return BenchmarkConfig(category=category, methods=list(methods), data=str(Path(data).resolve()) if data else None,
                           format=format, shots=int(shots), seeds=[int(s) for s in seeds], size=int(size),
                           steps=None if steps is None else int(steps), n_synthetic=int(n_synthetic),
                           quality={True: "all", False: "none"}.get(quality, quality), quality_images=int(quality_images),
                           detector=dict(detector or {}), detector_name=detector_name, real_share=real_share,
                           keep_aspect=bool(keep_aspect), patchcore=bool(patchcore), diad=bool(diad),
                           embedded=dict(embedded or {}),
                           method_params={m: dict(v) for m, v in (method_params or {}).items()}, command=command,
                           transfer_from=transfer_from or None, transfer_types=list(transfer_types or []))


def run_benchmark(config: BenchmarkConfig | str | Path | None, *where, out: str | Path | None = None,
                  overwrite: bool = False, threads: int | None = None, show_progress: bool = True,
                  executor: str = "local", workers: int = 1, address: str | None = None, **settings) -> dict:
    """Run the protocol (the package docstring) and write its outputs under `out`; returns results.json's content.

        run_benchmark(BenchmarkConfig("brick", ["cutpaste"], data=...), "outputs/bench")
        run_benchmark(data, "brick", ["cutpaste"], "outputs/bench", seeds=[0, 1])  # settings as keywords

    The grid is a list of units (`units.plan_units`: a seed of patchcore, diad, fewshot or one method); units whose
    files exist are skipped, the others run on `executor`: "local" (`workers` processes on this machine; 1: in
    this process) or "ray" (the Ray cluster at `address`, "auto" or HOST:PORT; None starts one on this machine).
    `threads`: torch CPU threads of each unit (default: torch's for one local worker, else 1; the bytes of a
    result depend on it, so compare runs made with the same value). Keyword `settings`: `benchmark_config`'s.
    `embedded`: with `format="embedded"`, counts for `build_embedded` (n_train, n_test_good, n_test_defect);
    `method_params`: {method: {parameter: value}} passed to `defectlab.create`; `detector_name`: one of
    `defectlab.detect.SUPERVISED`; `real_share`: the share of a `+fewshot` run's defective draws taken from the
    real defects (`defectlab.detect.mix`; None: the detector's default)."""
    from ..limits import check_int

    if isinstance(config, BenchmarkConfig):
        if settings:
            raise TypeError(f"run_benchmark(config, out): settings belong in the config, got {sorted(settings)}")
        cfg, out = config, where[0] if where else out
    else:
        given = dict(zip(("category", "methods", "out"), where))
        for name in ("category", "methods"):
            if name not in given and name in settings:
                given[name] = settings.pop(name)
        out = given.get("out", out)
        cfg = benchmark_config(config, given.get("category"), given.get("methods"), **settings)
    if out is None:
        raise TypeError("run_benchmark: give the output folder `out`")
    if threads is not None:
        check_int("--threads", threads, low=1)
    check_int("--workers", workers, low=1)
    return _run(cfg, Path(out), overwrite, threads, show_progress, executor, workers, address)


ALL = "all"  # --category all: every category of the data set, each in its own folder under --out


@dataclass
class _Plan:
    """One category's benchmark, checked and its folder opened: its units, and which of them are still to run."""
    cfg: BenchmarkConfig
    out: Path
    format: str
    splits: dict
    sources: dict
    empty_masks: list
    prints: dict
    units: list
    todo: list


def _check(cfg: BenchmarkConfig, out: Path) -> tuple:
    """Every check of one category (nothing written): the data set, its splits, the transfer sources, the data
    fingerprint."""
    if cfg.data:
        check_outside(out, cfg.data)  # plots written into the data set would be read as test images next time
    dataset, splits, empty_masks = validate_config(cfg)
    sources = transfer_sources(cfg, dataset, splits)
    return cfg, out, dataset.format, splits, sources, empty_masks, benchmark_fingerprint(cfg, dataset, splits, sources)


def _open(checked: tuple, overwrite: bool) -> _Plan:
    """The category's folder opened (or resumed) and its units planned: those whose files exist are done."""
    from .units import plan_units, unit_done, unit_fingerprint

    cfg, out, fmt, splits, sources, empty_masks, fingerprint = checked
    prepare_out(out, asdict(cfg), overwrite, fingerprint)
    units = plan_units(cfg)
    prints = {u: unit_fingerprint(cfg, u, fingerprint["splits"].get(str(u.seed))) for u in units}
    return _Plan(cfg, out, fmt, splits, sources, empty_masks, prints, units,
                 [u for u in units if not unit_done(cfg, u, out, prints[u])])


def categories_of(cfg: BenchmarkConfig) -> list[str]:
    """The categories `--category all` benchmarks: every category of the data set."""
    from ..data.embedded import CATEGORIES
    from .checks import _open_dataset

    return list(CATEGORIES) if cfg.format == "embedded" else _open_dataset(cfg).categories()


def _run(cfg: BenchmarkConfig, out: Path, overwrite: bool, threads, show_progress: bool, executor: str, workers: int,
         address) -> dict:
    from dataclasses import replace

    from .executors import run_units, start_executor

    t0 = time.time()
    start_executor(executor, address)  # before anything is written: Ray missing, an address that does not answer
    if cfg.category == ALL:  # every category's checks pass before any folder is written
        checked = [_check(replace(cfg, category=c), out / c) for c in categories_of(cfg)]
    else:
        checked = [_check(cfg, out)]
    plans = [_open(c, overwrite) for c in checked]
    parallel = executor == "ray" or workers > 1
    unit_threads = threads if threads is not None else (1 if parallel else None)
    total, todo = sum(len(p.units) for p in plans), [u for p in plans for u in p.todo]
    bar = progress(total=total, desc="benchmark units", leave=True) if show_progress else tqdm(disable=True)
    bar.update(total - len(todo))
    by_category = {p.cfg.category: p for p in plans}

    def finished(outcome) -> None:
        folder = by_category[outcome.unit.category].out
        for rel, data in (outcome.value or {}).items():  # a worker on another machine wrote them on its own disk
            if not (folder / rel).is_file():
                atomic_write_bytes(folder / rel, data)
        bar.update()

    shared = {c: (p.cfg, str(p.out), p.splits, p.sources, p.prints) for c, p in by_category.items()}
    with bar:
        outcomes = run_units(_unit_call, todo, (shared, unit_threads, show_progress and not parallel),
                             executor=executor, workers=workers, address=address, cpus_per_unit=unit_threads or 1,
                             on_done=finished)
    failed = [o for o in outcomes if o.error]
    if failed:
        raise DefectlabError(f"{out}: {len(failed)} of {len(todo)} units failed (the others are written; run the same "
                             "command again to retry them): " + "; ".join(f"{o.unit}: {o.error}" for o in failed))
    run_info = {"executor": executor, "workers": workers if executor == "local" else None, "threads": unit_threads}
    if cfg.category != ALL:
        return _finish(plans[0], t0, run_info)
    every = {p.cfg.category: _finish(p, t0, run_info) for p in plans}
    atomic_write_bytes(out / "results.md", categories_markdown(cfg, every).encode())
    return {"categories": every}


def _finish(plan: _Plan, t0: float, run_info: dict) -> dict:
    """The category's tables and plots from its units' files: results.json (no seconds: the same bytes on every
    executor), timings.json and results.md."""
    from ..bench import machine_info
    from .prepare import ImageCache

    cfg, out = plan.cfg, plan.out
    runs, qual = load_runs(cfg, out)
    summary = summarize(runs)
    results = {"config": asdict(cfg), "format": plan.format, "versions": package_versions(),
               "empty_defect_masks": empty_masks_record(plan.empty_masks),
               "runs": [_untimed(r, "curves") for r in runs],
               "summary": summary, "quality": {m: _untimed(q) for m, q in qual.items()}, "quality_runs": [_untimed(q) for q in quality_records(cfg, out)],
               "correlation": quality_correlations(cfg, summary, qual, out), **paired_statistics(cfg, runs)}
    timings = {"machine": machine_info(), "wall_seconds": round(time.time() - t0, 1),
               "compute_seconds": round(sum(r["train_seconds"] + r["test_seconds"] for r in runs), 1), **run_info,
               "run_seconds": {f"{r['run']}__seed{r['seed']}": {k: r[k] for k in TIMING_KEYS if k in r} for r in runs}}
    write_plots(cfg, out, ImageCache(cfg.size, keep_aspect=cfg.keep_aspect), plan.splits)
    write_json(out / TIMINGS_FILE, timings)
    write_json(out / "results.json", results)  # last: its presence marks a finished benchmark
    atomic_write_bytes(out / "results.md", results_markdown(cfg, {**results, **timings}).encode())
    return {**results, **timings}


def categories_markdown(cfg: BenchmarkConfig, every: dict) -> str:
    """The index of a `--category all` benchmark: per category, `fewshot`'s pixel AP and each run's paired
    difference to it under the first detector, with a link to the category's own results.md."""
    from .results import fmt_p
    from .tables import fmt_num

    lines = [f"# Downstream detection: every category ({len(every)})", "",
             "| category | run | pixel AP | Δ pixel AP vs `fewshot` | p (Holm) | verdict |", "|---|---|---|---|---|---|"]
    first = cfg.detectors()[0]
    for category, res in every.items():
        for run, row in res["summary"].items():
            paired = (res.get("paired", {}).get(first, {}).get(run) or {}).get("pixel_ap") or {}
            lines.append(f"| [{category}]({category}/results.md) | `{run}` | {fmt_num(row['pixel_ap']['mean'], 3)} | "
                         f"{fmt_num(paired.get('mean'), 3)} | {fmt_p(paired.get('p_holm'))} | {paired.get('verdict', '')} |")
    return "\n".join(lines + [""])


def _unit_call(unit, shared: dict, threads, show_progress):
    """`units.run_unit` with the unit's category's configuration and folder, and its own split, transfer source and
    fingerprint, picked from the shared maps."""
    from .units import run_unit

    cfg, out, splits, sources, prints = shared[unit.category]
    return run_unit(unit, cfg, out, splits[unit.seed], sources.get(unit.seed), prints[unit], threads, show_progress)


def _untimed(record: dict, *drop: str) -> dict:
    """A record without its seconds (and `drop`): results.json holds what the data and the seeds decide, so the
    same benchmark gives the same bytes on any executor; the seconds go to timings.json."""
    return {k: v for k, v in record.items() if k not in TIMING_KEYS and k not in drop}
