"""Readers for the public anomaly-detection data sets as they are distributed.

| format        | images                                   | masks                                             |
|---------------|------------------------------------------|---------------------------------------------------|
| mvtec         | <cat>/train/good, <cat>/test/<type>       | <cat>/ground_truth/<type>/<name>_mask.png         |
| btad          | <cat>/train/ok, <cat>/test/{ok,ko} (.bmp/.png) | <cat>/ground_truth/ko/<name>.png             |
| ksdd2         | {train,test}/<id>.png                     | {train,test}/<id>_GT.png (empty = good)           |
| visa          | <cat>/Data/Images/{Normal,Anomaly}/*.JPG  | <cat>/Data/Masks/Anomaly/<name>.png (value > 0)   |
| magnetic_tile | MT_<Type>/Imgs/<name>.jpg (Free = good)   | MT_<Type>/Imgs/<name>.png (value > 127)           |

Every reader returns a `Dataset` of `Record`s with labels "good" or the defect type.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DefectlabError
from ..imageio import IMAGE_SUFFIXES, existing_file
from .records import Dataset, Record

FORMATS = ("mvtec", "btad", "ksdd2", "visa", "magnetic_tile")


def _images(folder: Path) -> list[Path]:
    """The image files of a folder (a broken symbolic link among them is an error, not skipped)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                  and existing_file(p))


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DefectlabError(f"{path}: {what} folder not found")
    return path


def _category_dirs(root: Path, *markers: str) -> list[Path]:
    """Category folders under `root` (or `root` itself if it is one), identified by a marker sub-folder."""
    if any((root / m).is_dir() for m in markers):
        return [root]
    cats = sorted(p for p in root.iterdir() if p.is_dir() and any((p / m).is_dir() for m in markers))
    if not cats:
        raise DefectlabError(f"{root}: no category folder with a '{markers[0]}' sub-folder")
    return cats


def read_mvtec(root: str | Path) -> Dataset:
    """MVTec AD layout (also what `DatasetWriter` and the embedded data set write)."""
    root = _require_dir(Path(root), "data set")
    records = []
    for cat in _category_dirs(root, "train", "test"):
        for split in ("train", "test"):
            split_dir = cat / split
            if not split_dir.is_dir():
                continue
            for label_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
                label = label_dir.name
                for img in _images(label_dir):
                    mask = None
                    if label != "good":
                        mask = cat / "ground_truth" / label / f"{img.stem}_mask.png"
                        if not existing_file(mask):
                            raise DefectlabError(f"{img}: defect image has no mask (expected {mask})")
                    records.append(Record(cat.name, split, label, img.stem, img, mask))
    return _non_empty(Dataset(root, records, "mvtec"))


def read_btad(root: str | Path) -> Dataset:
    """BTAD: `ok` is good, `ko` defective; masks share the image's stem with a .png (or .bmp) suffix."""
    root = _require_dir(Path(root), "data set")
    records = []
    for cat in _category_dirs(root, "train"):
        for split in ("train", "test"):
            for sub in ("ok", "ko"):
                folder = cat / split / sub
                if not folder.is_dir():
                    continue
                for img in _images(folder):
                    mask = None
                    if sub == "ko":
                        cands = [cat / "ground_truth" / "ko" / f"{img.stem}{s}" for s in (".png", ".bmp")]
                        mask = next((c for c in cands if existing_file(c)), None)
                        if mask is None:
                            raise DefectlabError(f"{img}: defect image has no mask (expected {cands[0]})")
                    records.append(Record(cat.name, split, "good" if sub == "ok" else "ko", img.stem, img, mask))
    return _non_empty(Dataset(root, records, "btad"))


def read_ksdd2(root: str | Path) -> Dataset:
    """KolektorSDD2: `<split>/<id>.png` with `<id>_GT.png`; an image is defective when its GT is non-empty."""
    from ..imageio import read_mask

    root = _require_dir(Path(root), "data set")
    records = []
    for split in ("train", "test"):
        folder = _require_dir(root / split, f"KolektorSDD2 '{split}'")
        for img in _images(folder):
            if img.stem.endswith("_GT"):
                continue
            gt = folder / f"{img.stem}_GT.png"
            if not existing_file(gt):
                raise DefectlabError(f"{img}: missing its ground truth {gt.name}")
            defect = bool(read_mask(gt, threshold=0).any())
            records.append(Record("ksdd2", split, "defect" if defect else "good", img.stem, img, gt if defect else None, 0))
    return _non_empty(Dataset(root, records, "ksdd2"))


def read_visa(root: str | Path) -> Dataset:
    """VisA: uses `split_csv/1cls.csv` (object,split,label,image,mask) when present; otherwise
    Normal images are train/good and Anomaly images test/anomaly. Mask pixels > 0 are defects."""
    root = _require_dir(Path(root), "data set")
    records = []
    split_csv = root / "split_csv" / "1cls.csv"
    if split_csv.is_file():
        with open(split_csv, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"object", "split", "label", "image"} - set(reader.fieldnames or [])
            if missing:
                raise DefectlabError(f"{split_csv}: missing column(s) {', '.join(sorted(missing))} "
                                     "(expected object,split,label,image,mask)")
            for n, row in enumerate(reader, 2):
                if row["split"] not in ("train", "test") or row["label"] not in ("normal", "anomaly"):
                    raise DefectlabError(f"{split_csv}: line {n}: split must be train/test and label normal/anomaly, "
                                         f"got {row['split']!r}, {row['label']!r}")
                img = root / row["image"]
                if not existing_file(img):
                    raise DefectlabError(f"{split_csv}: line {n}: image {img} not found")
                label = "good" if row["label"] == "normal" else "anomaly"
                mask = root / row["mask"] if row.get("mask") else None
                if label != "good" and (mask is None or not existing_file(mask)):
                    raise DefectlabError(f"{split_csv}: line {n}: anomaly {img.name} has no mask file ({mask})")
                records.append(Record(row["object"], row["split"], label, img.stem, img, mask, 0))
    else:
        for cat in _category_dirs(root, "Data"):
            base = cat / "Data"
            for img in _images(_require_dir(base / "Images" / "Normal", "VisA Normal")):
                records.append(Record(cat.name, "train", "good", img.stem, img, None))
            anomaly = base / "Images" / "Anomaly"
            for img in _images(anomaly) if anomaly.is_dir() else []:
                mask = base / "Masks" / "Anomaly" / f"{img.stem}.png"
                if not existing_file(mask):
                    raise DefectlabError(f"{img}: defect image has no mask (expected {mask})")
                records.append(Record(cat.name, "test", "anomaly", img.stem, img, mask, 0))
    return _non_empty(Dataset(root, records, "visa"))


def _non_empty(ds: Dataset) -> Dataset:
    """The data set, refused when it is empty or two records are one image (`Dataset.check_unique`), its 16-bit
    images read at the bit depth they use (`Dataset.with_bit_depth`)."""
    if not ds.records:
        raise DefectlabError(f"{ds.root}: no images found for the {ds.format} layout")
    return ds.check_unique().with_bit_depth()


def detect_format(root: str | Path) -> str:
    root = _require_dir(Path(root), "data set")
    subdirs = [p for p in root.iterdir() if p.is_dir()]
    if any(p.name.startswith("MT_") for p in subdirs):
        return "magnetic_tile"
    if (root / "split_csv").is_dir() or (root / "Data" / "Images").is_dir() or any((p / "Data" / "Images").is_dir() for p in subdirs):
        return "visa"
    if (root / "train").is_dir() and any(p.name.endswith("_GT.png") for p in (root / "train").iterdir()):
        return "ksdd2"
    if (root / "train" / "ok").is_dir() or any((p / "train" / "ok").is_dir() for p in subdirs):
        return "btad"
    return "mvtec"


def open_dataset(root: str | Path, format: str = "auto") -> Dataset:
    """Read a data set from disk; `format="auto"` recognises each layout in the table above."""
    from .magnetic_tile import read_magnetic_tile

    fmt = detect_format(root) if format == "auto" else format
    readers = {"mvtec": read_mvtec, "btad": read_btad, "ksdd2": read_ksdd2, "visa": read_visa,
               "magnetic_tile": read_magnetic_tile}
    if fmt not in readers:
        raise DefectlabError(f"unknown data set format {format!r}; known: auto, {', '.join(FORMATS)}")
    return readers[fmt](root)
