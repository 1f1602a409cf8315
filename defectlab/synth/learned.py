"""Small pieces shared by the methods that learn (feature-space scorers, GANs, diffusion models).

Why these exist: every learned method must (1) build its networks reproducibly from the caller's
`rng` without touching torch's global generator, (2) shrink its work in quick mode, (3) refuse to
run before `fit`, and (4) place a defect mask inside the foreground.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..config import quick_mode
from ..errors import DefectlabError
from ..sample import Sample, as_image, as_mask


@contextmanager
def seeded_init(rng: np.random.Generator):
    """Build modules inside this block to get weights that depend only on `rng`.

    Default PyTorch/diffusers initialisers draw from the global generator; we fork it (so the caller's
    global state is untouched afterwards) and seed the fork from `rng`."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(0, 2**63 - 1)))
        yield


def work(full: int, quick: int) -> int:
    """`quick` under quick mode (DEFECTLAB_QUICK=1 or `config.quick()`), else `full`."""
    return quick if quick_mode() else full


def require_fitted(method, what: str = "") -> None:
    if not getattr(method, "fitted", False):
        raise DefectlabError(f"{type(method).__name__}: call fit(goods, defects, rng) before {what or 'using it'}")


def fitted_input(method, image) -> np.ndarray:
    """`image` as float32 (H, W, C) for a fitted `method`, with the channel count it was fitted on."""
    require_fitted(method, "calling it")
    image = as_image(image)
    channels = getattr(method, "channels_", None)
    if channels is not None and image.shape[2] != channels:
        raise DefectlabError(f"image: {image.shape[2]} channels, the model was fitted on {channels}")
    return image


def require_region(region: np.ndarray) -> np.ndarray:
    if region is None or not region.any():
        raise DefectlabError("mask: empty; give a mask with at least one pixel")
    return region


def check_goods(goods, what: str = "goods") -> list[np.ndarray]:
    if goods is None or len(goods) == 0:
        raise DefectlabError(f"{what}: fit needs at least one good image")
    images = [as_image(g, what=f"{what}[{i}]") for i, g in enumerate(goods)]
    chans = {g.shape[2] for g in images}
    if len(chans) > 1:
        raise DefectlabError(f"{what}: mixed channel counts {sorted(chans)}; convert all images to grey or RGB")
    return images


def check_defects(defects, channels: int, what: str = "defects") -> list[Sample]:
    """Real defects as Samples with a non-empty mask and the goods' channel count."""
    out = []
    for i, d in enumerate(defects or []):
        img = as_image(d.image, what=f"{what}[{i}].image")
        if img.shape[2] != channels:
            raise DefectlabError(f"{what}[{i}]: {img.shape[2]} channels, the good images have {channels}")
        mask = as_mask(d.mask, img.shape[:2], what=f"{what}[{i}].mask")
        if mask.any():
            out.append(Sample(img, mask, dict(d.meta)))
    return out


def require_defects(defects, channels: int, who: str) -> list[Sample]:
    """`check_defects`, refusing a set with no usable defect: for methods that learn from real defects."""
    out = check_defects(defects, channels)
    if not out:
        raise DefectlabError(f"defects: {who} needs at least one real defect with a non-empty mask")
    return out


def require_rng(rng, who: str) -> None:
    if rng is None:
        raise DefectlabError(f"{who}: rng (numpy Generator) is required")


def to_tensor(images, size: int | tuple[int, int] | None = None):
    """list of float (H, W, C) images -> float32 tensor (B, C, h, w), resized (bilinear, antialiased) to `size`."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.stack([np.asarray(im, np.float32) for im in images])).permute(0, 3, 1, 2).contiguous()
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(x.shape[-2:]) != hw:
            x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1)


def to_image(x) -> np.ndarray:
    """tensor (C, h, w) in [0, 1] -> float32 (h, w, C)."""
    return np.ascontiguousarray(x.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float32))


def resize_to(x, hw: tuple[int, int]):
    """(B, C, h, w) tensor -> (B, C, H, W), bilinear."""
    import torch.nn.functional as F

    return x if tuple(x.shape[-2:]) == tuple(hw) else F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False)


def perlin_region(shape: tuple[int, int], rng: np.random.Generator, foreground: np.ndarray | None = None) -> np.ndarray:
    """A Perlin-noise region (`defectlab.masks.perlin_mask`, DRAEM's) inside the foreground; never empty."""
    from ..masks import perlin_mask

    fg = np.ones(shape, bool) if foreground is None else as_mask(foreground, shape, "foreground")
    try:
        return np.asarray(perlin_mask(shape, rng, foreground=fg), bool)
    except DefectlabError:  # a tiny foreground the noise keeps missing
        return _disk(shape, rng, fg)


def _disk(shape, rng, fg) -> np.ndarray:
    """Fallback: a small disk centred on a random foreground pixel."""
    ys, xs = np.nonzero(fg) if fg.any() else np.nonzero(np.ones(shape, bool))
    i = rng.integers(len(ys))
    r = max(2, min(shape) // 12)
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    m = (yy - ys[i]) ** 2 + (xx - xs[i]) ** 2 <= r * r
    return m & fg if (m & fg).any() else m


def place_real_mask(shape: tuple[int, int], rng: np.random.Generator, masks: list[np.ndarray],
                    foreground: np.ndarray | None = None, tries: int = 20) -> np.ndarray | None:
    """A real defect mask (random flip / 90° turn) moved to a random spot where it lies in the foreground.

    Returns None when there are no masks. The shape is cropped to its bounding box first, so a real
    defect from one image can be placed anywhere on another of a different size."""
    if not masks:
        return None
    fg = np.ones(shape, bool) if foreground is None else as_mask(foreground, shape, "foreground")
    best, best_inside = None, -1.0
    for _ in range(tries):
        m = masks[rng.integers(len(masks))]
        ys, xs = np.nonzero(m)
        m = m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        m = np.rot90(m, int(rng.integers(4)))
        if rng.random() < 0.5:
            m = m[:, ::-1]
        h, w = min(m.shape[0], shape[0]), min(m.shape[1], shape[1])
        m = m[:h, :w]
        y0, x0 = int(rng.integers(shape[0] - h + 1)), int(rng.integers(shape[1] - w + 1))
        out = np.zeros(shape, bool)
        out[y0:y0 + h, x0:x0 + w] = m
        inside = (out & fg).sum() / max(out.sum(), 1)
        if inside > best_inside:
            best, best_inside = out, inside
        if inside >= 0.98:
            break
    clipped = best & fg
    return clipped if clipped.any() else best


def crop_box(mask: np.ndarray, min_size: int, context: float = 2.0) -> tuple[int, int, int, int]:
    """Square window (y0, x0, side) around the mask's bounding box, `context` times its size, inside the image."""
    H, W = mask.shape
    ys, xs = np.nonzero(mask)
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    side = int(np.ceil(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) * context))
    side = int(min(max(side, min_size), H, W))
    y0 = int(np.clip(round(cy - side / 2), 0, H - side))
    x0 = int(np.clip(round(cx - side / 2), 0, W - side))
    return y0, x0, side


def first_last_means(history: list[float], k: int = 5) -> tuple[float, float]:
    """Mean of the first and of the last `k` recorded losses (how tests and notebooks check learning)."""
    h = np.asarray(history, float)
    k = max(1, min(k, len(h) // 2))
    return float(h[:k].mean()), float(h[-k:].mean())
