"""Readers, writer, few-shot split and bad input for `defectlab.data`."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlab import DefectlabError
from defectlab.data import (DatasetWriter, detect_format, few_shot_split, open_dataset, read_magnetic_tile,
                            read_manifest, read_mvtec)
from defectlab.imageio import read_image, read_mask


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _make_mvtec(root, rng, n_defect=4, size=(24, 32)):
    cat = root / "widget"
    for i in range(3):
        _png(cat / "train" / "good" / f"{i:03d}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    _png(cat / "test" / "good" / "000.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    for t in ("scratch", "hole"):
        for i in range(n_defect):
            _png(cat / "test" / t / f"{i:03d}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
            m = np.zeros(size, np.uint8)
            m[2 + i:8 + i, 3:9] = 255
            _png(cat / "ground_truth" / t / f"{i:03d}_mask.png", m)
    return root


def test_mvtec_reader_labels_masks_and_dtypes(tmp_path, rng):
    ds = read_mvtec(_make_mvtec(tmp_path, rng))
    assert ds.categories() == ["widget"]
    assert ds.defect_types("widget") == ["hole", "scratch"]
    assert ds.summary()["widget"] == {"train/good": 3, "test/good": 1, "test/hole": 4, "test/scratch": 4}
    assert ds.summary_table().splitlines()[2] == "| widget | 3 | 1 | hole 4, scratch 4 |"
    rec = ds.filter(label="hole")[1]
    img, mask = rec.load()
    assert img.dtype == np.float32 and img.shape == (24, 32, 3) and 0 <= img.min() and img.max() <= 1
    assert mask.dtype == bool and mask.sum() == 36
    good = ds.filter(split="train")[0]
    assert not good.mask().any() and good.mask_path is None


def test_open_dataset_detects_each_layout(tmp_path, rng):
    mv = _make_mvtec(tmp_path / "mv", rng)
    # BTAD: ok/ko, bmp images, png masks with the same stem
    bt = tmp_path / "bt" / "01"
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(_mk(bt / "train" / "ok" / "0000.bmp"))
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(_mk(bt / "test" / "ko" / "0001.bmp"))
    m = np.zeros((16, 16), np.uint8); m[4:8, 4:8] = 255
    _png(bt / "ground_truth" / "ko" / "0001.png", m)
    # KSDD2: <id>.png with <id>_GT.png; empty GT = good
    ks = tmp_path / "ks"
    for split, (a, b) in {"train": ("10000", "10001"), "test": ("20000", "20001")}.items():
        for name, defect in ((a, False), (b, True)):
            _png(ks / split / f"{name}.png", rng.integers(0, 255, (20, 12, 3), dtype=np.uint8))
            gt = np.zeros((20, 12), np.uint8)
            if defect:
                gt[3:6, 3:6] = 1  # KSDD2 GTs may use small values: any value > 0 is defect
            _png(ks / split / f"{name}_GT.png", gt)
    # VisA raw layout without split csv; masks are class indices (> 0)
    vi = tmp_path / "vi" / "candle" / "Data"
    _png(vi / "Images" / "Normal" / "000.JPG", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    _png(vi / "Images" / "Anomaly" / "001.JPG", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    vm = np.zeros((16, 16), np.uint8); vm[1:3, 1:3] = 1
    _png(vi / "Masks" / "Anomaly" / "001.png", vm)

    assert detect_format(mv) == "mvtec"
    assert detect_format(tmp_path / "bt") == "btad"
    assert detect_format(ks) == "ksdd2"
    assert detect_format(tmp_path / "vi") == "visa"
    bt_ds = open_dataset(tmp_path / "bt")
    assert {r.label for r in bt_ds} == {"good", "ko"} and bt_ds.filter(label="ko")[0].mask().sum() == 16
    ks_ds = open_dataset(ks)
    assert sorted(r.label for r in ks_ds) == ["defect", "defect", "good", "good"]
    assert ks_ds.filter(label="defect")[0].mask().sum() == 9
    vi_ds = open_dataset(tmp_path / "vi")
    assert vi_ds.filter(label="anomaly")[0].mask().sum() == 4


def _mk(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_magnetic_tile_reader(magnetic_tile_root):
    ds = read_magnetic_tile(magnetic_tile_root)
    assert ds.defect_types() == ["Blowhole", "Break", "Crack", "Fray", "Uneven"]
    s = ds.summary()["magnetic_tile"]
    assert s["train/good"] > 900 and s["test/Blowhole"] > 100
    img, mask = ds.filter(label="Crack")[0].load()
    assert img.shape[2] == 1 and mask.shape == img.shape[:2] and mask.any()
    # empty masks are skipped by default and kept on request
    assert len(read_magnetic_tile(magnetic_tile_root, include_empty_masks=True)) > len(ds)


def test_few_shot_split_never_leaks(tmp_path, rng):
    ds = read_mvtec(_make_mvtec(tmp_path, rng, n_defect=6))
    for seed in range(5):
        sp = few_shot_split(ds, "widget", shots=2, seed=seed)
        support = {r.image_path for r in sp.support}
        test = {r.image_path for r in sp.test_records()}
        assert len(sp.support) == 4 and len(sp.heldout) == 8
        assert not support & test
        assert not {r.image_path for r in sp.good_train} & {r.image_path for r in sp.good_test}
    a, b = few_shot_split(ds, "widget", 2, seed=1), few_shot_split(ds, "widget", 2, seed=1)
    assert [r.key for r in a.support] == [r.key for r in b.support]
    supports = {frozenset(r.key for r in few_shot_split(ds, "widget", 2, seed=s).support) for s in range(6)}
    assert len(supports) > 1  # the seed matters


def test_few_shot_split_holds_out_good_when_no_test_good(magnetic_tile_root):
    ds = read_magnetic_tile(magnetic_tile_root)
    sp = few_shot_split(ds, "magnetic_tile", shots=10, seed=0)
    assert len(sp.support) == 50
    assert sp.good_test and not {r.key for r in sp.good_test} & {r.key for r in sp.good_train}
    assert not {r.key for r in sp.support} & {r.key for r in sp.heldout}


def test_few_shot_split_errors(tmp_path, rng):
    ds = read_mvtec(_make_mvtec(tmp_path, rng, n_defect=3))
    with pytest.raises(DefectlabError, match="3 defect images"):
        few_shot_split(ds, "widget", shots=3)
    with pytest.raises(DefectlabError, match="unknown category 'nope'"):
        few_shot_split(ds, "nope", shots=1)


# ---------------------------------------------------------------- writer

def _write_some(root, rng, n, overwrite=False, start=0):
    w = DatasetWriter(root, overwrite=overwrite)
    for i in range(start, n):
        key = w.key("cat", "test", "scar", f"{i:03d}")
        if w.done(key):
            continue
        img = np.random.default_rng([7, i]).random((16, 16, 3)).astype(np.float32)
        m = np.zeros((16, 16), bool); m[i % 8:i % 8 + 4, 2:6] = True
        w.add(img, m, category="cat", label="scar", name=f"{i:03d}", method="demo", params={"a": (1, 2)}, seed=i,
              source=f"good/{i}.png")
    return w


def test_writer_layout_manifest_and_readback(tmp_path, rng):
    w = _write_some(tmp_path / "out", rng, 3)
    man = read_manifest(tmp_path / "out")
    assert [e["file"] for e in man] == [f"cat/test/scar/{i:03d}.png" for i in range(3)]
    assert man[0]["params"] == {"a": [1, 2]} and man[0]["mask"] == "cat/ground_truth/scar/000_mask.png"
    assert w.verify() == []
    ds = read_mvtec(tmp_path / "out")
    assert len(ds) == 3 and ds[0].mask().sum() == 16


def test_writer_resume_gives_the_same_bytes(tmp_path, rng):
    full = _write_some(tmp_path / "full", rng, 6)
    _write_some(tmp_path / "part", rng, 3)
    # simulate a crash: a leftover temp file and a torn manifest line
    (tmp_path / "part" / "cat" / "test" / "scar" / ".003.png.abc.part").write_bytes(b"junk")
    with open(tmp_path / "part" / "manifest.jsonl", "a") as fh:
        fh.write('{"key": "cat/test/scar/003", "fi')
    resumed = _write_some(tmp_path / "part", rng, 6)
    assert len(resumed.entries) == 6
    for key, e in full.entries.items():
        assert resumed.entries[key]["sha256"] == e["sha256"]
    assert all(json.loads(line) for line in (tmp_path / "part" / "manifest.jsonl").read_text().splitlines())


def test_writer_refuses_to_overwrite(tmp_path, rng):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DefectlabError, match="not written by defectlab"):
        DatasetWriter(foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    w = _write_some(tmp_path / "out", rng, 1)
    with pytest.raises(DefectlabError, match="already written"):
        w.add(np.zeros((16, 16, 3), np.float32), np.ones((16, 16), bool), category="cat", label="scar", name="000")
    w2 = DatasetWriter(tmp_path / "out", overwrite=True)
    assert w2.entries == {}


def test_writer_rejects_bad_samples_without_writing(tmp_path):
    w = DatasetWriter(tmp_path / "out")
    img = np.zeros((16, 16, 3), np.float32)
    with pytest.raises(DefectlabError, match="differs from its image"):
        w.add(img, np.ones((8, 8), bool), category="c", label="x", name="a")
    with pytest.raises(DefectlabError, match="empty"):
        w.add(img, np.zeros((16, 16), bool), category="c", label="x", name="a")
    with pytest.raises(DefectlabError, match=r"\[0, 1\]"):
        w.add(img + 2, np.ones((16, 16), bool), category="c", label="x", name="a")
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == [".defectlab-dataset"]
    # an all-ones mask is a valid (if extreme) defect
    w.add(img, np.ones((16, 16), bool), category="c", label="x", name="full")


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    from defectlab import imageio

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(imageio.os, "fsync", boom)
    with pytest.raises(OSError):
        imageio.write_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- bad input

def test_bad_image_files(tmp_path):
    (tmp_path / "garbage.png").write_bytes(b"not an image at all")
    with pytest.raises(DefectlabError, match="garbage.png: not a readable image"):
        read_image(tmp_path / "garbage.png")
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    (tmp_path / "trunc.png").write_bytes(good.read_bytes()[:200])
    with pytest.raises(DefectlabError, match="trunc.png"):
        read_image(tmp_path / "trunc.png")
    with pytest.raises(DefectlabError, match="missing.png: file not found"):
        read_image(tmp_path / "missing.png")


def test_rgba_and_16bit_images(tmp_path):
    rgba = np.full((8, 8, 4), 200, np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    assert read_image(tmp_path / "opaque.png").shape == (8, 8, 3)
    rgba[0, 0, 3] = 10
    Image.fromarray(rgba).save(tmp_path / "transparent.png")
    with pytest.raises(DefectlabError, match="transparent.png: image has a transparent alpha"):
        read_image(tmp_path / "transparent.png")
    deep = np.full((8, 8), 65535, np.uint16)
    deep[0, 0] = 0
    Image.fromarray(deep).save(tmp_path / "deep.png")
    img = read_image(tmp_path / "deep.png")
    assert img.shape == (8, 8, 1) and img.max() == 1.0 and img.min() == 0.0


def test_mask_size_mismatch_names_the_file(tmp_path, rng):
    root = _make_mvtec(tmp_path, rng)
    _png(root / "widget" / "ground_truth" / "hole" / "000_mask.png", np.zeros((5, 5), np.uint8))
    rec = read_mvtec(root).filter(label="hole")[0]
    with pytest.raises(DefectlabError, match=r"000_mask.png: mask size \(5, 5\) differs"):
        rec.load()
    assert read_mask(root / "widget" / "ground_truth" / "hole" / "001_mask.png").any()


def test_missing_folders_and_unknown_categories(tmp_path, rng):
    with pytest.raises(DefectlabError, match="nowhere: data set folder not found"):
        open_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DefectlabError, match="no category folder"):
        read_mvtec(tmp_path / "empty")
    root = _make_mvtec(tmp_path / "mv", rng)
    (root / "widget" / "ground_truth" / "hole" / "002_mask.png").unlink()
    with pytest.raises(DefectlabError, match="002.png: defect image has no mask"):
        read_mvtec(root)
    with pytest.raises(DefectlabError, match="unknown data set format"):
        open_dataset(root, format="coco")
    with pytest.raises(DefectlabError, match="Magnetic Tile"):
        read_magnetic_tile(tmp_path / "empty")


def test_foreground_estimation_on_a_disc():
    from defectlab.data import estimate_foreground

    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 30) ** 2 + (xx - 34) ** 2 < 18 ** 2
    img = np.where(disc[..., None], [0.8, 0.6, 0.3], [0.1, 0.1, 0.12]).astype(np.float32)
    img[28:32, 30:40] = 0.1  # a dark defect inside the object stays foreground (holes are filled)
    fg = estimate_foreground(img, "object")
    assert (fg == disc).mean() > 0.98 and fg[30, 35]
    ring = disc & ((yy - 30) ** 2 + (xx - 34) ** 2 >= 8 ** 2)  # a washer: its real hole is background
    img = np.where(ring[..., None], [0.8, 0.6, 0.3], [0.1, 0.1, 0.12]).astype(np.float32)
    assert (estimate_foreground(img, "object") == ring).mean() > 0.98
    assert estimate_foreground(img, "texture").all()
