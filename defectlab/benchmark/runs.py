"""Downstream benchmark: does training a detector on a method's synthetic defects find real ones?

    defectlab benchmark --data PATH --category C --methods copypaste,cutpaste,draem \\
        --shots 10 --seeds 0,1,2 --size 256 --out DIR [--detector destseg|unet] [--steps N]
        [--format mvtec|magnetic_tile|embedded]

Protocol, per seed: split the real defects of each type into `shots` for training and the rest
held out (`defectlab.data.few_shot_split`; held-out defects are never seen in training); build a
pool of synthetic defects with each method (learned methods are first fitted on the few-shot
support set); train one detector per run (default: the DeSTSeg-style `DeSTSegDetector` on the
pretrained EfficientNet-Lite0; `--detector unet`: the compact from-scratch U-Net) and test it on
held-out defects plus held-out good images. Images keep their aspect ratio (long side = `--size`,
zero-padded to a square; see `defectlab.detect.prepare`). Runs: `patchcore` (no defects at all: a
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
run and seed: an interrupted benchmark resumes where it stopped). Every file is written atomically.
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DefectlabError
from ..imageio import atomic_write_bytes
from ..progress import progress, tqdm

FEWSHOT = "fewshot"
PATCHCORE = "patchcore"
DIAD = "diad"
DETECTORS = ("destseg", "unet")
# config keys that must match for an interrupted benchmark to resume (methods and seeds may grow)
_RESUME_KEYS = ("data", "format", "category", "shots", "size", "steps", "n_synthetic", "detector", "embedded",
                "detector_name", "keep_aspect", "patchcore", "transfer_from", "transfer_types")
# parameters of a method's transferred runs over its own (a user's --method-param wins): copy-paste blends
# in the gradient domain, so a defect from another surface takes this one's brightness and colour
TRANSFER_PARAMS = {"copypaste": {"blend": "poisson"}}


@dataclass
class BenchmarkConfig:
    category: str
    methods: list[str]
    data: str | None = None
    format: str = "auto"  # auto | mvtec | magnetic_tile | btad | ksdd2 | visa | embedded
    shots: int = 10  # real defects per type for training; AnomalyDiffusion (Hu et al. 2024) uses 1/3 of each type
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    size: int = 256  # long side of every image (aspect kept, zero-padded to a square canvas)
    steps: int = 400  # detector optimiser steps per run (destseg: per stage, student and head)
    n_synthetic: int = 200  # synthetic defects per method and seed
    quality: str = "all"  # KID / FID of each method's defects vs the held-out real ones: for "all" seeds, the "first", "none"
    quality_images: int = 100  # at most this many real and synthetic images per KID / FID (Inception on a CPU is slow)
    detector: dict = field(default_factory=dict)  # parameter overrides of the detector (DeSTSegParams / DetectorParams)
    detector_name: str = "destseg"  # destseg (pretrained teacher) | unet (from scratch)
    keep_aspect: bool = True  # False: squash every image to the square (the protocol before the letterbox)
    patchcore: bool = True  # the unsupervised PatchCore row
    diad: bool = False  # the unsupervised DiAD reconstruction row (off by default: it trains a diffusion model)
    grid_images: int = 5  # test images shown in detections.png
    embedded: dict = field(default_factory=dict)  # build_embedded counts (n_train, n_test_good, n_test_defect)
    method_params: dict = field(default_factory=dict)  # {method: {parameter: value}} over its published defaults
    command: str | None = None
    transfer_from: str | None = None  # category whose few-shot defects the transferred runs' methods learn from
    transfer_types: list[str] = field(default_factory=list)  # only these defect types of it (empty: all)

    def run_names(self) -> list[str]:
        names = [PATCHCORE] if self.patchcore else []
        names += [DIAD] if self.diad else []
        names += [FEWSHOT] if self.shots > 0 else []
        for m in self.methods:
            names += [m, f"{m}+{FEWSHOT}"] if self.shots > 0 and not scores_itself(m) else [m]
            if m in self.transfer_methods():
                names += [self.transferred(m), f"{self.transferred(m)}+{FEWSHOT}"]
        return names

    @property
    def transfer(self) -> bool:
        return bool(self.transfer_from or self.transfer_types)

    def transfer_label(self) -> str:
        """The source in run names: "washer", "Crack" (types of the benchmarked category), "washer.crack-scratch"."""
        types = "-".join(self.transfer_types)
        if self.transfer_from and self.transfer_from != self.category:
            return f"{self.transfer_from}.{types}" if types else self.transfer_from
        return types

    def transferred(self, method: str) -> str:
        return f"{method}@{self.transfer_label()}"

    def transfer_methods(self) -> list[str]:
        """The methods that get transferred runs: those that learn from the few-shot defects."""
        return [m for m in self.methods if transferable(m)] if self.transfer else []

    def synth_names(self) -> list[str]:
        """Every pool of synthetic defects (quality files, tables): the methods, then their transferred runs."""
        return list(self.methods) + [self.transferred(m) for m in self.transfer_methods()]

    def transfer_params(self, method: str) -> dict:
        """A transferred run's parameters: `TRANSFER_PARAMS` when the defects come from another category (within
        the category the surface is the same: nothing to adapt), under the user's `method_params`."""
        other = self.transfer_from not in (None, self.category)
        return {**(TRANSFER_PARAMS.get(method, {}) if other else {}), **self.method_params.get(method, {})}


def scores_itself(method: str) -> bool:
    """A method whose anomalies live in feature space: it returns images unchanged, so a detector
    trained on its samples learns nothing; its own `score(image)` map is what gets tested."""
    from .. import registry

    return callable(getattr(registry.get(method), "score", None))


def transferable(method: str) -> bool:
    """A method whose synthesis learns from the few-shot defects (`needs_fit`, not a feature-space scorer, and
    not marked `uses_defects = False`): only for it does a defect source of another category change anything."""
    from .. import registry

    cls = registry.get(method)
    return bool(getattr(cls, "needs_fit", False)) and getattr(cls, "uses_defects", True) and not scores_itself(method)


def base_method(name: str) -> str:
    """The registered method of a pool or run name: "copypaste@washer+fewshot" -> "copypaste"."""
    return name.split("+")[0].split("@")[0]


def _open_dataset(cfg: BenchmarkConfig):
    from ..data import build_embedded, open_dataset

    if cfg.format == "embedded":  # built at --size so no resizing blurs its defects
        categories = [cfg.category] + ([cfg.transfer_from] if cfg.transfer_from not in (None, cfg.category) else [])
        return build_embedded(root=cfg.data, size=cfg.size, categories=categories, **cfg.embedded)
    if not cfg.data:
        raise DefectlabError("--data: a data set folder is needed (or --format embedded)")
    return open_dataset(cfg.data, cfg.format)


def _validate(cfg: BenchmarkConfig):
    """Every check that can fail before any training; returns (dataset, {seed: split})."""
    from .. import registry
    from ..data import few_shot_split
    from ..limits import check_int, check_side
    from ..paramcheck import check_overrides

    if not cfg.methods and cfg.shots <= 0:
        raise DefectlabError("--methods: name at least one synthesis method (or use --shots > 0 for the few-shot baseline)")
    if len(set(cfg.methods)) != len(cfg.methods):
        raise DefectlabError(f"--methods: a method is listed twice: {', '.join(cfg.methods)}")
    for m in cfg.methods:
        registry.get(m)  # unknown name -> DefectlabError listing the known ones
    for m, params in cfg.method_params.items():
        if m == DIAD and cfg.diad:  # the DiAD row's parameters (DiADParams), e.g. diad.steps=300
            from ..detect import DiAD, DiADParams

            check_overrides(m, DiADParams, params)
            DiAD(**params)
            continue
        if m not in cfg.methods:
            raise DefectlabError(f"--method-param: {m!r} is not among --methods ({', '.join(cfg.methods)})")
        try:
            method = registry.create(m, **params)
        except (TypeError, ValueError) as exc:
            raise DefectlabError(f"--method-param: {m} does not take {params}: {exc}") from exc
        check_overrides(m, type(getattr(method, "params", None)), params)  # types, before anything trains
    if not cfg.seeds:
        raise DefectlabError("--seeds: give at least one seed")
    twice = sorted({s for s in cfg.seeds if cfg.seeds.count(s) > 1})
    if twice:
        raise DefectlabError(f"--seeds: seed {', '.join(map(str, twice))} listed twice (a run would count twice)")
    if cfg.quality not in ("all", "first", "none"):
        raise DefectlabError(f"--quality must be all, first or none, got {cfg.quality!r}")
    check_side("--size", cfg.size)
    check_int("--shots", cfg.shots, low=0)
    check_int("--quality-images", cfg.quality_images, low=2)
    if cfg.steps < 1 or cfg.n_synthetic < 1:
        raise DefectlabError(f"--steps and --n-synthetic must be >= 1, got {cfg.steps}, {cfg.n_synthetic}")
    if cfg.detector_name not in DETECTORS:
        raise DefectlabError(f"--detector must be one of {', '.join(DETECTORS)}, got {cfg.detector_name!r}")
    _make_detector(cfg)  # unknown detector parameters -> DefectlabError
    n_embedded = sum(cfg.embedded.values()) if cfg.format == "embedded" else 0
    _check_memory(cfg, n_embedded, 3)  # before the embedded set is built at --size
    dataset = _open_dataset(cfg)
    dataset.filter(category=cfg.category)  # unknown category -> DefectlabError naming the ones found
    if not dataset.defect_types(cfg.category):
        raise DefectlabError(f"{dataset.root}: category {cfg.category!r} has no defect images to test on")
    records = dataset.filter(category=cfg.category).records
    _check_memory(cfg, len(records), records[0].image().shape[2])
    dataset.check_defect_masks(cfg.category)  # all empty: a mask convention not understood, not "no defects"
    splits = {s: few_shot_split(dataset, cfg.category, cfg.shots, seed=s) for s in cfg.seeds}
    _check_transfer(cfg, dataset)
    return dataset, splits


def _check_transfer(cfg: BenchmarkConfig, dataset) -> None:
    """--transfer-from / --transfer-types: a category with defects (not the benchmarked one unless types
    restrict it), types it has (names matched without case, then spelt as in the data), a method to transfer."""
    if not cfg.transfer:
        return
    source = cfg.transfer_from or cfg.category
    if cfg.shots <= 0:
        raise DefectlabError("--transfer-from / --transfer-types: the transferred methods learn from few-shot "
                             "defects; use --shots > 0")
    if source == cfg.category and not cfg.transfer_types:
        raise DefectlabError(f"--transfer-from {source}: the category benchmarked itself; name another category "
                             "(or restrict the source to some defect types with --transfer-types)")
    if source != cfg.category:
        if source not in dataset.categories():
            raise DefectlabError(f"--transfer-from: unknown category {source!r} in {dataset.root}; "
                                 f"found: {', '.join(sorted(dataset.categories()))}")
        dataset.check_defect_masks(source)
    known = dataset.defect_types(source)
    if not known:
        raise DefectlabError(f"--transfer-from {source}: the category has no defect images to learn from")
    lower = {t.lower(): t for t in known}
    unknown = [t for t in cfg.transfer_types if t.lower() not in lower]
    if unknown:
        raise DefectlabError(f"--transfer-types: {', '.join(unknown)} not among {source}'s defect types "
                             f"({', '.join(known)})")
    types = [lower[t.lower()] for t in cfg.transfer_types]
    if len(set(types)) != len(types):
        raise DefectlabError(f"--transfer-types: a type is listed twice: {', '.join(cfg.transfer_types)}")
    cfg.transfer_types = types
    if not cfg.transfer_methods():
        raise DefectlabError(f"--transfer-from: none of --methods ({', '.join(cfg.methods) or 'none'}) learns from "
                             "defects, so none can be transferred (e.g. copypaste, texture_gan, defectfill, adabldm)")


def _transfer_sources(cfg: BenchmarkConfig, dataset, splits: dict) -> dict:
    """{seed: the real defect records the transferred methods learn from}: the source category's few-shot
    support under the same shots / seed rule (`few_shot_split`, whose held-out part is not needed here;
    the benchmarked category's own split when it is the source), of the chosen types."""
    from ..data import few_shot_split

    if not cfg.transfer:
        return {}
    source = cfg.transfer_from or cfg.category
    out = {}
    for s in cfg.seeds:
        split = splits[s] if source == cfg.category else few_shot_split(dataset, source, cfg.shots, seed=s, min_heldout=0)
        out[s] = [r for r in split.support if not cfg.transfer_types or r.label in cfg.transfer_types]
    return out


def _fingerprint(cfg: BenchmarkConfig, dataset, splits: dict, sources: dict) -> dict:
    """`data_fingerprint` of the benchmarked category, and with a transfer from another category its files
    too and each seed's source records (split keys "<seed>@<category>")."""
    from ..fingerprint import data_fingerprint, digest

    fp = data_fingerprint(dataset, cfg.category, splits)
    if cfg.transfer_from in (None, cfg.category):
        return fp
    other = data_fingerprint(dataset, cfg.transfer_from, {})
    files = {**fp["files"], **other["files"]}
    extra = {f"{s}@{cfg.transfer_from}": digest(sorted(r.key for r in recs)) for s, recs in sources.items()}
    return {"files": files, "files_sha256": digest(files), "splits": {**fp["splits"], **extra}}


def _check_memory(cfg: BenchmarkConfig, n_images: int, channels: int) -> None:
    """Refuse a --size / --n-synthetic / --quality-images that cannot fit in memory (issue #21)."""
    from ..detect import DetectorParams
    from ..limits import benchmark_bytes, check_memory

    det = {**asdict(DetectorParams()), **cfg.detector}
    need = benchmark_bytes(cfg.size, n_images, cfg.n_synthetic, cfg.quality_images if cfg.quality != "none" else 0,
                           det["batch_size"], det["base_channels"], det["depth"], channels=channels)
    images = f" for {n_images} images" if n_images else ""
    check_memory(f"--size {cfg.size} with --n-synthetic {cfg.n_synthetic}{images}", need)


# ------------------------------------------------------------------------------------ output folder
def _write_json(path: Path, obj) -> None:
    text = json.dumps(_finite(obj), indent=1, sort_keys=True, default=_jsonable, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def _finite(obj):
    """NaN / inf (an undefined metric) become null: strict JSON that every reader accepts."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


DATA_FILE = "data_fingerprint.json"  # every data file (size, sha256) and each seed's split, for safe resuming


def _read_json_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DefectlabError(f"{path}: unreadable ({exc}); pass --overwrite or choose another --out") from exc


def _prepare_out(out: Path, cfg: dict, overwrite: bool, fingerprint: dict | None = None) -> None:
    """Refuse to clobber results; resume an interrupted run of the same configuration on the same data
    (`fingerprint`, from `defectlab.fingerprint.data_fingerprint`: files and each seed's split)."""
    from ..fingerprint import fingerprint_difference, summary

    if out.exists() and not out.is_dir():
        raise DefectlabError(f"{out}: exists and is not a folder")
    cfg_file = out / "config.json"
    before: dict = {}  # method parameters on record from earlier calls into this folder
    old_splits: dict = {}  # each seed's split on record
    if out.is_dir() and any(out.iterdir()):
        ours = cfg_file.is_file()
        if overwrite:
            if ours:  # remove only what a benchmark writes
                shutil.rmtree(out / "runs", ignore_errors=True)
                for name in ("results.json", "results.md", "pr_curves.png", "detections.png", "config.json", DATA_FILE):
                    (out / name).unlink(missing_ok=True)
        elif (out / "results.json").is_file():
            raise DefectlabError(f"{out}: already holds benchmark results; pass --overwrite or choose another --out")
        elif not ours:
            raise DefectlabError(f"{out}: folder exists and is not a benchmark output; choose another --out "
                                 "(or pass --overwrite to write into it)")
        else:
            old = _read_json_file(cfg_file)
            diff = [k for k in _RESUME_KEYS if (old.get(k) or None) != (cfg.get(k) or None)]  # {} == absent
            # every method that ever ran here keeps its parameters on record; a method may join, not change
            before = old.get("method_params") or {}
            if any(m in before and before[m] != cfg["method_params"].get(m, {}) for m in cfg["methods"]):
                diff.append("method_params")
            if diff:
                raise DefectlabError(f"{out}: holds an interrupted benchmark with a different {', '.join(diff)}; "
                                     "pass --overwrite or choose another --out")
            old_fp = _read_json_file(out / DATA_FILE) if (out / DATA_FILE).is_file() else old.get("data_fingerprint")
            if fingerprint is not None and old_fp:  # a folder from before fingerprints: nothing to compare
                problem = fingerprint_difference(old_fp, fingerprint)
                if problem:
                    raise DefectlabError(f"{out}: holds an interrupted benchmark on different data: {problem} since "
                                         "it started; pass --overwrite or choose another --out")
                old_splits = old_fp.get("splits", {})
    record = dict(cfg, method_params={**before, **{m: cfg["method_params"].get(m, {}) for m in cfg["methods"]}})
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
        if fingerprint is not None:
            fingerprint = dict(fingerprint, splits={**old_splits, **fingerprint["splits"]})  # seeds may join
            _write_json(out / DATA_FILE, fingerprint)
            record["data_fingerprint"] = summary(fingerprint)
        _write_json(cfg_file, record)
    except OSError as exc:
        raise DefectlabError(f"{out}: cannot write the benchmark output there ({exc.strerror or exc})") from exc


def _run_file(out: Path, run: str, seed: int) -> Path:
    return out / "runs" / f"{run}__seed{seed}.json"


def _quality_file(out: Path, method: str, seed: int) -> Path:
    return out / "runs" / f"quality__{method}__seed{seed}.json"


# --------------------------------------------------------------------------------------- one run
def _grid_indices(prepared, n: int) -> list[int]:
    """One good test image, then the first held-out defect of each type (as many as fit in `n`)."""
    labels = prepared.test_labels
    idx = [labels.index("good")] if "good" in labels else []
    seen = set()
    for i, lab in enumerate(labels):
        if lab != "good" and lab not in seen:
            seen.add(lab)
            idx.append(i)
    for i, lab in enumerate(labels):  # fill up with further defects when there are few types
        if len(idx) >= n:
            break
        if lab != "good" and i not in idx:
            idx.append(i)
    return idx[:n]


def _make_detector(cfg: BenchmarkConfig):
    from ..detect import DeSTSegDetector, SegmentationDetector

    if cfg.detector_name == "destseg":
        return DeSTSegDetector(**{"student_steps": cfg.steps, "seg_steps": cfg.steps, **cfg.detector})
    return SegmentationDetector(**{"steps": cfg.steps, **cfg.detector})


def _fit_detector(run: str, seed: int, cfg: BenchmarkConfig, prepared, defects, show_progress: bool):
    from ..detect.prepare import stable_id

    det = _make_detector(cfg)
    # one initialisation per seed (paired runs); the data order depends on the run
    det.fit(prepared.goods, defects, np.random.default_rng([seed, stable_id(run)]), init_rng=np.random.default_rng([seed, 0]),
            foregrounds=prepared.foregrounds, show_progress=show_progress, desc=f"{run} seed {seed}")
    return det


def _detector_file(out: Path, seed: int) -> Path:
    return out / "runs" / f"{FEWSHOT}__seed{seed}.pt"


def _fewshot_detector(seed: int, cfg: BenchmarkConfig, prepared, out: Path, show_progress: bool):
    """The seed's `fewshot` detector (trained on the real support defects only), for TRTS: the one saved by
    its run, else trained again exactly as that run trained it (same generators: same network) and saved."""
    from ..detect import DeSTSegDetector, SegmentationDetector

    path = _detector_file(out, seed)
    if path.is_file():
        cls = DeSTSegDetector if cfg.detector_name == "destseg" else SegmentationDetector
        return cls.load(path)
    det = _fit_detector(FEWSHOT, seed, cfg, prepared, prepared.support, show_progress)
    det.save(path)
    return det


def _trts(det, pool, n_max: int) -> dict:
    """Train on real, test on synthetic (issue 23): the seed's `fewshot` detector scores the method's defects;
    pixel AP / AUPRO of its maps against the synthetic masks."""
    from ..metrics.trts import trts

    return trts(lambda images: det.predict(images)[0], pool[:n_max])


def _train_and_test(run: str, seed: int, cfg: BenchmarkConfig, prepared, defects, out: Path, show_progress: bool,
                    record: dict | None = None) -> dict:
    t0 = time.time()
    det = _fit_detector(run, seed, cfg, prepared, defects, show_progress)
    if run == FEWSHOT:
        det.save(_detector_file(out, seed))  # TRTS scores every method's defects with it
    t1 = time.time()
    maps, scores = det.predict(prepared.test_images)
    extra = {"train_defects": len(defects), "loss_first": float(np.mean(det.losses[:10])),
             "loss_last": float(np.mean(det.losses[-10:])), "device": det.device, "detector": cfg.detector_name,
             **(record or {})}
    return _test_and_record(run, seed, cfg, prepared, prepared.eval_maps(maps), scores, det.params.top_k, t1 - t0,
                            time.time() - t1, extra, out)


def _score_and_test(run: str, seed: int, cfg: BenchmarkConfig, prepared, score_fn, fit_seconds: float, out: Path,
                    detector: str = "the method's own score()", batch_fn=None) -> dict:
    """Test a method through its own anomaly maps (feature-space methods, PatchCore, DiAD; `batch_fn(images)` ->
    maps instead of one `score_fn(image)` call per image). They are min-max
    scaled over the whole test set into [0, 1] (one monotone map: the rank metrics do not change) for the
    PR curves; the image score is the map's maximum (SimpleNet Sec. 3.6, PatchCore Sec. 3.3)."""
    t1 = time.time()
    raw = batch_fn(prepared.test_images) if batch_fn else np.stack([score_fn(im) for im in prepared.test_images])
    raw = prepared.eval_maps(np.asarray(raw, np.float32))
    lo, hi = float(raw.min()), float(raw.max())
    maps = (raw - lo) / (hi - lo) if hi > lo else np.zeros_like(raw)
    scores = maps.reshape(len(maps), -1).max(axis=1)
    extra = {"train_defects": 0, "detector": detector, "device": "cpu"}
    return _test_and_record(run, seed, cfg, prepared, maps, scores, 100, fit_seconds, time.time() - t1, extra, out)


def _patchcore_run(seed: int, cfg: BenchmarkConfig, prepared, out: Path, show_progress: bool) -> dict:
    from ..detect import PatchCore
    from ..detect.prepare import stable_id

    t0 = time.time()
    model = PatchCore().fit(prepared.goods, np.random.default_rng([seed, stable_id(PATCHCORE)]), show_progress=show_progress)
    return _score_and_test(PATCHCORE, seed, cfg, prepared, model.score, time.time() - t0, out,
                           detector="PatchCore memory bank (no defects)")


def _diad_run(seed: int, cfg: BenchmarkConfig, prepared, out: Path, show_progress: bool) -> dict:
    from ..detect import DiAD
    from ..detect.prepare import stable_id

    t0 = time.time()
    model = DiAD(**cfg.method_params.get(DIAD, {})).fit(prepared.goods, np.random.default_rng([seed, stable_id(DIAD)]), show_progress=show_progress)
    return _score_and_test(DIAD, seed, cfg, prepared, model.score, time.time() - t0, out,
                           detector="DiAD guided diffusion reconstruction (no defects)",
                           batch_fn=lambda images: model.predict(images, show_progress=show_progress)[0])


def _test_and_record(run, seed, cfg, prepared, maps, scores, top_k, train_seconds, test_seconds, extra, out) -> dict:
    from .tables import pr_curves
    from ..metrics.detection import evaluate

    masks = np.stack(prepared.test_masks)
    metrics = {k: (float(v) if v is not None else None) for k, v in
               evaluate(masks, maps, scores=scores, top_k=top_k).items()}
    grid = _grid_indices(prepared, cfg.grid_images)
    buf = io.BytesIO()
    np.savez_compressed(buf, maps=maps[grid].astype(np.float16), index=np.asarray(grid))
    atomic_write_bytes(_run_file(out, run, seed).with_suffix(".npz"), buf.getvalue())
    _save_image_stats(out, run, seed, masks, maps)  # for the quality <-> detection bootstrap
    result = {"run": run, "method": run.split("+")[0], "seed": seed, "metrics": metrics,
              "by_type": _by_type(prepared.test_labels, masks, maps, scores, top_k),
              "train_goods": len(prepared.goods), "split": prepared.meta, **extra,
              "train_seconds": round(train_seconds, 2), "test_seconds": round(test_seconds, 2),
              "curves": pr_curves(masks, maps, scores)}
    _write_json(_run_file(out, run, seed), result)
    return result


BY_TYPE = ("image_auroc", "pixel_ap", "iap")


def _by_type(labels: list[str], masks, maps, scores, top_k: int) -> dict:
    """Per held-out defect type: image AUROC, pixel AP and IAP on the good test images plus that type's defects
    (does a defect learned from one type, or one category, help on the others?)."""
    from ..metrics.detection import evaluate

    out = {}
    for label in sorted(set(labels) - {"good"}):
        idx = [i for i, lab in enumerate(labels) if lab in ("good", label)]
        m = evaluate(masks[idx], maps[idx], scores=np.asarray(scores)[idx], top_k=top_k)
        out[label] = {k: (float(m[k]) if m.get(k) is not None else None) for k in BY_TYPE}
    return out


def by_type_table(cfg: BenchmarkConfig, runs: list[dict], metric: str = "pixel_ap") -> str:
    """Markdown: one row per run, one column per held-out defect type, `metric` as the mean over seeds."""
    types = sorted({t for r in runs for t in r.get("by_type", {})})
    if not types:
        return ""
    lines = ["| run | " + " | ".join(types) + " |", "|---|" + "---:|" * len(types)]
    for name in cfg.run_names():
        rows = [r["by_type"] for r in runs if r["run"] == name and "by_type" in r]
        if not rows:
            continue
        cells = []
        for t in types:
            vals = [row[t][metric] for row in rows if row.get(t, {}).get(metric) is not None]
            cells.append(f"{np.mean(vals):.3f}" if vals else "–")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# quality metrics of each method's synthetic defects: (key in the quality files, label, lower is better)
QUALITY_KEYS = (("kid", "KID", True), ("fid", "FID", True), ("domain_frechet", "domain Fréchet", True),
                ("domain_kernel", "domain KD", True), ("ic_lpips", "IC-LPIPS", False), ("isc", "IS", False),
                ("region_kid", "region KID", True), ("region_fid", "region FID", True),
                ("region_domain_frechet", "region domain Fréchet", True), ("region_ic_lpips", "region IC-LPIPS", False),
                ("visibility_ratio", "visibility ratio", False), ("trts_pixel_ap", "TRTS pixel AP", False),
                ("trts_aupro", "TRTS AUPRO", False))
LPIPS_SIZE = 128  # IC-LPIPS on images resized to 128 px: ST-LPIPS keeps stride 1 in its first layer (memory)
# detection metrics of the method-alone runs the quality metrics are correlated with
CORRELATION_TARGETS = ("pixel_ap", "iap", "iap90")
GAIN = "pixel_ap_gain"  # and the downstream gain: pixel AP of `<method>+fewshot` minus that of `fewshot`
BOOTSTRAP_RESAMPLES = 1000


def _quality(prepared, pool, n_max: int, seed: int) -> dict:
    """Every quality metric (`defectlab.metrics.quality`) of (at most `n_max` of) the synthetic pool against (at
    most `n_max`, a seeded choice of) the held-out real defects, all at the benchmark's size: KID (subsets of
    half the smaller set), FID, the EfficientNet-Lite0 domain distance and IS; IC-LPIPS (DFMGAN protocol) of
    the pool around the real support defects it was made from, at `LPIPS_SIZE` px."""
    from ..metrics import quality
    from ..metrics.domain import DomainParams

    real = prepared.heldout_images
    real = [real[i] for i in sorted(np.random.default_rng([seed, 7]).permutation(len(real))[:n_max])]
    fake = [s.image for s in pool[:n_max]]
    side = max(32, int(round(real[0].shape[0] / 32)) * 32)  # EfficientNet wants multiples of 32
    out = quality.compute(real, fake, fid=False, ic_lpips=False, domain_params=DomainParams(size=side))
    out["fid"] = _scalar(quality.fid(real, fake))  # (features cached by compute: only the Fréchet part is new)
    centres = [s.image for s in prepared.support]
    if len(centres) >= 1:
        r = quality.ic_lpips(centres, fake, "dfmgan", size=min(LPIPS_SIZE, real[0].shape[0]))
        out.update(ic_lpips=r.value, ic_lpips_nonempty=r.value_nonempty, ic_lpips_network=r.network,
                   ic_lpips_protocol=r.protocol, ic_lpips_centres=len(centres))
    out.update(_region_quality(prepared, pool, n_max))
    return out


def _region_quality(prepared, pool, n_max: int) -> dict:
    """Issue 23: the quality metrics on windows around each defect (`metrics.region`, at most `n_max` windows a
    side, synthetic vs every held-out real defect) and the visibility of the defects against their ring."""
    from ..metrics import region, visibility

    held = [(im, m) for im, m, lab in zip(prepared.test_images, prepared.test_canvas_masks, prepared.test_labels)
            if lab != "good"]
    real_images, real_masks = [im for im, _ in held], [m for _, m in held]
    fake_images, fake_masks = [s.image for s in pool[:n_max]], [s.mask for s in pool[:n_max]]
    params = region.RegionParams(max_windows=n_max)
    out = region.region_quality(real_images, real_masks, fake_images, fake_masks, params)
    out.update(visibility.compare(real_images, real_masks, fake_images, fake_masks))
    return out


def _scalar(value) -> float:
    """FID is a number; KID a (mean, std, ...) result whose mean goes in the table."""
    return float(getattr(value, "mean", value))


def _build_method(name: str, prepared, seed: int, params: dict | None = None):
    from .. import registry
    from ..detect.prepare import stable_id

    method = registry.create(name, **(params or {}))
    trained = getattr(getattr(method, "params", None), "checkpoint", None)
    if trained:  # a synthesis model trained elsewhere must not have seen this seed's test images
        from ..adabldm.checkpoint import refuse_if_trained_on

        refuse_if_trained_on(trained, prepared.test_keys)
    if getattr(method, "needs_fit", False):
        rng = np.random.default_rng([seed, stable_id(name), 2**31])
        method.fit(prepared.goods, prepared.support, rng, foregrounds=prepared.foregrounds)
    return method


def _run_seed(seed: int, split, cfg: BenchmarkConfig, cache, out: Path, show_progress: bool, bar,
              source: list | None = None) -> None:
    from dataclasses import replace

    from ..detect.prepare import ImageCache, load_support, prepare_split

    prepared = None
    moved = None

    def ready():
        nonlocal prepared
        if prepared is None:
            prepared = prepare_split(split, cache, show_progress)
        return prepared

    def transferred():
        """The split with the source's few-shot defects as `support` (on canvases of this size and channel
        count); goods, foregrounds and the test set stay the benchmarked category's."""
        nonlocal moved
        if moved is None:
            ready()
            if (cfg.transfer_from or cfg.category) == cfg.category:
                keys = {r.key for r in source}
                support = [s for s in prepared.support if s.meta["source"] in keys]
            else:
                support = load_support(source, ImageCache(cfg.size, cfg.keep_aspect, channels=cache.channels))
            if not support:
                raise DefectlabError(f"--transfer-from: no defect of {cfg.transfer_label()} is visible at --size {cfg.size}")
            moved = replace(prepared, support=support)
        return moved

    todo = {r for r in cfg.run_names() if not _run_file(out, r, seed).is_file()}
    bar.update(len(cfg.run_names()) - len(todo))
    if PATCHCORE in todo:
        _patchcore_run(seed, cfg, ready(), out, show_progress)
        bar.update()
    if DIAD in todo:
        _diad_run(seed, cfg, ready(), out, show_progress)
        bar.update()
    if FEWSHOT in todo:
        _train_and_test(FEWSHOT, seed, cfg, ready(), ready().support, out, show_progress)
        bar.update()
    for m in cfg.methods:
        if scores_itself(m):
            if m in todo:
                t0 = time.time()
                method = _build_method(m, ready(), seed, cfg.method_params.get(m))
                _score_and_test(m, seed, cfg, ready(), method.score, time.time() - t0, out)
                bar.update()
            continue
        _pool_runs(m, m, seed, cfg, ready, ready, cfg.method_params.get(m), {}, todo, out, show_progress, bar)
        if m in cfg.transfer_methods():
            info = {"transfer": {"from": cfg.transfer_from or cfg.category, "types": list(cfg.transfer_types),
                                 "support": sorted(r.key for r in source), "params": cfg.transfer_params(m)}}
            _pool_runs(m, cfg.transferred(m), seed, cfg, transferred, ready, cfg.transfer_params(m), info, todo, out,
                       show_progress, bar)


def _pool_runs(method_name: str, name: str, seed: int, cfg: BenchmarkConfig, source, ready, params, info: dict,
               todo: set, out: Path, show_progress: bool, bar) -> None:
    """The runs `name` and `name+fewshot` of one pool of synthetic defects (and its quality file). The method
    is fitted on `source()`'s support and draws on its goods (the benchmarked category's); the `+fewshot`
    run adds the benchmarked category's real support (`ready().support`). A transferred pool uses the same
    random generators as the in-category one: only where its defects come from differs."""
    from ..detect.prepare import synthesize_pool

    runs = [r for r in (name, f"{name}+{FEWSHOT}") if r in todo]
    wanted = cfg.quality == "all" or (cfg.quality == "first" and seed == cfg.seeds[0])
    need_quality = wanted and not _quality_file(out, name, seed).is_file()
    if not runs and not need_quality:
        return
    t0 = time.time()
    method = _build_method(method_name, source(), seed, params)
    pool = synthesize_pool(method, source(), cfg.n_synthetic, seed, method_name, show_progress=show_progress)
    synth_seconds = time.time() - t0
    if need_quality:
        t1 = time.time()
        q = {"method": name, "seed": seed, **_quality(source(), pool, cfg.quality_images, seed),
             "synth_seconds": round(synth_seconds, 2), **info}
        if cfg.shots > 0:
            q.update(_trts(_fewshot_detector(seed, cfg, ready(), out, show_progress), pool, cfg.quality_images))
        q["quality_seconds"] = round(time.time() - t1, 2)
        _write_json(_quality_file(out, name, seed), q)
    for r in runs:
        defects = pool if r == name else pool + ready().support
        _train_and_test(r, seed, cfg, ready(), defects, out, show_progress,
                        {**info, "synth_seconds": round(synth_seconds, 2)})
        bar.update()


# ------------------------------------------------------------------------------------- reporting
def _versions() -> dict:
    import sklearn
    import torch
    import torchvision

    from .. import __version__

    return {"defectlab": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "torchvision": torchvision.__version__, "scikit-learn": sklearn.__version__}


def _stats_file(out: Path, run: str, seed: int) -> Path:
    return out / "runs" / f"{run}__seed{seed}.stats.npz"


def _save_image_stats(out: Path, run: str, seed: int, masks, maps) -> None:
    """Per-image pixel histograms and region scores of a run (`detection.image_stats`), for the bootstrap."""
    from ..metrics.detection import image_stats

    buf = io.BytesIO()
    np.savez_compressed(buf, **image_stats(masks, maps))
    atomic_write_bytes(_stats_file(out, run, seed), buf.getvalue())


def _correlations(cfg: BenchmarkConfig, summary: dict, quality: dict, out: Path | None = None) -> list[dict]:
    """Rank correlation over methods between each quality metric and pixel AP / IAP / IAP90 of the
    method-alone runs (synthetic defects only, so the detector sees nothing but the method), and the
    downstream gain `pixel_ap_gain` (pixel AP of `<method>+fewshot` minus `fewshot`) when those runs exist.

    With `out` (a benchmark folder): a bootstrap 95 % interval over seeds and test images
    (`metrics.correlation.bootstrap_rank_correlations`, from the per-image statistics of each run; seeds only when
    those are missing), and `quality_vs_ap.png`, one scatter panel per quality metric."""
    from ..metrics.correlation import rank_correlation

    rows = []
    methods = [m for m in cfg.methods if m in summary and m in quality]
    if len(methods) < 3:
        return rows
    per_seed = _per_seed(cfg, out, methods) if out is not None else None
    for qk, label, _ in QUALITY_KEYS:
        for dk in (*CORRELATION_TARGETS, GAIN):
            if any(qk not in quality[m] for m in methods):
                continue
            qv = {m: quality[m][qk]["mean"] for m in methods}
            dv = {m: _target(summary, m, dk) for m in methods}
            if any(v is None for v in (*qv.values(), *dv.values())):
                continue
            rho, tau, n = rank_correlation(qv, dv)
            row = {"quality": qk, "label": _quality_label(quality, methods, qk, label), "detection": dk,
                   "n_methods": n, "spearman": rho, "kendall": tau}
            rows.append(row)
    if per_seed is not None and rows:
        boot = _bootstrap(per_seed, methods, sorted({r["quality"] for r in rows}))
        for row in rows:
            row.update(boot.get((row["quality"], row["detection"]), {}))
    if out is not None:
        _scatter(out, methods, summary, quality)
    return rows


def _quality_label(quality: dict, methods: list, key: str, label: str) -> str:
    """A metric's name with its network, e.g. "IC-LPIPS (ST-LPIPS alex)", "IS (EfficientNet-Lite0)"."""
    first = quality[methods[0]]
    if key == "isc" and first.get("isc_network"):
        return first["isc_network"]
    if key == "ic_lpips" and first.get("ic_lpips_network"):
        return f"IC-LPIPS ({first['ic_lpips_network']})"
    if key == "fid" and first.get("n_fake"):
        return f"FID (n = {first['n_real']['mean']:.0f} real, {first['n_fake']['mean']:.0f} synthetic)" \
            if isinstance(first.get("n_real"), dict) else label
    return label


def _target(summary: dict, method: str, key: str):
    """A detection target's mean over seeds: a method-alone metric, or GAIN (None when a run is missing)."""
    if key == GAIN:
        both, base = summary.get(f"{method}+{FEWSHOT}", {}), summary.get(FEWSHOT, {})
        a, b = both.get("pixel_ap", {}).get("mean"), base.get("pixel_ap", {}).get("mean")
        return None if a is None or b is None else a - b
    return summary.get(method, {}).get(key, {}).get("mean")


def _per_seed(cfg: BenchmarkConfig, out: Path, methods: list) -> dict:
    """Per seed: each method's quality values; the image statistics (or metrics) of its method-alone run, its
    `+fewshot` run and the `fewshot` run, keyed by run name."""
    data: dict = {"quality": {}, "stats": {}, "metrics": {}}
    for m in methods:
        for s in cfg.seeds:
            qf = _quality_file(out, m, s)
            if qf.is_file():
                data["quality"].setdefault(m, {})[s] = json.loads(qf.read_text())
    for run in {*methods, *(f"{m}+{FEWSHOT}" for m in methods), FEWSHOT}:
        for s in cfg.seeds:
            rf, sf = _run_file(out, run, s), _stats_file(out, run, s)
            if rf.is_file():
                data["metrics"].setdefault(run, {})[s] = json.loads(rf.read_text())["metrics"]
            if sf.is_file():
                with np.load(sf) as z:
                    data["stats"].setdefault(run, {})[s] = {k: z[k] for k in z.files}
    return data


def _bootstrap(per_seed: dict, methods: list, keys: list) -> dict:
    """Bootstrap intervals of every (quality key, detection target) pair at once (one set of resamples)."""
    from ..metrics.correlation import bootstrap_rank_correlations
    from ..metrics.detection import binned_metrics

    seeds = sorted(set.intersection(*(set(per_seed["quality"].get(m, {})) & set(per_seed["metrics"].get(m, {}))
                                      for m in methods)))
    keys = [k for k in keys if all(per_seed["quality"][m][s].get(k) is not None for m in methods for s in seeds)]
    if not seeds or not keys:
        return {}
    stats, metrics = per_seed["stats"], per_seed["metrics"]
    by_image = all(s in stats.get(m, {}) for m in methods for s in seeds)
    n_images = {s: len(stats[methods[0]][s]["pos_hist"]) if by_image else 1 for s in seeds}
    runs = [f"{m}+{FEWSHOT}" for m in methods] + [FEWSHOT]
    gain = all(s in (stats if by_image else metrics).get(r, {}) for r in runs for s in seeds)

    def values(run, s, w):
        if by_image and w is not None:
            return binned_metrics(stats[run][s], w)
        return metrics[run][s]

    def detection(m, s, w):
        out = {k: values(m, s, w)[k] for k in CORRELATION_TARGETS}
        if gain:
            out[GAIN] = values(f"{m}+{FEWSHOT}", s, w)["pixel_ap"] - values(FEWSHOT, s, w)["pixel_ap"]
        return out

    quality = {k: {m: {s: per_seed["quality"][m][s][k] for s in seeds} for m in methods} for k in keys}
    boot = bootstrap_rank_correlations(quality, detection, seeds, n_images, resamples=BOOTSTRAP_RESAMPLES,
                                       rng=np.random.default_rng([len(seeds), len(methods), 17]))
    how = "seeds and test images" if by_image else "seeds only"
    return {pair: {"spearman_ci": r["spearman_ci"], "kendall_ci": r["kendall_ci"], "n_boot": r["n_boot"],
                   "bootstrap": how, "n_seeds": len(seeds)} for pair, r in boot.items()}


def quality_scatter(results: dict, methods: Sequence[str] | None = None, detection: str = "pixel_ap"):
    """The quality <-> usefulness figure from a benchmark's `results.json` content: one panel per quality metric
    (x: its mean over seeds, y: the method-alone run's `detection` mean; error bars: std over seeds), or None
    when no quality metric was measured for every method."""
    from ..metrics.correlation import scatter_figure

    summary, quality = results["summary"], results["quality"]
    methods = [m for m in (methods or quality) if m in summary and m in quality]
    points = {}
    for qk, label, lower in QUALITY_KEYS:
        if methods and all(isinstance(quality[m].get(qk), dict) and quality[m][qk]["mean"] is not None
                           for m in methods):
            name = _quality_label(quality, methods, qk, label) + (" ↓" if lower else " ↑")
            points[name] = {m: (quality[m][qk]["mean"], quality[m][qk]["std"], summary[m][detection]["mean"],
                                summary[m][detection]["std"]) for m in methods}
    name = {"pixel_ap": "pixel AP", "iap": "IAP", "iap90": "IAP90"}.get(detection, detection)
    return scatter_figure(points, f"{name} (method alone)") if points else None


def _scatter(out: Path, methods: list, summary: dict, quality: dict) -> None:
    import matplotlib.pyplot as plt

    from ..viz import save_figure

    fig = quality_scatter({"summary": summary, "quality": quality}, methods)
    if fig is not None:
        save_figure(fig, out / "quality_vs_ap.png")
        plt.close(fig)


def _load_runs(cfg: BenchmarkConfig, out: Path) -> tuple[list[dict], dict]:
    """The run records, and per method every numeric quality value as mean ± std over seeds (labels such as
    the networks used are kept as they are)."""
    from .tables import mean_std

    runs = [json.loads(_run_file(out, r, s).read_text()) for s in cfg.seeds for r in cfg.run_names()]
    qual = [json.loads(_quality_file(out, m, s).read_text()) for s in cfg.seeds for m in cfg.synth_names()
            if _quality_file(out, m, s).is_file()]
    by_method: dict[str, list[dict]] = {}
    for q in qual:
        by_method.setdefault(q["method"], []).append(q)
    quality = {}
    for m, qs in by_method.items():
        entry = {}
        for k in qs[0]:
            if k in ("method", "seed"):
                continue
            values = [q.get(k) for q in qs]
            if all(isinstance(v, (int, float)) or v is None for v in values):
                entry[k] = mean_std(values)
            else:
                entry[k] = values[0]
        quality[m] = entry
    return runs, quality


def _plots(cfg: BenchmarkConfig, out: Path, cache, splits) -> None:
    from .tables import detection_grid, pr_figure
    from ..viz import save_figure

    import matplotlib.pyplot as plt

    seed = cfg.seeds[0]
    curves = {r: json.loads(_run_file(out, r, seed).read_text())["curves"] for r in cfg.run_names()}
    fig = pr_figure(curves, f"(seed {seed})")
    save_figure(fig, out / "pr_curves.png")
    plt.close(fig)
    maps = {r: np.load(_run_file(out, r, seed).with_suffix(".npz")) for r in cfg.run_names()}
    index = maps[cfg.run_names()[0]]["index"]
    split = splits[seed]
    test = split.test_records()
    fig = detection_grid([cache.eval_image(test[i]) for i in index], [cache.eval_mask(test[i]) for i in index], {r: v["maps"] for r, v in maps.items()},
                         labels=[test[i].label for i in index])
    save_figure(fig, out / "detections.png")
    plt.close(fig)


def _num(v) -> str:
    return f"{v:+.2f}" if isinstance(v, float) and np.isfinite(v) else "–"


def _interval(ci) -> str:
    if not ci or any(v is None or not np.isfinite(v) for v in ci):
        return "–"
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _transfer_note(cfg: BenchmarkConfig, results: dict) -> str:
    """The paragraph that says which rows are transferred, from where, and what they are compared with."""
    source = cfg.transfer_from or cfg.category
    first = next((r for r in results["runs"] if "transfer" in r), None)
    n = len(first["transfer"]["support"]) if first else "?"
    types = ", ".join(cfg.transfer_types) or ", ".join(sorted({k.split("/")[2] for k in first["transfer"]["support"]})
                                                       if first else []) or "all"
    params = [f"`{m}` {', '.join(f'{k}={v}' for k, v in cfg.transfer_params(m).items())}"
              for m in cfg.transfer_methods() if cfg.transfer_params(m)]
    rows = ", ".join(f"`{cfg.transferred(m)}`" for m in cfg.transfer_methods())
    left = [m for m in cfg.methods if m not in cfg.transfer_methods()]
    if source == cfg.category:
        text = (f"**Transferred rows** ({rows} and their `+{FEWSHOT}`): the method is fitted only on the few-shot "
                f"defects of type {types} ({n} images at seed {cfg.seeds[0]}, the same ones the other runs see among "
                f"theirs) and draws them on the good images; the real defects of `+{FEWSHOT}` and the test set keep "
                f"every type. So `{FEWSHOT}` = no synthesis, `<method>` rows = synthesis learned from every type, "
                f"`<method>@...` rows = synthesis learned from {types} only.")
    else:
        text = (f"**Transferred rows** ({rows} and their `+{FEWSHOT}`): the method is fitted on `{source}`'s few-shot "
                f"defects ({n} images at seed {cfg.seeds[0]}, types {types}, {cfg.shots} per type as in `{source}`'s "
                f"own split) and draws them on `{cfg.category}`'s good images (its foregrounds and textures); the "
                f"detector's goods, the real defects of `+{FEWSHOT}` and the test set are `{cfg.category}`'s. So "
                f"`{FEWSHOT}` = no synthesis, `<method>` rows = synthesis learned in-category, `<method>@...` rows = "
                "synthesis transferred.")
    if params:
        text += " Transferred runs' parameters: " + "; ".join(params) + "."
    if left:
        text += (" Not transferred (they learn nothing from defects, a transferred row would repeat theirs): "
                 + ", ".join(f"`{m}`" for m in left) + ".")
    return text


def _markdown(cfg: BenchmarkConfig, results: dict) -> str:
    from .tables import markdown_table

    s = results["summary"]
    lines = [f"# Downstream detection: `{cfg.category}`", ""]
    if cfg.command:
        lines += ["```", cfg.command, "```", ""]
    split = results["runs"][0]["split"] if results["runs"] else {}
    lines += [f"Data `{cfg.data or 'embedded'}` ({results['format']}), {cfg.shots} real defects per type for training, "
              f"seeds {', '.join(map(str, cfg.seeds))}, long side {cfg.size} px "
              f"({'aspect kept, zero-padded' if cfg.keep_aspect else 'squashed to a square'}), detector `{cfg.detector_name}` "
              f"({cfg.steps} steps{' per stage' if cfg.detector_name == 'destseg' else ''}), "
              f"{cfg.n_synthetic} synthetic defects per method. Test set (seed {cfg.seeds[0]}): "
              f"{split.get('heldout', '?')} held-out real defects + {split.get('good_test', '?')} good images; "
              f"training: {split.get('good_train', '?')} good images.", "",
              "## Detection (mean ± std over seeds) and quality of each method's synthetic defects", "",
              markdown_table(s, results["quality"], cfg.run_names()), "",
              "`fewshot`: the real support defects only; `<method>`: its synthetic defects only; "
              "`<method>+fewshot`: both. pixel AP, IAP and IAP90 are the metrics that small defects cannot flatter. "
              f"Quality: at most {cfg.quality_images} of the method's synthetic images vs at most as many held-out "
              "real defect images "
              f"({'every seed' if cfg.quality == 'all' else 'first seed only' if cfg.quality == 'first' else 'not computed'}; "
              "same value on both rows of a method): KID (Inception; mean of 100 subsets of half the smaller set), "
              "FID (Inception, at the n shown; biased upward at small n), the domain distance (Fréchet and kernel "
              "distance of pooled EfficientNet-Lite0 features, the detector's backbone: *not* FID), IC-LPIPS (DFMGAN "
              f"protocol, clusters around the real support defects, {LPIPS_SIZE} px) and IS; the networks are named in "
              "the column titles.", ""]
    scorers = [m for m in cfg.methods if scores_itself(m)]
    if scorers:
        lines += [", ".join(f"`{m}`" for m in scorers) + ": feature-space method(s), tested through their own anomaly "
                  "maps (`score()`, fitted on the good training images; no detector, and no KID / FID: they leave "
                  "pixels unchanged).", ""]
    if cfg.transfer:
        lines += [_transfer_note(cfg, results), ""]
        table = by_type_table(cfg, results["runs"])
        if table:
            lines += ["Pixel AP by held-out defect type (good test images + that type's defects; mean over seeds):",
                      "", table, ""]
    if cfg.method_params:
        lines += ["Method parameters over the published defaults: " + "; ".join(
            f"`{m}` " + ", ".join(f"{k}={v}" for k, v in ps.items()) for m, ps in cfg.method_params.items()) + ".", ""]
    if FEWSHOT in s and s[FEWSHOT]["pixel_ap"]["mean"] is not None:
        base = s[FEWSHOT]
        best = max((r for r in s if r.endswith(f"+{FEWSHOT}")), key=lambda r: s[r]["pixel_ap"]["mean"] or -1, default=None)
        if best:
            lines += [f"Best addition to the {cfg.shots} real defects per type: `{best}`: pixel AP "
                      f"{s[best]['pixel_ap']['mean']:.3f} vs {base['pixel_ap']['mean']:.3f} few-shot only "
                      f"({s[best]['pixel_ap']['mean'] - base['pixel_ap']['mean']:+.3f}); IAP90 "
                      f"{s[best]['iap90']['mean']:.3f} vs {base['iap90']['mean']:.3f}.", ""]
    from .tables import region_table

    region = region_table(results["quality"], [m for m in cfg.synth_names() if not scores_itself(base_method(m))])
    if region:
        lines += ["## Where the defect is: region quality, visibility, TRTS", "", region, "",
                  "Region metrics: each defect's square window (its box plus half the box's longer side of context on "
                  "every side, at least 32 px, resized to 128 px), synthetic windows vs the same windows around every "
                  "held-out real defect (n = windows shown; KID subsets of half the smaller set; region IC-LPIPS "
                  "clusters around the real windows). Visibility: contrast of the defect against the ring around it "
                  "(mean and Sobel-energy contrast, each normalised by the ring's spread), median over defects; ratio "
                  "= synthetic / real; ⚠ = synthetic defects less than half as visible as the real ones. TRTS: a "
                  "detector trained on the real support defects only, scored on the synthetic masks (empty when not "
                  "run).", ""]
    lines += ["## Quality vs detection: rank correlation over methods", ""]
    if results["correlation"]:
        lines += ["| quality | detection | Spearman ρ | 95 % interval | Kendall τ | 95 % interval |",
                  "|---|---|---|---|---|---|"]
        for c in results["correlation"]:
            lines.append(f"| {c.get('label', c['quality'])} | {c['detection']} | {_num(c['spearman'])} | "
                         f"{_interval(c.get('spearman_ci'))} | {_num(c['kendall'])} | {_interval(c.get('kendall_ci'))} |")
        first = results["correlation"][0]
        how = (f"bootstrap over {first.get('bootstrap')} ({first.get('n_boot')} finite of {BOOTSTRAP_RESAMPLES} "
               f"resamples, {first.get('n_seeds')} seed(s); pixel AP / IAP of a resample from 1000-bin histograms)"
               if first.get("bootstrap") else "no bootstrap")
        lines += ["", f"Over the {first['n_methods']} `method`-alone runs; {how}. Lower KID / FID / domain distance "
                  "is better, so a quality metric that predicts usefulness correlates *negatively* with AP; "
                  "IC-LPIPS (diversity) and IS would correlate positively. With a handful of methods an interval "
                  "that spans 0 means: no evidence either way.", "", "![quality vs pixel AP](quality_vs_ap.png)", ""]
    else:
        lines += ["Needs at least three methods with quality scores.", ""]
    lines += ["## Plots", "", "![PR curves](pr_curves.png)", "", "![detections](detections.png)", "",
              f"Machine: {results['machine'].get('processor')}, {results['machine'].get('cpu_count')} CPUs, "
              f"GPU {results['machine'].get('cuda')}; this invocation {results['wall_seconds']:.0f} s, "
              f"training + testing {results['compute_seconds']:.0f} s in all.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- entry
def run_benchmark(data: str | Path | None, category: str, methods: Sequence[str], out: str | Path, *,
                  format: str = "auto", shots: int = 10, seeds: Sequence[int] = (0, 1, 2), size: int = 256,
                  steps: int = 400, n_synthetic: int = 200, quality: bool | str = "all", detector: dict | None = None,
                  detector_name: str = "destseg", keep_aspect: bool = True, patchcore: bool = True, diad: bool = False,
                  embedded: dict | None = None, quality_images: int = 100, threads: int | None = None, overwrite: bool = False,
                  method_params: dict | None = None, show_progress: bool = True, command: str | None = None,
                  transfer_from: str | None = None, transfer_types: Sequence[str] = ()) -> dict:
    """Run the protocol (module docstring) and write its outputs under `out`; returns results.json's content.

    `embedded`: with `format="embedded"`, counts for `build_embedded` (n_train, n_test_good, n_test_defect);
    its default of 3 defects per type only allows `shots` <= 2. `method_params`: {method: {parameter: value}}
    passed to `registry.create`, e.g. {"texture_gan": {"steps": 600}}. `threads`: torch CPU threads for the
    whole run (restored after); 1 is fastest on a machine whose cores other jobs are using. `transfer_from` /
    `transfer_types`: the transferred runs `<method>@<source>` (module docstring)."""
    from ..detect.detector import torch_threads
    from ..limits import check_int

    if threads is not None:
        check_int("--threads", threads, low=1)
    with torch_threads(threads):
        return _run_benchmark(data, category, methods, out, format=format, shots=shots, seeds=seeds, size=size,
                              steps=steps, n_synthetic=n_synthetic, quality=quality, detector=detector,
                              detector_name=detector_name, keep_aspect=keep_aspect, patchcore=patchcore, diad=diad,
                              embedded=embedded, quality_images=quality_images, overwrite=overwrite,
                              method_params=method_params, show_progress=show_progress, command=command,
                              transfer_from=transfer_from, transfer_types=transfer_types)


def _run_benchmark(data, category, methods, out, *, format, shots, seeds, size, steps, n_synthetic, quality, detector,
                   detector_name, keep_aspect, patchcore, diad,
                   embedded, quality_images, overwrite, method_params, show_progress, command,
                   transfer_from, transfer_types) -> dict:
    from ..bench import machine_info
    from ..detect.prepare import ImageCache
    from .tables import summarize

    t0 = time.time()
    cfg = BenchmarkConfig(category=category, methods=list(methods), data=str(Path(data).resolve()) if data else None,
                          format=format, shots=int(shots), seeds=[int(s) for s in seeds], size=int(size),
                          steps=int(steps), n_synthetic=int(n_synthetic),
                          quality={True: "all", False: "none"}.get(quality, quality), quality_images=int(quality_images),
                          detector=dict(detector or {}), detector_name=detector_name, keep_aspect=bool(keep_aspect),
                          patchcore=bool(patchcore), diad=bool(diad), embedded=dict(embedded or {}),
                          method_params={m: dict(v) for m, v in (method_params or {}).items()}, command=command,
                          transfer_from=transfer_from or None, transfer_types=list(transfer_types or []))
    dataset, splits = _validate(cfg)
    sources = _transfer_sources(cfg, dataset, splits)
    out = Path(out)
    _prepare_out(out, asdict(cfg), overwrite, _fingerprint(cfg, dataset, splits, sources))
    cache = ImageCache(cfg.size, keep_aspect=cfg.keep_aspect)
    total = len(cfg.seeds) * len(cfg.run_names())
    bar = progress(total=total, desc="benchmark runs", leave=True) if show_progress else tqdm(total=total, disable=True)
    with bar:
        for seed in cfg.seeds:
            _run_seed(seed, splits[seed], cfg, cache, out, show_progress, bar, sources.get(seed))
    runs, qual = _load_runs(cfg, out)
    summary = summarize(runs)
    results = {"config": asdict(cfg), "format": dataset.format, "machine": machine_info(), "versions": _versions(),
               "wall_seconds": round(time.time() - t0, 1),
               "compute_seconds": round(sum(r["train_seconds"] + r["test_seconds"] for r in runs), 1),
               "runs": [{k: v for k, v in r.items() if k != "curves"} for r in runs],
               "summary": summary, "quality": qual, "correlation": _correlations(cfg, summary, qual, out)}
    _plots(cfg, out, cache, splits)
    _write_json(out / "results.json", results)  # last: its presence marks a finished benchmark
    atomic_write_bytes(out / "results.md", _markdown(cfg, results).encode())
    return results


def _csv(kind):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            return [kind(t) for t in items]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}: {text!r}") from exc
    return parse


def _at_least(low: int):
    """argparse type: an integer >= `low` (a bad value is a usage error, not a traceback later)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--data", help="data set folder (not needed with --format embedded)")
    p.add_argument("--format", default="auto", help="auto, mvtec, magnetic_tile, btad, ksdd2, visa or embedded")
    p.add_argument("--category", required=True, help="category to benchmark (magnetic_tile for Magnetic Tile)")
    p.add_argument("--methods", type=_csv(str), default=[], help="comma-separated synthesis methods")
    p.add_argument("--shots", type=_at_least(0), default=10, help="real defects per type for training (default 10)")
    p.add_argument("--seeds", type=_csv(int), default=[0, 1, 2], help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--size", type=int, default=256,
                   help="long side of every image; the aspect is kept and the rest zero-padded (default 256)")
    p.add_argument("--squash", action="store_true", help="squash every image to a size x size square instead")
    p.add_argument("--detector", choices=DETECTORS, default="destseg",
                   help="destseg: DeSTSeg-style, pretrained EfficientNet-Lite0 teacher (default); unet: compact U-Net from scratch")
    p.add_argument("--no-patchcore", action="store_true", help="leave out the unsupervised PatchCore row")
    p.add_argument("--diad", action="store_true",
                   help="add the unsupervised DiAD row (guided latent-diffusion reconstruction; trains minutes on a CPU)")
    p.add_argument("--steps", type=_at_least(1), default=400,
                   help="detector training steps per run (destseg: per stage; default 400)")
    p.add_argument("--n-synthetic", type=_at_least(1), default=200, help="synthetic defects per method and seed (default 200)")
    p.add_argument("--quality", choices=("all", "first", "none"), default="all",
                   help="KID / FID of each method's synthetic defects for all seeds (default), the first only, "
                        "or none (each FID costs an eigen-decomposition of a 2048 x 2048 matrix)")
    p.add_argument("--quality-images", type=_at_least(2), default=100,
                   help="at most this many real and synthetic images per KID / FID (default 100)")
    p.add_argument("--embedded-counts", type=_csv(int), metavar="TRAIN,GOOD,DEFECT",
                   help="with --format embedded: good training images, good test images and defects per type "
                        "to build (e.g. 60,20,15; the small default allows --shots <= 2)")
    p.add_argument("--method-param", action="append", type=_method_param, default=[], metavar="METHOD.NAME=VALUE",
                   help="override one of a method's parameters (repeatable), e.g. texture_gan.steps=600 "
                        "(and of the --diad row: diad.steps=300); "
                        "VALUE is read as JSON, else as a string")
    p.add_argument("--transfer-from", metavar="CATEGORY",
                   help="also run every defect-learning method fitted on CATEGORY's few-shot defects and drawn on this "
                        "category's good images (runs <method>@CATEGORY); detector and test set stay this category's")
    p.add_argument("--transfer-types", type=_csv(str), default=[], metavar="TYPE,...",
                   help="the transferred methods learn only these defect types (of --transfer-from, or without it of "
                        "--category itself, e.g. Magnetic Tile: --transfer-types Crack)")
    p.add_argument("--threads", type=_at_least(1), help="torch CPU threads (default: torch's; 1 is best on a busy machine)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    return p


def _method_param(text: str) -> tuple[str, str, object]:
    key, sep, value = text.partition("=")
    method, dot, name = key.partition(".")
    if not (sep and dot and method and name):
        raise argparse.ArgumentTypeError(f"expected METHOD.NAME=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return method.strip(), name.strip(), parsed


def _method_params(args) -> dict:
    out: dict[str, dict] = {}
    for method, name, value in getattr(args, "method_param", None) or []:
        out.setdefault(method, {})[name] = value
    return out


def add_benchmark_parser(subparsers) -> argparse.ArgumentParser:
    """Register `defectlab benchmark` on a CLI's subparsers."""
    p = subparsers.add_parser("benchmark", help="train a detector on each method's synthetic defects and test on real ones",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(handler=main)
    return p


add_parser = add_benchmark_parser


def _embedded_counts(args) -> dict:
    counts = getattr(args, "embedded_counts", None)
    if not counts:
        return {}
    if args.format != "embedded" or len(counts) != 3:
        raise DefectlabError("--embedded-counts: three numbers (TRAIN,GOOD,DEFECT), only with --format embedded")
    return dict(zip(("n_train", "n_test_good", "n_test_defect"), counts))


def _command_line(args: argparse.Namespace) -> str:
    """The command, rebuilt from the parsed arguments, for results.md."""
    import shlex

    parts = ["defectlab", "benchmark"]
    for flag, value in (("--data", args.data), ("--format", args.format), ("--category", args.category),
                        ("--methods", ",".join(args.methods)), ("--shots", args.shots),
                        ("--seeds", ",".join(map(str, args.seeds))), ("--size", args.size),
                        ("--detector", args.detector), ("--steps", args.steps),
                        ("--n-synthetic", args.n_synthetic), ("--quality", args.quality),
                        ("--quality-images", args.quality_images), ("--threads", args.threads),
                        ("--embedded-counts", ",".join(map(str, args.embedded_counts or [])) or None),
                        ("--transfer-from", getattr(args, "transfer_from", None)),
                        ("--transfer-types", ",".join(getattr(args, "transfer_types", None) or []) or None),
                        ("--out", args.out)):
        if value not in (None, ""):
            parts += [flag, str(value)]
    for method, name, value in getattr(args, "method_param", None) or []:
        parts += ["--method-param", f"{method}.{name}={value if isinstance(value, str) else json.dumps(value)}"]
    parts += ["--squash"] if args.squash else []
    parts += ["--no-patchcore"] if args.no_patchcore else []
    parts += ["--diad"] if getattr(args, "diad", False) else []
    parts += ["--overwrite"] if args.overwrite else []
    return shlex.join(parts)


def main(args: argparse.Namespace) -> int:
    results = run_benchmark(args.data, args.category, args.methods, args.out, format=args.format, shots=args.shots,
                            seeds=args.seeds, size=args.size, steps=args.steps, n_synthetic=args.n_synthetic,
                            detector_name=args.detector, keep_aspect=not args.squash, patchcore=not args.no_patchcore,
                            diad=args.diad, quality=args.quality, quality_images=args.quality_images, overwrite=args.overwrite, embedded=_embedded_counts(args),
                            threads=args.threads, method_params=_method_params(args),
                            command=_command_line(args), transfer_from=args.transfer_from,
                            transfer_types=args.transfer_types)
    out = Path(args.out)
    print((out / "results.md").read_text())
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'pr_curves.png'}, {out / 'detections.png'} "
          f"({results['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    from ..cli import run_handler

    parser = add_arguments(argparse.ArgumentParser(prog="python -m defectlab.benchmark", description=__doc__,
                                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    sys.exit(run_handler(main, parser.parse_args(), prog="python -m defectlab.benchmark"))
