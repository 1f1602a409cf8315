"""Training pairs as in the paper (Sec. III-B): cut a real few-shot defect, rotate it (0-360 deg) and rescale it
(1 +- 0.15), paste it inside the foreground of a good image. The composite is the target, its trimap the condition.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import DefectlabError
from ..resize import resize_image, resize_mask
from ..sample import Sample, as_image, as_mask
from .prompts import prompt_for


@dataclass
class Pairs:
    images: np.ndarray  # (N, S, S, 3) float32 composites in [0, 1]
    trimaps: np.ndarray  # (N, S, S) uint8: 0 / 127 / 255
    masks: np.ndarray  # (N, S, S) bool: pasted defect
    prompts: list[str]


def names_of(sample: Sample, default_object: str = "object") -> tuple[str, str]:
    """(object, defect type) from a Sample's meta: `category`/`label`, or a record key "category/split/label/name"."""
    meta = sample.meta or {}
    source = str(meta.get("source", ""))
    parts = source.split("/")
    obj = meta.get("category") or meta.get("object") or (parts[0] if len(parts) >= 4 else default_object)
    defect = meta.get("label") or meta.get("defect") or (parts[2] if len(parts) >= 4 else "defect")
    return str(obj), str(defect)


def rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def make_pair(good: np.ndarray, foreground: np.ndarray, defect: Sample, rng: np.random.Generator,
              rotation=(0.0, 360.0), scale=(0.85, 1.15)) -> tuple[np.ndarray, np.ndarray]:
    """(composite image, pasted mask): the defect's pixels moved by the same affine as its mask."""
    from .. import masks

    placed, M = masks.affine_jitter_place(defect.mask, foreground, rng, rotation=rotation, scale=scale, on_fail="clip")
    h, w = good.shape[:2]
    moved = cv2.warpAffine(np.ascontiguousarray(defect.image), M, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    moved = moved[:, :, None] if moved.ndim == 2 else moved
    return np.where(placed[:, :, None], moved, good).astype(np.float32), placed


def make_pairs(goods: list[np.ndarray], defects: list[Sample], rng: np.random.Generator, n: int, size: int,
               foregrounds: list[np.ndarray] | None = None, rotation=(0.0, 360.0), scale=(0.85, 1.15),
               object_name: str | None = None) -> Pairs:
    """`n` composites at `size` x `size` (RGB), each from a random good image and a random real defect."""
    if not goods or not defects:
        raise DefectlabError("make_pairs: needs at least one good image and one real defect")
    goods = [rgb(resize_image(as_image(g, f"goods[{i}]"), size, interpolation="area")) for i, g in enumerate(goods)]
    fgs = [np.ones((size, size), bool) if foregrounds is None or foregrounds[i] is None
           else resize_mask(as_mask(foregrounds[i], np.shape(foregrounds[i])[:2], f"foregrounds[{i}]"), size,
                            sampling="corner")
           for i in range(len(goods))]
    small = []
    for i, d in enumerate(defects):
        img = rgb(resize_image(as_image(d.image, f"defects[{i}].image"), size, interpolation="area"))
        mask = resize_mask(as_mask(d.mask, d.image.shape[:2], f"defects[{i}].mask"), size, sampling="corner")
        if mask.any():
            small.append((Sample(img, mask, d.meta), names_of(d, object_name or "object")))
    if not small:
        raise DefectlabError(f"make_pairs: every defect mask vanishes at {size} px")
    from .. import masks

    images, trimaps, pasted, prompts = [], [], [], []
    for _ in range(n):
        gi, di = int(rng.integers(len(goods))), int(rng.integers(len(small)))
        defect, (obj, kind) = small[di]
        image, mask = make_pair(goods[gi], fgs[gi], defect, rng, rotation, scale)
        images.append(image)
        trimaps.append(masks.trimap(fgs[gi] | mask, mask))
        pasted.append(mask)
        prompts.append(prompt_for(object_name or obj, kind))
    return Pairs(np.stack(images), np.stack(trimaps), np.stack(pasted), prompts)
