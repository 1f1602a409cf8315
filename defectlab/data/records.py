"""A data set is a list of records: one image, its mask file (if any), and where it belongs."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DefectlabError
from ..imageio import image_size, peak_deep_value, read_image, read_mask

NAMED_FILES = 5  # a warning or a note names this many files, then counts the rest


def name_files(names) -> str:
    """"a, b, c" for a few names, "a, b, ... and 7 more" for many."""
    names = [str(n) for n in names]
    more = f" and {len(names) - NAMED_FILES} more" if len(names) > NAMED_FILES else ""
    return ", ".join(names[:NAMED_FILES]) + more


@dataclass(frozen=True)
class Record:
    category: str
    split: str  # "train" | "test"
    label: str  # "good" or a defect type
    name: str  # file stem, unique within (category, split, label)
    image_path: Path
    mask_path: Path | None = None
    mask_threshold: int = 127  # mask = value > threshold (VisA and KSDD2 use 0)
    levels: int | None = None  # full scale of a 16-bit image: the data set's bit depth (`Dataset.with_bit_depth`)

    @property
    def key(self) -> str:
        return f"{self.category}/{self.split}/{self.label}/{self.name}"

    @property
    def is_defect(self) -> bool:
        return self.label != "good"

    def image(self) -> np.ndarray:
        return read_image(self.image_path, self.levels)

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

    def with_bit_depth(self) -> "Dataset":
        """The data set with its 16-bit images read on the scale their values use: 2^k - 1 for the smallest k
        that covers the largest value of any of them (a 12-bit camera's PNGs: 4095), with a warning saying so.
        One scale for the whole data set, never one per image, which would brighten a dark image. Only the
        headers of 8-bit files are read."""
        peak = peak_deep_value(r.image_path for r in self.records)
        if peak is None or peak > 32767:
            return self
        bits = max(1, peak.bit_length())
        levels = 2 ** bits - 1
        warnings.warn(f"{self.root}: 16-bit images hold values up to {peak}: read as {bits}-bit (0..{levels}), one "
                      "scale for the whole data set so that its images stay comparable", stacklevel=2)
        return Dataset(self.root, [replace(r, levels=levels) for r in self.records], self.format)

    def check_files(self, category: str | None = None) -> list[Record]:
        """Decode every image (of `category`) and read each defect mask against its image's size, so that a
        non-image, truncated or zero-byte file or a mask of the wrong size is an error before anything is written;
        then `check_defect_masks`, whose list of defect records with empty masks it returns."""
        for r in self.records:
            if category in (None, r.category):
                image_size(r.image_path)
        return self.check_defect_masks(category)

    def check_defect_masks(self, category: str | None = None) -> list[Record]:
        """Read every defect mask (of `category`, against its image's size); a data set whose defect masks are all
        empty is an error (a mask convention defectlab did not understand), not one without defects. Some empty
        (Magnetic Tile has such files) are named in a warning. Returns the defect records whose mask is empty."""
        defects = [r for r in self.records if r.is_defect and category in (None, r.category)]
        empty = [r for r in defects if not r.mask(image_size(r.image_path)).any()]
        where = f"{category} in {self.root}" if category else str(self.root)
        if defects and len(empty) == len(defects):
            raise DefectlabError(f"{empty[0].mask_path}: this and all other {len(defects)} defect masks of {where} "
                                 "are empty; check the mask convention (0/255 or 0/1) and the mask paths")
        if empty:
            warnings.warn(f"{len(empty)} of {len(defects)} defect masks of {where} are empty: "
                          f"{name_files(r.mask_path for r in empty)}", stacklevel=2)
        return empty

    def summary(self) -> dict[str, dict[str, int]]:
        """{category: {"train/good": n, "test/<label>": n, ...}}"""
        out: dict[str, dict[str, int]] = {}
        for r in self.records:
            d = out.setdefault(r.category, {})
            k = f"{r.split}/{r.label}"
            d[k] = d.get(k, 0) + 1
        return out

    def summary_table(self) -> str:
        """`summary()` as a Markdown table: one row per category, the good images of each split, the defects by type."""
        lines = ["| category | train good | test good | test defects |", "|---|---:|---:|---|"]
        for category, counts in self.summary().items():
            defects = ", ".join(f"{k.split('/', 1)[1]} {n}" for k, n in sorted(counts.items())
                                if not k.endswith("/good"))
            lines.append(f"| {category} | {counts.get('train/good', 0)} | {counts.get('test/good', 0)} | {defects or '–'} |")
        return "\n".join(lines)
