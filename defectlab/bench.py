"""What the benchmark scripts share: the machine they ran on, one way to time a call, one way to write the result.

Only the standard library at module level: `benchmarks/anomalib_compare.py` loads this file by path under
anomalib's own Python, so both sides of that comparison are timed by the same loop.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path


def machine_info() -> dict:
    import numpy
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/meminfo") as fh:
            info["mem_total_gib"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def time_call(fn, *, warmup: int = 1, repeats: int = 3, sync=None, clock=time.perf_counter) -> dict:
    """Wall seconds of `fn()`: `warmup` calls first (not timed), then `repeats` timed calls. `sync` (e.g.
    `torch.cuda.synchronize`) runs after each call, inside its timing, so queued GPU work is counted.

    Returns {"min", "median", "max"} (seconds), "repeats", "warmup" and "value": what the last call returned
    (for a call timed once whose result is needed; leave it out of JSON)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"time_call: repeats must be >= 1 and warmup >= 0 (got {repeats}, {warmup})")
    for _ in range(warmup):
        fn()
        if sync is not None:
            sync()
    seconds, value = [], None
    for _ in range(repeats):
        t0 = clock()
        value = fn()
        if sync is not None:
            sync()
        seconds.append(clock() - t0)
    return {"min": min(seconds), "median": statistics.median(seconds), "max": max(seconds), "repeats": repeats,
            "warmup": warmup, "value": value}


def command_line(argv=None) -> str:
    """`python SCRIPT ARGS...` as typed (shell-quoted); `argv`: the arguments a script's `main(argv)` was given."""
    return shlex.join(["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)])


def write_result(path, result: dict, *, argv=None, indent: int = 2) -> Path:
    """`result` as JSON at `path`, written atomically (parent folders made), with "machine" (`machine_info()`) and
    "command" (`command_line(argv)`) added unless `result` has them. numpy values and paths are written plainly."""
    from .imageio import atomic_write_bytes

    path = Path(path)
    full = dict(result)
    full.setdefault("machine", machine_info())
    full.setdefault("command", command_line(argv))
    atomic_write_bytes(path, (json.dumps(full, indent=indent, default=_plain) + "\n").encode())
    return path


def _plain(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"write_result: {type(value).__name__} is not JSON-serialisable")
