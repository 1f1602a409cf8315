"""A data set is a list of records: one image, its mask file (if any), and where it belongs."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DefectlabError
from ..imageio import read_image, read_mask


@dataclass(frozen=True)
class Record:
    category: str
    split: str  # "train" | "test"
    label: str  # "good" or a defect type
    name: str  # file stem, unique within (category, split, label)
    image_path: Path
    mask_path: Path | None = None
    mask_threshold: int = 127  # mask = value > threshold (VisA and KSDD2 use 0)

    @property
    def key(self) -> str:
        return f"{self.category}/{self.split}/{self.label}/{self.name}"

    @property
    def is_defect(self) -> bool:
        return self.label != "good"

    def image(self) -> np.ndarray:
        return read_image(self.image_path)

    def mask(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Bool mask; all False for good images. `shape` checks the size against the image."""
        if self.mask_path is None:
            if shape is None:
                shape = self.image().shape[:2]
            return np.zeros(shape[:2], bool)
        return read_mask(self.mask_path, shape, threshold=self.mask_threshold)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(image, mask), the mask's size checked against the image's."""
        img = self.image()
        return img, self.mask(img.shape[:2])


@dataclass
class Dataset:
    root: Path
    records: list[Record] = field(default_factory=list)
    format: str = "mvtec"

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, i: int) -> Record:
        return self.records[i]

    def categories(self) -> list[str]:
        return sorted({r.category for r in self.records})

    def defect_types(self, category: str | None = None) -> list[str]:
        return sorted({r.label for r in self.records if r.is_defect and category in (None, r.category)})

    def filter(self, category: str | None = None, split: str | None = None, label: str | None = None,
               defect: bool | None = None) -> "Dataset":
        if category is not None and category not in self.categories():
            raise DefectlabError(f"{self.root}: unknown category {category!r}; found: {', '.join(self.categories()) or 'none'}")
        keep = [r for r in self.records
                if category in (None, r.category) and split in (None, r.split) and label in (None, r.label)
                and (defect is None or r.is_defect == defect)]
        return Dataset(self.root, keep, self.format)

    def check_unique(self) -> "Dataset":
        """Refuse two records with one key (e.g. `a.png` and `a.jpg` in one folder) or one image file
        reached twice (a listed duplicate, a symbolic link): either could put one image on both sides
        of a split, or count it twice. Returns the data set."""
        keys: dict[str, Record] = {}
        files: dict[str, Record] = {}
        for r in self.records:
            if r.key in keys:
                raise DefectlabError(f"{r.image_path} and {keys[r.key].image_path}: both are record {r.key} "
                                     "(file names must differ by more than their extension)")
            keys[r.key] = r
            real = os.path.realpath(r.image_path)
            if real in files:
                raise DefectlabError(f"{r.image_path}: the same image file is reached twice, as {files[real].key} "
                                     f"and {r.key}")
            files[real] = r
        return self

    def check_defect_masks(self, category: str | None = None) -> int:
        """Read every defect mask (of `category`); a data set whose defect masks are all empty is an error
        (a mask convention defectlab did not understand), not one without defects. Returns how many are empty."""
        defects = [r for r in self.records if r.is_defect and category in (None, r.category)]
        empty = [r for r in defects if not r.mask().any()]
        if defects and len(empty) == len(defects):
            where = f"{category} in {self.root}" if category else str(self.root)
            raise DefectlabError(f"{empty[0].mask_path}: this and all other {len(defects)} defect masks of {where} "
                                 "are empty; check the mask convention (0/255 or 0/1) and the mask paths")
        return len(empty)

    def summary(self) -> dict[str, dict[str, int]]:
        """{category: {"train/good": n, "test/<label>": n, ...}}"""
        out: dict[str, dict[str, int]] = {}
        for r in self.records:
            d = out.setdefault(r.category, {})
            k = f"{r.split}/{r.label}"
            d[k] = d.get(k, 0) + 1
        return out
