"""Copy-paste of real defects: a few-shot defect, rotated and scaled, moved onto a good image.

The defect's pixels (inside its real mask) are moved with the same affine transform as the mask
(`masks.affine_jitter_place`), entirely inside the foreground. Where and how it is turned (issue #36):
`placement="prior"` (default, once fitted) learns per defect type from the support masks where such defects
occur, how they are oriented and how big they are (`defectlab.placement.PlacementPrior`), and the pasted defect
ends up in an observed orientation (its own angle turned onto a drawn one), at a position drawn from the type's
heat-map, at an observed size; `placement="uniform"` turns it by U(rotation) and drops it anywhere on the
foreground. Then it is composited:
- "hard": the pixels replace the good image's;
- "feather": a Gaussian-blurred alpha, kept inside the mask, softens the seam;
- "poisson": gradient-domain blending (OpenCV seamlessClone), as DCDGANc's copy-paste baseline;
  it matches the surrounding brightness but can wash out dark or bright defects.
Realistic texture for free, but no new defect shapes: diversity is bounded by the few shots, and a
defect moved onto a part of the object where it could not occur (or lit differently) looks pasted.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ... import masks
from ...placement import PlacementPrior, defect_type, oriented_angle, placement_record
from ...errors import DefectlabError
from ...registry import register
from ...sample import Sample, as_image, as_mask
from ..base import bbox, build_params, check_choice, make_sample, match_channels, prepare


@dataclass
class CopyPasteParams:
    # ours (issue #36): "prior" = angle, position and size learned per defect type from the fitted support masks
    # (`defectlab.placement`); "uniform" = U(rotation), anywhere on the foreground (the former behaviour)
    placement: str = "prior"
    rotation: tuple[float, float] = (0, 360)  # ours: "uniform" placement, and round defects under "prior"
    scale: tuple[float, float] = (0.85, 1.15)  # ours: mild scale jitter keeps defect sizes plausible
    blend: str = "hard"  # "hard" | "feather" | "poisson" (DCDGANc's copy-paste uses Poisson blending)
    feather_sigma: float = 2.0  # ours: Gaussian sigma (pixels) of the feathered alpha
    poisson_margin: int = 4  # ours: the Poisson region is the mask dilated by this many pixels (see _poisson)
    max_tries: int = 50  # placements tried before giving up
    on_fail: str = "clip"  # "clip": keep the best try, cut to the foreground (meta clipped=True); "raise": error


@register("copypaste", family="handcrafted")
class CopyPaste:
    Params = CopyPasteParams
    needs_fit = True  # the real defects come from `fit` (or `source=` + `mask=` at construction)

    def __init__(self, params: CopyPasteParams | None = None, source=None, mask=None, **overrides):
        self.params = build_params(CopyPasteParams, params, overrides, "copypaste")
        check_choice("copypaste", "blend", self.params.blend, ("hard", "feather", "poisson"))
        check_choice("copypaste", "on_fail", self.params.on_fail, ("clip", "raise"))
        check_choice("copypaste", "placement", self.params.placement, ("prior", "uniform"))
        self.defects: list[tuple[np.ndarray, np.ndarray]] = []
        self.sources: list[str] = []  # each defect's record key (from a Sample's meta["source"]), "" if unknown
        self.types: list[str] = []  # each defect's type (`placement.defect_type`: meta["label"]), "defect" if unknown
        self.prior: PlacementPrior | None = None  # learned by `fit` from the real defects' masks
        if (source is None) != (mask is None):
            raise DefectlabError("copypaste: give both source= (defect image) and mask= (its defect mask), or neither")
        if source is not None:
            self.defects = [self._defect(source, mask, "copypaste source")]

    @staticmethod
    def _defect(image, mask, what):
        img = as_image(image, what=what)
        m = as_mask(mask, img.shape[:2], what=f"{what} mask")
        if not m.any():
            raise DefectlabError(f"{what}: the defect mask is empty")
        return img, m

    def fit(self, goods, defects, rng=None, *, foregrounds=None):
        """Keep the real defects (`Sample`s, or (image, mask) pairs; empty masks are skipped); one is drawn per call.
        Learns the placement prior from their masks, by type (`meta["label"]`)."""
        kept, sources, types = [], [], []
        for i, d in enumerate(defects or []):
            image, mask = (d.image, d.mask) if isinstance(d, Sample) else d
            if np.asarray(mask).any():
                kept.append(self._defect(image, mask, f"copypaste defects[{i}]"))
                sources.append(str((d.meta or {}).get("source", "")) if isinstance(d, Sample) else "")
                types.append(defect_type(d))
        if not kept:
            raise DefectlabError("copypaste: fit needs at least one real defect (image with a non-empty mask)")
        self.defects, self.sources, self.types = kept, sources, types
        by_type: dict[str, list[np.ndarray]] = {}
        for (_, mask), kind in zip(kept, types):
            by_type.setdefault(kind, []).append(mask)
        self.prior = PlacementPrior.fit(by_type)
        return self

    def __call__(self, image, rng: np.random.Generator, *, foreground=None, mask=None):
        """`mask=` marks a defect in the configured `source` (or, without one, in `image` itself) to move."""
        img = as_image(image, what="copypaste image")
        _, fg, _ = prepare(img, foreground, None, self.name)
        p = self.params
        if mask is not None:
            src_img = self.defects[0][0] if len(self.defects) == 1 else img
            index, (src_img, src_mask) = -1, self._defect(src_img, mask, "copypaste mask")
        elif self.defects:
            index = int(rng.integers(len(self.defects)))
            src_img, src_mask = self.defects[index]
        else:
            raise DefectlabError("copypaste: no real defect; call fit(goods, defects, rng) or pass source= and mask=")
        kind = self.types[index] if 0 <= index < len(self.types) else ""
        if p.placement == "prior" and self.prior is not None and kind:
            placed, m, where = self.prior.place(src_mask, kind, fg, rng, rotation=p.rotation, scale=p.scale,
                                                max_tries=p.max_tries, on_fail=p.on_fail)
        else:  # uniform (or nothing learned: a defect given at construction or by mask=)
            placed, m = masks.affine_jitter_place(src_mask, fg, rng, p.rotation, p.scale, p.max_tries,
                                                  on_fail=p.on_fail)
            where = placement_record("uniform", src_mask, placed, m, oriented_angle(src_mask))
        h, w = img.shape[:2]
        out = self._composite(img, match_channels(src_img, img.shape[2]), m, placed)
        full = cv2.warpAffine(src_mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
        clipped = bool((full & ~placed).any())  # on_fail="clip" cut the defect to the foreground
        source = self.sources[index] if 0 <= index < len(self.sources) else ""
        return make_sample(self.name, out, placed, p, defect_index=index, defect_source=source, defect_type=kind,
                           affine=m.round(4).tolist(), clipped=clipped, placement=where)

    def _composite(self, img, src, m, placed):
        """Warp the defect image with `m` (only over the placed box, for speed) and composite it."""
        p = self.params
        h, w, c = img.shape
        out = img.copy()
        if p.blend == "poisson":
            moved = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).reshape(h, w, c)
            out[placed] = _poisson(img, moved, placed, p.poisson_margin)[placed]
            return out
        y, x, bh, bw = bbox(placed)
        shifted = m.copy()
        shifted[:, 2] -= (x, y)
        moved = cv2.warpAffine(src, shifted, (bw, bh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).reshape(bh, bw, c)
        region, pm = out[y:y + bh, x:x + bw], placed[y:y + bh, x:x + bw]
        if p.blend == "hard":
            np.copyto(region, moved, where=pm[:, :, None])
        else:  # feather: Gaussian alpha, zero outside the mask so nothing outside it changes
            alpha = cv2.GaussianBlur(pm.astype(np.float32), (0, 0), p.feather_sigma, borderType=cv2.BORDER_CONSTANT) * pm
            region[:] = alpha[:, :, None] * moved + (1 - alpha[:, :, None]) * region
        return out


def _poisson(img: np.ndarray, moved: np.ndarray, placed: np.ndarray, margin: int, pad: int = 8) -> np.ndarray:
    """cv2.seamlessClone of `moved` into `img` (same frame), via uint8 RGB.

    The region solved is the mask dilated by `margin` pixels: over the bare mask, a uniform defect has
    no inner gradient and would be blended away; with a margin its edges take part (the caller keeps
    only the mask's pixels, so nothing outside the mask changes). Padding keeps the region off the
    border, which OpenCV requires."""
    pad = max(pad, margin + 2)
    def u8(x):
        x = np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x
        return cv2.copyMakeBorder(np.clip(np.rint(x * 255), 0, 255).astype(np.uint8), pad, pad, pad, pad, cv2.BORDER_REFLECT)

    m = cv2.copyMakeBorder(placed.astype(np.uint8) * 255, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    if margin > 0:
        m = cv2.dilate(m, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    y, x, h, w = bbox(m > 0)
    cloned = cv2.seamlessClone(u8(moved), u8(img), m, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    cloned = cloned[pad:-pad, pad:-pad].astype(np.float32) / 255
    return cv2.cvtColor(cloned, cv2.COLOR_RGB2GRAY)[:, :, None] if img.shape[2] == 1 else cloned
