"""The output folder: strict JSON written atomically, the file of each run / quality record, and resuming an
interrupted benchmark (`prepare_out` refuses to mix configurations or data)."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np

from ..errors import DefectlabError
from ..imageio import atomic_write_bytes
from .config import _RESUME_KEYS, FEWSHOT


def write_json(path: Path, obj) -> None:
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


TIMINGS_FILE = "timings.json"  # the machine and the seconds of each run: apart from results.json, whose bytes they would change
DATA_FILE = "data_fingerprint.json"  # every data file (size, sha256) and each seed's split, for safe resuming


def _read_json_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DefectlabError(f"{path}: unreadable ({exc}); pass --overwrite or choose another --out") from exc


def _grows(old: dict, new: dict) -> bool:
    """A finished benchmark may grow: more seeds, methods or the DiAD row, nothing dropped (its runs are kept; the
    tables are rewritten over the larger set). The resume checks below still apply."""
    sets = [(set(old.get(k) or []), set(new.get(k) or [])) for k in ("seeds", "methods")]
    rows = (bool(old.get("diad")), bool(new.get("diad")))
    if any(not a <= b for a, b in sets) or (rows[0] and not rows[1]):
        return False
    return any(a < b for a, b in sets) or rows[0] < rows[1]


def prepare_out(out: Path, cfg: dict, overwrite: bool, fingerprint: dict | None = None) -> None:
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
        old = _read_json_file(cfg_file) if ours and not overwrite else {}  # read once: growth and resume checks
        if overwrite:
            if ours:  # remove only what a benchmark writes
                for folder in ("runs", "pools", "models"):  # pools and fitted models resume: never from another run
                    shutil.rmtree(out / folder, ignore_errors=True)
                for name in ("results.json", "results.md", "pr_curves.png", "detections.png", "config.json", DATA_FILE,
                             TIMINGS_FILE):
                    (out / name).unlink(missing_ok=True)
        elif (out / "results.json").is_file() and not (ours and _grows(old, cfg)):
            raise DefectlabError(f"{out}: already holds benchmark results; pass --overwrite or choose another --out "
                                 "(or add seeds or methods to it)")
        elif not ours:
            raise DefectlabError(f"{out}: folder exists and is not a benchmark output; choose another --out "
                                 "(or pass --overwrite to write into it)")
        else:
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
            write_json(out / DATA_FILE, fingerprint)
            record["data_fingerprint"] = summary(fingerprint)
        write_json(cfg_file, record)
    except OSError as exc:
        raise DefectlabError(f"{out}: cannot write the benchmark output there ({exc.strerror or exc})") from exc


def run_file(out: Path, run: str, seed: int) -> Path:
    return out / "runs" / f"{run}__seed{seed}.json"


def quality_file(out: Path, method: str, seed: int) -> Path:
    return out / "runs" / f"quality__{method}__seed{seed}.json"


def detector_file(out: Path, seed: int, run: str = FEWSHOT) -> Path:
    """The saved detector of a seed's `fewshot` run (`fewshot~<detector>` for a further detector)."""
    return out / "runs" / f"{run}__seed{seed}.pt"


def stats_file(out: Path, run: str, seed: int) -> Path:
    return out / "runs" / f"{run}__seed{seed}.stats.npz"


def save_image_stats(out: Path, run: str, seed: int, masks, maps, labels=None) -> None:
    """Per-image pixel histograms and region scores of a run (`detection.image_stats`), for the bootstrap."""
    from ..metrics.detection import image_stats

    buf = io.BytesIO()
    np.savez_compressed(buf, **image_stats(masks, maps, labels=labels))
    atomic_write_bytes(stats_file(out, run, seed), buf.getvalue())
