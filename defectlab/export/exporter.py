"""`export()`: read a defect data set, write it as COCO, YOLO or a clean MVTec copy, atomically."""
from __future__ import annotations

import os
import warnings
from functools import partial
from pathlib import Path

from ..data.records import name_files
from ..errors import DefectlabError
from .coco import write_coco
from .mvtec import write_mvtec
from .options import SEGMENTATION, ExportOptions
from .source import CLASS_FROM, load_source
from ..staging import check_destination, staged_folder
from .yolo import write_yolo

WRITERS = {"coco": write_coco, "yolo-bbox": partial(write_yolo, segment=False),
           "yolo-seg": partial(write_yolo, segment=True), "mvtec": write_mvtec}
FORMATS = tuple(WRITERS)
LISTING = ".defectlab-export.json"  # every file an export wrote: --overwrite replaces those and nothing else


def export(input_dir: str | os.PathLike, format: str, out_dir: str | os.PathLike, *, class_from: str = "label",
           merge_distance: int = 0, overwrite: bool = False, segmentation: str = "auto",
           input_format: str = "auto") -> dict:
    """Export the data set in `input_dir` (a `DatasetWriter` set with its manifest, or any layout
    `defectlab.data.open_dataset` reads) to `out_dir` as `format` (one of `FORMATS`).

    Instances are the 8-connected components of each mask; `merge_distance=k` joins components
    separated by at most k background pixels. Classes are the defect types (`class_from="label"`)
    or the synthesis methods of the manifest (`"method"`). Good images are kept as negatives. COCO
    `segmentation`: "auto" (RLE for instances with holes, polygons otherwise), "rle" or "polygon".
    The output appears complete or not at all; an existing `out_dir` needs `overwrite=True`, which
    replaces a previous export (files named in its `.defectlab-export.json`) and never other files.
    Every image is decoded once and checked (a truncated or unreadable file is an error, not a copy);
    a data set whose defect masks are all empty is an error, some empty ones are named in a warning.
    Returns a summary: image / instance counts per kind and split, class names, output path."""
    if format not in WRITERS:
        raise DefectlabError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
    if class_from not in CLASS_FROM:
        raise DefectlabError(f"class_from must be one of {', '.join(CLASS_FROM)}, got {class_from!r}")
    if segmentation not in SEGMENTATION:
        raise DefectlabError(f"segmentation must be one of {', '.join(SEGMENTATION)}, got {segmentation!r}")
    if isinstance(merge_distance, bool) or not isinstance(merge_distance, int) or merge_distance < 0:
        raise DefectlabError(f"merge_distance must be a non-negative integer, got {merge_distance!r}")
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    if not input_dir.is_dir():
        raise DefectlabError(f"{input_dir}: input folder not found")
    check_destination(out_dir, overwrite, protect=input_dir, owner=LISTING)  # fail before reading anything
    source = load_source(input_dir, class_from, input_format)
    opts = ExportOptions(input_dir, out_dir, class_from, merge_distance, segmentation)
    with staged_folder(out_dir, overwrite, owner=LISTING) as stage:
        counts = WRITERS[format](source, stage, opts)
        if counts["defect_images"] and counts["empty_defect_masks"] == counts["defect_images"]:
            raise DefectlabError(f"{input_dir}: all {counts['defect_images']} defect masks are empty (e.g. "
                                 f"{_first_defect_mask(source)}); check the mask convention (0/255 or 0/1) and paths")
    if counts["empty_defect_masks"]:  # real data has some (Magnetic Tile): named, not refused
        warnings.warn(f"{input_dir}: {counts['empty_defect_masks']} of {counts['defect_images']} defect masks are "
                      f"empty: {name_files(counts['empty_defect_mask_files'])}; those images are exported without "
                      "annotations", stacklevel=2)
    return {"format": format, "input": str(input_dir), "out": str(out_dir), "classes": list(source.classes),
            "class_from": class_from, "merge_distance": merge_distance, "provenance": source.has_manifest, **counts}


def _first_defect_mask(source) -> Path | None:
    return next((i.record.mask_path for i in source.items if i.is_defect), None)
