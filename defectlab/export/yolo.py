"""YOLO (Ultralytics) layout: `images/<split>/`, `labels/<split>/<stem>.txt`, `data.yaml`.

`yolo-bbox` lines are `class xc yc w h`, `yolo-seg` lines `class x1 y1 x2 y2 ...`, all normalised
to [0, 1]. A YOLO polygon has no holes (outer outline only) and one ring per instance, so the
parts of a merged instance are joined by zero-width bridges. Good images get empty label files
(negatives). Provenance, which YOLO has no field for, goes in a sidecar `provenance.jsonl`.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..imageio import atomic_write_bytes
from ..progress import progress
from .instances import join_polygons, mask_instances
from .options import Counts, ExportOptions, copy_file
from .source import Source, provenance_fields


def write_yolo(source: Source, stage: Path, opts: ExportOptions, *, segment: bool) -> dict:
    class_ids = {name: i for i, name in enumerate(source.classes)}
    counts, provenance = Counts(), []
    for item in progress(source.items, desc=f"export yolo-{'seg' if segment else 'bbox'}"):
        h, w = item.size()
        image_rel = f"images/{item.split}/{item.file_name}"
        label_rel = f"labels/{item.split}/{Path(item.file_name).stem}.txt"
        copy_file(item.record.image_path, stage / image_rel)
        counts.add_image(item.split, item.is_defect)
        lines = []
        if item.is_defect:
            instances = mask_instances(item.mask(), opts.merge_distance)
            counts.count_empty(item.record.mask_path, instances)
            for inst in instances:
                counts.instances += 1
                counts.instances_with_holes += inst.has_holes
                cls = class_ids[item.class_name]
                lines.append(f"{cls} " + " ".join(_polygon_coords(inst, w, h) if segment else _box_coords(inst.box, w, h)))
        (stage / label_rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / label_rel).write_text("".join(line + "\n" for line in lines))
        provenance.append({"image": image_rel, "labels": label_rel, **provenance_fields(item)})
    atomic_write_bytes(stage / "provenance.jsonl",
                       "".join(json.dumps(p, sort_keys=True) + "\n" for p in provenance).encode())
    atomic_write_bytes(stage / "data.yaml", data_yaml(source, opts).encode())
    return vars(counts)


def _box_coords(box, w: int, h: int) -> list[str]:
    x0, y0, x1, y1 = box
    return [f"{v:.6f}" for v in ((x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h)]


def _polygon_coords(inst, w: int, h: int) -> list[str]:
    flat = join_polygons(inst.polygons())
    return [f"{min(max(v / (w if i % 2 == 0 else h), 0.0), 1.0):.6f}" for i, v in enumerate(flat)]


def data_yaml(source: Source, opts: ExportOptions) -> str:
    """Ultralytics data file; strings are JSON-quoted, which YAML reads as double-quoted scalars."""
    q = json.dumps
    lines = [f"# YOLO data set exported by defectlab from {opts.input_dir}",
             f"path: {q(str(opts.out_dir.resolve()))}  # delete this line to resolve paths next to this file",
             "train: images/train"]
    if "val" in source.splits:
        lines.append("val: images/val")
    else:
        lines.append("val: images/train  # the source has a single split: no held-out images")
    lines.append(f"nc: {len(source.classes)}")
    lines.append("names:")
    lines += [f"  {i}: {q(name)}" for i, name in enumerate(source.classes)]
    return "\n".join(lines) + "\n"
