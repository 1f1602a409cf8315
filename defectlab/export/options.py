"""What every format writer is told, and the counts every writer reports."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

SEGMENTATION = ("auto", "rle", "polygon")


@dataclass(frozen=True)
class ExportOptions:
    input_dir: Path
    out_dir: Path  # the final location (writers fill a staging folder; data.yaml names the final one)
    class_from: str = "label"
    merge_distance: int = 0
    segmentation: str = "auto"  # COCO: "auto" = RLE for instances with holes, polygons otherwise


@dataclass
class Counts:
    images: int = 0
    defect_images: int = 0
    good_images: int = 0
    instances: int = 0
    instances_with_holes: int = 0
    empty_defect_masks: int = 0  # defect images whose mask has no pixel: exported without labels
    empty_defect_mask_files: list = field(default_factory=list)  # their mask files, for the warning
    splits: dict = field(default_factory=dict)

    def count_empty(self, mask_path: Path, instances: list) -> None:
        """A defect image without instances (its mask is empty) is exported without annotations: counted, named."""
        if not instances:
            self.empty_defect_masks += 1
            self.empty_defect_mask_files.append(str(mask_path))

    def add_image(self, split: str, is_defect: bool) -> None:
        self.images += 1
        self.splits[split] = self.splits.get(split, 0) + 1
        if is_defect:
            self.defect_images += 1
        else:
            self.good_images += 1


def copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
