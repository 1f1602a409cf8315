"""`defectlab benchmark-merge`: seeds run apart give the table a single run over all seeds gives."""
import json

import pytest

from defectlab import DefectlabError
from defectlab.benchmark import run_benchmark
from defectlab.benchmark.merge import merge_results
from defectlab.cli import main
from defectlab.data import build_embedded

FAST = dict(format="mvtec", shots=1, size=32, steps=3, n_synthetic=4, threads=1, show_progress=False, patchcore=False,
            detector={"student_width": 4, "head_width": 4, "batch_size": 4, "crop": 16})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny benchmark as seeds 0 and 1 in one folder, and as seed 0 and seed 1 in two folders."""
    base = tmp_path_factory.mktemp("merge")
    root = base / "embedded"
    build_embedded(root=root, size=32, n_train=6, n_test_good=2, n_test_defect=3, categories="brick")
    together = run_benchmark(root, "brick", ["cutpaste"], base / "both", seeds=[0, 1], **FAST)
    for s in (0, 1):
        run_benchmark(root, "brick", ["cutpaste"], base / f"seed{s}", seeds=[s], **FAST)
    return base, root, together


def test_seeds_run_apart_merge_into_the_table_of_one_run(runs, tmp_path):
    base, _, together = runs
    merged = merge_results([base / "seed1", base / "seed0"], tmp_path / "m")
    assert merged["config"]["seeds"] == [0, 1]
    assert merged["summary"] == together["summary"]
    assert _untimed(merged["quality"]) == _untimed(together["quality"])
    assert [(r["run"], r["seed"]) for r in merged["runs"]] == [(r["run"], r["seed"]) for r in together["runs"]]
    # folders merge as units of work: the bytes of one benchmark over both seeds
    assert (tmp_path / "m" / "results.json").read_bytes() == (base / "both" / "results.json").read_bytes()
    md = (tmp_path / "m" / "results.md").read_text()
    assert "| `cutpaste+fewshot` |" in md and "seeds 0, 1" in md
    with pytest.raises(DefectlabError, match="--overwrite"):
        merge_results([base / "seed0", base / "seed1"], tmp_path / "m")


def _untimed(quality: dict) -> dict:
    """Quality values without the seconds they took (those differ between any two runs)."""
    return {m: {k: v for k, v in q.items() if not k.endswith("_seconds")} for m, q in quality.items()}


def test_a_one_seed_result_without_quality_records_merges_from_its_means(runs, tmp_path):
    base, _, together = runs
    old = json.loads((base / "seed0" / "results.json").read_text())
    del old["quality_runs"]  # as written before results.json kept them
    (tmp_path / "seed0.json").write_text(json.dumps(old))
    merged = merge_results([tmp_path / "seed0.json", base / "seed1" / "results.json"], tmp_path / "m")
    for method, entry in together["quality"].items():
        for key, value in entry.items():
            if isinstance(value, dict) and not key.endswith("_seconds"):
                assert merged["quality"][method][key] == pytest.approx(value, nan_ok=True), key


def test_only_results_that_differ_in_their_seeds_merge(runs, tmp_path, capsys):
    base, root, _ = runs
    with pytest.raises(DefectlabError, match="seed 0 is also in"):
        merge_results([base / "seed0", base / "both"], tmp_path / "a")
    run_benchmark(root, "brick", ["cutpaste"], tmp_path / "bigger", seeds=[2], **{**FAST, "size": 40})
    with pytest.raises(DefectlabError, match="'size' is 40"):
        merge_results([base / "seed0", tmp_path / "bigger"], tmp_path / "b")
    assert main(["benchmark-merge", str(base / "seed0"), str(tmp_path / "nothing"), "--out", str(tmp_path / "c")]) == 2
    assert "nothing" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert main(["benchmark-merge", str(base / "seed0"), str(base / "seed1"), "--out", str(tmp_path / "d")]) == 0
    assert "seeds 0, 1" in capsys.readouterr().out
