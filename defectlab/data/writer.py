"""Write synthetic data sets in the MVTec layout with a `manifest.jsonl` of provenance.

Files are written atomically (temporary file + rename); the manifest line for an image is appended
only after its image and mask are on disk, so an interrupted run leaves no half-written entry and a
re-run skips what is already listed (`done(key)`). A folder the writer did not create is never
written into unless `overwrite=True`; files already listed are never replaced unless asked.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DefectlabError
from ..imageio import sha256_file, write_png
from ..sample import as_image, as_mask

MANIFEST = "manifest.jsonl"
MARKER = ".defectlab-dataset"


class DatasetWriter:
    def __init__(self, root: str | os.PathLike, overwrite: bool = False):
        self.root = Path(root)
        self.overwrite = overwrite
        if self.root.exists() and not self.root.is_dir():
            raise DefectlabError(f"{self.root}: exists and is not a folder")
        ours = (self.root / MARKER).is_file()
        if self.root.is_dir() and any(self.root.iterdir()) and not ours:
            if not overwrite:
                raise DefectlabError(f"{self.root}: folder exists and was not written by defectlab; "
                                     "choose another output or pass overwrite=True")
        if overwrite and self.root.is_dir():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).touch()
        self.entries: dict[str, dict] = {}
        manifest = self.root / MANIFEST
        if manifest.is_file():
            lines = manifest.read_text().splitlines()
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    if n == len(lines):  # a line torn by a crash mid-append: its files get rewritten
                        continue
                    raise DefectlabError(f"{manifest}: line {n} is not valid JSON")
                if not isinstance(entry, dict) or "key" not in entry:
                    raise DefectlabError(f"{manifest}: line {n} is not a manifest entry (no 'key')")
                self.entries[entry["key"]] = entry
        self._rewrite_manifest_if_torn()

    def _rewrite_manifest_if_torn(self) -> None:
        manifest = self.root / MANIFEST
        if manifest.is_file():
            text = manifest.read_text()
            if text and not text.endswith("\n"):
                from ..imageio import atomic_write_bytes

                body = "".join(json.dumps(e, sort_keys=True) + "\n" for e in self.entries.values())
                atomic_write_bytes(manifest, body.encode())

    @staticmethod
    def key(category: str, split: str, label: str, name: str) -> str:
        return f"{category}/{split}/{label}/{name}"

    def done(self, key: str) -> bool:
        """True if `key` is already written (and listed in the manifest): a resumed run skips it."""
        return key in self.entries

    def add(self, image: np.ndarray, mask: np.ndarray | None, *, category: str, label: str, name: str,
            split: str = "test", method: str | None = None, params: dict[str, Any] | None = None,
            seed: int | None = None, source: str | None = None, meta: dict[str, Any] | None = None) -> dict:
        """Write one image (and its mask unless it is good) and append its manifest line."""
        for part in (category, split, label, name):
            if not part or "/" in part or part.startswith("."):
                raise DefectlabError(f"invalid path component {part!r} for {self.root}")
        key = self.key(category, split, label, name)
        if key in self.entries and not self.overwrite:
            raise DefectlabError(f"{self.root / key}: already written; pass overwrite=True to replace it")
        image = as_image(image, what=key)
        rel_img = f"{category}/{split}/{label}/{name}.png"
        rel_mask = None
        if label != "good":
            if mask is None:
                raise DefectlabError(f"{key}: a defect image needs a mask")
            m = as_mask(mask, image.shape[:2], what=f"{key} mask")
            if not m.any():
                raise DefectlabError(f"{key}: defect mask is empty")
            rel_mask = f"{category}/ground_truth/{label}/{name}_mask.png"
        sha = {"image": write_png(self.root / rel_img, image)}
        if rel_mask:
            sha["mask"] = write_png(self.root / rel_mask, m)
        entry = {"key": key, "file": rel_img, "mask": rel_mask, "category": category, "split": split,
                 "label": label, "method": method, "params": _jsonable(params or {}), "seed": seed,
                 "source": source, "sha256": sha}
        if meta:
            entry["meta"] = _jsonable(meta)
        with open(self.root / MANIFEST, "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.entries[key] = entry
        return entry

    def verify(self) -> list[str]:
        """Keys whose files are missing or whose checksum differs from the manifest."""
        bad = []
        for key, e in self.entries.items():
            for part, rel in (("image", e["file"]), ("mask", e["mask"])):
                if rel is None:
                    continue
                p = self.root / rel
                if not p.is_file() or sha256_file(p) != e["sha256"][part]:
                    bad.append(key)
                    break
        return bad

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def read_manifest(root: str | os.PathLike) -> list[dict]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DefectlabError(f"{path}: manifest not found")
    entries = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DefectlabError(f"{path}: line {n} is not valid JSON ({exc.msg})") from exc
            if not isinstance(entry, dict) or "key" not in entry:
                raise DefectlabError(f"{path}: line {n} is not a manifest entry (no 'key')")
            entries.append(entry)
    return entries


def _jsonable(obj):
    """Parameters as JSON: dataclasses, tuples and numpy scalars become plain values."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 64 else f"<array {obj.shape}>"
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)
