"""Square windows around defects: how the generative methods see a defect at a fixed working size.

Defects are small; generating the whole image at 32-64 px would blur them away. So the GAN and the
inpainting model work on a square window around the mask (`context` times its bounding box), resized
to the working size, and paste the result back through the full-resolution mask — which is why the
returned mask always covers every changed pixel.
"""
from __future__ import annotations

import numpy as np

from ..learned import check_goods, crop_box, require_defects, require_rng, to_tensor, work


def crop(image: np.ndarray, mask: np.ndarray, window: tuple[int, int, int], size: int):
    """(C, size, size) image tensor and (1, size, size) mask tensor of a window; the working mask marks
    every cell that holds any mask pixel (so generation covers the whole defect)."""
    import torch
    import torch.nn.functional as F

    y0, x0, side = window
    img = to_tensor([image[y0:y0 + side, x0:x0 + side]], size)[0]
    m = torch.from_numpy(mask[y0:y0 + side, x0:x0 + side].astype(np.float32))[None, None]
    m = (F.adaptive_max_pool2d(m, size) if side >= size else F.interpolate(m, size=size, mode="nearest"))[0]
    return img, (m > 0).float()


def paste(image: np.ndarray, mask: np.ndarray, window: tuple[int, int, int], patch) -> np.ndarray:
    """`image` with the window's masked pixels replaced by `patch` (C, size, size) resized to the window."""
    import torch.nn.functional as F

    y0, x0, side = window
    up = F.interpolate(patch[None].clamp(0, 1), size=(side, side), mode="bilinear", align_corners=False)[0]
    up = up.permute(1, 2, 0).detach().numpy().astype(np.float32)
    out = image.copy()
    sub, m = out[y0:y0 + side, x0:x0 + side], mask[y0:y0 + side, x0:x0 + side]
    sub[m] = up[m]
    return out


def begin_window_fit(method, goods, defects, rng, who: str):
    """The start every fit on windows around real defects shares: check the inputs, set `method.channels_`,
    `size_` (working window side, quick-mode aware) and `masks_`; returns (goods, *defect_windows(...))."""
    require_rng(rng, who)
    p = method.params
    goods = check_goods(goods)
    method.channels_ = goods[0].shape[2]
    defects = require_defects(defects, method.channels_, who)
    method.size_ = work(p.size, p.quick_size)
    method.masks_ = [d.mask for d in defects]
    return (goods, *defect_windows(defects, method.size_, p.context))


def defect_windows(defects, size: int, context: float):
    """Training windows around real defects: images (N, C, size, size), masks (N, 1, size, size), sides."""
    import torch

    imgs, masks, sides = [], [], []
    for d in defects:
        w = crop_box(d.mask, size, context)
        i, m = crop(d.image, d.mask, w, size)
        imgs.append(i), masks.append(m), sides.append(w[2])
    return torch.stack(imgs), torch.stack(masks), sides


def random_windows(goods: list[np.ndarray], sides: list[int], n: int, size: int, rng: np.random.Generator):
    """`n` random windows of good images, their sides drawn from `sides` (the real defects' windows)."""
    import torch

    out = []
    for _ in range(n):
        g = goods[rng.integers(len(goods))]
        side = int(min(sides[rng.integers(len(sides))] if sides else size, *g.shape[:2]))
        y0, x0 = int(rng.integers(g.shape[0] - side + 1)), int(rng.integers(g.shape[1] - side + 1))
        out.append(to_tensor([g[y0:y0 + side, x0:x0 + side]], size)[0])
    return torch.stack(out)


def dihedral(x, k: int, flip: bool):
    """One of the 8 square symmetries (a rotation by k*90° then an optional flip) of (..., H, W)."""
    import torch

    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def augment_pairs(images, masks, rng: np.random.Generator, idx):
    """The chosen windows with a random square symmetry each (few-shot data: 8x more views)."""
    import torch

    ims, ms = [], []
    for i in idx:
        k, f = int(rng.integers(4)), bool(rng.integers(2))
        ims.append(dihedral(images[i], k, f)), ms.append(dihedral(masks[i], k, f))
    return torch.stack(ims), torch.stack(ms)
