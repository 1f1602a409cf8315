"""The benchmark scripts' shared helpers (`defectlab.bench`): one timing loop, one result writer; nothing sleeps."""
import json
import sys

import numpy as np
import pytest

from defectlab.bench import command_line, time_call, write_result


class FakeClock:
    """A clock that only moves when a call says so."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_time_call_times_only_the_repeats_after_the_warm_up():
    clock, calls = FakeClock(), []
    durations = iter([1000.0, 999.0, 3.0, 1.0, 2.0, 5.0])  # two warm-up calls (slow, never counted), four timed

    def fn():
        calls.append(len(calls))
        clock.now += next(durations)
        return len(calls)

    t = time_call(fn, warmup=2, repeats=4, clock=clock)
    assert calls == [0, 1, 2, 3, 4, 5]
    assert (t["min"], t["median"], t["max"]) == (1.0, 2.5, 5.0)
    assert t["min"] <= t["median"] <= t["max"]
    assert (t["repeats"], t["warmup"], t["value"]) == (4, 2, 6)


def test_time_call_syncs_inside_each_timing_and_refuses_no_repeats():
    clock, synced = FakeClock(), []

    def sync():  # e.g. torch.cuda.synchronize: the queued work finishes here, and is counted
        synced.append(clock.now)
        clock.now += 0.5

    t = time_call(lambda: None, warmup=1, repeats=3, sync=sync, clock=clock)
    assert len(synced) == 4 and t["min"] == t["median"] == t["max"] == 0.5 and t["value"] is None
    once = time_call(lambda: "fitted", warmup=0, repeats=1)
    assert once["repeats"] == 1 and once["min"] == once["median"] == once["max"] >= 0 and once["value"] == "fitted"
    for bad in ({"repeats": 0}, {"warmup": -1}):
        with pytest.raises(ValueError):
            time_call(lambda: None, **bad)


def test_write_result_adds_machine_and_command_and_writes_plain_json(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmarks/x_speed.py", "--n", "2"])
    path = write_result(tmp_path / "results" / "x.json", {"rows": [{"s": np.float32(0.5), "n": np.int64(2)}],
                                                          "maps": np.array([1, 2]), "out": tmp_path})
    got = json.loads(path.read_text())
    assert got["rows"] == [{"s": 0.5, "n": 2}] and got["maps"] == [1, 2] and got["out"] == str(tmp_path)
    assert got["command"] == "python benchmarks/x_speed.py --n 2" and "cpu_count" in got["machine"]
    assert command_line(["--json", '{"a": 1}']) == "python benchmarks/x_speed.py --json '{\"a\": 1}'"
    kept = json.loads(write_result(tmp_path / "y.json", {"machine": "given", "command": "c"}).read_text())
    assert kept == {"machine": "given", "command": "c"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "y.json"]  # no temporary file left behind
