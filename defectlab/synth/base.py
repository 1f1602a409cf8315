"""Plumbing shared by the hand-crafted methods: parameters, input checks, blending, the Sample."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from ..errors import DefectlabError
from ..masks import foreground_or_all
from ..sample import Sample, as_image, as_mask


def build_params(cls, params, overrides: dict, method: str):
    """`params` (a `cls` instance or None) with `overrides` applied; unknown names are an error."""
    if params is not None and not isinstance(params, cls):
        raise DefectlabError(f"{method}: params must be a {cls.__name__}, got {type(params).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise DefectlabError(f"{method}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(params or cls(), **overrides)


def check_choice(method: str, name: str, value, choices) -> None:
    if value not in choices:
        raise DefectlabError(f"{method}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def prepare(image, foreground, mask, method: str):
    """(image float32 H x W x C, foreground bool, requested mask AND foreground or None)."""
    img = as_image(image, what=f"{method} image")
    fg = foreground_or_all(foreground, img.shape[:2], what=f"{method} foreground")
    if mask is not None:
        mask = as_mask(mask, img.shape[:2], what=f"{method} mask") & fg
        if not mask.any():
            raise DefectlabError(f"{method}: the requested mask has no pixel inside the foreground")
    return img, fg, mask


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y, x, h, w) of the True pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def blend_in_box(image: np.ndarray, fill: np.ndarray, mask: np.ndarray, box, keep: float) -> np.ndarray:
    """Copy of `image` whose `mask` pixels become keep * image + (1 - keep) * fill.

    `fill` covers only the (y, x, h, w) `box`; pixels outside the mask are untouched (bit-exact)."""
    y, x, h, w = box
    out = image.copy()
    region = out[y:y + h, x:x + w]
    blended = cv2.addWeighted(region, float(keep), fill.astype(np.float32, copy=False), float(1 - keep), 0.0)
    blended = np.clip(blended.reshape(region.shape), 0, 1)  # OpenCV drops a single channel axis
    np.copyto(region, blended, where=mask[y:y + h, x:x + w, None])  # a masked copy: faster than fancy indexing
    return out


def match_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Grey <-> RGB float32 (H, W, C)."""
    if img.shape[2] == channels:
        return img
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None]
    return np.repeat(img, 3, axis=2)


def color_jitter(patch: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """torchvision-style ColorJitter(b, c, s, h = strength) on float32 (h, w, C); hue/saturation for RGB only."""
    if strength <= 0:
        return patch
    out = patch * np.float32(rng.uniform(1 - strength, 1 + strength))  # brightness
    mean = out.mean()
    out = mean + (out - mean) * np.float32(rng.uniform(1 - strength, 1 + strength))  # contrast
    out = np.clip(out, 0, 1).astype(np.float32)
    if out.shape[2] == 3:
        grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[:, :, None]
        out = np.clip(grey + (out - grey) * np.float32(rng.uniform(1 - strength, 1 + strength)), 0, 1)  # saturation
        hsv = cv2.cvtColor(np.ascontiguousarray(out, np.float32), cv2.COLOR_RGB2HSV)  # float: hue in degrees
        hsv[:, :, 0] = (hsv[:, :, 0] + 360 * rng.uniform(-strength, strength)) % 360
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(out, 0, 1).astype(np.float32)


def make_sample(method: str, image: np.ndarray, mask: np.ndarray, params, **drawn) -> Sample:
    """The Sample with meta = {method, params, drawn}; refuses an empty mask (a library bug if it happens)."""
    if not mask.any():
        raise DefectlabError(f"{method}: produced an empty mask")
    image = np.clip(image, 0, 1).astype(np.float32, copy=False)
    return Sample(image, mask, {"method": method, "params": dataclasses.asdict(params), "drawn": drawn})
