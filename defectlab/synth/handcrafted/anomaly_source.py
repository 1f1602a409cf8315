"""Where the "foreign" texture of DRAEM-family defects comes from, and DRAEM's augmentations of it.

DRAEM, MemSeg and GLASS paste pieces of an unrelated texture (the Describable Textures Dataset in
the papers) into the good image. Here the default source is offline: scikit-image's bundled
photographs plus procedural textures; `AnomalySource(folder)` uses a folder of images instead (e.g.
DTD, which the user downloads). Textures are produced directly at the size that is needed (the
defect's bounding box), which is what keeps these methods fast.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ...errors import DefectlabError

# scikit-image photographs that ship inside the package (no download). brick, grass and gravel are left
# out on purpose: they are the normal surfaces of the embedded data set, and an anomaly source must be foreign.
SKIMAGE_PHOTOS = ("coffee", "astronaut", "rocket", "chelsea", "coins", "camera", "moon", "immunohistochemistry",
                  "hubble_deep_field", "cell", "text", "page", "clock")
PROCEDURAL = ("marble", "stripes", "checker", "speckle")
BASE_SIDE = 384  # photos are pre-shrunk so their shorter side is at most this (speed; targets are <= 256 px)


def _shrink(rgb: np.ndarray) -> np.ndarray:
    s = BASE_SIDE / min(rgb.shape[:2])
    if s < 1:
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


def _to_rgb_u8(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float32) * (255 if arr.max() <= 1 else 1)), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return arr[:, :, :3]


@lru_cache(maxsize=None)
def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    return _shrink(_to_rgb_u8(getattr(skimage.data, name)()))


@lru_cache(maxsize=64)
def _folder_image(path: str) -> np.ndarray:
    from ...imageio import read_image

    return _shrink(_to_rgb_u8(read_image(path)))


def _procedural(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A synthetic texture, uint8 RGB (H, W, 3): two random colours mixed by a pattern t in [0, 1]."""
    from ...masks import perlin_noise

    h, w = shape
    colours = rng.integers(0, 256, (2, 3)).astype(np.float32)
    theta = rng.uniform(0, np.pi)
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    u = xs * np.float32(np.cos(theta)) + ys * np.float32(np.sin(theta))  # broadcast (h, w): no mgrid
    period = np.float32(rng.uniform(4, 24))
    if kind == "marble":
        noise = perlin_noise(shape, (int(rng.integers(1, 5)), int(rng.integers(1, 5))), rng)
        t = 0.5 + 0.5 * np.sin(u * np.float32(2 * np.pi / (3 * period)) + 6 * noise)
    elif kind == "stripes":
        t = 0.5 + 0.5 * np.sin(u * np.float32(2 * np.pi / period))
    elif kind == "checker":
        v = ys * np.float32(np.cos(theta)) - xs * np.float32(np.sin(theta))
        t = ((np.floor(u / period) + np.floor(v / period)) % 2)
    elif kind == "speckle":
        t = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), rng.uniform(0.5, 3))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    else:
        raise DefectlabError(f"unknown procedural texture {kind!r}; known: {', '.join(PROCEDURAL)}")
    levels = np.linspace(0, 1, 256, dtype=np.float32)[:, None]
    table = np.rint(colours[0] + levels * (colours[1] - colours[0])).astype(np.uint8).reshape(1, 256, 3)
    t8 = (t * 255).astype(np.uint8)
    return cv2.LUT(cv2.merge([t8, t8, t8]), table)  # colour ramp by look-up: one pass


class AnomalySource:
    """Random texture crops, uint8 RGB, rendered for a region of an image of a given size.

    folder=None: scikit-image photographs (fraction 1 - procedural_fraction) and procedural
    textures. folder=path: every image file under it (sorted, so a seed picks the same file)."""

    def __init__(self, folder: str | Path | None = None, procedural_fraction: float = 0.25):
        self.folder = None if folder is None else Path(folder)
        self.procedural_fraction = procedural_fraction if folder is None else 0.0
        if self.folder is None:
            self.names = list(SKIMAGE_PHOTOS)
        else:
            from ...imageio import IMAGE_SUFFIXES

            if not self.folder.is_dir():
                raise DefectlabError(f"{self.folder}: texture folder not found")
            self.names = sorted(str(p) for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.names:
                raise DefectlabError(f"{self.folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the texture folder")

    def photo(self, i: int) -> np.ndarray:
        """Source image `i` (`names[i]`), uint8 RGB, decoded once and cached."""
        return _skimage_photo(self.names[i]) if self.folder is None else _folder_image(self.names[i])

    def sample(self, shape: tuple[int, int], rng: np.random.Generator, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """uint8 RGB texture for the (y, x, h, w) `box` of an image of `shape` (whole image if None).

        A random crop (half to all of the photo's shorter side, with the image's aspect ratio) is
        stretched over the whole image, and only the box is rendered (bilinear)."""
        h, w = shape[:2]
        by, bx, bh, bw = box if box is not None else (0, 0, h, w)
        if rng.random() < self.procedural_fraction:
            return _procedural(PROCEDURAL[int(rng.integers(len(PROCEDURAL)))], (bh, bw), rng)
        base = self.photo(int(rng.integers(len(self.names))))
        hs, ws = base.shape[:2]
        side = rng.uniform(0.5, 1.0) * min(hs, ws)
        ch, cw = min(side * max(1.0, h / w), hs), min(side * max(1.0, w / h), ws)
        y0, x0 = rng.uniform(0, hs - ch), rng.uniform(0, ws - cw)
        sy, sx = h / ch, w / cw  # source -> image scale
        m = np.array([[sx, 0, -x0 * sx - bx], [0, sy, -y0 * sy - by]], np.float64)
        return cv2.warpAffine(base, m, (bw, bh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@lru_cache(maxsize=8)
def get_source(folder: str | None = None) -> AnomalySource:
    """A shared AnomalySource per folder (its file list is read once)."""
    return AnomalySource(folder)


# ---------------------------------------------------------------- DRAEM's augmentations (uint8 RGB)
# The ten imgaug augmenters of DRAEM's data loader (Zavrtanik et al. 2021, public code), re-written with
# OpenCV look-up tables; their ranges are imgaug's / DRAEM's.
def _lut(img, table):
    return cv2.LUT(img, np.clip(table, 0, 255).astype(np.uint8).reshape(1, 256, -1))


def _gamma(img, rng):  # GammaContrast((0.5, 2.0), per_channel=True)
    x = np.arange(256, dtype=np.float64)[:, None] / 255
    return _lut(img, 255 * x ** rng.uniform(0.5, 2.0, (1, 3)))


def _brightness(img, rng):  # MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30)) on the Y of YCrCb
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    ycc[:, :, 0] = _lut(np.ascontiguousarray(ycc[:, :, 0]), np.arange(256) * rng.uniform(0.8, 1.2) + rng.uniform(-30, 30))
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13  # PIL's SMOOTH filter


def _sharpness(img, rng):  # pillike.EnhanceSharpness(factor=(0.0, 2.0)): blend with PIL's smoothed image
    blurred = cv2.filter2D(img, -1, _SMOOTH, borderType=cv2.BORDER_REPLICATE)
    f = rng.uniform(0.0, 2.0)
    return cv2.addWeighted(img, f, blurred, 1 - f, 0)  # saturating uint8 arithmetic


def _hue_saturation(img, rng):  # AddToHueAndSaturation((-50, 50), per_channel=True)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # OpenCV hue is 0..179
    dh, ds = rng.uniform(-50, 50, 2)
    hsv[:, :, 0] = _lut(np.ascontiguousarray(hsv[:, :, 0]), (np.arange(256) + round(dh * 90 / 255)) % 180)
    hsv[:, :, 1] = _lut(np.ascontiguousarray(hsv[:, :, 1]), np.arange(256) + ds)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _solarize(img, rng):  # Solarize(0.5, threshold=(32, 128))
    if rng.random() >= 0.5:
        return img
    x = np.arange(256)
    return _lut(img, np.where(x >= rng.uniform(32, 128), 255 - x, x))


def _posterize(img, rng):  # Posterize(nb_bits=(1, 8))
    bits = int(rng.integers(1, 9))
    return img & np.uint8((0xFF << (8 - bits)) & 0xFF)


def _invert(img, rng):  # Invert()
    return 255 - img


def _histograms(img):
    return [cv2.calcHist([img], [c], None, [256], [0, 256]).ravel() for c in range(img.shape[2])]


def _autocontrast(img, rng):  # pillike.Autocontrast(cutoff=(0, 20)) per channel
    cutoff = rng.uniform(0, 20) / 100
    tables = []
    for hist in _histograms(img):
        cdf = np.cumsum(hist) / hist.sum()
        lo, hi = int(np.searchsorted(cdf, cutoff / 2)), int(np.searchsorted(cdf, 1 - cutoff / 2))
        tables.append(np.arange(256) if hi <= lo else (np.arange(256) - lo) * 255.0 / (hi - lo))
    return _lut(img, np.stack(tables, axis=1))


def _equalize(img, rng):  # pillike.Equalize() per channel, PIL's formula
    tables = []
    for hist in _histograms(img):
        nonzero = hist[hist > 0]
        step = (hist.sum() - nonzero[-1]) // 255 if len(nonzero) else 0
        if step == 0:
            tables.append(np.arange(256))
        else:
            tables.append((np.concatenate([[0], np.cumsum(hist)[:-1]]) + step // 2) // step)
    return _lut(img, np.stack(tables, axis=1))


def _affine(img, rng):  # Affine(rotate=(-45, 45)), constant black border
    from ...masks import rotate_array

    return rotate_array(img, rng.uniform(-45, 45))


AUGMENTERS = {"gamma": _gamma, "brightness": _brightness, "sharpness": _sharpness, "hue_saturation": _hue_saturation,
              "solarize": _solarize, "posterize": _posterize, "invert": _invert, "autocontrast": _autocontrast,
              "equalize": _equalize, "affine": _affine}


def draem_augment(img: np.ndarray, rng: np.random.Generator, n: int = 3) -> tuple[np.ndarray, list[str]]:
    """Apply `n` of the ten augmenters, drawn without replacement (DRAEM draws 3), in the drawn order."""
    names = list(AUGMENTERS)
    chosen = [names[i] for i in rng.choice(len(names), size=n, replace=False)]
    for name in chosen:
        img = AUGMENTERS[name](img, rng)
    return img, chosen


def texture_for(source: AnomalySource, shape: tuple[int, int], channels: int, rng: np.random.Generator,
                box: tuple[int, int, int, int] | None = None, n_augment: int = 3) -> tuple[np.ndarray, list[str]]:
    """An augmented texture as float32 (h, w, channels) in [0, 1] for `box` of an image of `shape`."""
    tex, chosen = draem_augment(source.sample(shape, rng, box), rng, n_augment)
    if channels == 1:
        tex = cv2.cvtColor(tex, cv2.COLOR_RGB2GRAY)[:, :, None]
    return tex.astype(np.float32) * np.float32(1 / 255), chosen
