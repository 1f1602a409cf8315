"""The Magnetic Tile defect data set (Huang et al. 2020) in its raw layout.

`MT_<Type>/Imgs/<name>.jpg` with the mask `<name>.png` beside it (defect = value > 127; a few
masks are empty). Types: Blowhole, Break, Crack, Fray, Uneven, and Free (defect-free). The raw
set has no train/test split: good (Free) images are returned as `train/good`, defects as
`test/<type>`; `few_shot_split` holds out part of the good images for testing.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DefectlabError
from .records import Dataset, Record

CATEGORY = "magnetic_tile"
DEFECT_TYPES = ("Blowhole", "Break", "Crack", "Fray", "Uneven")


def read_magnetic_tile(root: str | Path, include_empty_masks: bool = False) -> Dataset:
    """Read the raw layout. Defect images whose mask is empty are skipped unless `include_empty_masks`
    (an empty mask cannot be evaluated at pixel level nor copied)."""
    from ..imageio import existing_file, read_mask

    root = Path(root)
    if not root.is_dir():
        raise DefectlabError(f"{root}: Magnetic Tile folder not found")
    type_dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("MT_"))
    if not type_dirs:
        raise DefectlabError(f"{root}: no MT_<Type> folders (expected the raw Magnetic Tile layout)")
    records = []
    for tdir in type_dirs:
        kind = tdir.name[3:]
        imgs = tdir / "Imgs"
        if not imgs.is_dir():
            raise DefectlabError(f"{imgs}: missing Imgs folder")
        for jpg in sorted(p for p in imgs.glob("*.jpg") if existing_file(p)):
            mask = jpg.with_suffix(".png")
            if not existing_file(mask):
                raise DefectlabError(f"{jpg}: mask {mask.name} not found beside it")
            if kind == "Free":
                records.append(Record(CATEGORY, "train", "good", jpg.stem, jpg, None))
                continue
            if not include_empty_masks and not read_mask(mask).any():
                continue
            records.append(Record(CATEGORY, "test", kind, jpg.stem, jpg, mask))
    if not records:
        raise DefectlabError(f"{root}: no images found in the Magnetic Tile layout")
    return Dataset(root, records, "magnetic_tile").check_unique()
