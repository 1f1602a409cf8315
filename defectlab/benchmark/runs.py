"""One seed of the benchmark: build each method (fitted on the few-shot support), synthesize its pool and run
the runs whose files are missing (an interrupted benchmark resumes where it stopped)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from .config import DIAD, FEWSHOT, PATCHCORE, BenchmarkConfig, scores_itself
from .detector_runs import diad_run, fewshot_detector, patchcore_run, score_and_test, train_and_test
from .folder import quality_file, run_file, write_json
from .quality import method_quality, trts_scores
from .transfer import transferred_split


def build_method(name: str, prepared, seed: int, params: dict | None = None, work_dir: Path | None = None):
    """`name` with `params`, fitted on `prepared.support`. `work_dir`: given to a method that keeps its training
    checkpoints there (a `work_dir` parameter, AdaBLDM), unless `params` names one, so a killed fit resumes."""
    from dataclasses import replace

    from .. import methods
    from .prepare import stable_id

    method = methods.create(name, **(params or {}))
    own = getattr(method, "params", None)
    if work_dir is not None and hasattr(own, "work_dir") and own.work_dir is None:
        method.params = own = replace(own, work_dir=str(work_dir))
    trained = getattr(own, "checkpoint", None)
    if trained:  # a synthesis model trained elsewhere must not have seen this seed's test images
        from ..adabldm.checkpoint import refuse_if_trained_on

        refuse_if_trained_on(trained, prepared.test_keys)
    if getattr(method, "needs_fit", False):
        rng = np.random.default_rng([seed, stable_id(name), 2**31])
        method.fit(prepared.goods, prepared.support, rng, foregrounds=prepared.foregrounds)
    return method


def run_group(unit, cfg: BenchmarkConfig, ready, out: Path, show_progress: bool, source: list | None = None,
              stamp: dict | None = None) -> None:
    """One unit (`units.Unit`: a seed of `patchcore`, `diad`, `fewshot` or a method): its runs whose files are
    missing. `ready()` gives the seed's prepared split; `stamp` joins every record written (the unit's fingerprint)."""
    from .units import is_current, unit_runs

    seed, group, stamp = unit.seed, unit.group, dict(stamp or {})
    todo = {r for r in unit_runs(cfg, unit) if not is_current(run_file(out, r, seed), stamp.get("unit_fingerprint"))}
    if group in (PATCHCORE, DIAD):
        if todo:
            (patchcore_run if group == PATCHCORE else diad_run)(seed, cfg, ready(), out, show_progress, stamp)
    elif group == FEWSHOT:
        for d in cfg.detectors():
            if cfg.detector_run(FEWSHOT, d) in todo:
                train_and_test(cfg.detector_run(FEWSHOT, d), seed, cfg.for_detector(d), ready(), ready().support, out,
                               show_progress, stamp)
    elif scores_itself(group):
        if todo:
            t0 = time.time()
            method = build_method(group, ready(), seed, cfg.method_params.get(group))
            score_and_test(group, seed, cfg, ready(), method.score, time.time() - t0, out, stamp=stamp)
    else:
        _pool_runs(group, group, seed, cfg, ready, ready, cfg.method_params.get(group), stamp, todo, out, show_progress)
        if group in cfg.transfer_methods():
            moved = []

            def transferred():
                """The split with the source's few-shot defects as `support` (on canvases of this size and channel
                count); goods, foregrounds and the test set stay the benchmarked category's."""
                if not moved:
                    moved.append(transferred_split(cfg, ready(), source, ready().goods[0].shape[2]))
                return moved[0]

            info = {"transfer": {"from": cfg.transfer_from or cfg.category, "types": list(cfg.transfer_types),
                                 "support": sorted(r.key for r in source), "params": cfg.transfer_params(group)}}
            _pool_runs(group, cfg.transferred(group), seed, cfg, transferred, ready, cfg.transfer_params(group),
                       {**stamp, **info}, todo, out, show_progress)


def _pool_runs(method_name: str, name: str, seed: int, cfg: BenchmarkConfig, source, ready, params, info: dict,
               todo: set, out: Path, show_progress: bool) -> None:
    """The runs `name` and `name+fewshot` of one pool of synthetic defects (and its quality file). The method
    is fitted on `source()`'s support and draws on its goods (the benchmarked category's); the `+fewshot`
    run adds the benchmarked category's real support (`ready().support`). A transferred pool uses the same
    random generators as the in-category one: only where its defects come from differs."""
    from .prepare import synthesize_pool

    from .units import is_current, wants_quality

    runs = [(r, d) for d in cfg.detectors() for r in (name, f"{name}+{FEWSHOT}") if cfg.detector_run(r, d) in todo]
    need_quality = wants_quality(cfg, seed) and not is_current(quality_file(out, name, seed), info.get("unit_fingerprint"))
    if not runs and not need_quality:
        return
    t0 = time.time()
    method = build_method(method_name, source(), seed, params, work_dir=out / "models" / name / f"seed-{seed}")
    kept = out / "pools" / name / f"seed-{seed}"
    resumed = len(list(kept.glob("*.npz"))) if kept.is_dir() else 0
    if resumed:  # the seconds below then cover only what this call made
        info = {**info, "pool_items_resumed": resumed}
    pool = synthesize_pool(method, source(), cfg.n_synthetic, seed, method_name, show_progress=show_progress, keep=kept)
    synth_seconds = time.time() - t0
    if need_quality:
        t1 = time.time()
        q = {"method": name, "seed": seed, **method_quality(source(), pool, cfg.quality_images, seed),
             "synth_seconds": round(synth_seconds, 2), **info}
        if cfg.shots > 0:  # scored by the first detector's `fewshot` run
            first = cfg.for_detector(cfg.detectors()[0])
            q.update(trts_scores(fewshot_detector(seed, first, ready(), out, show_progress), pool, cfg.quality_images))
        q["quality_seconds"] = round(time.time() - t1, 2)
        write_json(quality_file(out, name, seed), q)
    for r, d in runs:
        defects = pool if r == name else pool + ready().support
        train_and_test(cfg.detector_run(r, d), seed, cfg.for_detector(d), ready(), defects, out, show_progress,
                       {**info, "synth_seconds": round(synth_seconds, 2)})
    shutil.rmtree(kept, ignore_errors=True)  # every file that needs the pool is written: it was kept for a resume only
