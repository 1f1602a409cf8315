"""Images per second of every hand-crafted method at 256 x 256 RGB, one process, one OpenCV thread.

    python benchmarks/synth_speed.py [--n 100] [--size 256] [--rounds 5]

Side by side in the same run:
- reference: a DRAEM-style per-sample path written after DRAEM's public data loader (anomalib is not
  installed here, so its generator is not timed): the anomaly texture is read from disk and resized
  for every sample, Perlin noise by the original float64 `np.repeat` tiling, 3 of DRAEM's augmenters
  through PIL, full-image float blends;
- floor: a plain numpy masked blend of two in-memory images (`np.where(mask, texture, image)`), the
  least any paste-type method must do.
`copypaste (poisson)` is copy-paste with gradient-domain (OpenCV seamlessClone) blending. The comparison
with anomalib itself is `benchmarks/anomalib_compare.py` (`make anomalib-bench`).
Goals: every method >= 5x the reference and <= 3x the floor's time per image. Writes
benchmarks/results/synth_speed.json.
"""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import cv2
import numpy as np

import defectlab
from defectlab import Sample, masks
from defectlab.bench import time_call, write_result
from defectlab.synth.handcrafted.anomaly_source import SKIMAGE_PHOTOS, get_source, texture_for

OUT = Path(__file__).resolve().parent / "results" / "synth_speed.json"
METHODS = ["cutpaste", "cutpaste_scar", "bezier", "draem", "memseg", "glass_local", "copypaste", "copypaste (poisson)"]
VARIANTS = {"copypaste (poisson)": ("copypaste", {"blend": "poisson"})}  # label -> (method, parameters)


def goods(size: int, k: int = 4) -> list[np.ndarray]:
    from skimage import data

    photos = [data.coffee(), data.astronaut(), data.rocket(), data.chelsea()][:k]
    return [cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255 for p in photos]


def throughput(fn, n: int, rounds: int) -> float:
    """Best-of-`rounds` images per second of fn(i) for i in range(n) (after one warm-up call)."""
    fn(0)
    return n / time_call(lambda: [fn(i) for i in range(n)], warmup=0, repeats=rounds)["min"]


# ---------------------------------------------------------------- DRAEM-style reference path
def _ref_perlin(shape, res, rng):
    """DRAEM's rand_perlin_2d_np, float64, tiled gradients by np.repeat (shape divisible by res)."""
    delta = (res[0] / shape[0], res[1] / shape[1])
    d = (shape[0] // res[0], shape[1] // res[1])
    grid = np.mgrid[0:res[0]:delta[0], 0:res[1]:delta[1]].transpose(1, 2, 0) % 1
    angles = 2 * math.pi * rng.random((res[0] + 1, res[1] + 1))
    gradients = np.stack((np.cos(angles), np.sin(angles)), axis=-1)

    def tile(s1, s2):
        return np.repeat(np.repeat(gradients[s1[0]:s1[1], s2[0]:s2[1]], d[0], axis=0), d[1], axis=1)

    def dot(grad, shift):
        g = grid[:shape[0], :shape[1]]
        return (np.stack((g[..., 0] + shift[0], g[..., 1] + shift[1]), axis=-1) * grad[:shape[0], :shape[1]]).sum(axis=-1)

    n00 = dot(tile([0, -1], [0, -1]), [0, 0])
    n10 = dot(tile([1, None], [0, -1]), [-1, 0])
    n01 = dot(tile([0, -1], [1, None]), [0, -1])
    n11 = dot(tile([1, None], [1, None]), [-1, -1])
    t = 6 * grid[:shape[0], :shape[1]] ** 5 - 15 * grid[:shape[0], :shape[1]] ** 4 + 10 * grid[:shape[0], :shape[1]] ** 3
    lerp = lambda a, b, w: (b - a) * w + a  # noqa: E731
    return math.sqrt(2) * lerp(lerp(n00, n10, t[..., 0]), lerp(n01, n11, t[..., 0]), t[..., 1])


def _ref_augmenters():
    from PIL import Image, ImageEnhance, ImageOps

    def pil(f):
        return lambda a, rng: np.asarray(f(Image.fromarray(a), rng))

    return [
        lambda a, rng: np.clip(255 * (a / 255.0) ** rng.uniform(0.5, 2.0, 3), 0, 255).astype(np.uint8),
        lambda a, rng: np.clip(a * rng.uniform(0.8, 1.2) + rng.uniform(-30, 30), 0, 255).astype(np.uint8),
        pil(lambda im, rng: ImageEnhance.Sharpness(im).enhance(rng.uniform(0, 2))),
        pil(lambda im, rng: ImageEnhance.Color(im).enhance(rng.uniform(0.5, 1.5))),
        pil(lambda im, rng: ImageOps.solarize(im, int(rng.uniform(32, 128))) if rng.random() < 0.5 else im),
        pil(lambda im, rng: ImageOps.posterize(im, int(rng.integers(1, 9)))),
        pil(lambda im, rng: ImageOps.invert(im)),
        pil(lambda im, rng: ImageOps.autocontrast(im, cutoff=rng.uniform(0, 20))),
        pil(lambda im, rng: ImageOps.equalize(im)),
        pil(lambda im, rng: im.rotate(rng.uniform(-45, 45))),
    ]


class DraemReference:
    """DRAEM's per-sample augment_image, imgaug-free (PIL), texture files read from disk each time."""

    def __init__(self, folder: Path, size: int):
        self.files = sorted(folder.glob("*.jpg"))
        self.size = size
        self.augs = _ref_augmenters()

    def __call__(self, image: np.ndarray, rng: np.random.Generator):
        s = self.size
        tex = cv2.cvtColor(cv2.imread(str(self.files[rng.integers(len(self.files))])), cv2.COLOR_BGR2RGB)
        tex = cv2.resize(tex, (s, s))
        for k in rng.choice(len(self.augs), 3, replace=False):
            tex = self.augs[k](tex, rng)
        res = (2 ** int(rng.integers(0, 6)), 2 ** int(rng.integers(0, 6)))
        noise = _ref_perlin((s, s), res, rng)
        noise = masks.rotate_array(noise, rng.uniform(-90, 90))  # imgaug's Affine runs cv2.warpAffine too
        thr = np.where(noise > 0.5, 1.0, 0.0)[:, :, None]
        img_thr = tex.astype(np.float32) * thr / 255.0
        beta = rng.random() * 0.8
        out = image * (1 - thr) + (1 - beta) * img_thr + beta * image * thr
        return out.astype(np.float32), thr[:, :, 0].astype(np.float32)


def write_reference_textures(folder: Path) -> None:
    import skimage.data

    for name in SKIMAGE_PHOTOS:
        a = getattr(skimage.data, name)()
        a = cv2.cvtColor(a, cv2.COLOR_GRAY2BGR) if a.ndim == 2 else cv2.cvtColor(a[:, :, :3], cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"{name}.jpg"), a)


# ---------------------------------------------------------------- run
def build(label: str, size: int):
    name, params = VARIANTS.get(label, (label, {}))
    method = defectlab.create(name, **params)
    if getattr(method, "needs_fit", False):
        src = goods(size, 4)[3]
        mask = masks.bezier_clump((size, size), np.random.default_rng(1), radius=(0.08, 0.08))
        method.fit([], [Sample(src, mask)], np.random.default_rng(0))
    return method


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="images per timing round")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=OUT, help="JSON file to write")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    imgs = goods(args.size)
    n, rounds, size = args.n, args.rounds, args.size
    pick = lambda i: imgs[i % len(imgs)]  # noqa: E731

    tex = [np.ascontiguousarray(imgs[(k + 1) % len(imgs)][::-1]) for k in range(len(imgs))]
    floor_masks = [masks.perlin_mask((size, size), np.random.default_rng(k)) for k in range(len(imgs))]
    floor = throughput(lambda i: np.where(floor_masks[i % 4][:, :, None], tex[i % 4], pick(i)), n * 5, rounds)

    with tempfile.TemporaryDirectory() as d:
        write_reference_textures(Path(d))
        ref = DraemReference(Path(d), size)
        reference = throughput(lambda i: ref(pick(i), np.random.default_rng([0, i])), n, rounds)

    src = get_source()
    for k in range(len(src.names)):  # decode the offline photos once, as any long run would
        src.photo(k)
    parts = {
        "perlin_mask": throughput(lambda i: masks.perlin_mask((size, size), np.random.default_rng([0, i])), n, rounds),
        "texture_for (full image)": throughput(lambda i: texture_for(src, (size, size), 3, np.random.default_rng([0, i])), n, rounds),
    }
    rows = []
    for name in METHODS:
        method = build(name, size)
        ips = throughput(lambda i: method(pick(i), np.random.default_rng([0, i])), n, rounds)
        rows.append({"method": name, "images_per_s": ips, "speedup_vs_reference": ips / reference,
                     "times_floor": floor / ips, "goal_5x_reference": ips >= 5 * reference, "goal_3x_floor": floor / ips <= 3})

    print(f"{size}x{size} RGB, single process, cv2 threads 1; best of {rounds} rounds of {n} images\n")
    print(f"{'path':28s} {'img/s':>9s} {'x reference':>12s} {'x floor time':>13s}  goals (>=5x ref, <=3x floor)")
    print(f"{'floor (np.where blend)':28s} {floor:9.0f} {floor / reference:12.1f} {1.0:13.2f}")
    print(f"{'reference (DRAEM-style)':28s} {reference:9.1f} {1.0:12.1f} {floor / reference:13.1f}")
    for r in rows:
        flags = f"{'met' if r['goal_5x_reference'] else 'MISSED'} / {'met' if r['goal_3x_floor'] else 'MISSED'}"
        print(f"{r['method']:28s} {r['images_per_s']:9.0f} {r['speedup_vs_reference']:12.1f} {r['times_floor']:13.1f}  {flags}")
    print("\ncomponents:", ", ".join(f"{k} {v:.0f} img/s" for k, v in parts.items()))
    result = {"size": size, "n": n, "rounds": rounds, "cv2_threads": 1, "floor_images_per_s": floor,
              "reference_images_per_s": reference, "reference": "DRAEM-style per-sample path (anomalib not installed)",
              "methods": rows, "components_images_per_s": parts}
    write_result(args.out, result, argv=argv)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
