"""The training mix of a supervised detector: which defect a defective draw takes.

Given real defects (`meta["real"]`, the few-shot support) and synthetic ones together, a uniform draw over the
pooled list lets their counts decide the mix (10 real per type against 100-200 synthetic: a real defect is a third
of the draws on a five-type data set and a twelfth on a one-type set). `real_share` decides it instead: the
fraction of defective draws taken from the real defects. `None` keeps the uniform pooled draw.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..errors import DefectlabError
from ..sample import Sample


def check_real_share(value, name: str) -> None:
    """None (uniform) or a number in [0, 1]; else a DefectlabError naming the setting (`name`)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise DefectlabError(f"{name} must lie in [0, 1], got {value!r} (or None: uniform over all defects)")


def is_real(sample: Sample) -> bool:
    return bool((sample.meta or {}).get("real"))


def defect_chooser(defects: Sequence[Sample], real_share: float | None) -> Callable[[np.random.Generator], int]:
    """A function rng -> index into `defects`: a real one with probability `real_share` (uniformly among the real
    ones), else a synthetic one; uniform over all when `real_share` is None or only one kind is present."""
    real = [i for i, s in enumerate(defects) if is_real(s)]
    synthetic = [i for i, s in enumerate(defects) if not is_real(s)]
    if real_share is None or not real or not synthetic:
        n = len(defects)
        return lambda rng: int(rng.integers(n))
    share = float(real_share)

    def choose(rng: np.random.Generator) -> int:
        group = real if rng.random() < share else synthetic
        return group[int(rng.integers(len(group)))]

    return choose
