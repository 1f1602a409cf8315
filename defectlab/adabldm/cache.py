"""The trained offline AdaBLDM checkpoint, made once and reused: `trained_checkpoint()` / `make adabldm-weights`.

The run folder lives outside the repository, in `$DEFECTLAB_ADABLDM_CACHE` or `~/.cache/defectlab/adabldm`
(`$XDG_CACHE_HOME` respected), one sub-folder per recipe. Training resumes from its last checkpoint when
interrupted. When it finishes, `checkpoint.json` records the final checkpoint and the SHA-256 of its
`model.safetensors`; later calls check that hash and load without training.

    python -m defectlab.adabldm.cache --threads 1          # train the washer checkpoint (about 15 min, one core)
    python -m defectlab.adabldm.cache --print              # its folder, or an error when it is not trained yet
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import DefectlabError
from ..imageio import atomic_write_bytes
from ..weights import check_recorded, sha256_of
from .params import OFFLINE_TRAIN

ENV = "DEFECTLAB_ADABLDM_CACHE"
RECORD = "checkpoint.json"
# Measured: 1200 steps at 128 px, batch 8, one thread of an idle 2-core CPU (benchmarks/RESULTS.md).
EXPECTED_MINUTES = 15


@dataclass(frozen=True)
class Recipe:
    """Which checkpoint: the data, the few-shot split and the training length (the offline recipe otherwise)."""

    data: str = "embedded"
    category: str = "washer"
    path: str | None = None
    shots: int = 2
    seed: int = 0
    size: int = OFFLINE_TRAIN.size
    steps: int = OFFLINE_TRAIN.steps
    prior: bool = True  # ε_θ starts from the category's domain prior (issue #36); the embedded set's is `embedded_prior`

    @property
    def name(self) -> str:
        where = self.data if self.path is None else f"{self.data}-{hashlib.sha256(str(self.path).encode()).hexdigest()[:8]}"
        from ..config import quick_mode

        quick = "-quick" if quick_mode() else ""  # quick mode reads a smaller embedded set: never the same checkpoint
        prior = "-prior" if self.prior else ""
        return f"{self.category}-{where}-{self.size}px-{self.shots}shot-seed{self.seed}-{self.steps}steps{prior}{quick}"


def cache_root() -> Path:
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "defectlab" / "adabldm"


def cached_checkpoint(recipe: Recipe | None = None) -> Path | None:
    """The finished checkpoint folder of `recipe` if it is cached (its SHA-256 checked), else None."""
    from .checkpoint import MODEL_FILE

    run = cache_root() / (recipe or Recipe()).name
    record = run / RECORD
    if not record.is_file():
        return None
    try:
        info = json.loads(record.read_text())
        folder = run / info["checkpoint"]
        want = info["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DefectlabError(f"{record}: unreadable checkpoint record ({exc}); delete {run} to retrain") from exc
    check_recorded(folder / MODEL_FILE, want, f"delete {run} to retrain")
    return folder


def trained_checkpoint(recipe: Recipe | None = None, *, train: bool = True, threads: int | None = None,
                       show_progress: bool = True) -> Path:
    """The cached checkpoint of `recipe` (default: washer, embedded set, the offline recipe); trains it first
    when missing (progress bar; about `EXPECTED_MINUTES` on one free CPU core), unless `train=False`."""
    from .train import load_training_data, train_run

    recipe = recipe or Recipe()
    found = cached_checkpoint(recipe)
    if found is not None:
        return found
    run = cache_root() / recipe.name
    if not train:
        raise DefectlabError(f"{run}: no trained AdaBLDM checkpoint yet; train it once with `make adabldm-weights` "
                             f"(about {EXPECTED_MINUTES} min on one CPU core) or defectlab.adabldm.cache.trained_checkpoint()")
    if threads:
        import torch

        torch.set_num_threads(threads)
    from ..config import shown_path

    print(f"Training the offline AdaBLDM checkpoint once ({recipe.category}, {recipe.steps} steps at {recipe.size} px): "
          f"about {EXPECTED_MINUTES} minutes on one free CPU core; cached in {shown_path(run)} (resumes if interrupted).",
          flush=True)
    data = load_training_data(recipe.data, recipe.path, recipe.category, recipe.shots, recipe.seed)
    params = replace(OFFLINE_TRAIN, size=recipe.size, steps=recipe.steps, seed=recipe.seed)
    t0 = time.time()
    folder, _ = train_run(run, data, params, prior=recipe_prior(recipe, data.goods, show_progress),
                          show_progress=show_progress)
    from .checkpoint import MODEL_FILE, read_state

    if read_state(folder)["step"] < recipe.steps:
        raise DefectlabError(f"{folder}: training stopped at step {read_state(folder)['step']} of {recipe.steps}")
    info = {"checkpoint": folder.name, "sha256": sha256_of(folder / MODEL_FILE), "recipe": asdict(recipe),
            "train_seconds": round(time.time() - t0, 1)}
    atomic_write_bytes(run / RECORD, json.dumps(info, indent=1).encode())
    return folder


def recipe_prior(recipe: Recipe, goods: list, show_progress: bool = True):
    """The domain prior a recipe's ε_θ starts from: the embedded category's (`defectlab.prior.embedded`, rendered
    goods), else the prior of the split's good images (in quick mode a 20-step one); None without `recipe.prior`."""
    from ..config import quick_mode
    from ..prior import AUTO, PriorParams, resolve_prior

    if not recipe.prior:
        return None
    if recipe.data == "embedded" and recipe.path is None and not quick_mode():
        from ..prior.embedded import embedded_prior

        return embedded_prior(recipe.category, PriorParams(size=recipe.size), show_progress=show_progress)
    return resolve_prior(AUTO, goods, PriorParams(size=recipe.size), category=recipe.category, who="AdaBLDM",
                         show_progress=show_progress)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m defectlab.adabldm.cache", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="embedded")
    p.add_argument("--path")
    p.add_argument("--category", default="washer")
    p.add_argument("--shots", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy shared machine)")
    p.add_argument("--print", action="store_true", help="only print the cached checkpoint's folder")
    args = p.parse_args(argv)
    recipe = Recipe(args.data, args.category, args.path, args.shots, args.seed)
    try:
        folder = trained_checkpoint(recipe, train=not args.print, threads=args.threads)
    except DefectlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
