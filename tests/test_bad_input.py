"""Bad input (issue #21): each case is built in a temporary folder and must end as a `DefectlabError`
naming the file and the problem (or a one-line CLI error, exit status 2), or as a correct result --
never a silent wrong result, a raw traceback or a half-written folder."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlab import DefectlabError
from defectlab.imageio import read_image, read_mask

PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------ helpers
def save(path: Path, array, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)
    return path


def make_mvtec(root: Path, mask_value: int = 255, n_defect: int = 3, size: int = 32) -> Path:
    """widget: 4 train/good, 2 test/good, `n_defect` test/crack with masks whose defect pixels are `mask_value`."""
    rng = np.random.default_rng(0)
    cat = root / "widget"
    for split, n in (("train", 4), ("test", 2)):
        for i in range(n):
            save(cat / split / "good" / f"{i:03d}.png", (rng.random((size, size)) * 255).astype(np.uint8))
    for i in range(n_defect):
        save(cat / "test" / "crack" / f"{i:03d}.png", (rng.random((size, size)) * 255).astype(np.uint8))
        mask = np.zeros((size, size), np.uint8)
        mask[4 + i:12 + i, 6:14] = mask_value
        save(cat / "ground_truth" / "crack" / f"{i:03d}_mask.png", mask)
    return root


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------------ image readers
def test_16_bit_images_are_scaled_by_their_bit_depth_not_their_content(tmp_path):
    dark = np.full((8, 8), 200, np.uint16)  # a dark 16-bit image: 200 / 65535, not 200 / 255
    img = read_image(save(tmp_path / "dark16.png", dark))
    assert img.shape == (8, 8, 1) and np.allclose(img, 200 / 65535)


def test_integer_and_float_images_outside_their_range_are_refused_not_clipped(tmp_path):
    big = np.full((8, 8), 70000, np.int32)
    with pytest.raises(DefectlabError, match=r"i32\.tif: I image values span 70000\.\.70000, outside 0\.\.65535"):
        read_image(save(tmp_path / "i32.tif", big))
    hot = np.linspace(0, 3, 64, dtype=np.float32).reshape(8, 8)
    with pytest.raises(DefectlabError, match=r"f\.tif: float image values must lie in \[0, 1\] \(found 0\.\.3"):
        read_image(save(tmp_path / "f.tif", hot))
    fine = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    assert np.array_equal(read_image(save(tmp_path / "ok.tif", fine))[:, :, 0], fine)  # exact, not via 8 bits


def test_palette_alpha_and_multipage_images(tmp_path):
    grey = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P")
    grey.save(tmp_path / "grey_p.png")
    assert read_image(tmp_path / "grey_p.png").shape == (8, 8, 1)  # a grey palette stays grey
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 255
    assert read_image(save(tmp_path / "opaque.png", rgba)).shape == (8, 8, 3)
    rgba[0, 0, 3] = 10
    with pytest.raises(DefectlabError, match=r"clear\.png: image has a transparent alpha channel \(1 pixels\)"):
        read_image(save(tmp_path / "clear.png", rgba))
    frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(DefectlabError, match=r"pages\.tif: holds 2 frames or pages"):
        read_image(tmp_path / "pages.tif")


def test_truncated_and_non_image_files(tmp_path):
    data = (tmp_path / "src.png")
    save(data, (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    (tmp_path / "cut.png").write_bytes(data.read_bytes()[:200])
    with pytest.raises(DefectlabError, match=r"cut\.png: not a readable image"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(DefectlabError, match=r"notes\.png: not a readable image"):
        read_mask(tmp_path / "notes.png")


# ---------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("mode, value", [("L", 1), ("I;16", 1), ("L", 255), ("I;16", 65535)])
def test_masks_in_0_1_and_0_255_conventions_read_the_same(tmp_path, mode, value):
    mask = np.zeros((16, 16), np.uint16 if mode == "I;16" else np.uint8)
    mask[3:9, 4:7] = value
    got = read_mask(save(tmp_path / "m.png", mask))
    assert got.dtype == bool and got.sum() == 18 and got[3:9, 4:7].all()


def test_label_map_masks_are_refused_not_read_as_empty(tmp_path):
    labels = np.zeros((16, 16), np.uint8)
    labels[2:5, 2:5], labels[8:12, 8:12] = 1, 3
    with pytest.raises(DefectlabError, match=r"labels\.png: mask values lie in 0\.\.3.*label map"):
        read_mask(save(tmp_path / "labels.png", labels))


def test_a_data_set_of_0_1_masks_is_read_and_exported_with_its_defects(tmp_path):
    from defectlab.data import open_dataset
    from defectlab.export import export

    root = make_mvtec(tmp_path / "data", mask_value=1)
    ds = open_dataset(root)
    assert all(r.mask().sum() == 64 for r in ds if r.is_defect)
    summary = export(root, "coco", tmp_path / "coco")
    assert summary["instances"] == 3 and summary["empty_defect_masks"] == 0


def test_a_data_set_whose_defect_masks_are_all_empty_is_an_error(tmp_path):
    from defectlab.benchmark import run_benchmark
    from defectlab.data import open_dataset
    from defectlab.export import export

    root = make_mvtec(tmp_path / "data", mask_value=0)
    with pytest.raises(DefectlabError, match=r"000_mask\.png: this and all other 3 defect masks of widget .* are empty"):
        open_dataset(root).check_defect_masks("widget")
    with pytest.raises(DefectlabError, match=r"all 3 defect masks are empty \(e\.g\. .*000_mask\.png\)"):
        export(root, "yolo-bbox", tmp_path / "yolo")
    assert not (tmp_path / "yolo").exists() and hidden_leftovers(tmp_path) == []
    with pytest.raises(DefectlabError, match="defect masks of widget .* are empty"):
        run_benchmark(root, "widget", ["cutpaste"], tmp_path / "bench", format="mvtec", shots=1, seeds=[0], size=32,
                      show_progress=False)
    assert not (tmp_path / "bench").exists()


def test_visa_split_csv_and_manifest_lines_are_checked(tmp_path):
    from defectlab.data import open_dataset, read_manifest

    root = tmp_path / "visa"
    save(root / "candle" / "Data" / "Images" / "Normal" / "000.JPG", np.zeros((8, 8, 3), np.uint8))
    (root / "split_csv").mkdir()
    (root / "split_csv" / "1cls.csv").write_text("object,split,image\ncandle,train,candle/Data/Images/Normal/000.JPG\n")
    with pytest.raises(DefectlabError, match=r"1cls\.csv: missing column\(s\) label"):
        open_dataset(root)
    (root / "split_csv" / "1cls.csv").write_text("object,split,label,image,mask\n"
                                                 "candle,train,normal,candle/Data/Images/Normal/000.JPG,\n"
                                                 "candle,test,anomaly,candle/Data/Images/Anomaly/001.JPG,x.png\n")
    with pytest.raises(DefectlabError, match=r"1cls\.csv: line 3: image .*001\.JPG not found"):
        open_dataset(root)
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "manifest.jsonl").write_text('{"key": "a/test/good/0"}\n{"key": \n')
    with pytest.raises(DefectlabError, match=r"manifest\.jsonl: line 2 is not valid JSON"):
        read_manifest(tmp_path / "set")


# ------------------------------------------------------------------------------------ record identity
def test_two_files_that_differ_only_by_extension_are_refused(tmp_path):
    from defectlab.data import open_dataset

    root = make_mvtec(tmp_path / "data")
    twin = root / "widget" / "test" / "crack" / "000.jpg"
    Image.open(root / "widget" / "test" / "crack" / "000.png").save(twin)
    with pytest.raises(DefectlabError, match=r"000\.(png|jpg) and .*000\.(png|jpg): both are record widget/test/crack/000"):
        open_dataset(root)


def test_one_image_reached_twice_is_refused(tmp_path):
    from defectlab.data import open_dataset

    root = make_mvtec(tmp_path / "data")
    os.symlink(root / "widget" / "train" / "good" / "000.png", root / "widget" / "test" / "good" / "linked.png")
    with pytest.raises(DefectlabError, match=r"linked\.png: the same image file is reached twice"):
        open_dataset(root)


def test_split_overlap_is_a_real_check_not_an_assert(tmp_path):
    from defectlab.data import FewShotSplit, Record
    from defectlab.data.split import check_disjoint

    a = Record("widget", "test", "crack", "a", tmp_path / "a.png", tmp_path / "a_mask.png")
    b = Record("widget", "test", "crack", "b", tmp_path / "b.png", tmp_path / "b_mask.png")
    check_disjoint(FewShotSplit([a], [b], [], []))
    same_file = Record("widget", "test", "crack", "c", tmp_path / "sub" / ".." / "a.png", tmp_path / "c_mask.png")
    with pytest.raises(DefectlabError, match=r"a\.png: would be in both the support and the heldout part"):
        check_disjoint(FewShotSplit([a], [same_file], [], []), tmp_path)  # compared as the file that is loaded
    script = textwrap.dedent("""
        from pathlib import Path
        from defectlab import DefectlabError
        from defectlab.data import FewShotSplit, Record
        from defectlab.data.split import check_disjoint
        r = Record("w", "test", "crack", "a", Path("a.png"), None)
        try:
            check_disjoint(FewShotSplit([r], [r], [], []))
        except DefectlabError:
            print("refused")
    """)
    run = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert run.stdout.strip() == "refused", run.stderr  # still checked under python -O (an assert would vanish)


def test_duplicate_seeds_are_refused(tmp_path):
    from defectlab.benchmark import run_benchmark

    root = make_mvtec(tmp_path / "data")
    with pytest.raises(DefectlabError, match="--seeds: seed 1 listed twice"):
        run_benchmark(root, "widget", ["cutpaste"], tmp_path / "bench", format="mvtec", shots=1, seeds=[1, 0, 1],
                      size=32, show_progress=False)
    assert not (tmp_path / "bench").exists()


# ---------------------------------------------------------------------------------------- export
def test_export_decodes_every_image_so_a_truncated_one_is_an_error(tmp_path):
    from defectlab.export import export

    root = make_mvtec(tmp_path / "data", size=64)
    good = root / "widget" / "train" / "good" / "001.png"
    good.write_bytes(good.read_bytes()[:150])  # header intact (the size is readable), pixels cut off
    for fmt in ("coco", "mvtec"):
        with pytest.raises(DefectlabError, match=r"train/good/001\.png: not a readable image"):
            export(root, fmt, tmp_path / f"out_{fmt}")
        assert not (tmp_path / f"out_{fmt}").exists()
    assert hidden_leftovers(tmp_path) == []


def test_a_huge_merge_distance_merges_everything_without_a_huge_kernel():
    from defectlab.export import mask_instances

    mask = np.zeros((20, 30), bool)
    mask[1, 1] = mask[18, 28] = mask[10, 3] = True
    # k = 10^9 would ask cv2 for a 10^18-byte kernel; any k >= the longer side gives the same answer
    assert [i.area for i in mask_instances(mask, 10**9)] == [3] == [i.area for i in mask_instances(mask, 30)]


def test_export_overwrite_never_deletes_files_it_did_not_write(tmp_path):
    from defectlab.export import export

    root = make_mvtec(tmp_path / "data")
    out = tmp_path / "out"
    export(root, "coco", out)
    (out / "annotations" / "my_notes.txt").write_text("mine")
    with pytest.raises(DefectlabError, match=r"holds 1 file\(s\) this tool did not write \(e\.g\. annotations/my_notes\.txt\)"):
        export(root, "yolo-seg", out, overwrite=True)
    assert (out / "annotations" / "my_notes.txt").read_text() == "mine"
    (out / "annotations" / "my_notes.txt").unlink()
    export(root, "yolo-seg", out, overwrite=True)
    assert (out / "data.yaml").is_file() and not (out / "annotations").exists()


def test_a_part_folder_left_by_a_killed_export_is_removed_by_the_next_one(tmp_path):
    from defectlab.export import export

    root = make_mvtec(tmp_path / "data")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.{int(dead.stdout)}.x1y2.part"
    (stale / "images").mkdir(parents=True)
    alive = tmp_path / f".out.{os.getpid() + 0}.mine.part"  # this process: still running, never touched
    alive.mkdir()
    export(root, "coco", tmp_path / "out")
    assert not stale.exists() and alive.exists()
    # killed between moving the old output aside and moving the new one in: the old one comes back
    moved = tmp_path / f".out.{int(dead.stdout)}.z9.old"
    moved.mkdir()
    os.replace(tmp_path / "out", moved / "previous")
    export(root, "yolo-bbox", tmp_path / "out", overwrite=True)
    assert not moved.exists() and (tmp_path / "out" / "data.yaml").is_file()


def test_sigterm_during_a_staged_write_leaves_no_part_folder(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from defectlab.staging import staged_folder
        with staged_folder({str(tmp_path / 'out')!r}) as stage:
            (stage / "half.txt").write_text("half")
            print("ready", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout.readline().strip() == "ready"
    assert any(p.name.endswith(".part") for p in tmp_path.iterdir())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []  # neither the output nor its hidden stage


# -------------------------------------------------------------------------------- command lines
def cli(capsys, *argv):
    from defectlab.cli import main

    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") <= 1, err
    return code, err.split("\r")[-1]  # the line after any progress bar


def test_cli_export_of_a_truncated_image_is_one_error_line(tmp_path, capsys):
    root = make_mvtec(tmp_path / "data", size=64)
    bad = root / "widget" / "test" / "crack" / "002.png"
    bad.write_bytes(bad.read_bytes()[:150])
    code, err = cli(capsys, "export", "--input", root, "--format", "coco", "--out", tmp_path / "o")
    assert code == 2 and err.startswith("defectlab: error: ") and "002.png: not a readable image" in err
    assert err.count("\n") == 1 and "Traceback" not in err and not (tmp_path / "o").exists()


BENCH = ["benchmark", "--format", "mvtec", "--category", "widget", "--methods", "cutpaste", "--shots", "1",
         "--seeds", "0", "--size", "32", "--detector-steps", "2", "--n-synthetic", "2", "--quality", "none", "--threads", "1"]


@pytest.mark.parametrize("extra, message", [
    (["--method-param", 'cutpaste.area_ratio="big"'],
     r"cutpaste: parameter area_ratio must be tuple\[float, float\], got 'big'"),
    (["--method-param", "cutpaste.area_ratio=[0.1]"], r"parameter area_ratio must be tuple\[float, float\]"),
    (["--seeds", "3,3"], "--seeds: seed 3 listed twice"),
    (["--seeds", "0-2,1"], "--seeds: seed 1 listed twice"),
    (["--real-share", "1.5"], r"--real-share must lie in \[0, 1\], got 1.5"),
    (["--real-share", "-0.1"], r"--real-share must lie in \[0, 1\], got -0.1"),
    (["--detector", "nope"], "--detector must be one or more of destseg, supersimplenet, unet \\(comma-separated\\), got 'nope'"),
    (["--detector", "destseg,unet,destseg"], "--detector: a detector is listed twice: destseg,unet,destseg"),
    (["--size", "100000"], "--size must be <= 8192, got 100000"),
    (["--size", "4096", "--n-synthetic", "100000"], r"needs about \d+\.\d GiB of memory, more than 80% of this machine's"),
])
def test_cli_benchmark_refuses_before_writing_anything(tmp_path, capsys, extra, message):
    import re

    root = make_mvtec(tmp_path / "data")
    code, err = cli(capsys, *BENCH, "--data", root, "--out", tmp_path / "bench", *extra)
    assert code == 2 and err.startswith("defectlab: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not (tmp_path / "bench").exists()


def test_cli_benchmark_unknown_data_and_impossible_out(tmp_path, capsys):
    code, err = cli(capsys, *BENCH, "--data", tmp_path / "nowhere", "--out", tmp_path / "bench")
    assert code == 2 and "nowhere: data set folder not found" in err
    root = make_mvtec(tmp_path / "data")
    (tmp_path / "file").write_text("x")
    code, err = cli(capsys, *BENCH, "--data", root, "--out", tmp_path / "file" / "bench")
    assert code == 2 and err.startswith("defectlab: error: ") and "file/bench" in err and "Traceback" not in err


@pytest.mark.parametrize("flag, value", [("--threads", "-1"), ("--threads", "0"), ("--shots", "-2"), ("--detector-steps", "0"),
                                        ("--steps", "0")])
def test_cli_benchmark_negative_numbers_are_usage_errors(tmp_path, capsys, flag, value):
    from defectlab.cli import main

    with pytest.raises(SystemExit) as exc:
        main([*BENCH, "--data", str(tmp_path), "--out", str(tmp_path / "b"), flag, value])
    assert exc.value.code == 2 and f"argument {flag}: must be >=" in capsys.readouterr().err


def test_adabldm_command_lines_end_bad_input_as_one_error_line(tmp_path, capsys):
    from defectlab.adabldm import generate, train

    assert train.main(["--data", "mvtec_ad", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m defectlab.adabldm.train: error: --data must be 'embedded'") and "'mvtec_ad'" in err
    assert train.main(["--threads", "-1", "--out", str(tmp_path / "run")]) == 2
    assert "--threads must be >= 1, got -1" in capsys.readouterr().err
    assert train.main(["--size", "100000", "--out", str(tmp_path / "run")]) == 2
    assert "--size must be <= 8192" in capsys.readouterr().err
    assert generate.main(["--checkpoint", str(tmp_path), "--n", "-3", "--out", str(tmp_path / "g")]) == 2
    assert "--n must be >= 1, got -3" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "g").exists()


# ---------------------------------------------------------------------------------------- weights
def test_adabldm_checkpoint_files_are_checked_against_their_sha256(tmp_path):
    from defectlab.adabldm import tiny_config
    from defectlab.adabldm.checkpoint import load_model, save_checkpoint
    from defectlab.adabldm.model import AdaBLDMModel

    ckpt = save_checkpoint(tmp_path / "run", AdaBLDMModel(tiny_config(["a", "crack"]), seed=0), step=1)
    state = json.loads((ckpt / "state.json").read_text())
    assert set(state["sha256"]) == {"model.safetensors", "config.json"}
    load_model(tmp_path / "run")  # intact: loads
    data = bytearray((ckpt / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in a weight: safetensors itself would load it silently
    (ckpt / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(DefectlabError, match=r"model\.safetensors: checksum mismatch .*corrupt or was changed"):
        load_model(tmp_path / "run")


def test_a_corrupt_taef2_file_is_an_error_even_in_quick_mode(tmp_path, monkeypatch):
    from defectlab.config import quick
    from defectlab.synth.feature.space import load_feature_encoder

    monkeypatch.setenv("DEFECTLAB_WEIGHTS", str(tmp_path))
    with quick(), pytest.warns(UserWarning, match="TAEF2 encoder weights not found"):
        load_feature_encoder("taef2")  # absent: quick mode's documented stand-in
    (tmp_path / "taef2").mkdir()
    (tmp_path / "taef2" / "taef2_encoder.pth").write_bytes(b"truncated download")
    with quick(), pytest.raises(DefectlabError, match=r"taef2_encoder\.pth: checksum mismatch"):
        load_feature_encoder("taef2")


# ------------------------------------------------------------------------------------------ umask
def test_outputs_are_created_with_the_users_umask(tmp_path):
    from defectlab.export import export
    from defectlab.imageio import atomic_write_bytes

    root = make_mvtec(tmp_path / "data")
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        export(root, "mvtec", tmp_path / "out")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # tempfile alone would give 0600
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755  # mkdtemp alone would give 0700
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o644 for p in files)


# ------------------------------------------------------------------------------------ resume after change
def test_resume_after_the_data_changed_is_refused(tmp_path, one_torch_thread):
    from defectlab.benchmark import run_benchmark

    root = make_mvtec(tmp_path / "data", n_defect=3)
    out = tmp_path / "bench"
    fast = dict(format="mvtec", shots=1, seeds=[0], size=32, steps=2, n_synthetic=2, quality="none", threads=1,
                show_progress=False, detector_name="unet", detector={"base_channels": 4, "depth": 2, "batch_size": 2})
    run_benchmark(root, "widget", ["cutpaste"], out, **fast)
    fp = json.loads((out / "data_fingerprint.json").read_text())
    assert len(fp["files"]) == 4 + 2 + 3 * 2 and set(fp["splits"]) == {"0"}
    assert json.loads((out / "config.json").read_text())["data_fingerprint"]["n_files"] == 12

    def interrupt():  # a run that stopped before its last run and the report
        (out / "results.json").unlink(missing_ok=True)
        (out / "runs" / "cutpaste__seed0.json").unlink(missing_ok=True)

    interrupt()
    run_benchmark(root, "widget", ["cutpaste"], out, **fast)  # same data: resumes
    assert (out / "runs" / "cutpaste__seed0.json").is_file()

    interrupt()
    changed = root / "widget" / "test" / "good" / "001.png"
    save(changed, np.zeros((32, 32), np.uint8))  # edited in place, same name
    with pytest.raises(DefectlabError, match=r"bench: holds an interrupted benchmark on different data: files 1 changed "
                                             r"\(e\.g\. widget/test/good/001\.png\)"):
        run_benchmark(root, "widget", ["cutpaste"], out, **fast)
    save(root / "widget" / "test" / "good" / "002.png", np.zeros((32, 32), np.uint8))  # and one added
    with pytest.raises(DefectlabError, match=r"files 1 added \(e\.g\. widget/test/good/002\.png\), 1 changed"):
        run_benchmark(root, "widget", ["cutpaste"], out, **fast)
    assert not (out / "runs" / "cutpaste__seed0.json").exists()  # nothing was mixed in
    run_benchmark(root, "widget", ["cutpaste"], out, overwrite=True, **fast)  # --overwrite starts afresh
    assert len(json.loads((out / "data_fingerprint.json").read_text())["files"]) == 13


def test_hub_weights_can_be_pinned_to_a_revision(monkeypatch):
    """Every from_pretrained of the SD path receives ModelConfig.revision (a commit hash or tag)."""
    import diffusers
    import transformers

    from defectlab.prior import autoencoders
    from defectlab.adabldm.prompts import CLIPPromptEncoder

    seen = []

    class Stop(Exception):
        pass

    def fake(name):
        def from_pretrained(path, **kw):
            seen.append((name, kw.get("revision")))
            raise Stop
        return from_pretrained

    monkeypatch.setattr(diffusers.AutoencoderKL, "from_pretrained", staticmethod(fake("vae")))
    monkeypatch.setattr(transformers.CLIPTokenizer, "from_pretrained", staticmethod(fake("tokenizer")))
    with pytest.raises(Stop):
        autoencoders.build("sd", "org/model", revision="0123abcd")
    with pytest.raises(Stop):
        CLIPPromptEncoder("org/model", revision="0123abcd")
    assert seen == [("vae", "0123abcd"), ("tokenizer", "0123abcd")]


# ------------------------------------------------------------- reliability leftovers (issue #37, item 4)
FAST_BENCH = dict(format="mvtec", shots=1, seeds=[0], size=32, steps=2, n_synthetic=2, quality="none", threads=1,
                  show_progress=False, detector_name="unet", detector={"base_channels": 4, "depth": 2, "batch_size": 2})


def test_16_bit_images_that_use_only_the_low_bits_are_read_at_the_data_sets_bit_depth(tmp_path):
    from defectlab.data import open_dataset

    root = make_mvtec(tmp_path / "data")
    eight_bit = {r.key: r.image() for r in open_dataset(root)}
    for path in (p for p in root.rglob("*.png") if "ground_truth" not in p.parts):
        values = np.asarray(Image.open(path)).astype(np.uint32)
        save(path, (values * 4095 // 255).astype(np.uint16))  # what a 12-bit camera writes: the same picture on 0..4095
    dark = save(root / "widget" / "test" / "good" / "001.png", np.full((32, 32), 100, np.uint16))
    with pytest.warns(UserWarning, match=r"data: 16-bit images hold values up to \d+: read as 12-bit \(0\.\.4095\)"):
        ds = open_dataset(root)
    for r in ds:
        if r.image_path == dark:  # the data set's scale, not the image's own: a dark image stays dark
            assert np.allclose(r.image(), 100 / 4095)
        else:
            assert np.allclose(r.image(), eight_bit[r.key], atol=1 / 4000)


def test_a_broken_symbolic_link_is_refused_by_name_not_skipped(tmp_path):
    from defectlab.benchmark import run_benchmark
    from defectlab.data import open_dataset
    from defectlab.export import export

    root = make_mvtec(tmp_path / "data")
    link = root / "widget" / "test" / "good" / "gone.png"
    os.symlink(tmp_path / "nowhere.png", link)
    named = r"gone\.png: broken symbolic link \(to .*nowhere\.png\)"
    with pytest.raises(DefectlabError, match=named):
        open_dataset(root)
    with pytest.raises(DefectlabError, match=named):
        export(root, "coco", tmp_path / "coco")
    with pytest.raises(DefectlabError, match=named):
        run_benchmark(root, "widget", ["cutpaste"], tmp_path / "bench", **FAST_BENCH)
    assert not (tmp_path / "coco").exists() and not (tmp_path / "bench").exists()
    link.unlink()
    mask = root / "widget" / "ground_truth" / "crack" / "001_mask.png"
    mask.unlink()
    os.symlink(tmp_path / "lost_mask.png", mask)
    with pytest.raises(DefectlabError, match=r"001_mask\.png: broken symbolic link"):
        open_dataset(root)


def test_an_empty_defect_mask_counts_at_image_level_and_adds_no_pixels():
    from defectlab.metrics.detection import evaluate

    masks = np.zeros((4, 8, 8), bool)  # two good images, a defect with its mask, a defect whose mask is empty
    masks[2, 2:4, 2:4] = True
    maps = np.zeros((4, 8, 8))
    maps[2, 2:4, 2:4], maps[3] = 0.8, 0.9
    got = evaluate(masks, maps, labels=[False, False, True, True], top_k=4)
    assert got["image_auroc"] == 1.0  # the hot unannotated defect is a hit, not a false alarm
    assert got["pixel_ap"] == 1.0  # its 64 hot pixels are neither defect nor good pixels
    by_masks = evaluate(masks, maps, top_k=4)  # labels from the masks: a good image, 64 good pixels above the defect
    assert by_masks["image_auroc"] < 1.0 and by_masks["pixel_ap"] < 1.0
    with pytest.raises(DefectlabError, match="image 2 is labelled good but its mask has 4 defect pixels"):
        evaluate(masks, maps, labels=[False, False, False, True])


def test_defect_images_with_empty_masks_among_others_are_named_and_counted(tmp_path, capsys, one_torch_thread):
    from defectlab.benchmark import run_benchmark
    from defectlab.cli import main
    from defectlab.data import few_shot_split, open_dataset

    root = make_mvtec(tmp_path / "data", n_defect=4)
    for i in (1, 2):
        save(root / "widget" / "ground_truth" / "crack" / f"{i:03d}_mask.png", np.zeros((32, 32), np.uint8))
    named = r"2 of 4 defect masks of widget .* are empty: .*001_mask\.png, .*002_mask\.png"
    with pytest.warns(UserWarning, match=named):
        assert [r.name for r in open_dataset(root).check_defect_masks("widget")] == ["001", "002"]
    with pytest.warns(UserWarning, match=r"2 of 4 defect masks are empty: .*001_mask\.png, .*002_mask\.png"):
        assert main(["export", "--input", str(root), "--format", "coco", "--out", str(tmp_path / "coco")]) == 0
    out = capsys.readouterr().out
    assert "4 defect" in out and "2 defect images have empty masks: exported without annotations" in out
    ds = open_dataset(root)
    drew_empty = {s: few_shot_split(ds, "widget", 1, s).support[0].name in ("001", "002") for s in range(20)}
    empty_support = next(s for s, empty in drew_empty.items() if empty)
    seed = next(s for s, empty in drew_empty.items() if not empty)
    with pytest.warns(UserWarning, match=named), pytest.raises(
            DefectlabError, match=r"few-shot defects given to training all have empty masks \(seed \d+: .*_mask\.png\)"):
        run_benchmark(root, "widget", ["cutpaste"], tmp_path / "bench", **dict(FAST_BENCH, seeds=[empty_support]))
    assert not (tmp_path / "bench").exists()
    with pytest.warns(UserWarning, match=named):
        results = run_benchmark(root, "widget", ["cutpaste"], tmp_path / "bench", **dict(FAST_BENCH, seeds=[seed]))
    assert results["empty_defect_masks"]["images"] == ["widget/test/crack/001", "widget/test/crack/002"]
    md = (tmp_path / "bench" / "results.md").read_text()
    assert "2 defect images have empty masks (widget/test/crack/001, widget/test/crack/002): counted as defective " \
           "for image metrics, contribute no pixels" in md


def test_a_nan_foreground_is_an_error_not_everywhere():
    from defectlab import create
    from defectlab.data import SyntheticDefects

    img = np.random.default_rng(0).random((32, 32, 1)).astype(np.float32)
    nan = np.full((32, 32), np.nan, np.float32)
    with pytest.raises(DefectlabError, match=r"cutpaste foreground: 1024 NaN or infinite value\(s\)"):
        create("cutpaste")(img, np.random.default_rng(0), foreground=nan)
    with pytest.raises(DefectlabError, match=r"SyntheticDefects: foregrounds\[1\]: 1024 NaN or infinite value\(s\)"):
        SyntheticDefects([img, img], "cutpaste", foregrounds=[np.ones((32, 32), bool), nan])


def test_benchmark_out_inside_the_data_set_is_refused(tmp_path, capsys):
    root = make_mvtec(tmp_path / "data")
    before = sorted(root.rglob("*"))
    inside = root / "widget" / "test" / "good"
    code, err = cli(capsys, *BENCH, "--data", root, "--out", inside, "--overwrite")
    assert code == 2 and f"{inside}: the output folder must not contain or lie inside the input {root}" in err
    assert sorted(root.rglob("*")) == before


def test_adabldm_train_on_empty_masks_names_them(tmp_path, capsys):
    from defectlab.adabldm import train
    from defectlab.data import few_shot_split, open_dataset

    root = make_mvtec(tmp_path / "data", mask_value=0)
    assert train.main(["--data", "mvtec", "--path", str(root), "--shots", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "000_mask.png: this and all other 3 defect masks of widget" in err and "vanishes" not in err
    root = make_mvtec(tmp_path / "some", n_defect=2)
    save(root / "widget" / "ground_truth" / "crack" / "001_mask.png", np.zeros((32, 32), np.uint8))
    with pytest.warns(UserWarning):
        ds = open_dataset(root)
        seed = next(s for s in range(20) if few_shot_split(ds, "widget", 1, s).support[0].name == "001")
        assert train.main(["--data", "mvtec", "--path", str(root), "--shots", "1", "--seed", str(seed),
                           "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "the few-shot defects given to training all have empty masks" in err and "001_mask.png" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage, message", [
    ("non-image", r"test/good/001\.png: not a readable image"),
    ("truncated", r"test/good/001\.png: not a readable image"),
    ("zero-byte", r"test/good/001\.png: not a readable image"),
    ("size mismatch", r"001_mask\.png: mask size \(16, 16\) differs from its image \(64, 64\)"),
])
def test_benchmark_checks_every_image_before_writing_anything(tmp_path, damage, message):
    from defectlab.benchmark import run_benchmark

    root = make_mvtec(tmp_path / "data", size=64)
    image = root / "widget" / "test" / "good" / "001.png"
    if damage == "non-image":
        image.write_text("not a picture")
    elif damage == "truncated":
        image.write_bytes(image.read_bytes()[:150])
    elif damage == "zero-byte":
        image.write_bytes(b"")
    else:
        save(root / "widget" / "ground_truth" / "crack" / "001_mask.png", np.full((16, 16), 255, np.uint8))
    with pytest.raises(DefectlabError, match=message):
        run_benchmark(root, "widget", ["cutpaste"], tmp_path / "bench", **FAST_BENCH)
    assert not (tmp_path / "bench").exists()  # nothing left to be refused as "an interrupted benchmark" later
