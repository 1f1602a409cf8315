"""The report layer turns a benchmark's results.json into tables and files."""
import json

import pytest

from defectlab import DefectlabError
from defectlab.benchmark.report import export_report, load_results, markdown_table, table_rows


def _results(tmp_path):
    runs, summary = [], {}
    for name, ap in (("fewshot", 0.30), ("draem", 0.20), ("draem+fewshot", 0.45)):
        for seed in (0, 1):
            runs.append({"run": name, "seed": seed, "metrics": {"pixel_ap": ap + 0.01 * seed}})
        summary[name] = {k: {"mean": ap, "std": 0.01, "n": 2} for k in
                         ("image_auroc", "pixel_auroc", "pixel_ap", "iap", "iap90", "aupro")}
    summary["draem"]["aupro"] = {"mean": None, "std": None, "n": 0}
    res = {"config": {"category": "washer", "shots": 2, "seeds": [0, 1], "size": 64, "data": None},
           "runs": runs, "summary": summary, "quality": {"draem": {"kid": {"mean": 0.02, "std": 0.0}}}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(res))
    return tmp_path / "run"


def test_table_orders_runs_and_marks_the_best(tmp_path):
    res = load_results(_results(tmp_path))
    head, rows = table_rows(res)
    assert head[0] == "run" and [r[0] for r in rows] == ["fewshot", "draem", "draem+fewshot"]
    assert rows[2][3] == "**0.450 ± 0.010**" and not rows[0][3].startswith("**")
    assert rows[1][6] == "–"  # a metric that could not be computed is shown as such, not as 0
    assert markdown_table(res).count("\n") == 4


def test_export_writes_every_file_and_refuses_to_overwrite(tmp_path):
    folder = _results(tmp_path)
    paths = export_report(folder, tmp_path / "rep")
    assert {"report.md", "report.html", "metrics.png", "quality_vs_ap.png"} <= set(paths)
    assert "draem+fewshot" in (tmp_path / "rep" / "report.md").read_text()
    assert "<b>0.450 ± 0.010</b>" in (tmp_path / "rep" / "report.html").read_text()
    with pytest.raises(DefectlabError, match="exists"):
        export_report(folder, tmp_path / "rep")
    export_report(folder, tmp_path / "rep", overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rep.")]


def test_bad_results_folders(tmp_path):
    with pytest.raises(DefectlabError, match="results.json: not found"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text("{")
    with pytest.raises(DefectlabError, match="not valid JSON"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(DefectlabError, match="missing 'summary'"):
        load_results(tmp_path)


def test_metric_figure_colours_bars_by_what_the_run_trained_on_with_a_legend(tmp_path):
    import matplotlib.pyplot as plt

    from defectlab.benchmark.report import RUN_KINDS, metric_figure, run_kind

    assert [run_kind(r) for r in ("patchcore", "diad", "fewshot", "draem", "draem+fewshot", "draem+fewshot~unet",
                                  "copypaste@washer")] == ["none", "none", "real", "synthetic", "both", "both",
                                                           "synthetic"]
    fig = metric_figure(load_results(_results(tmp_path)))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [RUN_KINDS["real"][0], RUN_KINDS["synthetic"][0], RUN_KINDS["both"][0], "fewshot's mean"]
    bars = fig.axes[0].patches
    assert len({tuple(b.get_facecolor()) for b in bars}) == 3  # fewshot, draem, draem+fewshot: three kinds
    plt.close(fig)
