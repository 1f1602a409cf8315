"""Export to COCO / YOLO / MVTec: masks survive the round trip, provenance travels, output is atomic."""
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_fill_holes

from defectlab import DefectlabError
from defectlab.cli import main
from defectlab.data import DatasetWriter, read_mvtec
from defectlab.export import (box_fill_ratio, box_fill_ratios, draw_boxes, export, join_polygons, label_instances,
                              mask_instances, rasterize_polygons, rle)

H, W = 64, 80


def disk(cy, cx, r):
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def make_masks():
    ring = disk(30, 36, 16) & ~disk(30, 36, 7)  # one instance with a hole
    pair = np.zeros((H, W), bool)
    pair[10:30, 8:24] = True
    pair[14:40, 28:44] = True  # 4 background columns (24..27) between the two parts
    blob = disk(34, 30, 12) | disk(26, 46, 9)  # one irregular instance without holes
    return {"tile/test/crack/ring": ring, "tile/test/crack/pair": pair, "tile/test/stain/blob": blob}


METHODS = {"ring": "cutpaste", "pair": "perlin", "blob": "cutpaste"}


@pytest.fixture
def masks():
    return make_masks()


def write_set(root, masks, *, good_train=False):
    rng = np.random.default_rng(0)
    with DatasetWriter(root) as w:
        for i, (key, mask) in enumerate(masks.items()):
            cat, split, label, name = key.split("/")
            image = rng.random((H, W, 3), dtype=np.float32)
            w.add(image, mask, category=cat, split=split, label=label, name=name, method=METHODS[name],
                  params={"area": [0.1, 0.2], "index": i}, seed=100 + i, source=f"tile/train/good/{i:03d}")
        w.add(rng.random((H, W, 3), dtype=np.float32), None, category="tile", split="test", label="good", name="g0")
        if good_train:
            w.add(rng.random((H, W, 3), dtype=np.float32), None, category="tile", split="train", label="good", name="t0")
    return Path(root)


@pytest.fixture
def synth(tmp_path, masks):
    return write_set(tmp_path / "synth", masks)


# ---------------------------------------------------------------- instances, RLE
def test_rle_matches_pycocotools_both_ways(rng):
    mask_api = pytest.importorskip("pycocotools.mask")
    cases = [rng.random((37, 23)) < p for p in (0.05, 0.5, 0.95)]
    cases += [np.zeros((5, 7), bool), np.ones((5, 7), bool), make_masks()["tile/test/crack/ring"]]
    cases.append(np.zeros((300, 200), bool))
    cases[-1][100:250, 40:60] = True  # long runs: counts well above 32 and large negative differences
    for m in cases:
        ours = rle.encode(m)
        theirs = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ours["counts"] == theirs["counts"].decode()
        assert ours["size"] == list(theirs["size"])
        assert np.array_equal(rle.decode(ours), m)
        assert np.array_equal(rle.decode(rle.encode(m, compressed=False)), m)
        assert np.array_equal(mask_api.decode(ours).astype(bool), m)
        assert rle.area(ours) == m.sum() == int(mask_api.area(theirs))
    with pytest.raises(DefectlabError):
        rle.decode({"size": [2, 2], "counts": [1, 2]})


def test_instances_are_8_connected_and_merge_by_gap():
    m = np.zeros((20, 20), bool)
    m[2:5, 2:5] = True
    m[5, 5] = True  # touches the square diagonally: same instance
    m[2:5, 9:12] = True  # 3 background columns (6, 7, 8) from (5, 5)'s column... and 4 from the square
    assert label_instances(m)[1] == 2
    assert label_instances(m, 2)[1] == 2
    assert label_instances(m, 3)[1] == 1
    edge = np.zeros((10, 10), bool)
    edge[7:10, 0:2] = edge[7:10, 5:10] = True  # gap of 3 at the image's bottom-right border
    assert [label_instances(edge, k)[1] for k in (2, 3)] == [2, 1]
    merged = mask_instances(m, 3)[0]
    assert np.array_equal(merged.mask, m) and merged.box == (2, 2, 12, 6)
    with pytest.raises(DefectlabError):
        label_instances(m, -1)


def test_polygons_rasterise_back(masks):
    coco_mask = pytest.importorskip("pycocotools.mask")
    for key, m in masks.items():
        for inst in mask_instances(m):
            polys = inst.polygons()
            ours = rasterize_polygons(polys, (H, W))
            theirs = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polys, H, W))).astype(bool)
            solid = binary_fill_holes(inst.mask)  # polygons carry the outer outline only: holes come back filled
            assert inst.has_holes == key.endswith("ring") == (solid.sum() > inst.area)
            assert iou(ours, solid) >= 0.95 and iou(theirs, solid) >= 0.95, key
    two = mask_instances(masks["tile/test/crack/pair"], merge_distance=4)
    assert len(two) == 1 and len(two[0].polygons()) == 2
    joined = rasterize_polygons([join_polygons(two[0].polygons())], (H, W))
    assert iou(joined, two[0].mask) >= 0.95


def test_box_fill_ratio_shows_thin_defects_are_mostly_background():
    square = np.zeros((50, 50), bool)
    square[10:30, 5:25] = True
    assert box_fill_ratio(square) == 1.0
    diagonal = np.eye(40, dtype=bool)  # a one-pixel scratch at 45 degrees
    assert box_fill_ratio(diagonal) == pytest.approx(1 / 40)
    assert box_fill_ratios(square | np.pad(np.eye(10, dtype=bool), ((38, 2), (38, 2)))) == [1.0, pytest.approx(0.1)]
    with pytest.raises(DefectlabError):
        box_fill_ratio(np.zeros((4, 4), bool))


def test_draw_boxes_outlines_in_one_colour_per_label():
    img = np.full((40, 50, 1), 0.5, np.float32)
    out = draw_boxes(img, [(5, 6, 20, 30), (25, 6, 45, 30), (30, 32, 40, 38)], ["crack", "stain", "crack"])
    assert out.shape == (40, 50, 3) and out.dtype == np.float32
    assert not np.allclose(out[6, 10], 0.5) and np.allclose(out[15, 12], 0.5)  # edge drawn, inside untouched
    assert np.allclose(out[29, 5], out[37, 30])  # same label, same colour
    assert not np.allclose(out[29, 5], out[29, 25])
    with pytest.raises(DefectlabError):
        draw_boxes(img, [(5, 6, 20, 30)], ["a", "b"])


# ---------------------------------------------------------------- COCO
def load_coco(out, split="train"):
    return json.loads((out / "annotations" / f"instances_{split}.json").read_text())


def test_coco_round_trip_with_pycocotools(synth, masks, tmp_path):
    COCO = pytest.importorskip("pycocotools.coco").COCO
    summary = export(synth, "coco", tmp_path / "coco")
    out = tmp_path / "coco"
    assert summary["images"] == 4 and summary["good_images"] == 1 and summary["instances"] == 4
    assert summary["classes"] == ["crack", "stain"] and summary["segmentation"] == {"polygon": 3, "rle": 1}
    coco = COCO(str(out / "annotations" / "instances_train.json"))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    for img in coco.loadImgs(coco.getImgIds()):
        assert (out / "images" / "train" / img["file_name"]).is_file()
        key = img["extra"]["key"]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        if img["extra"]["label"] == "good":
            assert anns == []
            continue
        assert img["extra"]["method"] == METHODS[key.rsplit("/", 1)[1]] and img["extra"]["seed"] >= 100
        assert img["extra"]["params"]["area"] == [0.1, 0.2]
        instances = mask_instances(masks[key])
        assert len(anns) == len(instances)
        for ann, inst in zip(anns, instances):
            assert names[ann["category_id"]] == img["extra"]["label"]
            x0, y0, x1, y1 = inst.box
            assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0] and ann["area"] == inst.area
            back = coco.annToMask(ann).astype(bool)
            if isinstance(ann["segmentation"], dict):  # RLE: the hole is kept exactly
                assert inst.has_holes and np.array_equal(back, inst.mask)
                assert np.array_equal(rle.decode(ann["segmentation"]), inst.mask)
            else:
                assert iou(back, inst.mask) >= 0.95
    info = load_coco(out)["info"]
    assert info["defectlab"]["provenance"] is True


def test_coco_always_rle_is_exact_and_merge_joins_parts(synth, masks, tmp_path):
    COCO = pytest.importorskip("pycocotools.coco").COCO
    export(synth, "coco", tmp_path / "rle", segmentation="rle")
    coco = COCO(str(tmp_path / "rle" / "annotations" / "instances_train.json"))
    union = {}
    for ann in coco.loadAnns(coco.getAnnIds()):
        key = coco.imgs[ann["image_id"]]["extra"]["key"]
        union[key] = union.get(key, 0) | coco.annToMask(ann).astype(bool)
    assert union.keys() == masks.keys() and all(np.array_equal(union[k], masks[k]) for k in masks)

    summary = export(synth, "coco", tmp_path / "merged", merge_distance=4)
    assert summary["instances"] == 3
    doc = load_coco(tmp_path / "merged")
    pair_id = next(i["id"] for i in doc["images"] if i["extra"]["key"].endswith("pair"))
    (ann,) = [a for a in doc["annotations"] if a["image_id"] == pair_id]
    assert len(ann["segmentation"]) == 2 and ann["bbox"] == [8, 10, 36, 30]
    assert export(synth, "coco", tmp_path / "m3", merge_distance=3)["instances"] == 4


def test_class_from_method_and_same_bytes_twice(synth, tmp_path):
    a = export(synth, "coco", tmp_path / "a", class_from="method")
    export(synth, "coco", tmp_path / "b", class_from="method")
    assert a["classes"] == ["cutpaste", "perlin"]
    assert (tmp_path / "a/annotations/instances_train.json").read_bytes() == \
        (tmp_path / "b/annotations/instances_train.json").read_bytes()


# ---------------------------------------------------------------- YOLO
def read_labels(path):
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines()]


def test_yolo_bbox(synth, masks, tmp_path):
    out = tmp_path / "yolo"
    summary = export(synth, "yolo-bbox", out)
    assert summary["splits"] == {"train": 4}
    prov = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    assert len(prov) == 4
    for p in prov:
        rows = read_labels(out / p["labels"])
        assert (out / p["image"]).is_file()
        if p["label"] == "good":
            assert rows == [] and (out / p["labels"]).read_text() == ""
            continue
        assert p["method"] == METHODS[p["key"].rsplit("/", 1)[1]] and "seed" in p and "params" in p
        boxes = [inst.box for inst in mask_instances(masks[p["key"]])]
        assert len(rows) == len(boxes)
        for (cls, xc, yc, bw, bh), (x0, y0, x1, y1) in zip(rows, boxes):
            assert cls == ["crack", "stain"].index(p["label"])
            got = ((xc - bw / 2) * W, (yc - bh / 2) * H, (xc + bw / 2) * W, (yc + bh / 2) * H)
            assert np.allclose(got, (x0, y0, x1, y1), atol=1e-3)
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "crack", 1: "stain"} and data["nc"] == 2
    assert data["train"] == "images/train" and Path(data["path"]) == out.resolve()


def test_yolo_seg_polygons_rasterise_back(synth, masks, tmp_path):
    out = tmp_path / "seg"
    export(synth, "yolo-seg", out, merge_distance=4)
    for line in (out / "provenance.jsonl").read_text().splitlines():
        p = json.loads(line)
        rows = read_labels(out / p["labels"])
        if p["label"] == "good":
            assert rows == []
            continue
        instances = mask_instances(masks[p["key"]], merge_distance=4)
        assert len(rows) == len(instances)
        for row, inst in zip(rows, instances):
            xy = np.asarray(row[1:]).reshape(-1, 2) * (W, H)
            back = rasterize_polygons([xy.ravel().tolist()], (H, W))
            assert iou(back, binary_fill_holes(inst.mask)) >= 0.95  # YOLO polygons have no holes


def test_yolo_uses_val_when_source_has_train_and_test(tmp_path, masks):
    src = write_set(tmp_path / "src", masks, good_train=True)
    summary = export(src, "yolo-bbox", tmp_path / "y")
    assert summary["splits"] == {"train": 1, "val": 4}
    assert sorted(p.name for p in (tmp_path / "y/labels/train").iterdir()) == ["tile__good__t0.txt"]
    assert "val: images/val" in (tmp_path / "y/data.yaml").read_text()
    assert sorted(export(src, "coco", tmp_path / "c")["splits"]) == ["train", "val"]
    assert (tmp_path / "c/annotations/instances_val.json").is_file()


# ---------------------------------------------------------------- MVTec
def test_mvtec_copy_keeps_files_and_manifest(synth, masks, tmp_path):
    out = tmp_path / "clean"
    (synth / "tile/test/crack/.stray.png.part").write_bytes(b"half")  # left-overs are not copied
    export(synth, "mvtec", out)
    ds = read_mvtec(out)
    assert sorted(r.key for r in ds) == sorted(list(masks) + ["tile/test/good/g0"])
    for r in ds:
        assert r.image_path.read_bytes() == (synth / f"{r.key}.png").read_bytes()
        if r.is_defect:
            assert np.array_equal(r.mask(), masks[r.key])
    assert not (out / "tile/test/crack/.stray.png.part").exists()
    assert DatasetWriter(out).verify() == []  # manifest checksums match the copied files
    entries = {e["key"]: e for e in (json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines())}
    assert entries["tile/test/crack/ring"]["method"] == "cutpaste" and entries["tile/test/crack/ring"]["seed"] == 100

    by_method = tmp_path / "by_method"
    export(synth, "mvtec", by_method, class_from="method")
    assert read_mvtec(by_method).defect_types() == ["cutpaste", "perlin"]
    moved = {e["key"]: e for e in (json.loads(x) for x in (by_method / "manifest.jsonl").read_text().splitlines())}
    assert moved["tile/test/cutpaste/ring"]["source_key"] == "tile/test/crack/ring"
    assert moved["tile/test/perlin/pair"]["label"] == "perlin" and "source_key" not in moved["tile/test/good/g0"]


def test_plain_mvtec_without_manifest_has_no_provenance(synth, tmp_path):
    (synth / "manifest.jsonl").unlink()
    (synth / ".defectlab-dataset").unlink()
    summary = export(synth, "coco", tmp_path / "c")
    assert summary["provenance"] is False and summary["instances"] == 4
    extra = load_coco(tmp_path / "c")["images"][0]["extra"]
    assert "method" not in extra and extra["category"] == "tile"
    export(synth, "mvtec", tmp_path / "m")
    assert not (tmp_path / "m/manifest.jsonl").exists() and len(read_mvtec(tmp_path / "m")) == 4
    with pytest.raises(DefectlabError, match="manifest"):
        export(synth, "coco", tmp_path / "x", class_from="method")


# ---------------------------------------------------------------- errors, atomicity
def leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".") and (p.suffix in (".part", ".old"))]


def test_existing_output_needs_overwrite(synth, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DefectlabError, match="already exists"):
        export(synth, "coco", out)
    assert (out / "keep.txt").read_text() == "mine"
    # --overwrite replaces what an export wrote, never a file it did not write (issue #21)
    with pytest.raises(DefectlabError, match="did not write .e.g. keep.txt"):
        export(synth, "coco", out, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    export(synth, "coco", out, overwrite=True)
    export(synth, "yolo-bbox", out, overwrite=True)  # a previous export is replaced whole
    assert not (out / "annotations").exists() and (out / "data.yaml").is_file()
    assert leftovers(tmp_path) == []


def test_bad_input_is_refused_and_leaves_nothing(tmp_path, synth):
    with pytest.raises(DefectlabError, match="input folder not found"):
        export(tmp_path / "missing", "coco", tmp_path / "o1")
    with pytest.raises(DefectlabError, match="unknown export format"):
        export(synth, "voc", tmp_path / "o2")
    with pytest.raises(DefectlabError, match="must not contain or lie inside"):
        export(synth, "coco", synth / "export")
    goods = tmp_path / "goods"
    with DatasetWriter(goods) as w:
        w.add(np.zeros((8, 8, 1), np.float32), None, category="c", split="test", label="good", name="a")
    with pytest.raises(DefectlabError, match="no defect images with masks"):
        export(goods, "yolo-bbox", tmp_path / "o3")
    (synth / "tile/test/stain/blob.png").write_bytes(b"not a png")  # fails half-way through writing
    with pytest.raises(DefectlabError, match="blob.png"):
        export(synth, "coco", tmp_path / "o4")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- command line
def test_cli_export_and_errors(synth, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["export", "--input", str(synth), "--format", "yolo-seg", "--out", str(out),
                 "--class-from", "method", "--merge-distance", "4"]) == 0
    assert "4 images" in capsys.readouterr().out
    assert (out / "data.yaml").is_file() and '"perlin"' in (out / "data.yaml").read_text()
    assert main(["export", "--input", str(synth), "--format", "coco", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("defectlab: error: ")
    assert main(["export", "--input", str(synth), "--format", "coco", "--out", str(out), "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "coco"
    with pytest.raises(SystemExit) as exc:
        main(["export", "--input", str(synth), "--format", "voc", "--out", str(out)])
    assert exc.value.code == 2
