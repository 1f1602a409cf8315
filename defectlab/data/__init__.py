"""Data sets: readers for the public layouts, the embedded default set, splits, foreground, writer."""
from .folders import FORMATS, detect_format, open_dataset, read_btad, read_ksdd2, read_mvtec, read_visa
from .foreground import estimate_foreground, is_object_category
from .magnetic_tile import read_magnetic_tile
from .records import Dataset, Record
from .split import FewShotSplit, few_shot_split
from .writer import DatasetWriter, read_manifest


def build_embedded(*args, **kwargs) -> Dataset:
    """The embedded default data set (see `defectlab.data.embedded`)."""
    from .embedded import build_embedded as build

    return build(*args, **kwargs)


def foreground_for(record: Record, image=None):
    """Foreground of a record's image: object categories are estimated, textures are everywhere."""
    image = record.image() if image is None else image
    return estimate_foreground(image, "object" if is_object_category(record.category) else "texture")


__all__ = ["Dataset", "Record", "DatasetWriter", "FewShotSplit", "FORMATS", "build_embedded", "detect_format",
           "Pool", "SyntheticDefects", "SyntheticStream", "synthetic_loader", "estimate_foreground", "few_shot_split", "foreground_for", "is_object_category", "open_dataset",
           "read_btad", "read_ksdd2", "read_magnetic_tile", "read_manifest", "read_mvtec", "read_visa"]


def __getattr__(name):
    """`SyntheticDefects`, `SyntheticStream`, `Pool`, `synthetic_loader` import torch: loaded on first use."""
    if name in ("SyntheticDefects", "SyntheticStream", "Pool", "synthetic_loader"):
        from . import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
