"""One detector run: train a detector (or fit PatchCore, DiAD, a feature-space method's own scorer), test it on
the held-out images and record the metrics, overall and per defect type."""
from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

from ..imageio import atomic_write_bytes
from .config import DIAD, FEWSHOT, PATCHCORE, BenchmarkConfig, base_run
from .figures import pr_curves
from .folder import detector_file, run_file, save_image_stats, write_json


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


def make_detector(cfg: BenchmarkConfig):
    from ..detect import create_detector

    mix = {} if cfg.real_share is None else {"real_share": cfg.real_share}
    return create_detector(cfg.detector_name, cfg.steps, **{**mix, **cfg.detector})


def fit_detector(run: str, seed: int, cfg: BenchmarkConfig, prepared, defects, show_progress: bool):
    from .prepare import stable_id

    det = make_detector(cfg)
    # one initialisation per seed (paired runs); the data order depends on the run (the same under every detector)
    det.fit(prepared.goods, defects, np.random.default_rng([seed, stable_id(base_run(run))]),
            init_rng=np.random.default_rng([seed, 0]),
            foregrounds=prepared.foregrounds, show_progress=show_progress, desc=f"{run} seed {seed}")
    return det


def fewshot_detector(seed: int, cfg: BenchmarkConfig, prepared, out: Path, show_progress: bool):
    """The seed's `fewshot` detector (trained on the real support defects only), for TRTS: the one saved by
    its run, else trained again exactly as that run trained it (same generators: same network) and saved."""
    from ..detect import detector_class

    path = detector_file(out, seed)
    if path.is_file():
        return detector_class(cfg.detector_name).load(path)
    det = fit_detector(FEWSHOT, seed, cfg, prepared, prepared.support, show_progress)
    det.save(path)
    return det


def train_and_test(run: str, seed: int, cfg: BenchmarkConfig, prepared, defects, out: Path, show_progress: bool,
                    record: dict | None = None) -> dict:
    t0 = time.time()
    det = fit_detector(run, seed, cfg, prepared, defects, show_progress)
    if base_run(run) == FEWSHOT:
        det.save(detector_file(out, seed, run))  # TRTS scores every method's defects with the first detector's
    t1 = time.time()
    maps, scores = det.predict(prepared.test_images)
    extra = {"train_defects": len(defects), "loss_first": float(np.mean(det.losses[:10])),
             "loss_last": float(np.mean(det.losses[-10:])), "device": det.device, "detector": cfg.detector_name,
             "real_share": getattr(det.params, "real_share", None),
             **(record or {})}
    return _test_and_record(run, seed, cfg, prepared, prepared.eval_maps(maps), scores, det.params.top_k, t1 - t0,
                            time.time() - t1, extra, out)


def score_and_test(run: str, seed: int, cfg: BenchmarkConfig, prepared, score_fn, fit_seconds: float, out: Path,
                    detector: str = "the method's own score()", batch_fn=None, stamp: dict | None = None) -> dict:
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
    extra = {"train_defects": 0, "detector": detector, "device": "cpu", **(stamp or {})}
    return _test_and_record(run, seed, cfg, prepared, maps, scores, 100, fit_seconds, time.time() - t1, extra, out)


def patchcore_run(seed: int, cfg: BenchmarkConfig, prepared, out: Path, show_progress: bool, stamp: dict | None = None) -> dict:
    from ..detect import PatchCore
    from .prepare import stable_id

    t0 = time.time()
    model = PatchCore().fit(prepared.goods, np.random.default_rng([seed, stable_id(PATCHCORE)]), show_progress=show_progress)
    return score_and_test(PATCHCORE, seed, cfg, prepared, model.score, time.time() - t0, out,
                           detector="PatchCore memory bank (no defects)", stamp=stamp)


def diad_run(seed: int, cfg: BenchmarkConfig, prepared, out: Path, show_progress: bool, stamp: dict | None = None) -> dict:
    from ..detect import DiAD
    from .prepare import stable_id

    t0 = time.time()
    model = DiAD(**cfg.method_params.get(DIAD, {})).fit(prepared.goods, np.random.default_rng([seed, stable_id(DIAD)]), show_progress=show_progress)
    return score_and_test(DIAD, seed, cfg, prepared, model.score, time.time() - t0, out,
                           detector="DiAD guided diffusion reconstruction (no defects)",
                           batch_fn=lambda images: model.predict(images, show_progress=show_progress)[0], stamp=stamp)


def _test_and_record(run, seed, cfg, prepared, maps, scores, top_k, train_seconds, test_seconds, extra, out) -> dict:
    from ..metrics.detection import evaluate

    masks = np.stack(prepared.test_masks)
    defective = np.array([lab != "good" for lab in prepared.test_labels])  # an empty defect mask: defective, no pixels
    metrics = {k: (float(v) if v is not None else None) for k, v in
               evaluate(masks, maps, scores=scores, top_k=top_k, labels=defective).items()}
    grid = _grid_indices(prepared, cfg.grid_images)
    buf = io.BytesIO()
    np.savez_compressed(buf, maps=maps[grid].astype(np.float16), index=np.asarray(grid))
    atomic_write_bytes(run_file(out, run, seed).with_suffix(".npz"), buf.getvalue())
    save_image_stats(out, run, seed, masks, maps, defective)  # for the quality <-> detection bootstrap
    result = {"run": run, "method": base_run(run).split("+")[0], "seed": seed, "metrics": metrics,
              "by_type": _by_type(prepared.test_labels, masks, maps, scores, top_k),
              "train_goods": len(prepared.goods), "split": prepared.meta, **extra,
              "train_seconds": round(train_seconds, 2), "test_seconds": round(test_seconds, 2),
              "curves": pr_curves(masks, maps, scores, labels=defective)}
    write_json(run_file(out, run, seed), result)
    return result


BY_TYPE = ("image_auroc", "pixel_ap", "iap")


def _by_type(labels: list[str], masks, maps, scores, top_k: int) -> dict:
    """Per held-out defect type: image AUROC, pixel AP and IAP on the good test images plus that type's defects
    (does a defect learned from one type, or one category, help on the others?)."""
    from ..metrics.detection import evaluate

    out = {}
    for label in sorted(set(labels) - {"good"}):
        idx = [i for i, lab in enumerate(labels) if lab in ("good", label)]
        m = evaluate(masks[idx], maps[idx], scores=np.asarray(scores)[idx], top_k=top_k,
                     labels=[labels[i] != "good" for i in idx])
        out[label] = {k: (float(m[k]) if m.get(k) is not None else None) for k in BY_TYPE}
    return out
