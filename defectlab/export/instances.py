"""Defect instances from a pixel mask: connected components, boxes, outlines, holes.

Coordinates follow the COCO convention: pixel (row r, column c) covers the square
[c, c + 1] x [r, r + 1], so a box is `(x0, y0, x1, y1)` with exclusive ends and a polygon traced
around a pixel's outer edges rasterises back to that pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import DefectlabError

EIGHT_CONNECTED = np.ones((3, 3), bool)


@dataclass(frozen=True)
class Instance:
    """One defect instance: its pixels (bool, full image size) and tight box (x0, y0, x1, y1)."""

    mask: np.ndarray
    box: tuple[int, int, int, int]

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def fill_ratio(self) -> float:
        return box_fill_ratio(self.mask, self.box)

    @property
    def has_holes(self) -> bool:
        return has_holes(self.mask, self.box)

    def polygons(self) -> list[list[float]]:
        return outer_polygons(self.mask, self.box)


def label_instances(mask: np.ndarray, merge_distance: int = 0) -> tuple[np.ndarray, int]:
    """Integer labels (0 = background) of the mask's 8-connected components, numbered in raster
    order of their first pixel. With `merge_distance=k`, components separated by at most `k`
    background pixels (chessboard distance) share one label."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise DefectlabError(f"instances: expected a 2-D mask, got shape {mask.shape}")
    k = int(merge_distance)
    if k < 0 or k != merge_distance:
        raise DefectlabError(f"merge_distance must be a non-negative integer, got {merge_distance!r}")
    if k == 0:
        return ndimage.label(mask, EIGHT_CONNECTED)
    # no two pixels of the image are further apart than its longer side: a larger k merges the same
    # components, and clamping keeps the dilation kernel (k+1)^2 bytes from exhausting memory
    k = min(k, max(mask.shape))
    import cv2

    # A (k+1)-square anchored at its corner grows each component by k pixels up and left; two grown
    # components touch (8-connected) exactly when the originals are <= k background pixels apart,
    # and the touching pixels stay inside the image.
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((k + 1, k + 1), np.uint8), anchor=(0, 0),
                       borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    labels, _ = ndimage.label(grown, EIGHT_CONNECTED)
    labels[~mask] = 0
    # relabel 1..n in raster order of each instance's first original pixel
    present, first = np.unique(labels.ravel(), return_index=True)
    order = [lab for _, lab in sorted(zip(first[present > 0], present[present > 0]))]
    lut = np.zeros(labels.max() + 1, labels.dtype)
    lut[order] = np.arange(1, len(order) + 1)
    return lut[labels], len(order)


def mask_instances(mask: np.ndarray, merge_distance: int = 0) -> list[Instance]:
    """The instances of a defect mask (see `label_instances`), each with its tight box."""
    labels, n = label_instances(mask, merge_distance)
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels, n), start=1):
        if sl is None:
            continue
        box = (int(sl[1].start), int(sl[0].start), int(sl[1].stop), int(sl[0].stop))
        out.append(Instance(labels == i, box))
    return out


def box_fill_ratio(mask: np.ndarray, box: tuple[int, int, int, int] | None = None) -> float:
    """Fraction of the box's area that is defect. Thin or diagonal defects (scratches, cracks) fill a
    small fraction, so a box label calls mostly background pixels 'defect'."""
    mask = np.asarray(mask, bool)
    if box is None:
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            raise DefectlabError("box_fill_ratio: the mask is empty")
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    x0, y0, x1, y1 = box
    box_area = (x1 - x0) * (y1 - y0)
    if box_area <= 0:
        raise DefectlabError(f"box_fill_ratio: empty box {box}")
    return float(mask[y0:y1, x0:x1].sum()) / float(box_area)


def has_holes(mask: np.ndarray, box: tuple[int, int, int, int] | None = None) -> bool:
    """True if the mask encloses background (4-connected background, matching 8-connected defects)."""
    crop = _crop(mask, box)
    return bool((ndimage.binary_fill_holes(crop) & ~crop).any())


def outer_polygons(mask: np.ndarray, box: tuple[int, int, int, int] | None = None) -> list[list[float]]:
    """Outer outlines of the mask as COCO polygons `[x0, y0, x1, y1, ...]` (holes are filled; one
    polygon per 8-connected part). The outline runs through the midpoints of boundary pixel edges
    (marching squares at level 0.5), so every boundary pixel's centre lies inside it."""
    from skimage.measure import find_contours

    x0, y0 = (0, 0) if box is None else box[:2]
    filled = ndimage.binary_fill_holes(_crop(mask, box))
    padded = np.pad(filled, 1).astype(np.float32)
    polys = []
    for contour in find_contours(padded, 0.5, fully_connected="high"):
        pts = _drop_collinear(contour[:-1])  # find_contours repeats the first point at the end
        # (row, col) of the padded crop, pixel-centre coordinates -> COCO (x, y) edge coordinates
        xy = np.stack([pts[:, 1] - 1 + x0 + 0.5, pts[:, 0] - 1 + y0 + 0.5], axis=1)
        polys.append([float(v) for v in xy.ravel()])
    return polys


def rasterize_polygons(polygons: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    """Bool (H, W) union of COCO polygons (edge coordinates): a pixel is in when its centre is."""
    from skimage.draw import polygon2mask

    out = np.zeros(shape, bool)
    for poly in polygons:
        xy = np.asarray(poly, np.float64).reshape(-1, 2)
        out |= polygon2mask(shape, np.stack([xy[:, 1] - 0.5, xy[:, 0] - 0.5], axis=1))
    return out


def join_polygons(polygons: list[list[float]]) -> list[float]:
    """One polygon from several, linking each extra part to the first by a zero-width bridge (out to
    the part's nearest vertex and back), the usual trick for formats with one polygon per instance."""
    if not polygons:
        return []
    base = np.asarray(polygons[0], np.float64).reshape(-1, 2)
    inserts: dict[int, list[np.ndarray]] = {}
    for poly in polygons[1:]:
        part = np.asarray(poly, np.float64).reshape(-1, 2)
        d = ((base[:, None, :] - part[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        loop = np.concatenate([np.roll(part, -j, axis=0), part[j:j + 1], base[i:i + 1]])
        inserts.setdefault(int(i), []).append(loop)
    pieces = []
    for i, point in enumerate(base):
        pieces.append(point[None])
        pieces.extend(inserts.get(i, []))
    return [float(v) for v in np.concatenate(pieces).ravel()]


def _crop(mask: np.ndarray, box) -> np.ndarray:
    mask = np.asarray(mask, bool)
    if box is None:
        return mask
    x0, y0, x1, y1 = box
    return mask[y0:y1, x0:x1]


def _drop_collinear(pts: np.ndarray) -> np.ndarray:
    """Remove vertices lying on a straight run (exact for marching-squares outlines of masks)."""
    if len(pts) < 4:
        return pts
    prev, nxt = np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0)
    a, b = pts - prev, nxt - pts
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    dot = (a * b).sum(1)
    keep = ~((np.abs(cross) < 1e-9) & (dot > 0))
    return pts[keep] if keep.sum() >= 3 else pts
