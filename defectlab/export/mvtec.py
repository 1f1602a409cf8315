"""A clean MVTec-layout copy: only the listed images and masks, masks re-encoded as 0/255 PNG (so
masks from sets read with another threshold stay right), the manifest rewritten to match.

With `class_from="method"` defect images are filed under `<category>/<split>/<method>/`, so a
synthetic set sorted by method reads like a set sorted by defect type."""
from __future__ import annotations

import json
from pathlib import Path

from ..data.writer import MANIFEST, MARKER
from ..errors import DefectlabError
from ..imageio import atomic_write_bytes, encode_png, sha256_file
from ..progress import progress
from .instances import mask_instances
from .options import Counts, ExportOptions, copy_file
from .source import Source


def write_mvtec(source: Source, stage: Path, opts: ExportOptions) -> dict:
    counts, manifest, taken = Counts(), [], {}
    for item in progress(source.items, desc="export mvtec"):
        r = item.record
        label = item.class_name if item.is_defect else r.label
        key = f"{r.category}/{r.split}/{label}/{r.name}"
        if key in taken:
            raise DefectlabError(f"{source.root}: {r.key} and {taken[key]} would both be written as {key}")
        taken[key] = r.key
        rel_img = f"{key}{r.image_path.suffix.lower()}"
        item.size()  # decode and check every image once: a truncated file is an error, not a byte copy
        copy_file(r.image_path, stage / rel_img)
        sha = {"image": sha256_file(stage / rel_img)}
        if item.provenance is not None and item.provenance.get("sha256", {}).get("image") not in (None, sha["image"]):
            raise DefectlabError(f"{r.image_path}: content differs from its {MANIFEST} checksum (changed after writing?)")
        counts.add_image(r.split, item.is_defect)
        rel_mask = None
        if item.is_defect:
            mask = item.mask()
            instances = mask_instances(mask, opts.merge_distance)
            counts.instances += len(instances)
            counts.instances_with_holes += sum(inst.has_holes for inst in instances)
            counts.count_empty(r.mask_path, instances)
            rel_mask = f"{r.category}/ground_truth/{label}/{r.name}_mask.png"
            data = encode_png(mask)
            atomic_write_bytes(stage / rel_mask, data)
            sha["mask"] = sha256_file(stage / rel_mask)
        entry = dict(item.provenance) if item.provenance is not None else {
            "category": r.category, "split": r.split, "method": None, "params": {}, "seed": None, "source": None}
        if key != r.key:
            entry["source_key"] = r.key
        entry.update({"key": key, "file": rel_img, "mask": rel_mask, "label": label, "sha256": sha})
        manifest.append(entry)
    if source.has_manifest:  # provenance travels with the images; a plain MVTec set stays plain
        atomic_write_bytes(stage / MANIFEST, "".join(json.dumps(e, sort_keys=True) + "\n" for e in manifest).encode())
        (stage / MARKER).touch()
    return vars(counts)
