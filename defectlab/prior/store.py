"""Trained priors, made once and reused: found by a fingerprint of the good images and the parameters.

    prior = trained_prior(goods, PriorParams(), category="washer")   # trains (progress bar, resumable) or loads
    images = prior.sample(16, np.random.default_rng(0))

A prior lives in `$DEFECTLAB_PRIOR_CACHE` or `~/.cache/defectlab/prior` (`$XDG_CACHE_HOME` respected), one folder
per fingerprint: the training run (`run/`, resumable), then `prior.safetensors` (the EMA weights) and `prior.json`
(category, size, fingerprint, SHA-256 of the weights, parameters, how many good images, seconds). The fingerprint
covers every good image as the prior sees it (size x size, 8-bit) in order, the parameters and the autoencoder,
so a data set whose good training images depend on the seed (a per-seed hold-out, as on Magnetic Tile) gets a
prior per seed, and the record says which images it saw.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DefectlabError
from ..imageio import atomic_write_bytes
from ..weights import check_recorded
from .params import PriorParams

ENV = "DEFECTLAB_PRIOR_CACHE"
RECORD, WEIGHTS = "prior.json", "prior.safetensors"
# Measured on the idle 2-core machine (benchmarks/RESULTS.md, "Domain prior"): the default recipe's wall time.
EXPECTED_MINUTES = 30


def cache_root() -> Path:
    """`$DEFECTLAB_PRIOR_CACHE`, else `~/.cache/defectlab/prior`; quick mode's seconds-long priors in `quick/` under it
    (their fingerprints differ anyway: this keeps them out of sight)."""
    from ..config import quick_mode

    env = os.environ.get(ENV)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    root = Path(env) if env else Path(base) / "defectlab" / "prior"
    return root / "quick" if quick_mode() else root


def views(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Good images as the prior sees them: RGB, squashed to size x size (area), 8-bit steps, (N, S, S, 3) float32."""
    from ..resize import resize_image
    from ..sample import as_image

    out = np.empty((len(images), size, size, 3), np.float32)
    for i, image in enumerate(images):
        im = as_image(image, f"goods[{i}]")
        im = im if im.shape[:2] == (size, size) else resize_image(im, size, interpolation="area")
        im = np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im[:, :, :3]
        out[i] = np.round(np.clip(im, 0, 1) * 255) / 255
    return out


def fingerprint(view_stack: np.ndarray, params: PriorParams) -> str:
    """SHA-256 of the 8-bit views (in order) and the parameters."""
    h = hashlib.sha256()
    h.update(np.round(view_stack * 255).astype(np.uint8).tobytes())
    h.update(json.dumps(params.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


def folder_for(category: str, params: PriorParams, fp: str, root: Path | None = None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", category) or "goods"
    return (root or cache_root()) / f"{safe}-{params.size}px-{fp[:16]}"


def load_prior(folder: str | Path, *, category: str | None = None, size: int | None = None,
               fingerprint: str | None = None):
    """A finished prior folder as a `DomainPrior`; its weights' SHA-256 checked against `prior.json`, and the
    category / size / fingerprint it was trained for checked against those given."""
    from safetensors.torch import load_file

    from .autoencoders import build
    from .model import DomainPrior, build_unet

    folder = Path(folder)
    record_path = folder / RECORD
    if not record_path.is_file():
        raise DefectlabError(f"{folder}: no trained domain prior here ({RECORD} is missing); train one with "
                             "`defectlab prior train`")
    try:
        record = json.loads(record_path.read_text())
        params = PriorParams.from_dict(record["params"])
        want = record["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DefectlabError(f"{record_path}: unreadable prior record ({exc})") from exc
    if category is not None and record.get("category") != category:
        raise DefectlabError(f"{folder}: a prior of category {record.get('category')!r}, not {category!r}")
    if size is not None and params.size != size:
        raise DefectlabError(f"{folder}: a prior trained at {params.size} px, not {size} px")
    if fingerprint is not None and record.get("fingerprint") != fingerprint:
        raise DefectlabError(f"{folder}: a prior trained on other good images or parameters (fingerprint "
                             f"{str(record.get('fingerprint'))[:16]}, expected {fingerprint[:16]})")
    weights = folder / WEIGHTS
    check_recorded(weights, want, f"delete {folder} to train again")
    autoencoder = build(params.autoencoder)
    unet = build_unet(params, autoencoder.channels)
    unet.load_state_dict(load_file(weights))
    return DomainPrior(unet.eval().requires_grad_(False), autoencoder, params, record, folder)


def trained_prior(goods: Sequence[np.ndarray], params: PriorParams | None = None, *, category: str = "goods",
                  root: str | Path | None = None, train: bool = True, minutes: float | None = None,
                  provenance: dict | None = None, show_progress: bool = True):
    """The prior of these good images: loaded when cached, else trained (resumable) and cached first.
    None when `minutes` ran out before the last step (the run is checkpointed: call again to go on)."""
    from .autoencoders import build
    from .train import encode, train as train_run

    params = params or PriorParams()
    if params.size % 8 or params.size // 8 < 2 ** (len(params.unet_channels) - 1):
        raise DefectlabError(f"prior: size {params.size} must be a multiple of 8 with a latent side divisible by "
                             f"{2 ** (len(params.unet_channels) - 1)}")
    if len(goods) < params.batch_size:
        raise DefectlabError(f"{category}: {len(goods)} good training images, fewer than the prior's batch of "
                             f"{params.batch_size}; give more good images or a smaller batch_size")
    stack = views(goods, params.size)
    fp = fingerprint(stack, params)
    folder = folder_for(category, params, fp, Path(root) if root else None)
    found = [f for f in sorted(folder.parent.glob(f"*-{params.size}px-{fp[:16]}")) if (f / RECORD).is_file()]
    if found:  # the images and parameters decide; the category is a label (a consumer may not know it)
        return load_prior(found[0], size=params.size, fingerprint=fp)
    if not train:
        raise DefectlabError(f"{folder}: no trained prior for these {len(goods)} good images yet; train it with "
                             f"`defectlab prior train` (about {EXPECTED_MINUTES} min on 2 CPU cores)")
    autoencoder = build(params.autoencoder)
    t0 = time.time()
    latents = encode(autoencoder, stack, params.hflip, show_progress=show_progress)
    unet, step, _ = train_run(latents, params, folder / "run", fp, show_progress=show_progress,
                              time_limit=minutes * 60 if minutes else None)
    spent = _seconds_so_far(folder) + time.time() - t0
    if step < params.steps:
        atomic_write_bytes(folder / "run" / "seconds", f"{spent:.1f}".encode())
        return None
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in unet.state_dict().items()})
    atomic_write_bytes(folder / WEIGHTS, data)
    record = {"category": category, "size": params.size, "fingerprint": fp, "sha256": hashlib.sha256(data).hexdigest(),
              "params": params.to_dict(), "goods": len(goods), "train_seconds": round(spent, 1),
              **({"provenance": provenance} if provenance else {})}
    atomic_write_bytes(folder / RECORD, json.dumps(record, indent=1).encode())
    return load_prior(folder, category=category, size=params.size, fingerprint=fp)


def _seconds_so_far(folder: Path) -> float:
    """Seconds of earlier, interrupted calls (kept in `run/seconds`), so the record counts the whole training."""
    path = folder / "run" / "seconds"
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return 0.0


AUTO = "auto"


def quick_params(params: PriorParams) -> PriorParams:
    """In quick mode (DEFECTLAB_QUICK=1) the same network trained 20 steps on batches of 4 (seconds); else `params`."""
    from dataclasses import replace

    from ..config import quick_mode

    if not quick_mode():
        return params
    return replace(params, steps=min(params.steps, 20), batch_size=min(params.batch_size, 4), warmup=2,
                   checkpoint_every=10)


def resolve_prior(spec: str | None, goods: Sequence[np.ndarray], like: PriorParams, *, category: str = "goods",
                  who: str = "model", show_progress: bool = True):
    """What a consumer's `prior` parameter names, as a `DomainPrior` (or None: start from scratch).

    None: no prior. "auto": the prior of `goods` (trained once, then found by its fingerprint), with `like`'s
    architecture, size and autoencoder (in quick mode a tiny recipe of that architecture); with fewer good images
    than its batch there is nothing to learn a surface from: a warning, and None. A folder: that prior, refused
    when its size or autoencoder differs from `like`'s (the caller takes the prior's architecture)."""
    import warnings

    if spec is None:
        return None
    if spec == AUTO:
        params = quick_params(like)
        if len(goods) < params.batch_size:
            warnings.warn(f"{who}: {len(goods)} good images, fewer than the domain prior's batch of "
                          f"{params.batch_size}: no prior, the denoiser starts from scratch", stacklevel=3)
            return None
        return trained_prior(goods, params, category=category, show_progress=show_progress)
    prior = load_prior(spec, size=like.size)
    if prior.params.autoencoder != like.autoencoder:
        raise DefectlabError(f"{spec}: a prior in the latent space of {prior.params.autoencoder!r}, {who} works in "
                             f"{like.autoencoder!r}")
    return prior
