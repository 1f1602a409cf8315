"""Turning a few-shot split into arrays a detector trains and is tested on, and synthetic pools.

Images keep their aspect ratio: each is resized so that its *long* side is the benchmark's `--size`
and padded with zeros (black) to a `size x size` canvas ("letterbox"), so a defect is never distorted
(Magnetic Tile's width/height ratio runs from 0.36 to 2.68). Synthetic defects go only inside the
image part of the canvas. For testing, an anomaly map is cropped back to the image part and resized
to `size x size`, where it is compared with the ground-truth mask resized the same way from full
resolution (`PreparedSplit.test_masks`): every test image weighs the same in the pixel metrics, and
the padding is never scored. A mask that nearest-neighbour resizing would erase (a hair-thin crack)
is kept by marking every pixel it touches.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import FewShotSplit, Record, foreground_for
from ..resize import resize_image, resize_mask
from ..progress import progress
from ..sample import Sample


def _bar(iterable, desc: str, show: bool):
    return progress(iterable, desc=desc) if show else iterable


def stable_id(name: str) -> int:
    """A per-name integer for seeding (`hash()` changes between interpreter runs)."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


Box = tuple[int, int, int, int]  # (top, left, height, width) of the image inside its canvas


def letterbox_box(shape: tuple[int, int], size: int) -> Box:
    """Where an image of `shape` lands on a `size x size` canvas: long side = `size`, centred."""
    h, w = shape
    scale = size / max(h, w)
    nh, nw = max(1, min(size, round(h * scale))), max(1, min(size, round(w * scale)))
    return ((size - nh) // 2, (size - nw) // 2, nh, nw)


def letterbox(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, Box]:
    """Aspect-preserving resize onto a zero-padded square canvas; the mask follows the image."""
    top, left, nh, nw = box = letterbox_box(image.shape[:2], size)
    canvas = np.zeros((size, size, image.shape[2]), np.float32)
    canvas_mask = np.zeros((size, size), bool)
    canvas[top:top + nh, left:left + nw] = resize_image(image, (nh, nw))
    canvas_mask[top:top + nh, left:left + nw] = resize_mask(mask, (nh, nw), keep_thin=True)
    return canvas, canvas_mask, box


def box_mask(box: Box, size: int) -> np.ndarray:
    """The image part of a canvas, as a bool mask."""
    top, left, nh, nw = box
    valid = np.zeros((size, size), bool)
    valid[top:top + nh, left:left + nw] = True
    return valid


def to_eval_frame(maps: np.ndarray, boxes: list[Box], size: int) -> np.ndarray:
    """Anomaly maps on canvases (N, size, size) -> the image parts, each resized (bilinear) to (size, size)."""
    out = np.empty((len(maps), size, size), np.float32)
    for i, (m, (top, left, nh, nw)) in enumerate(zip(maps, boxes)):
        crop = np.ascontiguousarray(m[top:top + nh, left:left + nw], np.float32)
        out[i] = resize_image(crop, size, interpolation="linear")
    return out


class ImageCache:
    """Loads each record once onto a `size x size` canvas (`keep_aspect`: letterbox, else squashed);
    grey or RGB is fixed by the first image read (or by `channels`: another category's images brought to the
    channel count of the one benchmarked, grey replicated or RGB averaged). `eval_mask(record)`: the ground
    truth for scoring."""

    def __init__(self, size: int, keep_aspect: bool = True, channels: int | None = None):
        self.size = size
        self.keep_aspect = keep_aspect
        self.channels: int | None = channels
        self._items: dict[str, tuple[np.ndarray, np.ndarray, Box, np.ndarray]] = {}

    def _entry(self, record: Record):
        if record.key not in self._items:
            img, mask = record.load()
            if self.channels is None:
                self.channels = img.shape[2]
            if img.shape[2] != self.channels:
                img = img.mean(axis=2, keepdims=True) if self.channels == 1 else np.repeat(img, 3, axis=2)
            eval_mask = resize_mask(mask, self.size, keep_thin=True)
            if self.keep_aspect:
                canvas, canvas_mask, box = letterbox(img, mask, self.size)
            else:
                canvas, canvas_mask, box = resize_image(img, self.size), eval_mask, (0, 0, self.size, self.size)
            self._items[record.key] = (canvas, canvas_mask, box, eval_mask)
        return self._items[record.key]

    def load(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        """(canvas image, canvas mask) of a record."""
        canvas, canvas_mask, _, _ = self._entry(record)
        return canvas, canvas_mask

    def box(self, record: Record) -> Box:
        return self._entry(record)[2]

    def eval_mask(self, record: Record) -> np.ndarray:
        """The full-resolution mask resized to (size, size): what anomaly maps are scored against."""
        return self._entry(record)[3]

    def eval_image(self, record: Record) -> np.ndarray:
        """The image part of the canvas resized to (size, size), aligned with `eval_mask` (for figures)."""
        canvas, _, (top, left, nh, nw), _ = self._entry(record)
        crop = canvas[top:top + nh, left:left + nw]
        return crop if crop.shape[:2] == (self.size, self.size) else resize_image(crop, self.size)


@dataclass
class PreparedSplit:
    goods: list[np.ndarray]  # defect-free training images (canvases)
    foregrounds: list[np.ndarray]  # where synthetic defects may go on each good image (never the padding)
    support: list[Sample]  # the few-shot real defects (training only)
    test_images: list[np.ndarray]  # good test images, then held-out defects (canvases)
    test_masks: list[np.ndarray]  # ground truth in the evaluation frame (see the module docstring)
    test_keys: list[str]
    test_labels: list[str]
    meta: dict = field(default_factory=dict)
    test_boxes: list[Box] = field(default_factory=list)  # image part of each test canvas
    size: int = 0
    test_canvas_masks: list[np.ndarray] = field(default_factory=list)  # masks aligned with test_images (canvases)

    @property
    def heldout_images(self) -> list[np.ndarray]:
        return [im for im, lab in zip(self.test_images, self.test_labels) if lab != "good"]

    def eval_maps(self, maps: np.ndarray) -> np.ndarray:
        """Anomaly maps predicted on the test canvases -> the evaluation frame of `test_masks`."""
        if not self.test_boxes:
            return np.asarray(maps, np.float32)
        return to_eval_frame(maps, self.test_boxes, self.size)


def prepare_split(split: FewShotSplit, cache: ImageCache, show_progress: bool = True) -> PreparedSplit:
    """Load every image of `split` onto its canvas; estimate each good image's foreground (inside the
    image part of the canvas only)."""
    goods, fgs = [], []
    for r in _bar(split.good_train, "good images", show_progress):
        img, _ = cache.load(r)
        goods.append(img)
        fgs.append(foreground_for(r, img) & box_mask(cache.box(r), cache.size))
    support = load_support(split.support, cache)
    test = split.test_records()
    loaded = [cache.load(r) for r in _bar(test, "test images", show_progress)]
    return PreparedSplit(goods, fgs, support, [im for im, _ in loaded], [cache.eval_mask(r) for r in test],
                         [r.key for r in test], [r.label for r in test],
                         {"good_train": len(goods), "support": len(support), "good_test": len(split.good_test),
                          "heldout": len(split.heldout), "keep_aspect": cache.keep_aspect},
                         [cache.box(r) for r in test], cache.size, [m for _, m in loaded])


def load_support(records: list[Record], cache: ImageCache) -> list[Sample]:
    """Real defects as `Sample`s on their canvases (`meta`: the record key as `source`, its `label`, and `real`,
    which a detector's training mix reads, `detect.mix`); a record whose mask is empty at this size is left out."""
    support = []
    for r in records:
        img, mask = cache.load(r)
        if mask.any():
            support.append(Sample(img, mask, {"source": r.key, "label": r.label, "real": True}))
    return support


def synthesize_pool(method, prepared: PreparedSplit, n: int, seed: int, name: str, tries: int = 5,
                    show_progress: bool = True, keep: str | Path | None = None) -> list[Sample]:
    """`n` synthetic defects on random good images, through the one loop `synth.batch.run_many` (`pick="random"`):
    item i uses `default_rng([seed, stable_id(name), i])` (`stable_id`: a SHA-256 of the name), so a pool is the
    same whatever else ran before it. A method that returns an empty mask (or refuses an image) is retried on
    another image a few times before the benchmark gives up. `meta["good_index"]`: the clean image under the
    defect (a denoising student's target).

    `keep`: a folder where each item is written as it is made (`{i:05d}.npz`, atomically) and read back on the next
    call instead of being made again, so an interrupted pool of a slow method (AdaBLDM: about a minute an image on
    a CPU) resumes with the same bytes."""
    from ..synth.batch import run_many

    kept = Path(keep) if keep is not None else None
    done = {i for i in range(n) if kept is not None and (kept / f"{i:05d}.npz").is_file()}
    pool = []
    for i, j, s in run_many(method, prepared.goods, n, [seed, stable_id(name)], foregrounds=prepared.foregrounds,
                            pick="random", tries=tries, name=name, desc=f"synthesise {name}",
                            show_progress=show_progress, skip=done.__contains__):
        if s is None:
            pool.append(read_pool_item(kept / f"{i:05d}.npz"))
            continue
        item = Sample(np.clip(np.asarray(s.image, np.float32), 0, 1), np.asarray(s.mask, bool), {**s.meta, "good_index": j})
        if kept is not None:
            write_pool_item(kept / f"{i:05d}.npz", item)
        pool.append(item)
    return pool


def write_pool_item(path: Path, item: Sample) -> None:
    """One kept pool item (`synthesize_pool(keep=...)`) as a compressed `.npz`: image, mask and JSON meta, atomically."""
    import io
    import json

    from ..imageio import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(buf, image=item.image, mask=item.mask,
                        meta=np.frombuffer(json.dumps(item.meta, default=str).encode(), np.uint8))
    atomic_write_bytes(path, buf.getvalue())


def read_pool_item(path: Path) -> Sample:
    """A kept pool item written by `write_pool_item`; a file that does not read is a `DefectlabError` naming it."""
    import json

    from ..errors import DefectlabError

    try:
        with np.load(path, allow_pickle=False) as z:
            return Sample(z["image"], z["mask"], json.loads(z["meta"].tobytes().decode()))
    except (OSError, ValueError, KeyError) as exc:
        raise DefectlabError(f"{path}: not a readable kept pool item ({exc}); delete it to make it again") from exc
