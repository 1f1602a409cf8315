"""Train on real, test on synthetic (TRTS): does a detector trained on real defects see the synthetic ones?

The mirror of the benchmark's train-on-synthetic / test-on-real protocol, at the cost of inference only: a
detector trained on the real few-shot defects scores each synthetic image, and its maps are compared with the
synthetic masks (pixel AP, AUPRO, pixel AUROC). High TRTS: the synthetic defects look like real ones *where the
mask says*. Near-zero TRTS: the mask labels something a real-defect detector cannot see.
"""
from __future__ import annotations

import numpy as np

from ..errors import DefectlabError


def trts(predict_fn, synthetic_samples, goods=None, batch_size: int = 16) -> dict:
    """TRTS of `synthetic_samples` (`Sample`s, or (image, mask) pairs) under `predict_fn(images) -> maps`
    (or `(maps, scores)`, as `SegmentationDetector.predict` returns); `goods`: optional defect-free images
    added as negatives. Returns {"trts_pixel_ap", "trts_aupro", "trts_pixel_auroc", "trts_n"}."""
    from .detection import aupro, pixel_curve

    pairs = [(s.image, s.mask) if hasattr(s, "mask") else tuple(s) for s in synthetic_samples]
    if not pairs:
        raise DefectlabError("trts: no synthetic samples")
    images = [im for im, _ in pairs] + list(goods or [])
    masks = [np.asarray(m, bool) for _, m in pairs] + [np.zeros(np.asarray(g).shape[:2], bool) for g in goods or []]
    maps = []
    for start in range(0, len(images), batch_size):
        out = predict_fn(images[start:start + batch_size])
        out = out[0] if isinstance(out, tuple) else out
        maps.extend(np.asarray(m, np.float32).reshape(np.asarray(m).shape[-2:]) for m in out)
    if len(maps) != len(images):
        raise DefectlabError(f"trts: predict_fn returned {len(maps)} maps for {len(images)} images")
    maps, masks = np.stack(maps), np.stack(masks)
    if maps.shape != masks.shape:
        raise DefectlabError(f"trts: maps of shape {maps.shape[1:]} for masks of shape {masks.shape[1:]}")
    curve = pixel_curve(masks, maps)
    return {"trts_pixel_ap": curve.average_precision(), "trts_aupro": aupro(masks, maps, curve=curve),
            "trts_pixel_auroc": curve.auroc(), "trts_n": len(pairs)}


__all__ = ["trts"]
