"""The shared currency of every synthesis method: images, masks and `Sample`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .errors import DefectlabError


@dataclass
class Sample:
    """A synthetic (or real) defective image.

    image: float32 array (H, W, C) in [0, 1], C = 1 (grey) or 3 (RGB).
    mask:  bool array (H, W), True on defect pixels.
    meta:  JSON-serialisable provenance (method, parameters, ...).
    """

    image: np.ndarray
    mask: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


class SynthesisMethod(Protocol):
    """A configured callable: `method(image, rng, foreground=..., mask=...) -> Sample`."""

    name: str

    def __call__(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        *,
        foreground: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> Sample: ...


def as_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Check and normalise an image to float32 (H, W, C) in [0, 1]; 2-D input gains a channel axis."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise DefectlabError(f"{what}: expected shape (H, W), (H, W, 1) or (H, W, 3), got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise DefectlabError(f"{what}: unsupported dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if arr.size and (np.nanmin(arr) < -1e-6 or np.nanmax(arr) > 1 + 1e-6 or np.isnan(arr).any()):
        raise DefectlabError(f"{what}: float values must lie in [0, 1]")
    return arr


def refuse_non_finite(arr: np.ndarray, what: str) -> None:
    """A float mask or foreground holding NaN / inf is an error: as bool a NaN is True (an all-NaN foreground
    would be the whole image), compared with 0 it is False."""
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise DefectlabError(f"{what}: {int((~np.isfinite(arr)).sum())} NaN or infinite value(s); a mask or "
                             "foreground must be bool or 0/1")


def as_mask(mask: np.ndarray, shape: tuple[int, int], what: str = "mask") -> np.ndarray:
    """Check a mask against an image's (H, W) and return it as bool (H, W)."""
    arr = np.asarray(mask)
    refuse_non_finite(arr, what)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.shape != tuple(shape):
        raise DefectlabError(f"{what}: size {arr.shape} differs from its image {tuple(shape)}")
    return arr > 0 if arr.dtype != bool else arr


def torch_generator(rng: np.random.Generator, device: str = "cpu"):
    """A torch.Generator seeded from a numpy Generator, so one seed drives both libraries."""
    import torch

    return torch.Generator(device=device).manual_seed(int(rng.integers(0, 2**63 - 1)))
