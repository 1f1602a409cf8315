"""Mutation testing (issue #37): mutmut on one part of the library, with only the fast tests that exercise it.

    .venv/bin/python benchmarks/mutation.py detection                # metrics/detection.py (~20 min, 2 busy cores)
    .venv/bin/python benchmarks/mutation.py handcrafted --no-diffs   # synth/handcrafted/*.py (~10 min)
    make mutation                                                     # the first (MUTATION_TARGET=handcrafted)

mutmut runs in a temporary copy (defectlab/, the target's test files, a pyproject.toml holding the target's
[tool.mutmut] section), so the checkout gets no `mutants/` folder and a run never sees files others are editing
halfway. Score = mutants detected (killed or timed out) / mutants run. Prints the counts and every survivor's diff,
writes benchmarks/results/mutation_<target>.json (with the machine's description).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {
    "detection": {
        "mutate": ["defectlab/metrics/detection.py"],
        "tests": ["tests/test_detection_metrics.py", "tests/test_region_metrics.py", "tests/test_quality_report.py"],
    },
    "handcrafted": {
        "mutate": ["defectlab/synth/handcrafted/*.py"],
        "tests": ["tests/test_handcrafted.py"],
    },
}

PYPROJECT = """[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-p no:cacheprovider"
filterwarnings = ["ignore::DeprecationWarning"]

[tool.mutmut]
source_paths = ["defectlab"]
only_mutate = {mutate}
pytest_add_cli_args_test_selection = {tests}
pytest_add_cli_args = ["-q", "-x", "-p", "no:cacheprovider"]
"""


def prepare(work: Path, target: dict) -> None:
    shutil.copytree(ROOT / "defectlab", work / "defectlab", ignore=shutil.ignore_patterns("__pycache__"))
    (work / "tests").mkdir()
    for name in ["tests/conftest.py", *target["tests"]]:
        shutil.copy2(ROOT / name, work / name)
    (work / "pyproject.toml").write_text(PYPROJECT.format(mutate=json.dumps(target["mutate"]),
                                                          tests=json.dumps(target["tests"])))


def mutmut(work: Path, *args: str, log=None) -> str:
    exe = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "DEFECTLAB_QUICK": "1", "MPLBACKEND": "Agg", "DEFECTLAB_PROGRESS": "0"}
    out = subprocess.run([str(exe), *args], cwd=work, env=env, text=True, check=False,
                         stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT)
    return out.stdout or ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument("--max-children", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    ap.add_argument("--out", type=Path, help="JSON summary (default: benchmarks/results/mutation_<target>.json)")
    ap.add_argument("--no-diffs", action="store_true", help="list survivors by name only (`mutmut show` takes ~1 s each)")
    args = ap.parse_args()
    target = TARGETS[args.target]
    work = args.keep or Path(tempfile.mkdtemp(prefix=f"defectlab_mutation_{args.target}_"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        prepare(work, target)
        with open(work / "mutmut-run.log", "w") as log:
            mutmut(work, "run", "--max-children", str(args.max_children), log=log)
        status = {}
        for line in mutmut(work, "results", "--all", "true").splitlines():
            name, sep, state = line.strip().rpartition(": ")
            if sep and name.startswith("defectlab."):
                status[name] = state
        survivors = {n: "" if args.no_diffs else mutmut(work, "show", n).split("\n", 1)[-1].strip()
                     for n, s in status.items() if s not in ("killed", "timeout")}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    counts = {s: sum(1 for v in status.values() if v == s) for s in sorted(set(status.values()))}
    detected = counts.get("killed", 0) + counts.get("timeout", 0)
    score = detected / len(status) if status else float("nan")
    print(f"{args.target}: {len(status)} mutants, {detected} detected, {len(survivors)} not "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())}): score {score:.1%}")
    for name, diff in survivors.items():
        print(f"\n# {name}: {status[name]}\n{diff}")
    from defectlab.bench import machine_info

    out = args.out or ROOT / "benchmarks" / "results" / f"mutation_{args.target}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join([".venv/bin/python benchmarks/mutation.py", args.target]
                            + (["--no-diffs"] if args.no_diffs else [])),
        "mutate": target["mutate"], "tests": target["tests"], "mutants": len(status), "detected": detected,
        "counts": counts, "score": score, "seconds": round(time.perf_counter() - started, 1),
        "survivors": {n: {"status": status[n], "diff": d} for n, d in survivors.items()},
        "machine": machine_info()}, indent=1) + "\n")
    return 0 if status else 1


if __name__ == "__main__":
    sys.exit(main())
