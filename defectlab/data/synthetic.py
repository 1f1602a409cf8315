"""On-the-fly synthesis as a torch building block: good images in, `(image, mask, label, meta)` out.

    from torch.utils.data import DataLoader
    from defectlab.data import SyntheticDefects, build_embedded

    goods = build_embedded().filter(category="washer", split="train", label="good")
    data = SyntheticDefects(goods, {"draem": 2, "cutpaste": 1}, p_good=0.5, seed=0, size=256)
    loader = DataLoader(data, batch_size=8, shuffle=True, num_workers=2)
    for epoch in range(10):
        data.set_epoch(epoch)            # before iterating (workers copy the data set when they start)
        for image, mask, label, meta in loader:
            ...                          # image (B, C, H, W) float in [0, 1], mask (B, H, W) float 0/1

- Item `i` is made on good image `i % len(goods)` with `np.random.default_rng([seed, epoch, i])`: the same
  `(seed, epoch, index)` gives the same bytes whatever the number of DataLoader workers or the order the
  sampler asks in. No global random state is read or changed.
- With probability `p_good` an item is the good image itself (empty mask, label 0); otherwise one method,
  drawn by `weights`, synthesises a defect (label 1). A method that refuses an image or returns an empty
  mask is retried on another good image (`tries` times in all).
- Learned methods (`needs_fit`) are fitted once, in the process that builds the data set (pass the few-shot
  `defects`); the workers receive fitted copies.
- `transform`: a torchvision v2 transform applied after synthesis to the image and the mask together
  (`tv_tensors.Image`, `tv_tensors.Mask`), so geometric transforms keep them aligned. Its randomness comes
  from the item's generator (inside `torch.random.fork_rng`, so the global torch state is left as it was).
  The label is recomputed from the transformed mask (a crop may cut the defect out).
- `SyntheticStream`: the iterable variant, an endless (or `stop`-bounded) stream of items whose good
  image is drawn at random; give it the DataLoader's batch size so the order does not depend on workers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import DefectlabError
from ..sample import Sample, as_image, as_mask
from . import foreground_for
from .records import Dataset, Record


class Pool:
    """Pre-made defective `Sample`s as a "method": each call returns one of them, drawn with `rng`
    (the good image it is called on is ignored). Lets a detector mix a fixed pool with on-the-fly synthesis."""

    name = "pool"

    def __init__(self, samples: Sequence[Sample]):
        if not samples:
            raise DefectlabError("Pool: no samples")
        self.samples = list(samples)

    def __call__(self, image, rng, *, foreground=None, mask=None) -> Sample:
        s = self.samples[int(rng.integers(len(self.samples)))]
        return Sample(s.image, s.mask, {"source": "pool", **dict(s.meta)})


def _match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[2] == channels:
        return image
    return image.mean(axis=2, keepdims=True) if channels == 1 else np.repeat(image, 3, axis=2)


def _good_sources(goods, foregrounds) -> list:
    """A folder, a `Dataset`, records or arrays -> a list of `Record`s or float images."""
    from ..imageio import IMAGE_SUFFIXES

    if isinstance(goods, (str, Path)):
        folder = Path(goods)
        if not folder.is_dir():
            raise DefectlabError(f"{folder}: good-image folder not found")
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            raise DefectlabError(f"{folder}: no images found")
        goods = [Record(folder.name, "train", "good", p.stem, p) for p in files]
    goods = list(goods.records if isinstance(goods, Dataset) else goods)
    if not goods:
        raise DefectlabError("SyntheticDefects: no good images")
    if isinstance(goods[0], Record):
        bad = [r.key for r in goods if r.is_defect]
        if bad:
            raise DefectlabError(f"SyntheticDefects: {len(bad)} defective record(s) among the good images (e.g. {bad[0]}); "
                                 "pass dataset.filter(split='train', label='good')")
    else:
        goods = [as_image(g, f"goods[{i}]") for i, g in enumerate(goods)]
    if isinstance(foregrounds, str) and foregrounds != "auto":
        raise DefectlabError(f"SyntheticDefects: foregrounds must be 'auto', None or a list of masks, got {foregrounds!r}")
    if not isinstance(foregrounds, str) and foregrounds is not None and len(foregrounds) != len(goods):
        raise DefectlabError(f"SyntheticDefects: {len(foregrounds)} foregrounds for {len(goods)} good images")
    return goods


class SyntheticDefects(TorchDataset):
    """Map-style data set of synthetic defects made on the fly (see the module docstring).

    goods: a folder of images, a `defectlab.data.Dataset` of good records (an `open_dataset(...)` split or
        `build_embedded().filter(...)`), a list of `Record`s, or a list of float images.
    methods: a method name, a method object, a list of them, or a mapping {method: weight}.
    weights: relative weights of the methods (default equal; ignored when `methods` is a mapping).
    p_good: probability that an item is the unchanged good image.
    seed: with the epoch and the index, seeds every item.
    length: items per epoch (default: one per good image; index i uses good i % len(goods)).
    size: resize every good image (and foreground) to size x size; None keeps the sizes as read.
    channels: 1 or 3 to convert every image (default: the first image's count).
    foregrounds: "auto" (records of object categories: estimated; otherwise everywhere), None, or a list of
        bool masks, one per good image; passed to the methods as `foreground=`.
    defects: few-shot real defects (`Sample`s) for fitting learned methods that are not fitted yet.
    transform: torchvision v2 transform called as `transform(tv_tensors.Image, tv_tensors.Mask)`.
    preload: read every image once at construction (default); False reads files per item.
    tries: attempts (on other good images) before an item fails with a `DefectlabError`.
    """

    def __init__(self, goods, methods, *, weights: Sequence[float] | None = None, p_good: float = 0.5,
                 seed: int = 0, length: int | None = None, size: int | None = None, channels: int | None = None,
                 foregrounds="auto", defects: Sequence[Sample] = (), transform: Callable | None = None,
                 preload: bool = True, tries: int = 5):
        if not 0 <= p_good <= 1:
            raise DefectlabError(f"SyntheticDefects: p_good must lie in [0, 1], got {p_good}")
        if channels not in (None, 1, 3):
            raise DefectlabError(f"SyntheticDefects: channels must be 1 or 3, got {channels}")
        if tries < 1:
            raise DefectlabError(f"SyntheticDefects: tries must be >= 1, got {tries}")
        self.seed, self.epoch, self.p_good, self.size, self.tries = int(seed), 0, float(p_good), size, int(tries)
        self.transform, self.channels = transform, channels
        self.goods = _good_sources(goods, foregrounds)
        self.channels = self._good(0).shape[2]
        self.foregrounds = None if isinstance(foregrounds, str) else foregrounds
        records = self.goods if isinstance(self.goods[0], Record) else None
        # "auto" on records: estimated now (preload) or per item from the image read (no preload)
        self.auto_records = records if foregrounds == "auto" else None
        if preload or records is None:  # arrays are in memory already: size and channels fixed once
            self.goods = [self._good(i) for i in range(len(self.goods))]
            if self.auto_records:
                self.foregrounds = [foreground_for(r, img) for r, img in zip(self.auto_records, self.goods)]
                self.auto_records = None
        if self.foregrounds is not None:
            self.foregrounds = [self._sized_mask(f, f"SyntheticDefects: foregrounds[{i}]")
                                for i, f in enumerate(self.foregrounds)]
        self.length = len(self.goods) if length is None else int(length)
        if self.length < 1:
            raise DefectlabError(f"SyntheticDefects: length must be >= 1, got {self.length}")
        self.methods, self.method_names, self.weights = self._methods(methods, weights)
        self._fit_learned(defects)

    # ------------------------------------------------------------------------------ construction
    def _good(self, i: int) -> np.ndarray:
        """Good image i, read if needed, resized to `size` and converted to `channels`."""
        from ..resize import resize_image

        g = self.goods[i]
        img = g.image() if isinstance(g, Record) else g
        if self.size is not None and img.shape[:2] != (self.size, self.size):
            img = resize_image(img, self.size)
        if self.channels is None:
            self.channels = img.shape[2]
        return _match_channels(img, self.channels)

    def _sized_mask(self, fg, what: str):
        """A foreground as bool (checked: no NaN, not empty), resized like the images."""
        from ..masks import foreground_or_all
        from ..resize import resize_mask

        fg = foreground_or_all(fg, np.shape(fg)[:2], what)
        if self.size is not None and fg.shape != (self.size, self.size):
            fg = resize_mask(fg, self.size)
        return fg

    @staticmethod
    def _methods(methods, weights):
        from ..methods import create

        if isinstance(methods, Mapping):
            methods, weights = list(methods.keys()), list(methods.values())
        elif isinstance(methods, (str, Pool)) or callable(methods):
            methods = [methods]
        methods = list(methods)
        if not methods:
            raise DefectlabError("SyntheticDefects: no synthesis method")
        built = [create(m) if isinstance(m, str) else m for m in methods]
        names = [m if isinstance(m, str) else getattr(m, "name", type(m).__name__) for m in methods]
        for n, m in zip(names, built):
            if getattr(m, "family", None) == "feature":
                raise DefectlabError(f"SyntheticDefects: {n!r} perturbs features, not pixels; "
                                     "its samples are the unchanged image (use its score() as a detector)")
        w = np.ones(len(built)) if weights is None else np.asarray(weights, float)
        if w.shape != (len(built),) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise DefectlabError(f"SyntheticDefects: weights must be {len(built)} non-negative numbers with a positive sum, "
                                 f"got {weights}")
        return built, names, w / w.sum()

    def _fit_learned(self, defects):
        todo = [(n, m) for n, m in zip(self.method_names, self.methods)
                if getattr(m, "needs_fit", False) and not getattr(m, "fitted", False)]
        if not todo:
            return
        if not isinstance(self.goods[0], np.ndarray):
            raise DefectlabError(f"SyntheticDefects: fitting {todo[0][0]!r} needs preload=True (or fit it first)")
        for k, (name, method) in enumerate(todo):
            method.fit(self.goods, list(defects), np.random.default_rng([self.seed, 2**31 + k]),
                       foregrounds=self.foregrounds)

    # ----------------------------------------------------------------------------------- items
    def set_epoch(self, epoch: int) -> None:
        """Items of another epoch are other draws. Call before iterating a DataLoader over this data set."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        index = int(index) % self.length
        return self.item(index, index % len(self.goods))

    def item(self, index: int, good: int | None = None, epoch: int | None = None):
        """Item `index` of `epoch` (default: the current one) on good image `good` (None: drawn at random)."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch, index])
        if good is None:
            good = int(rng.integers(len(self.goods)))
        if rng.random() < self.p_good:
            img = self._image(good)
            sample, name = Sample(img, np.zeros(img.shape[:2], bool), {}), ""
        else:
            k = int(rng.choice(len(self.methods), p=self.weights))
            sample, name = self._synthesise(k, good, rng), self.method_names[k]
            good = sample.meta.pop("_good")  # a retry may have moved to another good image
        image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))
        mask = torch.from_numpy(sample.mask.astype(np.float32))
        if self.transform is not None:
            image, mask = self._transformed(image, mask, rng)
        label = torch.tensor(int(bool(mask.any())))
        meta = {"index": index, "epoch": epoch, "good": good, "method": name,
                "params": json.dumps(sample.meta, sort_keys=True, default=str)}
        return image, mask, label, meta

    def _image(self, i: int) -> np.ndarray:
        return self.goods[i] if isinstance(self.goods[i], np.ndarray) else self._good(i)

    def _foreground(self, i: int, image: np.ndarray) -> np.ndarray | None:
        if self.foregrounds is not None:
            return self.foregrounds[i]
        return None if self.auto_records is None else foreground_for(self.auto_records[i], image)

    def _synthesise(self, k: int, good: int, rng: np.random.Generator) -> Sample:
        method, name = self.methods[k], self.method_names[k]
        last = None
        for attempt in range(self.tries):
            if attempt:
                good = int(rng.integers(len(self.goods)))
            img = self._image(good)
            fg = self._foreground(good, img)
            try:
                s = method(img, rng, foreground=fg)
            except DefectlabError as exc:
                last = exc
                continue
            out = _match_channels(as_image(s.image, f"{name} image"), self.channels)
            mask = as_mask(s.mask, img.shape[:2], f"{name} mask")
            if out.shape[:2] != img.shape[:2]:
                raise DefectlabError(f"{name}: returned a {out.shape[:2]} image for a {img.shape[:2]} good image")
            if mask.any():
                return Sample(np.clip(out, 0, 1), mask, {**dict(s.meta), "_good": good})
        raise DefectlabError(f"synthesis method {name!r} produced no defect in {self.tries} tries"
                             + (f" (last error: {last})" if last else ""))

    def _transformed(self, image, mask, rng):
        from torchvision import tv_tensors

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(0, 2**63 - 1)))  # inside fork_rng: restored on exit
            image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


class SyntheticStream(IterableDataset):
    """Iterable variant: item k of the stream is `data.item(start + k, good=None)` (a random good image).

    batch_size: the DataLoader's batch size. Worker w makes the chunks of `batch_size` items numbered
        w, w + W, ... (W workers), which is the order the DataLoader returns them in, so the stream is the
        same with any number of workers.
    stop: number of items (None: endless). `set_epoch` sets the epoch of the wrapped data set."""

    def __init__(self, data: SyntheticDefects, batch_size: int = 1, start: int = 0, stop: int | None = None):
        if batch_size < 1:
            raise DefectlabError(f"SyntheticStream: batch_size must be >= 1, got {batch_size}")
        self.data, self.batch_size, self.start, self.stop = data, int(batch_size), int(start), stop

    def set_epoch(self, epoch: int) -> None:
        self.data.set_epoch(epoch)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        chunk = worker
        while True:
            for k in range(chunk * self.batch_size, (chunk + 1) * self.batch_size):
                if self.stop is not None and k >= self.stop:
                    return
                yield self.data.item(self.start + k)
            chunk += workers


def synthetic_loader(data: SyntheticDefects, batch_size: int, rng: np.random.Generator, *, workers: int = 0,
                     **loader_kwargs):
    """A shuffled `DataLoader` over `data` whose order comes from `rng` (so the batches are the same bytes
    for the same `rng` whatever `workers` is). Extra keyword arguments go to `DataLoader`."""
    from torch.utils.data import DataLoader, RandomSampler

    from ..sample import torch_generator

    if workers < 0:
        raise DefectlabError(f"synthetic_loader: workers must be >= 0, got {workers}")
    sampler = RandomSampler(data, generator=torch_generator(rng))
    return DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=workers, **loader_kwargs)
