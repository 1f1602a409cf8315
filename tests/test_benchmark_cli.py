"""`defectlab benchmark --detector-steps N`, and the deprecated `--steps` it replaces (issue 20)."""
import argparse
import warnings
from pathlib import Path

import pytest

from defectlab import DefectlabError
from defectlab.benchmark import cli as bench_cli


@pytest.fixture
def calls(monkeypatch):
    """run_benchmark replaced by a recorder: the handler's arguments, without training anything."""
    seen = []

    def run(data, category, methods, out, **kw):
        seen.append(kw)
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "results.md").write_text("# results\n")
        return {"wall_seconds": 0.0}

    monkeypatch.setattr(bench_cli, "run_benchmark", run)
    return seen


def parse(tmp_path, *extra):
    return bench_cli.add_arguments(argparse.ArgumentParser()).parse_args(
        ["--format", "embedded", "--category", "washer", "--methods", "cutpaste", "--out", str(tmp_path / "o"), *extra])


def deprecations(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DeprecationWarning) and "--steps" in str(w.message)]


def test_detector_steps_reaches_the_run_and_the_recorded_command(tmp_path, calls):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert bench_cli.main(parse(tmp_path, "--detector-steps", "7")) == 0
        assert bench_cli.main(parse(tmp_path)) == 0
    assert not deprecations(record)
    assert calls[0]["steps"] == 7 and calls[1]["steps"] is None  # None: the detector's own default
    assert "--detector-steps 7" in calls[0]["command"] and " --steps" not in calls[0]["command"]
    assert "--detector-steps" not in calls[1]["command"]


def test_old_steps_flag_still_works_and_warns(tmp_path, calls):
    with pytest.warns(DeprecationWarning, match="--steps is deprecated.*--detector-steps"):
        assert bench_cli.main(parse(tmp_path, "--steps", "5")) == 0
    assert calls[-1]["steps"] == 5 and "--detector-steps 5" in calls[-1]["command"]
    with pytest.warns(DeprecationWarning, match="--detector-steps"):  # both, same value: fine, still warned
        assert bench_cli.main(parse(tmp_path, "--steps", "6", "--detector-steps", "6")) == 0
    assert calls[-1]["steps"] == 6


def test_old_and_new_steps_with_different_values_are_refused(tmp_path, calls, capsys):
    from defectlab.cli import main

    with pytest.raises(DefectlabError, match="--steps 5 and --detector-steps 9"):
        bench_cli.main(parse(tmp_path, "--steps", "5", "--detector-steps", "9"))
    code = main(["benchmark", "--format", "embedded", "--category", "washer", "--methods", "cutpaste",
                 "--out", str(tmp_path / "p"), "--steps", "5", "--detector-steps", "9"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("defectlab: error: --steps 5 and --detector-steps 9") and "Traceback" not in err
    assert not calls and not (tmp_path / "p").exists()


def test_the_warning_is_not_hidden_by_pythons_default_filters(tmp_path, calls):
    """Python ignores DeprecationWarning outside __main__ by default; a command-line user sees this one all the same."""
    with warnings.catch_warnings(record=True) as record:
        warnings.resetwarnings()
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # Python's default for library code
        assert bench_cli.main(parse(tmp_path, "--steps", "3")) == 0
    assert deprecations(record) and calls[-1]["steps"] == 3


@pytest.mark.parametrize("text, seeds", [("0-4", [0, 1, 2, 3, 4]), ("0,2,5-7", [0, 2, 5, 6, 7]), ("3", [3])])
def test_seeds_take_ranges(tmp_path, text, seeds):
    assert parse(tmp_path, "--seeds", text).seeds == seeds


def test_detector_and_real_share_reach_the_run_and_the_recorded_command(tmp_path, calls):
    assert bench_cli.main(parse(tmp_path, "--detector", "supersimplenet", "--real-share", "0.25")) == 0
    assert calls[-1]["detector_name"] == "supersimplenet" and calls[-1]["real_share"] == 0.25
    assert "--detector supersimplenet --real-share 0.25" in calls[-1]["command"]
