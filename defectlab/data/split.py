"""Few-shot splits: `shots` real defects per type for synthesis, the rest held out for testing.

The split is over images (record keys), so the support set and the held-out test set can never
share an image — unlike one published reference, which samples the support set from the test
folder without removing it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DefectlabError
from .records import Dataset, Record


@dataclass
class FewShotSplit:
    support: list[Record]  # real defects given to synthesis / training
    heldout: list[Record]  # real defects for testing only
    good_train: list[Record]
    good_test: list[Record]

    def test_records(self) -> list[Record]:
        return self.good_test + self.heldout


def few_shot_split(dataset: Dataset, category: str, shots: int, seed: int = 0,
                   good_test_fraction: float = 0.2, min_heldout: int = 1) -> FewShotSplit:
    """Pick `shots` defects per type with `np.random.default_rng(seed)`; hold out the rest.

    Good images: `train/good` for training and `test/good` for testing; when the data set has no
    test/good (Magnetic Tile) a `good_test_fraction` of the good images is held out instead."""
    if shots < 0:
        raise DefectlabError(f"shots must be >= 0, got {shots}")
    ds = dataset.filter(category=category)
    rng = np.random.default_rng(seed)
    support, heldout = [], []
    for dtype in ds.defect_types():
        recs = sorted(ds.filter(label=dtype).records, key=lambda r: r.key)
        if len(recs) < shots + min_heldout:
            raise DefectlabError(f"{dataset.root}: {category}/{dtype} has {len(recs)} defect images; "
                                 f"{shots} shots need at least {shots + min_heldout}")
        order = rng.permutation(len(recs))
        support += [recs[i] for i in order[:shots]]
        heldout += [recs[i] for i in order[shots:]]
    good_train = sorted(ds.filter(split="train", label="good").records, key=lambda r: r.key)
    good_test = sorted(ds.filter(split="test", label="good").records, key=lambda r: r.key)
    if not good_test:
        if len(good_train) < 2:
            raise DefectlabError(f"{dataset.root}: {category} has too few good images to hold some out")
        order = rng.permutation(len(good_train))
        n_test = max(1, int(round(good_test_fraction * len(good_train))))
        good_test = sorted((good_train[i] for i in order[:n_test]), key=lambda r: r.key)
        good_train = sorted((good_train[i] for i in order[n_test:]), key=lambda r: r.key)
    if not good_train:
        raise DefectlabError(f"{dataset.root}: {category} has no good training images")
    split = FewShotSplit(support, heldout, good_train, good_test)
    check_disjoint(split, dataset.root)
    return split


def check_support_masks(split: FewShotSplit, empty: list[Record], seed: int) -> None:
    """Refuse a split whose few-shot defects all have empty masks (`empty`, from `Dataset.check_defect_masks`):
    training would get no defect pixel at all."""
    from .records import name_files

    empty_keys = {r.key for r in empty}
    if split.support and all(r.key in empty_keys for r in split.support):
        raise DefectlabError(f"the few-shot defects given to training all have empty masks (seed {seed}: "
                             f"{name_files(r.mask_path for r in split.support)}); choose another seed or more shots")


def check_disjoint(split: FewShotSplit, root=None) -> None:
    """Every image (compared by key and by the real path of the file that is loaded) in one part of the
    split, once. A real check, not an `assert` (which `python -O` removes)."""
    import os

    seen: dict[str, str] = {}
    for part in ("support", "heldout", "good_train", "good_test"):
        for r in getattr(split, part):
            for ident in (r.key, os.path.realpath(r.image_path)):
                if ident in seen:
                    where = f"both the {seen[ident]} and the {part}" if seen[ident] != part else f"the {part} twice in"
                    raise DefectlabError(f"{r.image_path}: would be in {where} part of the split of {root} "
                                         "(the same image reached twice in the data set?)")
                seen[ident] = part
