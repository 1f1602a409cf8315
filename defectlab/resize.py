"""Resizing images and masks: the one module that does it.

Images, `interpolation=`:
- "bilinear" (default): PIL's bilinear filter on each float channel, antialiased when shrinking (data sets,
  the benchmark's canvases, DiAD's inputs, the synthetic-defect stream).
- "area": OpenCV's INTER_AREA (AdaBLDM's working resolution).
- "linear": OpenCV's INTER_LINEAR, no antialiasing (anomaly maps back to the evaluation frame).
- "cubic": OpenCV's INTER_CUBIC (AdaBLDM's output back to the caller's size; may overshoot [0, 1]).

Masks stay binary (bool), nearest neighbour, `sampling=`:
- "centre" (default): PIL's NEAREST, each output pixel takes the input pixel under its centre.
- "corner": OpenCV's INTER_NEAREST, the input pixel at floor(output index * scale) (AdaBLDM).
The two differ by a pixel at some borders; each caller keeps the one it has always used (seeded outputs are
pinned by tests). `keep_thin=True`: a mask that nearest-neighbour resizing would erase (a hair-thin crack)
is kept by marking every output pixel it touches.
"""
from __future__ import annotations

import numpy as np

from .errors import DefectlabError

Size = int | tuple[int, int]  # a square side, or (height, width)
_CV2 = {"area": "INTER_AREA", "linear": "INTER_LINEAR", "cubic": "INTER_CUBIC"}


def _hw(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def resize_image(image: np.ndarray, size: Size, *, interpolation: str = "bilinear") -> np.ndarray:
    """float (H, W, C) -> float32 (h, w, C) at `size` (see the module docstring for `interpolation`)."""
    h, w = _hw(size)
    if interpolation == "bilinear":
        from PIL import Image

        chans = [np.asarray(Image.fromarray(image[:, :, c].astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
                 for c in range(image.shape[2])]
        return np.clip(np.stack(chans, axis=2), 0, 1).astype(np.float32)
    if interpolation in _CV2:
        import cv2

        if image.shape[:2] == (h, w):
            return image
        out = cv2.resize(image, (w, h), interpolation=getattr(cv2, _CV2[interpolation]))
        return out[:, :, None] if out.ndim == 2 and image.ndim == 3 else out
    raise DefectlabError(f"resize_image: interpolation must be 'bilinear', 'area', 'linear' or 'cubic', got {interpolation!r}")


def resize_mask(mask: np.ndarray, size: Size, *, sampling: str = "centre", keep_thin: bool = False) -> np.ndarray:
    """bool (H, W) -> bool (h, w), nearest neighbour (see the module docstring for `sampling`, `keep_thin`)."""
    h, w = _hw(size)
    if sampling == "centre":
        from PIL import Image

        out = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127
    elif sampling == "corner":
        import cv2

        if mask.shape == (h, w):
            return mask
        out = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    else:
        raise DefectlabError(f"resize_mask: sampling must be 'centre' or 'corner', got {sampling!r}")
    if keep_thin and mask.any() and not out.any():
        out = resize_image(mask.astype(np.float32)[:, :, None], (h, w))[:, :, 0] > 0
    return out
