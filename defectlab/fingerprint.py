"""What a benchmark's results depend on in the data: every file of the category (path, size, SHA-256) and
each seed's split (which record went where). A run folder records it, so resuming on data that changed
since (files added, removed or edited; a different split) is refused instead of mixing old and new results.

    fp = data_fingerprint(dataset, "brick", {0: split0, 1: split1})
    problem = fingerprint_difference(old, fp)  # None when a resume is safe
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .imageio import sha256_file


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def digest(obj) -> str:
    """SHA-256 of an object's canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_table(dataset, category: str | None = None) -> dict[str, list]:
    """{path relative to the data set root: [size in bytes, sha256]} for every image and mask of `category`."""
    root = Path(dataset.root)
    table: dict[str, list] = {}
    for r in dataset.records:
        if category not in (None, r.category):
            continue
        for path in (r.image_path, r.mask_path):
            if path is not None:
                rel = _rel(path, root)
                if rel not in table:
                    table[rel] = [os.path.getsize(path), sha256_file(path)]
    return table


def split_table(split) -> dict[str, list[str]]:
    """{part: sorted record keys} of a `FewShotSplit`."""
    return {part: sorted(r.key for r in getattr(split, part)) for part in ("support", "heldout", "good_train", "good_test")}


def data_fingerprint(dataset, category: str | None, splits: dict) -> dict:
    """{"files": {rel: [size, sha256]}, "files_sha256": digest, "splits": {seed: digest}}."""
    files = file_table(dataset, category)
    return {"files": files, "files_sha256": digest(files),
            "splits": {str(seed): digest(split_table(s)) for seed, s in splits.items()}}


def summary(fp: dict) -> dict:
    """The fingerprint without its per-file table (what config.json records)."""
    return {"files_sha256": fp["files_sha256"], "n_files": len(fp["files"]), "splits": dict(fp["splits"])}


def fingerprint_difference(old: dict, new: dict) -> str | None:
    """A one-line description of how the data changed between two fingerprints (the old one may lack its
    per-file table); None when every file is the same and every seed both split the same way."""
    if old.get("files_sha256") != new["files_sha256"]:
        before, after = old.get("files"), new["files"]
        if before is None:
            return f"its files changed ({old.get('n_files', '?')} files then, {len(after)} now)"
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(k for k in set(after) & set(before) if list(after[k]) != list(before[k]))
        parts = [f"{len(v)} {what} (e.g. {v[0]})" for what, v in
                 (("added", added), ("removed", removed), ("changed", changed)) if v]
        return "files " + ", ".join(parts) if parts else "its files changed"
    for seed, digest in new["splits"].items():
        if seed in old.get("splits", {}) and old["splits"][seed] != digest:
            return f"the split of seed {seed} differs"
    return None
