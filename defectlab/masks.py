"""Defect mask generators: where a synthetic defect goes and what shape it has.

Every generator is vectorised numpy/OpenCV, takes an explicit `numpy.random.Generator` and returns a
bool (H, W) mask (or a patch geometry for the cut-and-paste family). A `foreground` (bool H x W)
restricts the defect to the object; generators retry a bounded number of times and then raise a
`DefectlabError` rather than return an empty mask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import DefectlabError
from .sample import refuse_non_finite

MAX_TRIES = 100  # bound on "retry until non-empty"; hitting it means the foreground is (almost) empty


# ---------------------------------------------------------------- foreground helpers
def foreground_or_all(foreground: np.ndarray | None, shape: tuple[int, int], what: str = "foreground") -> np.ndarray:
    """The foreground as bool (H, W), all True when None; checks size, values (no NaN) and that it is non-empty."""
    if foreground is None:
        return np.ones(shape[:2], bool)
    fg = np.asarray(foreground)
    refuse_non_finite(fg, what)
    if fg.ndim == 3 and fg.shape[2] == 1:
        fg = fg[:, :, 0]
    if fg.shape != tuple(shape[:2]):
        raise DefectlabError(f"{what}: size {fg.shape} differs from the image {tuple(shape[:2])}")
    fg = fg.astype(bool, copy=False)
    if not fg.any():
        raise DefectlabError(f"{what}: empty; a defect needs at least one foreground pixel")
    return fg


def restrict_to_foreground(mask: np.ndarray, foreground: np.ndarray | None) -> np.ndarray:
    """mask AND foreground (mask unchanged when foreground is None)."""
    return mask if foreground is None else mask & foreground_or_all(foreground, mask.shape)


def random_foreground_point(foreground: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A uniformly drawn (y, x) inside the foreground."""
    flat = np.flatnonzero(foreground)
    i = int(flat[rng.integers(len(flat))])
    return divmod(i, foreground.shape[1])


# ---------------------------------------------------------------- Perlin noise (DRAEM)
def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)  # Perlin's quintic 6t^5 - 15t^4 + 10t^3


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D gradient (Perlin) noise, float32 (H, W), roughly in [-1, 1], with `res` lattice cells per axis.

    Same construction as DRAEM's `rand_perlin_2d_np` (random unit gradients on a (res+1)^2 lattice,
    quintic fade), computed by broadcasting over a cell-blocked view and for any size: the lattice is laid on
    the next multiple of `res` and cropped."""
    h, w = int(shape[0]), int(shape[1])
    ry, rx = int(res[0]), int(res[1])
    if h < 1 or w < 1 or ry < 1 or rx < 1:
        raise DefectlabError(f"perlin_noise: shape {shape} and res {res} must be positive")
    dy, dx = -(-h // ry), -(-w // rx)  # cell size in pixels (ceil)
    angles = (2 * np.pi) * rng.random((ry + 1, rx + 1))
    gy, gx = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    # work on a (cell row, y in cell, cell column, x in cell) view: lattice values broadcast, no gathers
    ty = (np.arange(dy, dtype=np.float32) / dy)[None, :, None, None]
    tx = (np.arange(dx, dtype=np.float32) / dx)[None, None, None, :]

    def corner(a: int, b: int) -> np.ndarray:
        return (gy[a:a + ry, b:b + rx][:, None, :, None] * (ty - a)
                + gx[a:a + ry, b:b + rx][:, None, :, None] * (tx - b))

    fy, fx = _fade(ty), _fade(tx)
    n00, n01 = corner(0, 0), corner(0, 1)
    left = n00 + fy * (corner(1, 0) - n00)  # along y at the left lattice column
    right = n01 + fy * (corner(1, 1) - n01)
    out = (left + fx * (right - left)).reshape(ry * dy, rx * dx)[:h, :w]
    return out * np.float32(math.sqrt(2))


def rotate_array(arr: np.ndarray, angle: float, interpolation: int = cv2.INTER_LINEAR, border_value: float = 0) -> np.ndarray:
    """Rotate about the centre by `angle` degrees, same size, constant border (imgaug's Affine default)."""
    h, w = arr.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), float(angle), 1.0)
    return cv2.warpAffine(arr, m, (w, h), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)


def perlin_mask(shape: tuple[int, int], rng: np.random.Generator, min_scale: int = 0, max_scale: int = 6,
                threshold: float = 0.5, rotate: bool = True, foreground: np.ndarray | None = None,
                max_tries: int = MAX_TRIES) -> np.ndarray:
    """DRAEM's anomaly mask (Zavrtanik et al. 2021, Sec. 3.2): Perlin noise with 2^U{min..max-1}
    lattice cells per axis (drawn independently), rotated by U(-90, 90) degrees, thresholded at 0.5.

    Retried until the mask (AND `foreground`) is non-empty, at most `max_tries` times."""
    fg = None if foreground is None else foreground_or_all(foreground, shape)
    if not 0 <= min_scale < max_scale:
        raise DefectlabError(f"perlin_mask: need 0 <= min_scale < max_scale, got {min_scale}, {max_scale}")
    for _ in range(max_tries):
        res = (2 ** int(rng.integers(min_scale, max_scale)), 2 ** int(rng.integers(min_scale, max_scale)))
        noise = perlin_noise(shape, res, rng)
        if rotate:
            noise = rotate_array(noise, rng.uniform(-90, 90))
        mask = noise > threshold
        if fg is not None:
            mask &= fg
        if mask.any():
            return mask
    raise DefectlabError(f"perlin_mask: no non-empty mask in {max_tries} tries (threshold {threshold}, "
                         f"foreground {0 if fg is None else int(fg.sum())} pixels)")


# ---------------------------------------------------------------- CutPaste geometry
@dataclass
class PatchGeometry:
    """Where a patch is cut and where it goes.

    src_box / dst_box: (y, x, h, w). `transform` (2x3, float) maps source-box coordinates to
    destination-box coordinates (rotation for scars; None = identity, same size). `patch_mask`
    (bool, dst h x w) marks the destination pixels that receive the patch (already AND foreground)."""

    src_box: tuple[int, int, int, int]
    dst_box: tuple[int, int, int, int]
    patch_mask: np.ndarray
    transform: np.ndarray | None = None

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape[:2], bool)
        y, x, h, w = self.dst_box
        out[y:y + h, x:x + w] = self.patch_mask
        return out


def _box_size(shape, rng, area_ratio, aspect_ratio) -> tuple[int, int]:
    h_img, w_img = shape[:2]
    area = rng.uniform(*area_ratio) * h_img * w_img
    aspect = math.exp(rng.uniform(math.log(aspect_ratio[0]), math.log(aspect_ratio[1])))  # log-uniform: 0.3 and 3.3 equally likely
    w = int(np.clip(round(math.sqrt(area * aspect)), 1, w_img))
    h = int(np.clip(round(math.sqrt(area / aspect)), 1, h_img))
    return h, w


def _place_box(shape, h, w, rng, fg):
    """Top-left of an h x w box centred near a random foreground pixel, clamped into the image."""
    cy, cx = random_foreground_point(fg, rng)
    y = int(np.clip(cy - h // 2, 0, shape[0] - h))
    x = int(np.clip(cx - w // 2, 0, shape[1] - w))
    return y, x


def cutpaste_rect(shape: tuple[int, int], rng: np.random.Generator, area_ratio=(0.02, 0.15),
                  aspect_ratio=(0.3, 1 / 0.3), foreground: np.ndarray | None = None,
                  max_tries: int = MAX_TRIES) -> PatchGeometry:
    """CutPaste (Li et al. 2021, Sec. 3.1 / Appendix A): a rectangle of area ratio U(area_ratio) and
    log-uniform aspect ratio, cut at a random place and pasted at another, centred on the foreground."""
    h_img, w_img = shape[:2]
    fg = foreground_or_all(foreground, shape)
    for _ in range(max_tries):
        h, w = _box_size(shape, rng, area_ratio, aspect_ratio)
        src = (int(rng.integers(0, h_img - h + 1)), int(rng.integers(0, w_img - w + 1)), h, w)
        y, x = _place_box(shape, h, w, rng, fg)
        patch_mask = fg[y:y + h, x:x + w].copy()
        if patch_mask.any():
            return PatchGeometry(src, (y, x, h, w), patch_mask)
    raise DefectlabError(f"cutpaste_rect: no patch touching the foreground in {max_tries} tries")


def cutpaste_scar(shape: tuple[int, int], rng: np.random.Generator, width=(2, 16), height=(10, 25),
                  rotation=(-45, 45), foreground: np.ndarray | None = None, max_tries: int = MAX_TRIES) -> PatchGeometry:
    """CutPaste-scar (Li et al. 2021, Appendix A): a thin w x h rectangle (pixels), rotated by
    U(rotation) degrees, pasted at a random place. `transform` rotates the cut into its destination box."""
    h_img, w_img = shape[:2]
    fg = foreground_or_all(foreground, shape)
    for _ in range(max_tries):
        w = int(min(rng.integers(width[0], width[1] + 1), w_img))
        h = int(min(rng.integers(height[0], height[1] + 1), h_img))
        angle = float(rng.uniform(*rotation))
        src = (int(rng.integers(0, h_img - h + 1)), int(rng.integers(0, w_img - w + 1)), h, w)
        rot = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
        c, s = abs(rot[0, 0]), abs(rot[0, 1])
        bw = min(int(math.ceil(w * c + h * s)), w_img)
        bh = min(int(math.ceil(w * s + h * c)), h_img)
        rot[0, 2] += (bw - w) / 2  # re-centre the rotated cut in its bounding box
        rot[1, 2] += (bh - h) / 2
        local = cv2.warpAffine(np.ones((h, w), np.uint8), rot, (bw, bh), flags=cv2.INTER_NEAREST) > 0
        y, x = _place_box(shape, bh, bw, rng, fg)
        patch_mask = local & fg[y:y + bh, x:x + bw]
        if patch_mask.any():
            return PatchGeometry(src, (y, x, bh, bw), patch_mask, rot)
    raise DefectlabError(f"cutpaste_scar: no scar touching the foreground in {max_tries} tries")


# ---------------------------------------------------------------- Bézier shapes (DefectMaker)
def _bezier(points: np.ndarray, n: int) -> np.ndarray:
    """Points on the Bézier curve with control `points` (k, 2), by the Bernstein form."""
    from scipy.special import comb

    k = len(points) - 1
    t = np.linspace(0, 1, n)[:, None]
    basis = np.stack([comb(k, i) * t[:, 0] ** i * (1 - t[:, 0]) ** (k - i) for i in range(k + 1)], axis=1)
    return basis @ points


def _centre(shape, rng, fg):
    return np.array(random_foreground_point(fg, rng)[::-1], float)  # (x, y) for OpenCV


def bezier_scar(shape: tuple[int, int], rng: np.random.Generator, length=(0.15, 0.5), thickness=(0.01, 0.04),
                n_control: int = 4, bend: float = 0.35, foreground: np.ndarray | None = None,
                max_tries: int = MAX_TRIES) -> np.ndarray:
    """A scratch: a thick Bézier stroke (DefectMaker-style). `length` and `thickness` are fractions of
    the shorter image side; `bend` is how far (fraction of the length) control points stray sideways."""
    h, w = shape[:2]
    fg = foreground_or_all(foreground, shape)
    side = min(h, w)
    for _ in range(max_tries):
        centre = _centre(shape, rng, fg)
        length_px = rng.uniform(*length) * side
        theta = rng.uniform(0, np.pi)
        direction = np.array([np.cos(theta), np.sin(theta)])
        normal = np.array([-direction[1], direction[0]])
        along = np.linspace(-0.5, 0.5, n_control) * length_px
        sideways = rng.uniform(-bend, bend, n_control) * length_px
        sideways[[0, -1]] = 0
        ctrl = centre + along[:, None] * direction + sideways[:, None] * normal
        curve = np.round(_bezier(ctrl, max(16, int(length_px))) * 16).astype(np.int32)  # 4 fractional bits
        mask = np.zeros((h, w), np.uint8)
        t = max(1, int(round(rng.uniform(*thickness) * side)))
        cv2.polylines(mask, [curve[:, None, :]], False, 1, thickness=t, lineType=cv2.LINE_8, shift=4)
        mask = mask.astype(bool) & fg
        if mask.any():
            return mask
    raise DefectlabError(f"bezier_scar: no stroke inside the foreground in {max_tries} tries")


def bezier_clump(shape: tuple[int, int], rng: np.random.Generator, radius=(0.04, 0.15), n_vertices=(5, 9),
                 irregularity: float = 0.5, foreground: np.ndarray | None = None, max_tries: int = MAX_TRIES) -> np.ndarray:
    """A blob: a closed curve of quadratic Bézier pieces through the mid-points of a random star-shaped
    polygon (DefectMaker-style clump). `radius` is a fraction of the shorter side; `irregularity`
    the relative spread of the vertex radii."""
    h, w = shape[:2]
    fg = foreground_or_all(foreground, shape)
    side = min(h, w)
    for _ in range(max_tries):
        centre = _centre(shape, rng, fg)
        k = int(rng.integers(n_vertices[0], n_vertices[1] + 1))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(*radius) * side * np.clip(1 + irregularity * rng.uniform(-1, 1, k), 0.2, None)
        verts = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * r[:, None]
        mids = (verts + np.roll(verts, -1, axis=0)) / 2
        pieces = [_bezier(np.stack([mids[i - 1], verts[i], mids[i]]), 12) for i in range(k)]
        poly = np.round(np.concatenate(pieces) * 16).astype(np.int32)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [poly[:, None, :]], 1, lineType=cv2.LINE_8, shift=4)
        mask = mask.astype(bool) & fg
        if mask.any():
            return mask
    raise DefectlabError(f"bezier_clump: no blob inside the foreground in {max_tries} tries")


# ---------------------------------------------------------------- moving a real mask (copy-paste, AdaBLDM)
def affine_jitter_place(defect_mask: np.ndarray, foreground: np.ndarray | None, rng: np.random.Generator,
                        rotation=(0, 360), scale=(0.85, 1.15), max_tries: int = 50, shape: tuple[int, int] | None = None,
                        on_fail: str = "raise", propose=None) -> tuple[np.ndarray, np.ndarray]:
    """Rotate and scale (aspect kept) a real defect mask and place it wholly inside the foreground.

    Returns (placed mask, 2x3 float affine `M`) with `M` mapping defect-image coordinates to target
    coordinates, so `cv2.warpAffine(defect_image, M, (W, H))` moves the defect's pixels the same way.
    The target size is `foreground.shape` (or `shape`, or the mask's). After `max_tries` placements
    that leave the foreground, `on_fail="raise"` raises a DefectlabError; `on_fail="clip"` returns
    the try with the largest share inside the foreground, cut to the foreground, and shrinks a defect
    too large for the target image until it fits (documented fallbacks). `propose` (rng -> (angle, factor,
    (y, x))) replaces the uniform draws of each try (a learned prior: `placement.PlacementPrior.place`)."""
    src = np.asarray(defect_mask).astype(bool)
    if src.ndim != 2 or not src.any():
        raise DefectlabError(f"affine_jitter_place: defect_mask must be a non-empty 2-D mask, got shape {src.shape}")
    target = tuple(foreground.shape[:2]) if foreground is not None else tuple(shape or src.shape)
    fg = foreground_or_all(foreground, target)
    if on_fail not in ("raise", "clip"):
        raise DefectlabError(f"affine_jitter_place: on_fail must be 'raise' or 'clip', got {on_fail!r}")
    ys, xs = np.nonzero(src)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    centre = pts.mean(axis=0)
    src_u8 = src.astype(np.uint8)
    best = (-1.0, None, None)
    for _ in range(max_tries):
        if propose is None:
            angle, factor, point = float(rng.uniform(*rotation)), float(rng.uniform(*scale)), None
        else:
            angle, factor, point = propose(rng)
        m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, factor)
        moved = pts @ m[:, :2].T + m[:, 2]
        lo, hi = moved.min(axis=0), moved.max(axis=0)
        room = min((target[1] - 1) / max(hi[0] - lo[0], 1e-9), (target[0] - 1) / max(hi[1] - lo[1], 1e-9))
        if room < 1:  # too big for the image at this angle/scale (e.g. a mask from a larger image)
            if on_fail != "clip":
                continue
            m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, factor * room * 0.98)
            moved = pts @ m[:, :2].T + m[:, 2]
            lo, hi = moved.min(axis=0), moved.max(axis=0)
        ty, tx = random_foreground_point(fg, rng) if point is None else point
        shift = np.array([tx, ty], float) - centre  # put the defect's centre on a foreground pixel ...
        shift = np.clip(shift, -lo, np.array([target[1] - 1, target[0] - 1]) - hi)  # ... but keep it in the image
        m[:, 2] += shift
        placed = cv2.warpAffine(src_u8, m, (target[1], target[0]), flags=cv2.INTER_NEAREST) > 0
        n = placed.sum()
        if n == 0:
            continue
        inside = (placed & fg).sum() / n
        if inside == 1.0:
            return placed, m
        if inside > best[0]:
            best = (inside, placed, m)
    if on_fail == "clip" and best[1] is not None and (best[1] & fg).any():
        return best[1] & fg, best[2]
    raise DefectlabError(f"affine_jitter_place: could not place the {int(src.sum())}-pixel defect inside the "
                         f"{int(fg.sum())}-pixel foreground in {max_tries} tries (best {max(best[0], 0):.0%} inside); "
                         "use a smaller scale range or on_fail='clip'")


# ---------------------------------------------------------------- AdaBLDM helpers
def trimap(foreground: np.ndarray, defect: np.ndarray) -> np.ndarray:
    """AdaBLDM's trimap (Li et al. 2024): uint8, background 0, object 127, defect 255."""
    defect = np.asarray(defect, bool)
    fg = foreground_or_all(foreground, defect.shape) if foreground is not None else np.ones(defect.shape, bool)
    out = np.where(fg, np.uint8(127), np.uint8(0))
    out[defect] = 255
    return out


def dilate_on_latent_grid(mask: np.ndarray, factor: int = 8, kernel: int = 5) -> np.ndarray:
    """The mask on the latent grid (H/f, W/f rounded up): a cell is set if any of its f x f pixels is,
    then dilated with a kernel x kernel square (kernel <= 1: no dilation)."""
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise DefectlabError(f"dilate_on_latent_grid: mask must be 2-D, got shape {m.shape}")
    h, w = m.shape
    hc, wc = -(-h // factor), -(-w // factor)
    padded = np.zeros((hc * factor, wc * factor), bool)
    padded[:h, :w] = m
    grid = padded.reshape(hc, factor, wc, factor).any(axis=(1, 3))
    if kernel > 1:
        grid = cv2.dilate(grid.astype(np.uint8), np.ones((kernel, kernel), np.uint8)) > 0
    return grid


def upsample_latent_mask(grid: np.ndarray, shape: tuple[int, int], factor: int = 8) -> np.ndarray:
    """Back from the latent grid to pixels (each cell -> f x f pixels), cropped to `shape`."""
    big = np.repeat(np.repeat(np.asarray(grid, bool), factor, axis=0), factor, axis=1)
    if big.shape[0] < shape[0] or big.shape[1] < shape[1]:
        raise DefectlabError(f"upsample_latent_mask: grid {grid.shape} x {factor} is smaller than {tuple(shape)}")
    return big[:shape[0], :shape[1]]


# ---------------------------------------------------------------- a picture of every generator
def gallery(shape: tuple[int, int], rng: np.random.Generator, foreground: np.ndarray | None = None):
    """One example of each mask generator as RGB panels, with their names (for the demo and notebooks)."""
    from .viz import to_rgb

    fg = foreground_or_all(foreground, shape)
    rect = cutpaste_rect(shape, rng, foreground=fg).full_mask(shape)
    scar = cutpaste_scar(shape, rng, foreground=fg).full_mask(shape)
    clump = bezier_clump(shape, rng, foreground=fg)
    latent = upsample_latent_mask(dilate_on_latent_grid(clump), shape)
    masks = {
        "perlin (DRAEM)": perlin_mask(shape, rng, foreground=fg),
        "cutpaste rect": rect,
        "cutpaste scar": scar,
        "bezier scar": bezier_scar(shape, rng, foreground=fg),
        "bezier clump": clump,
        "jittered clump": affine_jitter_place(clump, fg, rng, on_fail="clip")[0],
    }
    panels = [to_rgb(m.astype(np.float32)) for m in masks.values()]
    panels.append(to_rgb(trimap(fg, clump).astype(np.float32) / 255))
    panels.append(to_rgb(latent.astype(np.float32) * 0.5 + clump * 0.5))
    return panels, list(masks) + ["trimap", "latent grid (x8, dilated)"]
