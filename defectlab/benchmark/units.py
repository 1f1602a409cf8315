"""The benchmark's units of work. A unit is one seed of one row group: `patchcore`, `diad`, `fewshot`, or a
synthesis method (its runs `<method>`, `<method>+fewshot`, its transferred runs and its quality file share one pool
of synthetic defects, so they are one unit). `run_unit` is a pure function of the configuration and the unit: it
writes the unit's files (each atomically) and returns their bytes, so a driver on another machine than the worker
gets them too. A unit whose files all exist, with its fingerprint, is done: resuming, growing a benchmark by seeds
or methods, and running units on other machines are the same mechanism.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import DIAD, FEWSHOT, PATCHCORE, _RESUME_KEYS, BenchmarkConfig, scores_itself
from .folder import detector_file, quality_file, run_file, stats_file


@dataclass(frozen=True)
class Unit:
    seed: int
    group: str  # patchcore | diad | fewshot | a synthesis method
    category: str = ""

    def __str__(self) -> str:
        return f"{self.category}: {self.group} seed {self.seed}"


def plan_units(cfg: BenchmarkConfig) -> list[Unit]:
    """Every unit of the configuration, seed by seed, in the order of `cfg.run_names()`."""
    groups = [PATCHCORE] * cfg.patchcore + [DIAD] * cfg.diad + [FEWSHOT] * (cfg.shots > 0) + list(cfg.methods)
    return [Unit(seed, g, cfg.category) for seed in cfg.seeds for g in groups]


def unit_runs(cfg: BenchmarkConfig, unit: Unit, detector: str | None = None) -> list[str]:
    """The run names a unit writes (a method's: itself, +fewshot, and its transferred runs), under every detector
    (or under `detector` only). The detectors of a method share its pool: they are one unit."""
    if unit.group in (PATCHCORE, DIAD) or (unit.group != FEWSHOT and scores_itself(unit.group)):
        return [unit.group]
    if unit.group == FEWSHOT:
        names = [FEWSHOT]
    else:
        names = [unit.group] + [f"{unit.group}+{FEWSHOT}"] * (cfg.shots > 0)
        if unit.group in cfg.transfer_methods():
            names += [cfg.transferred(unit.group)] + [f"{cfg.transferred(unit.group)}+{FEWSHOT}"] * (cfg.shots > 0)
    return [cfg.detector_run(r, d) for d in ([detector] if detector else cfg.detectors()) for r in names]


def wants_quality(cfg: BenchmarkConfig, seed: int) -> bool:
    return cfg.quality == "all" or (cfg.quality == "first" and seed == cfg.seeds[0])


def unit_records(cfg: BenchmarkConfig, unit: Unit, out: Path) -> list[Path]:
    """The JSON records whose presence marks the unit done: one per run, and the quality file of each pool."""
    files = [run_file(out, r, unit.seed) for r in unit_runs(cfg, unit)]
    if unit.group not in (PATCHCORE, DIAD, FEWSHOT) and not scores_itself(unit.group) and wants_quality(cfg, unit.seed):
        pools = [unit.group] + ([cfg.transferred(unit.group)] if unit.group in cfg.transfer_methods() else [])
        files += [quality_file(out, p, unit.seed) for p in pools]
    return files


def unit_outputs(cfg: BenchmarkConfig, unit: Unit, out: Path) -> list[Path]:
    """Every file the unit writes: its records, each run's maps and image statistics, `fewshot`'s detector."""
    runs = unit_runs(cfg, unit)
    extra = [detector_file(out, unit.seed, r) for r in runs] if unit.group == FEWSHOT else []
    return (unit_records(cfg, unit, out) + [run_file(out, r, unit.seed).with_suffix(".npz") for r in runs]
            + [stats_file(out, r, unit.seed) for r in runs] + extra)


def unit_fingerprint(cfg: BenchmarkConfig, unit: Unit, split_fingerprint) -> str:
    """SHA-256 of everything a unit's result depends on: the settings that must match to resume, the group's own
    parameters, the seed's split (the digest of which images are support, held out, good train and good test; the
    files' contents are checked for the whole folder by `folder.prepare_out`) and the unit. Methods and seeds that join later, the
    command and the plots do not enter it."""
    config = asdict(cfg)
    basis = {"unit": asdict(unit), "config": {k: config.get(k) for k in _RESUME_KEYS},
             "params": cfg.method_params.get(unit.group, {}), "quality": wants_quality(cfg, unit.seed),
             "quality_images": cfg.quality_images, "split": split_fingerprint}
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()


def is_current(path: Path, fingerprint: str | None) -> bool:
    """A record exists and was written for this fingerprint (a record from before fingerprints, without one, counts:
    the folder's configuration and data were checked when it was opened; no fingerprint given: existing suffices)."""
    if not path.is_file():
        return False
    if fingerprint is None:
        return True
    try:
        return json.loads(path.read_text()).get("unit_fingerprint", fingerprint) == fingerprint
    except ValueError:
        return False


def unit_done(cfg: BenchmarkConfig, unit: Unit, out: Path, fingerprint: str) -> bool:
    """Every record of the unit is current (`is_current`)."""
    return all(is_current(path, fingerprint) for path in unit_records(cfg, unit, out))


_PREPARED: dict = {}  # this process's last prepared split: units of one seed that run here in a row share it


def _prepared(cfg: BenchmarkConfig, seed: int, split, show_progress: bool):
    from .prepare import ImageCache, prepare_split

    key = (seed, cfg.size, cfg.keep_aspect, cfg.data, cfg.category, cfg.shots)
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = prepare_split(split, ImageCache(cfg.size, keep_aspect=cfg.keep_aspect), show_progress)
    return _PREPARED[key]


def run_unit(unit: Unit, cfg: BenchmarkConfig, out: str, split, source, fingerprint: str, threads: int | None,
             show_progress: bool = False) -> dict[str, bytes]:
    """Run the unit's missing runs (writing each record atomically under `out`) and return {path relative to
    `out`: bytes} of every file it wrote. `split`: the seed's few-shot split; `source`: the transferred runs'
    support records (or None)."""
    from ..detect.detector import torch_threads
    from .runs import run_group

    out = Path(out)
    with torch_threads(threads):
        run_group(unit, cfg, lambda: _prepared(cfg, unit.seed, split, show_progress), out, show_progress, source,
                  {"unit_fingerprint": fingerprint})
    return {str(p.relative_to(out)): p.read_bytes() for p in unit_outputs(cfg, unit, out) if p.is_file()}
