"""Reading and writing images and masks: clear errors in, atomic writes out."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DefectlabError
from .sample import as_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise DefectlabError(f"{path}: file not found")
    try:
        img = Image.open(path)
        img.load()  # force decoding so truncated files fail here, not later
    except Image.DecompressionBombError as exc:
        raise DefectlabError(f"{path}: image too large to decode safely ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError) as exc:
        raise DefectlabError(f"{path}: not a readable image ({exc})") from exc
    if getattr(img, "n_frames", 1) > 1:
        raise DefectlabError(f"{path}: holds {img.n_frames} frames or pages; defectlab reads single images only")
    if img.width < 1 or img.height < 1:
        raise DefectlabError(f"{path}: image has no pixels ({img.width} x {img.height})")
    return img


def _integer_levels(path: Path, img: Image.Image, arr: np.ndarray) -> float:
    """Full-scale value of an integer image: 65535 for 16-bit modes and 32-bit integer images (which
    must hold 16-bit values), 255 otherwise. Values outside that range are refused, never clipped."""
    full = 65535.0 if img.mode.startswith("I") else 255.0
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0 or hi > full:
        raise DefectlabError(f"{path}: {img.mode} image values span {lo}..{hi}, outside 0..{int(full)}; "
                             "defectlab reads 8-bit, 16-bit and float [0, 1] images")
    return full


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as float32 (H, W, C) in [0, 1], keeping its channel count (1 or 3).

    What is decoded is checked, never clipped or zeroed: 8-bit images are scaled by 255, 16-bit ones
    (and 32-bit integer ones, whose values must fit 16 bits) by 65535; float images must hold values in
    [0, 1]; a palette image whose colours are all grey is read as grey; an RGBA/LA/PA image whose alpha
    is fully opaque loses its alpha, one with real transparency is refused (there is no background to
    composite on). Multi-page files are refused."""
    path = Path(path)
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        return (arr.astype(np.float32) / _integer_levels(path, img, arr))[:, :, None]
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            finite = arr[np.isfinite(arr)]
            span = f"{finite.min():.4g}..{finite.max():.4g}" if finite.size else "no finite value"
            raise DefectlabError(f"{path}: float image values must lie in [0, 1] (found {span}"
                                 f"{', and NaN/inf' if finite.size < arr.size else ''})")
        return arr[:, :, None].copy()
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("LA" if img.mode in ("LA", "La") else "RGBA")
        alpha = np.asarray(img)[:, :, -1]
        if alpha.min() < 255:
            raise DefectlabError(f"{path}: image has a transparent alpha channel ({int((alpha < 255).sum())} "
                                 "pixels); flatten it onto a background first")
        img = img.convert("RGB" if img.mode == "RGBA" else "L")
    if img.mode == "P":
        rgb = np.asarray(img.convert("RGB"))
        grey = (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all()
        return as_image(rgb[:, :, :1] if grey else rgb, what=str(path))
    if img.mode not in ("L", "RGB"):
        img = img.convert("L" if img.mode == "1" else "RGB")  # CMYK, YCbCr, LAB, HSV -> RGB
    return as_image(np.asarray(img), what=str(path))


def read_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None, threshold: int = 127) -> np.ndarray:
    """Read a mask as bool (H, W): value > threshold (0..255 scale; any channel). Checks its size against `shape`.

    The 0/1 convention is detected: a mask whose largest value is 1 is binary (every 1 is a defect).
    A mask whose values are all in 2..threshold (a label map, or a faint mask) is refused rather than
    read as empty; 16-bit masks are compared on the 0..65535 scale, float masks must lie in [0, 1]
    (or 0..255)."""
    path = Path(path)
    img = _open(path)
    if img.mode == "1":
        mask = np.asarray(img).astype(bool)
    else:
        if img.mode == "F":
            arr = np.asarray(img, dtype=np.float32)
            if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 255:
                raise DefectlabError(f"{path}: float mask values must lie in [0, 1] or [0, 255]")
            arr = arr * 255.0 if arr.max() <= 1 else arr
        elif img.mode.startswith("I"):
            arr = np.asarray(img)
            full = _integer_levels(path, img, arr)
            arr = arr.astype(np.float64) / 257.0 if arr.max(initial=0) > 255 and full > 255 else arr
        else:
            arr = np.asarray(img.convert("L"))
        top = float(arr.max(initial=0))
        if top == 1:  # the 0/1 convention
            mask = arr > 0
        elif 1 < top <= threshold:
            raise DefectlabError(f"{path}: mask values lie in 0..{top:g}, all at or below the threshold {threshold} "
                                 "(expected 0/255 or 0/1); it would read as empty — is it a label map?")
        else:
            mask = arr > threshold
    if shape is not None and mask.shape != tuple(shape[:2]):
        raise DefectlabError(f"{path}: mask size {mask.shape} differs from its image {tuple(shape[:2])}")
    return mask


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file, after decoding and checking it like `read_image`."""
    return read_image(path).shape[:2]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] image (H, W, C) or mask -> uint8 array PIL can save (grey as 2-D)."""
    arr = np.asarray(image)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    arr = np.clip(np.rint(np.asarray(arr, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, without changing it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # not thread-safe for an instant, but only where /proc is missing
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike, folder: bool = False) -> None:
    """Give a file (0666) or folder (0777) made by `tempfile` (0600 / 0700) the permissions that an
    ordinary `open` / `mkdir` would: the user's umask decides, so a team can read shared results."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename. The file gets
    the permissions the user's umask gives a new file (not tempfile's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an image or mask; deterministic for the same array."""
    import io

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | os.PathLike, image: np.ndarray) -> str:
    """Write an image (float [0, 1]) or mask (bool) as PNG atomically; return its SHA-256."""
    data = encode_png(image)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
