"""Reading and writing images and masks: clear errors in, atomic writes out."""
from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DefectlabError
from .sample import as_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def refuse_broken_link(path: Path) -> None:
    """A symbolic link whose target is gone is an error naming both, never a file silently skipped."""
    if path.is_symlink() and not path.exists():
        raise DefectlabError(f"{path}: broken symbolic link (to {os.readlink(path)}); fix or remove it")


def existing_file(path: Path) -> bool:
    """`path.is_file()`, except that a broken symbolic link is an error (`refuse_broken_link`), not "no file"."""
    refuse_broken_link(Path(path))
    return Path(path).is_file()


GREY_DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
DEEP_SUFFIXES = (".png", ".tif", ".tiff")  # the formats read here that hold more than 8 bits per channel


def _is_deep(img: Image.Image) -> bool:
    """More than 8 bits per channel: a 16- or 32-bit grey mode, or a 16-bit colour image, which PIL decodes to
    8 bits by keeping each value's high byte (low-bit data would read as black). Read before `load()`."""
    return img.mode in GREY_DEEP_MODES or (img.mode in ("RGB", "RGBA") and any(";16" in str(t[-1]) for t in img.tile))


def _open(path: Path) -> tuple[Image.Image, bool]:
    """(the decoded image, whether it is deep: `_is_deep`)."""
    path = Path(path)
    refuse_broken_link(path)
    if not path.is_file():
        raise DefectlabError(f"{path}: file not found")
    try:
        img = Image.open(path)
        deep = _is_deep(img)
        img.load()  # force decoding so truncated files fail here, not later
    except Image.DecompressionBombError as exc:
        raise DefectlabError(f"{path}: image too large to decode safely ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError) as exc:
        raise DefectlabError(f"{path}: not a readable image ({exc})") from exc
    if getattr(img, "n_frames", 1) > 1:
        raise DefectlabError(f"{path}: holds {img.n_frames} frames or pages; defectlab reads single images only")
    if img.width < 1 or img.height < 1:
        raise DefectlabError(f"{path}: image has no pixels ({img.width} x {img.height})")
    return img, deep


def _integer_levels(path: Path, arr: np.ndarray, full: float, kind: str) -> float:
    """`full`, the full-scale value of an integer image (`kind`: its mode), after checking that its values lie
    in 0..full (refused, never clipped, otherwise)."""
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0 or hi > full:
        raise DefectlabError(f"{path}: {kind} image values span {lo}..{hi}, outside 0..{int(full)}; "
                             "defectlab reads 8-bit, 16-bit and float [0, 1] images")
    return full


def _deep_pixels(path: Path, img: Image.Image) -> np.ndarray:
    """The integer values of a deep image, (H, W) or (H, W, 3) RGB, checked to fit 16 bits. A 16-bit colour
    image is decoded again with OpenCV, which keeps every bit (PIL keeps the high byte)."""
    if img.mode in GREY_DEEP_MODES:
        arr = np.asarray(img)
    else:
        import cv2

        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None or arr.ndim != 3 or arr.dtype != np.uint16:
            raise DefectlabError(f"{path}: not a readable image (its 16-bit colour could not be decoded)")
        if arr.shape[2] == 4:
            if arr[:, :, 3].min() < 65535:
                raise DefectlabError(f"{path}: image has a transparent alpha channel ({int((arr[:, :, 3] < 65535).sum())} "
                                     "pixels); flatten it onto a background first")
            arr = arr[:, :, :3]
        arr = np.ascontiguousarray(arr[:, :, ::-1])  # OpenCV's BGR -> RGB
    _integer_levels(path, arr, 65535.0, _deep_kind(img))
    return arr


def _deep_kind(img: Image.Image) -> str:
    return img.mode if img.mode in GREY_DEEP_MODES else f"16-bit {img.mode}"


def peak_deep_value(paths) -> int | None:
    """The largest pixel value over the images among `paths` with more than 8 bits per channel (each decoded),
    or None when there is none. Only the headers of the others are read."""
    peak = None
    for path in (Path(p) for p in paths):
        if path.suffix.lower() not in DEEP_SUFFIXES:
            continue
        refuse_broken_link(path)
        try:
            with Image.open(path) as header:
                deep = _is_deep(header)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DefectlabError(f"{path}: not a readable image ({exc})") from exc
        if deep:
            arr = _deep_pixels(path, _open(path)[0])
            peak = max(peak or 0, int(arr.max(initial=0)))
    return peak


def read_image(path: str | os.PathLike, levels: int | None = None) -> np.ndarray:
    """Read an image as float32 (H, W, C) in [0, 1], keeping its channel count (1 or 3).

    What is decoded is checked, never clipped or zeroed: 8-bit images are scaled by 255, 16-bit ones
    (grey or colour; 32-bit integer ones, whose values must fit 16 bits) by `levels`, default 65535 (a data set
    of 10- or 12-bit camera images passes its own full scale: `Dataset.with_bit_depth`); float images must hold values in
    [0, 1]; a palette image whose colours are all grey is read as grey; an RGBA/LA/PA image whose alpha
    is fully opaque loses its alpha, one with real transparency is refused (there is no background to
    composite on). Multi-page files are refused."""
    path = Path(path)
    img, deep = _open(path)
    if deep:
        arr = _deep_pixels(path, img)
        scaled = arr.astype(np.float32) / _integer_levels(path, arr, float(levels or 65535), _deep_kind(img))
        return scaled[:, :, None] if scaled.ndim == 2 else scaled
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
    img, _ = _open(path)
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
            full = _integer_levels(path, arr, 65535.0 if img.mode.startswith("I") else 255.0, img.mode)
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
    """(H, W) of an image file, after decoding and checking it like `read_image` (once per file version)."""
    try:
        st = Path(path).stat()
    except OSError as exc:
        refuse_broken_link(Path(path))
        raise DefectlabError(f"{path}: not a readable image ({exc.strerror or exc})") from exc
    return _decoded_size(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4096)
def _decoded_size(path: str, size: int, mtime_ns: int) -> tuple[int, int]:
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
