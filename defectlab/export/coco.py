"""COCO instances: `images/<split>/` and `annotations/instances_<split>.json`.

Boxes are `[x, y, w, h]` in pixels; segmentations are polygons (outer outlines), or compressed
RLE for instances with holes (a polygon list cannot express a hole) or always with
`segmentation="rle"`. Each image's provenance goes in `images[].extra`; the export settings in `info`.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..imageio import atomic_write_bytes
from ..progress import progress
from . import rle
from .instances import mask_instances
from .options import Counts, ExportOptions, copy_file
from .source import Source, provenance_fields


def write_coco(source: Source, stage: Path, opts: ExportOptions) -> dict:
    category_ids = {name: i for i, name in enumerate(source.classes, start=1)}
    splits = {s: {"images": [], "annotations": []} for s in source.splits}
    counts, kinds = Counts(), {"polygon": 0, "rle": 0}
    ann_id = 0
    for image_id, item in enumerate(progress(source.items, desc="export coco"), start=1):
        h, w = item.size()
        copy_file(item.record.image_path, stage / "images" / item.split / item.file_name)
        counts.add_image(item.split, item.is_defect)
        splits[item.split]["images"].append({"id": image_id, "file_name": item.file_name, "width": w, "height": h,
                                             "extra": provenance_fields(item)})
        if not item.is_defect:
            continue
        instances = mask_instances(item.mask(), opts.merge_distance)
        counts.count_empty(item.record.mask_path, instances)
        for inst in instances:
            ann_id += 1
            holes = inst.has_holes
            counts.instances += 1
            counts.instances_with_holes += holes
            use_rle = opts.segmentation == "rle" or (opts.segmentation == "auto" and holes)
            kinds["rle" if use_rle else "polygon"] += 1
            x0, y0, x1, y1 = inst.box
            splits[item.split]["annotations"].append({
                "id": ann_id, "image_id": image_id, "category_id": category_ids[item.class_name],
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": inst.area, "iscrowd": 0,
                "segmentation": rle.encode(inst.mask) if use_rle else inst.polygons()})
    info = {"description": f"defect data set exported by defectlab from {opts.input_dir}",
            "version": __version__, "contributor": "defectlab",
            "defectlab": {"source": str(opts.input_dir), "class_from": opts.class_from,
                          "merge_distance": opts.merge_distance, "segmentation": opts.segmentation,
                          "provenance": source.has_manifest}}
    categories = [{"id": i, "name": name, "supercategory": "defect"} for name, i in category_ids.items()]
    for split, body in splits.items():
        doc = {"info": info, "licenses": [], "images": body["images"], "annotations": body["annotations"],
               "categories": categories}
        atomic_write_bytes(stage / "annotations" / f"instances_{split}.json",
                           json.dumps(doc, separators=(",", ":")).encode())
    return {**vars(counts), "segmentation": kinds}
