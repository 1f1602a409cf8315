"""Defect-centric windows at native resolution (issue #18): instead of squashing the whole image to the working
size, AdaBLDM trains and samples on a window cut around the defect from the full-resolution image.

Window side = max(working size, 2 x the defect's bounding box), rounded up to a multiple of 32 (the latent grid
of an 8x autoencoder, halved twice by the UNet), and cut to the image (then rounded down). On a CPU, training may
see a fixed-size crop of each window that holds part of the defect (`crop`): every item of a batch then has one
shape and one step costs what a whole-image step at that size costs, however large the defect; sampling still
runs on the whole window (the networks are convolutional). Generated pixels are
pasted back through the mask at their own resolution: no resize, no seam. Outside the window the result is the
good image, as the method intends (its background is the good image everywhere outside the mask anyway).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DefectlabError
from ..sample import Sample
from .pairs import make_pair, names_of, rgb
from .prompts import prompt_for

MULTIPLE = 32  # 8 (autoencoder) x 4 (two UNet downsamplings)


def window_side(box: int, size: int, multiple: int = MULTIPLE) -> int:
    """max(size, 2 x box) rounded up to `multiple`."""
    side = max(size, 2 * int(box))
    return -(-side // multiple) * multiple


def defect_window(mask: np.ndarray, size: int, rng: np.random.Generator | None = None,
                  multiple: int = MULTIPLE) -> tuple[slice, slice]:
    """(rows, cols) of the window around `mask`; with `rng`, its position is jittered (the box stays inside)."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        raise DefectlabError("defect_window: empty mask")
    H, W = mask.shape
    if H < multiple or W < multiple:
        raise DefectlabError(f"image {H}x{W} is smaller than one {multiple}-px window cell")
    side = window_side(max(np.ptp(ys), np.ptp(xs)) + 1, size, multiple)
    out = []
    for lo, hi, n in ((ys.min(), ys.max() + 1, H), (xs.min(), xs.max() + 1, W)):
        s = min(side, n - n % multiple)
        first, last = max(0, hi - s), min(lo, n - s)  # starts keeping the box inside the window
        if first > last:  # box larger than the window: centre it
            first = last = int(np.clip((lo + hi - s) // 2, 0, n - s))
        start = int(rng.integers(first, last + 1)) if rng is not None else int(np.clip((lo + hi - s) // 2, first, last))
        out.append(slice(start, start + s))
    return out[0], out[1]


@dataclass
class WindowPairs:
    """Fresh training pairs every step: a real defect pasted (turned, rescaled) into a good image at full
    resolution, a jittered window around it cut out, flipped at random. `batch(rng, n)` draws `n` of them."""

    goods: list  # full-resolution good images (RGB)
    foregrounds: list
    defects: list  # Samples (full resolution)
    size: int  # working size: the smallest window side
    rotation: tuple = (0.0, 360.0)
    scale: tuple = (0.85, 1.15)
    hflip: bool = True
    object_name: str | None = None

    def __post_init__(self):
        if not self.goods or not self.defects:
            raise DefectlabError("WindowPairs: needs at least one good image and one real defect")
        self.goods = [rgb(np.asarray(g, np.float32)) for g in self.goods]
        self.defects = [Sample(rgb(np.asarray(d.image, np.float32)), d.mask, d.meta) for d in self.defects]
        self.prompts = [prompt_for(self.object_name or o, k) for o, k in (names_of(d) for d in self.defects)]

    def one(self, rng: np.random.Generator, crop: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
        """(window image (h, w, 3), trimap (h, w) uint8, prompt); with `crop`, a crop x crop piece of the window
        (smaller where the window is) around a random defect pixel."""
        from .. import masks

        gi, di = int(rng.integers(len(self.goods))), int(rng.integers(len(self.defects)))
        good, defect = self.goods[gi], self.defects[di]
        fg = np.ones(good.shape[:2], bool) if self.foregrounds is None else np.asarray(self.foregrounds[gi], bool)
        image, placed = make_pair(good, fg, defect, rng, self.rotation, self.scale)
        rows, cols = defect_window(placed, self.size, rng)
        img, tri = image[rows, cols], masks.trimap(fg[rows, cols] | placed[rows, cols], placed[rows, cols])
        if self.hflip and rng.random() < 0.5:
            img, tri = img[:, ::-1], tri[:, ::-1]
        if self.hflip and rng.random() < 0.5:
            img, tri = img[::-1], tri[::-1]
        if crop is not None:
            img, tri = defect_crop(img, tri, crop, rng)
        return np.ascontiguousarray(img), np.ascontiguousarray(tri), self.prompts[di]


def defect_crop(image: np.ndarray, trimap: np.ndarray, crop: int, rng: np.random.Generator):
    """A square piece of side min(crop, h, w) of a window that contains one defect pixel, drawn at random, at
    a random place in the piece (so the network sees defect edges, insides and the ground around them)."""
    h, w = trimap.shape
    side = min(int(crop), h, w)
    ys, xs = np.nonzero(trimap == 255)
    if not len(ys):
        raise DefectlabError("defect_crop: the window holds no defect pixel")
    k = int(rng.integers(len(ys)))
    starts = [int(rng.integers(max(0, c - side + 1), min(c, n - side) + 1)) for c, n in ((ys[k], h), (xs[k], w))]
    y0, x0 = starts
    return image[y0:y0 + side, x0:x0 + side], trimap[y0:y0 + side, x0:x0 + side]

