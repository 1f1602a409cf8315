"""The benchmark as an engine: units of work on one process, on local worker processes and on a Ray cluster give
the same bytes; a killed worker's unit is run again; a failing unit is reported while the others finish."""
import os
import signal
import threading
import time

import pytest

from defectlab.benchmark import BenchmarkConfig, run_benchmark
from defectlab.benchmark.units import plan_units, unit_runs
from defectlab.data import build_embedded
from defectlab.errors import DefectlabError

# two seeds x (patchcore, fewshot, cutpaste, copypaste) = 8 units; a DeSTSeg of a few steps on 32 px
SETTINGS = dict(format="mvtec", shots=1, seeds=[0, 1], size=32, steps=40, n_synthetic=4, quality="none",
                detector={"student_width": 4, "head_width": 4, "batch_size": 4, "crop": 16})
RUN = dict(threads=1, show_progress=False)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine") / "embedded"
    build_embedded(root=root, size=32, n_train=6, n_test_good=2, n_test_defect=3, categories="brick")
    return root


@pytest.fixture(scope="module")
def config(tiny_root):
    return BenchmarkConfig("brick", ["cutpaste", "copypaste"], data=str(tiny_root), **SETTINGS)


@pytest.fixture(scope="module")
def one_process(config, tmp_path_factory):
    """results.json of the grid run unit after unit in this process."""
    out = tmp_path_factory.mktemp("one") / "bench"
    run_benchmark(config, out, **RUN)
    return (out / "results.json").read_bytes()


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")  # a dev dependency: installed by `make test`
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_the_grid_is_one_unit_per_seed_and_row_group(config):
    units = plan_units(config)
    assert [(u.seed, u.group) for u in units] == [(s, g) for s in (0, 1)
                                                  for g in ("patchcore", "fewshot", "cutpaste", "copypaste")]
    assert unit_runs(config, units[2]) == ["cutpaste", "cutpaste+fewshot"]


def test_two_local_workers_give_the_bytes_of_one_process(config, one_process, tmp_path):
    out = tmp_path / "bench"
    run_benchmark(config, out, executor="local", workers=2, **RUN)
    assert (out / "results.json").read_bytes() == one_process
    assert not list(out.glob("runs/.*.part"))


def test_ray_missing_or_unreachable_is_one_line(config, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(DefectlabError, match=r"pip install defectlab\[distributed\]"):
        run_benchmark(config, tmp_path / "a", executor="ray", **RUN)
    assert not (tmp_path / "a").exists()
    monkeypatch.undo()
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()  # runs before the cluster tests of this file
    t0 = time.time()
    with pytest.raises(DefectlabError, match=r"--address 127\.0\.0\.1:9: no Ray head node answers"):
        run_benchmark(config, tmp_path / "b", executor="ray", address="127.0.0.1:9", **RUN)
    assert time.time() - t0 < 30 and not (tmp_path / "b").exists()


def test_a_ray_cluster_gives_the_bytes_of_one_process(config, one_process, ray_cluster, tmp_path):
    out = tmp_path / "bench"
    run_benchmark(config, out, executor="ray", **RUN)
    assert (out / "results.json").read_bytes() == one_process


def _processes():
    """(pid, command line, parent pid) of every process this user can see."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read()
                with open(f"/proc/{pid}/stat", "rb") as fh:
                    parent = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except OSError:
                continue
            yield int(pid), cmd, parent


def _kill_first(match, found: list, stop: threading.Event, delay: float = 0.0) -> None:
    """SIGKILL the first process for which `match(command line, parent pid)` holds (after `delay` seconds)."""
    while not stop.is_set() and not found:
        for pid, cmd, parent in _processes():
            if match(cmd, parent):
                time.sleep(delay)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # it ended first: look for the next one
                    break
                found.append(pid)
                return
        time.sleep(0.02)


def _kill_first_unit_worker(found: list, stop: threading.Event) -> None:
    """The first process that Ray names after the running unit task (`ray::defectlab_unit`)."""
    _kill_first(lambda cmd, parent: cmd.startswith(b"ray::defectlab_unit"), found, stop)


def test_a_worker_killed_mid_unit_is_retried_and_the_result_is_unchanged(config, one_process, ray_cluster, tmp_path):
    out = tmp_path / "bench"
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_first_unit_worker, args=(killed, stop), daemon=True)
    killer.start()
    try:
        run_benchmark(config, out, executor="ray", **RUN)
    finally:
        stop.set()
        killer.join()
    assert killed, "no unit's worker was found to kill"
    assert (out / "results.json").read_bytes() == one_process


def test_a_failing_unit_is_reported_the_others_finish_and_a_rerun_completes(config, one_process, tmp_path,
                                                                              monkeypatch):
    import defectlab.benchmark.runs as runs

    real = runs.build_method

    def broken(name, *args, **kwargs):
        if name == "copypaste":
            raise RuntimeError("copy-paste broke")
        return real(name, *args, **kwargs)

    out = tmp_path / "bench"
    monkeypatch.setattr(runs, "build_method", broken)
    with pytest.raises(DefectlabError, match=r"2 of 8 units failed.*copypaste seed 0: RuntimeError: copy-paste broke"):
        run_benchmark(config, out, **RUN)
    written = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert "cutpaste+fewshot__seed1.json" in written and not any(n.startswith("copypaste") for n in written)
    assert not (out / "results.json").exists()
    monkeypatch.setattr(runs, "build_method", real)
    before = (out / "runs" / "cutpaste__seed0.json").stat().st_mtime_ns
    run_benchmark(config, out, **RUN)  # the same call again: only the failed units run
    assert (out / "runs" / "cutpaste__seed0.json").stat().st_mtime_ns == before
    assert (out / "results.json").read_bytes() == one_process


def test_two_detectors_in_one_benchmark_are_paired_apart_and_compared(config, one_process, tmp_path):
    import json
    from dataclasses import replace

    tiny_unet = {"base_channels": 4, "depth": 2, "batch_size": 4}
    both = replace(config, detector_name="destseg,unet", detector={"destseg": config.detector, "unet": tiny_unet})
    assert [u.group for u in plan_units(both)] == [u.group for u in plan_units(config)]  # a pool serves both
    res = run_benchmark(both, tmp_path / "bench", **RUN)
    names = {r["run"] for r in res["runs"]}
    assert {"fewshot~unet", "cutpaste~unet", "copypaste+fewshot~unet"} <= names and "patchcore~unet" not in names
    assert {r["detector"] for r in res["runs"] if r["run"].endswith("~unet")} == {"unet"}
    # the first detector's runs are those of a benchmark without the second
    alone = {(r["run"], r["seed"]): r["metrics"] for r in json.loads(one_process)["runs"]}
    assert all(r["metrics"] == alone[(r["run"], r["seed"])] for r in res["runs"] if "~" not in r["run"])
    assert set(res["paired"]) == {"destseg", "unet"}
    assert set(res["paired"]["unet"]) == set(res["paired"]["destseg"]) == {"cutpaste", "cutpaste+fewshot", "copypaste",
                                                                          "copypaste+fewshot"}
    def pixel_ap(run):
        return {r["seed"]: r["metrics"]["pixel_ap"] for r in res["runs"] if r["run"] == run}

    few, mine = pixel_ap("fewshot~unet"), pixel_ap("cutpaste~unet")  # paired with the unet's own fewshot
    assert res["paired"]["unet"]["cutpaste"]["pixel_ap"]["per_seed"] == {s: mine[s] - few[s] for s in (0, 1)}
    agreement = res["detector_agreement"]
    assert agreement["n_detectors"] == 2 and len(agreement["kendall_tau"]) == 1
    text = (tmp_path / "bench" / "results.md").read_text()
    assert "Detector `unet`:" in text and "`cutpaste~unet`" in text


def test_category_all_runs_every_category_as_units_of_one_grid(tmp_path):
    root = tmp_path / "two"
    build_embedded(root=root, size=32, n_train=6, n_test_good=2, n_test_defect=3, categories=("brick", "washer"))
    settings = dict(SETTINGS, seeds=[0], steps=5, patchcore=False)
    every = BenchmarkConfig("all", ["cutpaste"], data=str(root), **settings)
    res = run_benchmark(every, tmp_path / "all", executor="local", workers=2, **RUN)
    assert set(res["categories"]) == {"brick", "washer"}
    alone = tmp_path / "washer"
    run_benchmark(BenchmarkConfig("washer", ["cutpaste"], data=str(root), **settings), alone, **RUN)
    assert (tmp_path / "all" / "washer" / "results.json").read_bytes() == (alone / "results.json").read_bytes()
    index = (tmp_path / "all" / "results.md").read_text()
    assert "[brick](brick/results.md)" in index and "`cutpaste+fewshot`" in index
    with pytest.raises(DefectlabError, match="unknown category 'bolt'; found: brick, washer"):
        run_benchmark(BenchmarkConfig("bolt", ["cutpaste"], data=str(root), **settings), tmp_path / "bolt", **RUN)


def test_a_free_worker_takes_the_seed_it_ran_last_else_a_seed_nobody_runs():
    from defectlab.benchmark.executors import _next_unit
    from defectlab.benchmark.units import Unit

    todo = [Unit(0, "fewshot", "c"), Unit(1, "fewshot", "c"), Unit(0, "cutpaste", "c"), Unit(1, "cutpaste", "c")]
    assert _next_unit(todo, ("c", 1), {("c", 0)}) == Unit(1, "fewshot", "c")  # warm caches first
    assert _next_unit(todo, None, {("c", 0)}) == Unit(1, "cutpaste", "c")  # then a seed no other worker is on
    assert _next_unit(todo, ("c", 5), {("c", 0)}) == Unit(0, "fewshot", "c")  # then the first
    assert todo == [Unit(0, "cutpaste", "c")]


def _kill_first_spawned_child(found: list, stop: threading.Event) -> None:
    """The first worker process this test process spawned (multiprocessing's spawn_main), 3 s in: mid-unit."""
    me = os.getpid()
    _kill_first(lambda cmd, parent: b"spawn_main" in cmd and parent == me, found, stop, delay=3.0)


def test_a_local_worker_killed_mid_unit_is_replaced_and_the_result_is_unchanged(config, one_process, tmp_path):
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_first_spawned_child, args=(killed, stop), daemon=True)
    killer.start()
    try:
        run_benchmark(config, tmp_path / "bench", executor="local", workers=2, **RUN)
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker process was found to kill"
    assert (tmp_path / "bench" / "results.json").read_bytes() == one_process


def test_a_record_of_another_fingerprint_is_run_again_not_kept(config, one_process, tmp_path):
    import json

    out = tmp_path / "bench"
    run_benchmark(config, out, **RUN)
    stale = out / "runs" / "patchcore__seed0.json"
    record = json.loads(stale.read_text())
    right = record["unit_fingerprint"]
    stale.write_text(json.dumps({**record, "unit_fingerprint": "0" * 64}))
    (out / "results.json").unlink()  # as after an interrupted run
    run_benchmark(config, out, **RUN)
    assert json.loads(stale.read_text())["unit_fingerprint"] == right
    assert (out / "results.json").read_bytes() == one_process
