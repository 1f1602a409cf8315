"""Sane ceilings for size-like knobs, and a memory estimate checked before anything is allocated.

A request that cannot fit (e.g. `--size 100000`: ~10^10 pixels per image) is refused with one line
naming the knob, the estimate and the machine's memory, instead of being killed by the kernel later.
"""
from __future__ import annotations

import numbers
import os

from .errors import DefectlabError

MAX_SIDE = 8192  # pixels per image side; far above every public defect data set (MVTec AD: 1024)
GIB = 1 << 30


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int in [low, high]; booleans, floats and other types are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise DefectlabError(f"{name}: expected an integer, got {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise DefectlabError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise DefectlabError(f"{name} must be <= {high}, got {value}")
    return value


def check_side(name: str, value, low: int = 16, high: int = MAX_SIDE) -> int:
    """An image side in pixels, within [low, high]."""
    return check_int(name, value, low=low, high=high)


def total_memory() -> int | None:
    """Bytes of physical memory (None when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(what: str, nbytes: float, *, fraction: float = 0.8, total: int | None = None) -> None:
    """Refuse a request whose estimated memory exceeds `fraction` of the machine's physical memory."""
    total = total_memory() if total is None else total
    if total and nbytes > fraction * total:
        raise DefectlabError(f"{what} needs about {nbytes / GIB:.1f} GiB of memory, more than {fraction:.0%} of this "
                             f"machine's {total / GIB:.1f} GiB; lower it")


def image_bytes(side: int, channels: int = 3) -> int:
    """One float32 image (at most side x side) and its bool mask."""
    return side * side * (4 * channels + 1)


def benchmark_bytes(side: int, n_images: int, n_synthetic: int, quality_images: int = 0,
                    batch_size: int = 8, base_channels: int = 8, depth: int = 3, channels: int = 3) -> float:
    """Rough peak memory of a benchmark at image side `side` (the long side or the square side: side^2
    bounds the area either way): the prepared images of the category, a method's synthetic pool (and its
    KID/FID inputs), and the detector's activations (a U-Net keeps about 4 x base x 2^level channels per
    level for forward and backward at that level's resolution, and a batch of test maps)."""
    pixels = side * side
    held = (n_images + n_synthetic + quality_images) * image_bytes(side, channels)
    unet = sum(4 * base_channels * 2 ** lev * pixels / 4 ** lev for lev in range(depth + 1)) * 4 * 2 * batch_size
    maps = n_images * pixels * 4 * 2  # float32 score maps and their stack
    return held + unet + maps
