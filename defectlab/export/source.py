"""The input side of an export: records, their output split and file name, class and provenance."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import Dataset, Record, open_dataset, read_manifest, read_mvtec
from ..data.writer import MANIFEST
from ..errors import DefectlabError
from ..imageio import image_size

CLASS_FROM = ("label", "method")


@dataclass(frozen=True)
class Item:
    """One image to export."""

    record: Record
    split: str  # output split: "train", or "val" for a source's test images when it has both
    file_name: str  # output image file name, unique within its split
    class_name: str | None  # None for good images
    provenance: dict | None  # the image's manifest entry; None without a manifest

    @property
    def is_defect(self) -> bool:
        return self.record.is_defect

    def size(self) -> tuple[int, int]:
        """(H, W), after decoding the whole image once (a truncated file fails here, not in training)."""
        return image_size(self.record.image_path)

    def mask(self) -> np.ndarray:
        """The defect mask, its size checked against the image's."""
        return self.record.mask(self.size())


@dataclass
class Source:
    root: Path
    items: list[Item]
    classes: list[str]  # sorted class names of the defect images
    has_manifest: bool

    @property
    def splits(self) -> list[str]:
        return [s for s in ("train", "val") if any(i.split == s for i in self.items)]


def load_source(input_dir: str | os.PathLike, class_from: str = "label", input_format: str = "auto") -> Source:
    """Read a data set (with its `manifest.jsonl` when `DatasetWriter` wrote it) for export."""
    root = Path(input_dir)
    if class_from not in CLASS_FROM:
        raise DefectlabError(f"class_from must be one of {', '.join(CLASS_FROM)}, got {class_from!r}")
    if not root.is_dir():
        raise DefectlabError(f"{root}: input folder not found")
    has_manifest = (root / MANIFEST).is_file()
    dataset: Dataset = read_mvtec(root) if has_manifest else open_dataset(root, input_format)
    entries = {e["key"]: e for e in read_manifest(root)} if has_manifest else {}
    if class_from == "method" and not has_manifest:
        raise DefectlabError(f"{root}: class_from='method' needs the {MANIFEST} that DatasetWriter writes; "
                             "this data set has none (use class_from='label')")
    records = list(dataset)
    if not any(r.is_defect and r.mask_path is not None for r in records):
        raise DefectlabError(f"{root}: no defect images with masks; there is nothing to annotate")
    both = {r.split for r in records} >= {"train", "test"}
    items, names = [], {}
    for r in records:
        entry = entries.get(r.key)
        split = ("val" if r.split == "test" else "train") if both else "train"
        file_name = f"{r.category}__{r.label}__{r.name}{r.image_path.suffix.lower()}"
        stem = Path(file_name).stem  # label files are named by stem: a.png and a.jpg would collide there
        if (split, stem) in names:
            raise DefectlabError(f"{root}: {r.key} and {names[split, stem]} would share the output name {stem}")
        names[split, stem] = r.key
        items.append(Item(r, split, file_name, _class_name(r, entry, class_from, root), entry))
    classes = sorted({i.class_name for i in items if i.class_name is not None})
    return Source(root, items, classes, has_manifest)


def _class_name(record: Record, entry: dict | None, class_from: str, root: Path) -> str | None:
    if not record.is_defect:
        return None
    if class_from == "label":
        return record.label
    method = (entry or {}).get("method")
    if not method:
        raise DefectlabError(f"{root / MANIFEST}: {record.key} has no synthesis method to use as its class "
                             "(use class_from='label')")
    return str(method)


def provenance_fields(item: Item) -> dict:
    """Where an exported image came from: its source key, and the synthesis record when there is one."""
    r = item.record
    out = {"key": r.key, "category": r.category, "label": r.label, "source_split": r.split}
    if item.provenance is not None:
        e = item.provenance
        out.update({k: e.get(k) for k in ("method", "params", "seed", "source")})
        if "meta" in e:
            out["meta"] = e["meta"]
    return out
