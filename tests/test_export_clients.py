"""Real consumers read our exports: ultralytics' YOLO dataset loader and anomalib's Folder datamodule.

(pycocotools' reading of the COCO export is tested in test_export.py.) Each test skips, saying why, where
its client is not installed. anomalib is never a dependency of defectlab: its test runs in the separate
environment `make anomalib-venv` builds (`.venv-anomalib`, or `$DEFECTLAB_ANOMALIB_PYTHON`).
"""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from defectlab.data import DatasetWriter
from defectlab.export import export, mask_instances, rasterize_polygons

H, W = 64, 80
REPO = Path(__file__).resolve().parents[1]


def disk(cy, cx, r):
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


MASKS = {  # key -> mask; several instances per image, one with a hole
    "tile/test/crack/000": disk(20, 20, 8) | disk(44, 60, 10),
    "tile/test/crack/001": disk(32, 40, 16) & ~disk(32, 40, 6),
    "tile/test/stain/000": np.pad(np.ones((10, 30), bool), ((5, H - 15), (40, W - 70))) | disk(48, 16, 7),
}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A defectlab set: 3 good train, 2 good test, 3 defective test images (5 instances)."""
    root = tmp_path_factory.mktemp("clients") / "synth"
    rng = np.random.default_rng(0)
    with DatasetWriter(root) as w:
        for key, mask in MASKS.items():
            cat, split, label, name = key.split("/")
            w.add(rng.random((H, W, 3), dtype=np.float32), mask, category=cat, split=split, label=label, name=name,
                  method="cutpaste", params={}, seed=0)
        for split, n in (("train", 3), ("test", 2)):
            for i in range(n):
                w.add(rng.random((H, W, 3), dtype=np.float32), None, category="tile", split=split, label="good",
                      name=f"g{i}")
    return root


def expected_instances(key):
    return mask_instances(MASKS[key]) if key in MASKS else []


ULTRALYTICS = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset
    yaml_path, task = sys.argv[1], sys.argv[2]
    data = check_det_dataset(yaml_path, autodownload=False)
    labels = []
    for split in ("train", "val"):
        if data.get(split) and Path(data[split]).is_dir():
            ds = YOLODataset(img_path=data[split], data=data, task=task, imgsz=80, augment=False, rect=False,
                             cache=False, single_cls=False, prefix=split + ": ")
            labels += [{"im_file": lab["im_file"], "shape": list(lab["shape"]), "cls": lab["cls"].ravel().tolist(),
                        "bboxes": lab["bboxes"].tolist(), "segments": [s.tolist() for s in lab["segments"]]}
                       for lab in ds.labels]
    print(json.dumps({"names": {str(k): v for k, v in data["names"].items()}, "nc": data["nc"], "labels": labels}))
""")


def _ultralytics_labels(yaml_path, task):
    """ultralytics' own loader, as `yolo train data=...` builds it (labels only: no weights, no network), in a
    child process: importing ultralytics patches PIL.Image.open for the whole process."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "false"}
    run = subprocess.run([sys.executable, "-c", ULTRALYTICS, str(yaml_path), task], capture_output=True, text=True,
                         timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _labels_by_key(out, labels):
    prov = {p["image"]: p for p in (json.loads(x) for x in (out / "provenance.jsonl").read_text().splitlines())}
    return {prov[Path(lab["im_file"]).resolve().relative_to(out.resolve()).as_posix()]["key"]: lab for lab in labels}


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_ultralytics_reads_every_instance(source, tmp_path, task):
    out = tmp_path / task
    export(source, "yolo-bbox" if task == "detect" else "yolo-seg", out)
    data = _ultralytics_labels(out / "data.yaml", task)
    assert data["names"] == {"0": "crack", "1": "stain"} and data["nc"] == 2
    found = _labels_by_key(out, data["labels"])
    assert len(found) == 8  # every image, good ones as negatives
    for key, lab in found.items():
        insts = expected_instances(key)
        assert lab["shape"] == [H, W] and len(lab["cls"]) == len(insts), key
        label = key.split("/")[2]
        assert all(int(c) == ["crack", "stain"].index(label) for c in lab["cls"])
        for (xc, yc, bw, bh), inst in zip(lab["bboxes"], insts):  # normalised xywh
            x0, y0, x1, y1 = inst.box
            assert np.allclose(((xc - bw / 2) * W, (yc - bh / 2) * H, (xc + bw / 2) * W, (yc + bh / 2) * H),
                               (x0, y0, x1, y1), atol=0.5), key
        if task == "segment":
            assert len(lab["segments"]) == len(insts)
            for seg, inst in zip(lab["segments"], insts):
                back = rasterize_polygons([(np.asarray(seg) * (W, H)).ravel().tolist()], (H, W))
                outline = inst.mask | back
                assert (back & inst.mask).sum() / outline.sum() >= 0.8, key  # outer outline: holes are filled


def anomalib_python():
    path = Path(os.environ.get("DEFECTLAB_ANOMALIB_PYTHON", REPO / ".venv-anomalib" / "bin" / "python"))
    if not path.is_file():
        pytest.skip(f"anomalib's environment is absent ({path}); build it with `make anomalib-venv`")
    return path


ANOMALIB_FOLDER = textwrap.dedent("""
    import json, sys
    from anomalib.data import Folder
    root = sys.argv[1]
    dm = Folder(name="tile", root=root, normal_dir="train/good", normal_test_dir="test/good",
                abnormal_dir=["test/crack", "test/stain"], mask_dir=["ground_truth/crack", "ground_truth/stain"],
                train_batch_size=4, eval_batch_size=4, num_workers=0, val_split_mode="same_as_test")
    dm.setup()
    test = dm.test_data.samples
    masks = {}
    for batch in dm.test_dataloader():
        for path, label, mask in zip(batch.image_path, batch.gt_label, batch.gt_mask):
            masks[path] = [int(label), int(mask.sum())]
    print(json.dumps({"train_good": int((dm.train_data.samples.label_index == 0).sum()),
                      "test_good": int((test.label_index == 0).sum()), "test_defect": int((test.label_index == 1).sum()),
                      "masks_found": int((test.mask_path != "").sum()), "task": str(dm.test_data.task), "items": masks}))
""")


def test_anomalib_folder_reads_our_mvtec_export(source, tmp_path):
    python = anomalib_python()
    out = tmp_path / "mvtec"
    export(source, "mvtec", out)
    run = subprocess.run([str(python), "-c", ANOMALIB_FOLDER, str(out / "tile")], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert (got["train_good"], got["test_good"], got["test_defect"], got["masks_found"]) == (3, 2, 3, 3)
    assert got["task"].lower().endswith("segmentation")
    for path, (label, pixels) in got["items"].items():
        key = Path(path).relative_to(out).with_suffix("").as_posix()
        assert label == int(key in MASKS), key
        assert pixels == (MASKS[key].sum() if key in MASKS else 0), key
    assert len(got["items"]) == 5
