"""Checks the goal lines of `benchmarks/RESULTS.md` against the JSON files they cite, and computes what RESULTS says
about chance. Reads the JSON files under `benchmarks/results/` only: no model is trained, seconds on one core.

    OMP_NUM_THREADS=1 python benchmarks/results_check.py --json benchmarks/results/results_check.json
    OMP_NUM_THREADS=1 python benchmarks/results_check.py --tables     # the Markdown tables of RESULTS, rounded

What it writes:
- `goals`: per goal its target, the measured figure read from the JSON, and "met" / "missed" computed here by
  comparing the two ("projected, not measured" where the JSON holds a projection; "no JSON" where the figure was
  read off a terminal and only the text records it).
- `correlations`: for the quality-vs-usefulness tables (Magnetic Tile lead run, 7 methods; embedded washer,
  5 methods) each row's Spearman rho recomputed from the per-method means (checked equal to the JSON's), the exact
  two-sided permutation p over the methods (`metrics.correlation.permutation_p`: all 5040 orderings of 7 methods)
  and Holm's adjustment across all rows of the table; and the TRTS rows again without `copypaste`, whose TRTS is
  scored by a detector trained on the very defects copy-paste pastes.
- `paired_verdicts`: the 5-seed training-mix sweep (`real_share_destseg_mt.json`), each row's paired difference
  to `fewshot` as that JSON holds it, Holm across the sweep's 8 rows per metric, and the verdict of
  `metrics.paired.verdict` (the only source of the words "helps" / "hurts" / "no detectable difference").

Rounding of the tables (`--tables`): a mean is given to the decimal of its seed spread's first significant digit
(0.329 +- 0.043 -> 0.33 +- 0.04), at most 3 decimals; a value with no spread (one seed) to 2 decimals.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
METRICS6 = ("image_auroc", "pixel_auroc", "pixel_ap", "iap", "iap90", "aupro")
HEAD6 = "image AUROC | pixel AUROC | pixel AP | IAP | IAP90 | AUPRO"


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


# ---------------------------------------------------------------- rounding

def decimals(spread, lo: int = 0, hi: int = 3, default: int = 2) -> int:
    """The decimal of `spread`'s first significant digit (after rounding it to one digit), clamped to [lo, hi]."""
    if spread is None or not math.isfinite(spread) or spread <= 0:
        return default
    d = -math.floor(math.log10(spread))
    if round(spread, d) >= 10.0 ** (1 - d):  # 0.0096 -> 0.01: one decimal fewer
        d -= 1
    return max(lo, min(hi, d))


def pm(stat: dict | None, default: int = 2) -> str:
    """'mean ± std' rounded to the spread; 'mean' alone (2 decimals) for one seed; '–' when missing."""
    if not stat or stat.get("mean") is None:
        return "–"
    mean, std = stat["mean"], stat.get("std")
    if not std or stat.get("n", 2) < 2:
        return f"{mean:.{default}f}"
    d = decimals(std)
    return f"{mean:.{d}f} ± {std:.{d}f}"


def signed(x: float, d: int) -> str:
    """With its sign (a minus sign, not a hyphen); a value that rounds to zero gets none."""
    if round(x, d) == 0:
        return f"{0:.{d}f}"
    return f"{x:+.{d}f}".replace("-", "−")


def interval(ci, d: int) -> str:
    return f"[{signed(ci[0], d)}, {signed(ci[1], d)}]"


def pval(p) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    if p >= 0.1:
        return f"{p:.2f}"
    for digits in (2, 3, 4):  # an exact p such as 1/16 = 0.0625 is shown whole
        if float(f"{p:.{digits}g}") == p:
            return f"{p:.{digits}g}"
    return f"{p:.2g}"


def table(header: str, rows: list[str]) -> str:
    cols = header.count("|") + 1
    assert cols <= 8, f"table of {cols} columns: {header}"
    return "\n".join([f"| {header} |", "|" + "---|" * cols, *(f"| {r} |" for r in rows)])


# ---------------------------------------------------------------- goals

def _status(ok: bool) -> str:
    return "met" if ok else "missed"


def goals() -> list[dict]:
    """Every goal of RESULTS, its figure read from its JSON and the status computed here."""
    out = []

    def goal(key, issue, text, target, measured, status, json_file, command):
        out.append({"key": key, "issue": issue, "goal": text, "target": target, "measured": measured,
                    "status": status, "json": json_file, "command": command})

    # issue 34: the judge
    ssn = load("supersimplenet_fewshot_mt.json")
    row = next(r for r in ssn["table"] if r["steps"] == 1000)
    pts = [p for p in ssn["points"] if p["steps"] == 1000]
    n = len(row["seeds"])
    for metric, target, label in (("image_auroc", 0.90, "image AUROC"), ("pixel_ap", 0.45, "pixel AP")):
        m, s = row[metric]["mean"], row[metric]["std"]
        low = min(p["metrics"][metric] for p in pts)
        goal(f"ssn_{metric}", 34, f"SuperSimpleNet, Magnetic Tile `fewshot`, {label} (5 seeds)", f">= {target}",
             f"{m:.3f} ± {s:.3f} over {n} seeds (lowest seed {low:.3f})", _status(n >= 5 and m >= target),
             "supersimplenet_fewshot_mt.json", "benchmarks/detector_learning_curve.py --detector supersimplenet")
    seed0 = {p["steps"]: p["metrics"]["pixel_ap"] for p in ssn["points"] if p["seed"] == 0}
    gain = seed0[2000] - seed0[1000]
    goal("ssn_plateau", 34, "SuperSimpleNet default steps on the plateau: 2x the steps adds < 0.01 pixel AP",
         "< 0.01", f"1000 -> 2000 steps: {gain:+.3f} (seed 0 only)", _status(gain < 0.01),
         "supersimplenet_fewshot_mt.json", "benchmarks/detector_learning_curve.py --steps 500,2000 --seed 0")
    speed = {r["detector"]: r for r in load("detector_speed_mt.json")["rows"]}
    for det in ("supersimplenet", "destseg"):
        r = speed[det]
        first = r["run_s"] + r["features_s"]
        goal(f"{det}_run_time", 34, f"{det} run time on 2 cores", "<= 300 s per run",
             f"{first:.0f} s a seed's first run (backbone features included), {r['run_s']:.0f} s each later run",
             _status(first <= 300), "detector_speed_mt.json", "benchmarks/detector_speed.py --threads 2")
    lc = {r["steps"]: r for r in load("detector_learning_curve_magnetic_tile.json")["table"]}
    best_ia = max(lc.values(), key=lambda r: r["image_auroc"]["mean"])
    goal("destseg_quality", 34, "DeSTSeg, Magnetic Tile `fewshot`: image AUROC >= 0.90 and pixel AP >= 0.45 "
         "(5 seeds)", ">= 0.90 and >= 0.45",
         f"{lc[400]['image_auroc']['mean']:.3f} / {lc[400]['pixel_ap']['mean']:.3f} at the default 400 steps; "
         f"best image AUROC {best_ia['image_auroc']['mean']:.3f} at {best_ia['steps']} steps "
         f"({len(lc[400]['seeds'])} seeds)",
         _status(lc[400]["image_auroc"]["mean"] >= 0.9 and lc[400]["pixel_ap"]["mean"] >= 0.45),
         "detector_learning_curve_magnetic_tile.json", "benchmarks/detector_learning_curve.py")
    mt = load("downstream_magnetic_tile_400.json")["summary"]
    sn = mt["simplenet"]["pixel_auroc"]
    goal("simplenet_pixel_auroc", "16, 34", "`simplenet` row (unsupervised), Magnetic Tile pixel AUROC", ">= 0.85",
         f"{sn['mean']:.3f} ± {sn['std']:.3f} (3 seeds)", _status(sn["mean"] >= 0.85),
         "downstream_magnetic_tile_400.json", "defectlab benchmark ... --methods ...,simplenet,glass_global")
    unsup = {r["variant"]: r for r in load("ssn_unsupervised_mt.json")["table"]}
    for variant, r in unsup.items():
        pa, n = r["pixel_auroc"], len(r["seeds"])
        spread = f" ± {pa['std']:.3f}" if n > 1 else ""
        goal(f"ssn_unsupervised_pixel_auroc_{variant}", 34, f"SuperSimpleNet unsupervised ({variant}), Magnetic Tile "
             "pixel AUROC", ">= 0.85", f"{pa['mean']:.3f}{spread} ({n} seed{'s' if n > 1 else ''})",
             _status(pa["mean"] >= 0.85), "ssn_unsupervised_mt.json", "benchmarks/ssn_unsupervised.py")
    share = load("real_share_destseg_mt.json")["table"]
    cp = next(r for r in share if r["run"] == "copypaste+fewshot" and r["real_share"] == 0.75)["pixel_ap"]
    goal("copypaste_not_below_destseg", 34, "`copypaste+fewshot` not below `fewshot` by more than its interval, "
         "Magnetic Tile, DeSTSeg (real_share 0.75, 5 seeds)", "interval reaches 0 or above",
         f"Δ pixel AP {cp['mean']:+.3f} [{cp['ci'][0]:+.3f}, {cp['ci'][1]:+.3f}]", _status(cp["ci"][1] >= 0),
         "real_share_destseg_mt.json", "benchmarks/real_share_sweep.py --detector destseg")
    goal("copypaste_not_below_ssn", 34, "the same under SuperSimpleNet", "interval reaches 0 or above",
         "one seed of five run; no results JSON", "not measured", None,
         "benchmarks/real_share_sweep.py --detector supersimplenet --methods copypaste --shares 0.75")

    # issue 35: the engine
    w = {r["setting"]: r for r in load("engine_workers.json")["rows"]}
    two = w["workers 2, 1 thread each"]["wall_seconds"]
    one_default, one_1t = w["workers 1, torch's threads"]["wall_seconds"], w["workers 1, 1 thread"]["wall_seconds"]
    goal("workers_vs_default", 35, "`--workers 2` wall time vs `--workers 1` (4-unit grid)", "<= 0.6x",
         f"{two / one_default:.2f}x ({two:.0f} s vs {one_default:.0f} s; one process already uses both cores)",
         _status(two / one_default <= 0.6), "engine_workers.json", "benchmarks/engine_scaling.py measure")
    goal("workers_equal_threads", 35, "the same at equal thread counts (`--threads 1` both)", "<= 0.6x",
         f"{two / one_1t:.3f}x ({two:.1f} s vs {one_1t:.1f} s)", _status(two / one_1t <= 0.6),
         "engine_workers.json", "benchmarks/engine_scaling.py measure")
    proj = load("engine_projection.json")
    mt_row = proj["rows"][0]["hours"]
    goal("grid_projection", 35, "expected wall time of the Magnetic Tile grid on 1 / 4 / 16 workers", "(a table)",
         f"{mt_row['1']:.0f} / {mt_row['4']:.0f} / {mt_row['16']:.1f} h", "projected, not measured",
         "engine_projection.json", "benchmarks/engine_scaling.py project")

    # issue 37: the test suite
    mut = load("mutation_detection.json")
    goal("mutation_detection", 37, "mutation score of `metrics/detection.py`", ">= 85 %",
         f"{100 * mut['score']:.1f} % ({mut['detected']} of {mut['mutants']})", _status(mut["score"] >= 0.85),
         "mutation_detection.json", "make mutation")
    goal("make_test_time", 37, "`make test` from a fresh clone, 2 cores", "<= 10 min",
         "9 min 47 s (busy machine), 5 min 48 s (idle)", "met (no JSON)", None, "time make test")
    goal("coverage", 37, "line coverage of `defectlab/`", ">= 85 %", "95 %", "met (no JSON)", None, "make test")

    # earlier issues: speed
    runs = {"synth_speed.json": load("synth_speed.json"), "synth_speed_with_poisson.json":
            load("synth_speed_with_poisson.json")}
    names = ("cutpaste", "cutpaste_scar", "bezier", "draem", "memseg", "glass_local", "copypaste")
    for name in names:
        xs = [next(m for m in r["methods"] if m["method"] == name)["speedup_vs_reference"] for r in runs.values()]
        fl = [next(m for m in r["methods"] if m["method"] == name)["times_floor"] for r in runs.values()]
        goal(f"synth_5x_{name}", 3, f"`{name}` speed vs a DRAEM-style per-sample path", ">= 5x",
             " / ".join(f"{x:.1f}x" for x in xs) + " (two runs)", _status(min(xs) >= 5), " + ".join(runs),
             "benchmarks/synth_speed.py")
        goal(f"synth_3floor_{name}", 3, f"`{name}` time vs the np.where floor", "<= 3x",
             " / ".join(f"{x:.1f}x" for x in fl) + " (two runs)", _status(max(fl) <= 3), " + ".join(runs),
             "benchmarks/synth_speed.py")
    pois = next(m for m in runs["synth_speed_with_poisson.json"]["methods"] if m["method"] == "copypaste (poisson)")
    goal("synth_5x_copypaste_poisson", 3, "`copypaste` with `blend=\"poisson\"` speed vs the same path", ">= 5x",
         f"{pois['speedup_vs_reference']:.1f}x (one run)", _status(pois["speedup_vs_reference"] >= 5),
         "synth_speed_with_poisson.json", "benchmarks/synth_speed.py --out ...")
    anom = {f: load(f) for f in ("anomalib_compare.json", "anomalib_compare_after_aupro_speedup.json")}
    for name in ("draem", "memseg", "glass_local"):
        xs = [next(s for s in a["synthesis"] if s["path"] == f"defectlab {name}")["x_anomalib"] for a in anom.values()]
        goal(f"anomalib_5x_{name}", 19, f"`{name}` speed vs anomalib's PerlinAnomalyGenerator (same textures)",
             ">= 5x", " / ".join(f"{x:.1f}x" for x in xs) + " (two runs)", _status(min(xs) >= 5),
             " + ".join(anom), "make anomalib-bench")
    au = anom["anomalib_compare_after_aupro_speedup.json"]["aupro"]
    goal("aupro_agrees", 17, "AUPRO equal to anomalib's on the same 100 maps", "within 1e-3",
         f"|difference| {au['abs_diff']:.1e}", _status(au["abs_diff"] <= 1e-3),
         "anomalib_compare_after_aupro_speedup.json", "benchmarks/anomalib_compare.py")
    ms = load("metrics_speed.json")
    ev = ms["seconds"]["evaluate (all 9)"]
    goal("metrics_speed", 17, "`evaluate` (all 9 detection metrics), 100 maps of 256 x 256, one idle core",
         "<= 1.5 s", f"{ev:.3f} s in the JSON's run; 1.646 s in the run before it (not recorded); both on a "
         f"loaded machine (load {ms['load_average_1min']:.1f}), none on an idle core",
         _status(ev <= 1.5 and 1.646 <= 1.5), "metrics_speed.json", "benchmarks/metrics_speed.py")
    ab = load("adabldm_speed.json")
    d = next(r for r in ab["rows"] if r["adaptation"].startswith("default"))
    goal("adabldm_per_image", 6, "AdaBLDM seconds per image, 128 px, idle 2-core CPU", "<= 20 s",
         f"{d['total_s']:.1f} s (window margin 1; whole-image adaptation {ab['rows'][0]['total_s']:.1f} s)",
         _status(d["total_s"] <= 20), "adabldm_speed.json", "benchmarks/adabldm_speed.py --threads 2")
    goal("adabldm_gpu", 6, "AdaBLDM seconds per image, 256 px, GPU", "<= 3 s", "no GPU was lent", "not measured",
         None, "benchmarks/adabldm_speed.py")
    goal("adabldm_train_128", 6, "offline AdaBLDM recipe, washer, 128 px, one core", "<= 15 min",
         "14 min 26 s (1200 steps, one other job beside it)", "met (no JSON)", None,
         "python -m defectlab.adabldm.train --data embedded --category washer --size 128 --threads 1")
    win = load("adabldm_window_speed.json")["rows"]
    tr = win[0]
    goal("adabldm_train_window", 18, "AdaBLDM window recipe, 1200 steps, idle 2 cores", "<= 20 min",
         f"{tr['projected_minutes']:.1f} min, projected from 30 timed steps ({tr['seconds']:.2f} s a step)",
         "projected, not measured", "adabldm_window_speed.json", "benchmarks/adabldm_window_speed.py --steps 30")
    gens = [r for r in win if r["what"].startswith("generate")]
    goal("adabldm_generate", 18, "AdaBLDM window generation per image, idle 2 cores", "<= 10 s",
         f"{min(r['seconds'] for r in gens):.1f}-{max(r['seconds'] for r in gens):.1f} s over the 5 types",
         _status(max(r["seconds"] for r in gens) <= 10), "adabldm_window_speed.json",
         "benchmarks/adabldm_window_speed.py")

    # issue 16: the detector on Magnetic Tile (3 seeds, 400 steps)
    fs, pc = mt["fewshot"], mt["patchcore"]
    goal("fewshot_pixel_auroc", 16, "`fewshot` pixel AUROC (default detector, 400 steps)", ">= 0.90",
         f"{fs['pixel_auroc']['mean']:.3f} ± {fs['pixel_auroc']['std']:.3f}; best of the learning curve "
         f"{max(r['pixel_auroc']['mean'] for r in lc.values()):.3f}", _status(fs["pixel_auroc"]["mean"] >= 0.9),
         "downstream_magnetic_tile_400.json", "defectlab benchmark ... --detector-steps 400")
    goal("fewshot_pixel_ap", 16, "`fewshot` pixel AP (default detector, 400 steps)", ">= 0.35",
         f"{fs['pixel_ap']['mean']:.3f} ± {fs['pixel_ap']['std']:.3f} at 400 steps; "
         f"{lc[800]['pixel_ap']['mean']:.3f} at 800", _status(fs["pixel_ap"]["mean"] >= 0.35),
         "downstream_magnetic_tile_400.json", "defectlab benchmark ... --detector-steps 400")
    goal("fewshot_pixel_ap_std", 16, "seed std of `fewshot` pixel AP", "<= 0.03",
         f"{fs['pixel_ap']['std']:.3f} at 400 steps (0.058 at 1600)", _status(fs["pixel_ap"]["std"] <= 0.03),
         "downstream_magnetic_tile_400.json", "defectlab benchmark ... --detector-steps 400")
    goal("patchcore_image_auroc", 16, "`patchcore` image AUROC", ">= 0.80",
         f"{pc['image_auroc']['mean']:.3f} ± {pc['image_auroc']['std']:.3f}", _status(pc["image_auroc"]["mean"] >= 0.8),
         "downstream_magnetic_tile_400.json", "defectlab benchmark ...")
    mt400 = load("downstream_magnetic_tile_400.json")
    hours = mt400["compute_seconds"] / 3600 / 2
    goal("grid_hour", 16, "all methods, 3 seeds, Magnetic Tile, 2 cores", "about 1 h",
         f"{mt400['compute_seconds']:.0f} s of one-thread detector runs = {60 * hours:.0f} min on 2 cores, "
         "before quality metrics", _status(hours <= 1.0), "downstream_magnetic_tile_400.json", "defectlab benchmark ...")
    diad = load("diad_magnetic_tile_3seeds.json")["summary"]
    goal("diad", "22, 36", "DiAD image AUROC on Magnetic Tile (above PatchCore; issue 36: >= 0.85, 5 seeds)",
         ">= 0.85", f"{diad['diad']['image_auroc']['mean']:.3f} ± {diad['diad']['image_auroc']['std']:.3f} (3 seeds; "
         f"PatchCore {diad['patchcore']['image_auroc']['mean']:.3f})", _status(diad["diad"]["image_auroc"]["mean"] >= 0.85),
         "diad_magnetic_tile_3seeds.json", "defectlab benchmark ... --diad")

    # issue 36: the domain prior
    for cat, data, where in (("magnetic_tile", "../shared/datasets/magnetic_tile --format magnetic_tile", "MT, seed 0"),
                             ("washer", "embedded", "embedded washer")):
        q = maybe_load(f"prior_quality_{cat}.json")
        command = f"python benchmarks/prior_quality.py --data {data} --category {cat}"
        if q is None:
            goal(f"prior_kid_{cat}", 36, f"domain prior free samples vs held-out good ({where})",
                 "KID <= max(2 x floor, 0.01)", "no prior trained yet", "not measured", None, command)
            continue
        goal(f"prior_kid_{cat}", 36, f"domain prior free samples vs held-out good ({where})",
             "KID <= max(2 x floor, 0.01)", f"KID {q['kid']:.4f} ± {q['kid_std']:.4f}, floor {q['floor']:.4f} "
             f"(goal {q['goal']:.4f}; {q['samples']} samples, {q['heldout']} held-out)", _status(q["kid"] <= q["goal"]),
             f"prior_quality_{cat}.json", command)
        minutes = q["prior"]["train_seconds"] / 60
        goal(f"prior_train_{cat}", 36, f"domain prior training time ({where}, {q['prior']['goods']} good images, "
             f"{q['prior']['params']['steps']} steps)", "<= 30 min on 2 cores",
             f"{minutes:.0f} min wall (record's train_seconds; see the section for the load beside it)",
             _status(minutes <= 30), f"prior_quality_{cat}.json", "defectlab prior train ... / make prior-weights")
    dp = maybe_load("diad_prior_magnetic_tile_seed0.json")
    if dp is not None:
        d0 = dp["summary"]["diad"]["image_auroc"]
        goal("diad_prior", 36, "DiAD started from the domain prior, Magnetic Tile image AUROC (issue 36: >= 0.85, 5 "
             "seeds)", ">= 0.85", f"{d0['mean']:.3f} ({d0['n']} seed)", _status(d0["mean"] >= 0.85),
             "diad_prior_magnetic_tile_seed0.json", "defectlab benchmark ... --seeds 0 --diad")
    vis = maybe_load("adabldm_visibility_washer.json")
    if vis is None:
        goal("visibility_washer", 36, "AdaBLDM visibility ratio per type, washer", "0.7-1.5 each", "not run yet",
             "not measured", None, "python benchmarks/adabldm_visibility.py")
    else:
        types = vis["types"]
        goal("visibility_washer", 36, "AdaBLDM visibility ratio per type, washer (prior-started checkpoint)",
             "0.7-1.5 each", ", ".join(f"{k} {v['ratio']:.2f}" for k, v in types.items()),
             _status(all(v["within"] for v in types.values())), "adabldm_visibility_washer.json",
             "python benchmarks/adabldm_visibility.py")
    goal("visibility_mt", 36, "AdaBLDM visibility ratio per type, Magnetic Tile", "0.7-1.5 each",
         "no prior-started MT checkpoint trained yet", "not measured", None,
         "python benchmarks/adabldm_visibility.py --checkpoint RUN --data magnetic_tile ...")
    goal("adabldm_verdicts", "34, 36", "`adabldm+fewshot` vs `copypaste+fewshot` vs `fewshot`, MT, 5 seeds, both "
         "detectors, paired statistics", "a verdict table", "not run (about 20 h of 2-core compute)", "not measured",
         None, "defectlab benchmark ... --methods copypaste,adabldm --detector destseg,supersimplenet --seeds 0-4")
    return out


def maybe_load(name: str) -> dict | None:
    """`load(name)`, or None when that result has not been produced yet."""
    return load(name) if (RESULTS / name).is_file() else None


# ---------------------------------------------------------------- correlations

def correlations(name: str) -> dict:
    """Each row of a benchmark JSON's correlation table: rho recomputed from the per-method means (asserted equal to
    the JSON's), its exact permutation p over the methods, and Holm across the whole table."""
    from defectlab.metrics.correlation import permutation_p, rank_correlation
    from defectlab.metrics.paired import holm

    d = load(name)
    summary, quality = d["summary"], d["quality"]
    methods = [m for m in d["config"]["methods"] if m in summary and m in quality]

    def target(m, key):
        if key == "pixel_ap_gain":
            return summary[f"{m}+fewshot"]["pixel_ap"]["mean"] - summary["fewshot"]["pixel_ap"]["mean"]
        return summary[m][key]["mean"]

    rows = []
    for r in d["correlation"]:
        qv = {m: quality[m][r["quality"]]["mean"] for m in methods}
        dv = {m: target(m, r["detection"]) for m in methods}
        rho, _, n = rank_correlation(qv, dv)
        assert abs(rho - r["spearman"]) < 1e-9, (name, r["quality"], r["detection"], rho, r["spearman"])
        row = {"quality": r["quality"], "label": r["label"], "detection": r["detection"], "n_methods": n,
               "spearman": rho, "spearman_ci": r.get("spearman_ci"), "p": permutation_p(qv, dv, "spearman")}
        if r["quality"].startswith("trts") and "copypaste" in qv:
            q6 = {m: v for m, v in qv.items() if m != "copypaste"}
            d6 = {m: v for m, v in dv.items() if m != "copypaste"}
            row["spearman_without_copypaste"] = rank_correlation(q6, d6)[0]
            row["p_without_copypaste"] = permutation_p(q6, d6, "spearman")
        rows.append(row)
    for row, p in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = p
    return {"json": name, "methods": methods, "n_rows": len(rows), "rows": rows}


# ---------------------------------------------------------------- paired verdicts (5-seed sweep)

def sweep_verdicts() -> dict:
    from defectlab.metrics.paired import holm, verdict

    table = load("real_share_destseg_mt.json")["table"]
    out = []
    for metric in ("pixel_ap", "iap", "image_auroc"):
        adjusted = holm([r[metric]["p"] for r in table])
        for r, p_holm in zip(table, adjusted):
            s = r[metric]
            out.append({"run": r["run"], "real_share": r["real_share"], "metric": metric, "n_seeds": s["n_seeds"],
                        "mean": s["mean"], "ci": s["ci"], "p": s["p"], "min_p": s["min_p"], "p_holm": p_holm,
                        "verdict": verdict(s["mean"], s["ci"], p_holm), "detectors": ["destseg"]})
    return {"json": "real_share_destseg_mt.json", "family": "Holm across the sweep's 8 rows, per metric",
            "rows": out}


# ---------------------------------------------------------------- Markdown tables

def summary_rows(summary: dict, runs, label=lambda r: f"`{r}`", metrics=METRICS6) -> list[str]:
    return [" | ".join([label(r), *(pm(summary[r].get(m)) for m in metrics)]) for r in runs if r in summary]


def grid_table(summary: dict) -> str:
    """The hand-crafted grid's detection table: PatchCore, `fewshot`, each method and its `+fewshot` row, then the
    feature-space methods scored by their own maps."""
    order = ["patchcore", "fewshot"]
    for m in ("cutpaste", "cutpaste_scar", "bezier", "draem", "memseg", "glass_local", "copypaste"):
        order += [m, f"{m}+fewshot"]
    order += ["simplenet", "glass_global"]
    return table("run | " + HEAD6, summary_rows(
        summary, order, lambda r: f"`{r}`" + (" (own maps)" if r in ("simplenet", "glass_global") else "")))


def tables(corr_mt: dict, corr_washer: dict, verdicts: dict) -> str:
    parts = []

    def add(title, text):
        parts.append(f"<!-- {title} -->\n{text}\n")

    ssn = load("supersimplenet_fewshot_mt.json")
    pts = sorted((p for p in ssn["points"] if p["steps"] == 1000), key=lambda p: p["seed"])
    row = next(r for r in ssn["table"] if r["steps"] == 1000)
    dec = {m: decimals(row[m]["std"]) for m in METRICS6}
    rows = [" | ".join([str(p["seed"]), *(f"{p['metrics'][m]:.{dec[m]}f}" for m in METRICS6)]) for p in pts]
    rows.append(" | ".join(["**mean ± std**", *(pm({**row[m], "n": 5}) for m in METRICS6)]))
    add("ssn seeds", table("seed | " + HEAD6, rows))
    s0 = sorted((p for p in ssn["points"] if p["seed"] == 0), key=lambda p: p["steps"])
    add("ssn steps", table("steps (seed 0) | image AUROC | pixel AP | IAP | AUPRO",
                           [f"{p['steps']} | {p['metrics']['image_auroc']:.2f} | {p['metrics']['pixel_ap']:.2f} | "
                            f"{p['metrics']['iap']:.2f} | {p['metrics']['aupro']:.2f}" for p in s0]))

    sp = load("detector_speed_mt.json")["rows"]
    add("detector speed", table("detector | steps | backbone features, once per seed (s) | fit (s) | test (s) | "
                                "later run (s) | first run (s)",
                                [f"{r['detector']} | {r['steps']} | {r['features_s']:.0f} | {r['fit_s']:.0f} | "
                                 f"{r['predict_s']:.0f} | {r['run_s']:.0f} | {r['run_s'] + r['features_s']:.0f}"
                                 for r in sp]))

    vt = {(v["run"], v["real_share"], v["metric"]): v for v in verdicts["rows"]}
    rows = []
    for r in load("real_share_destseg_mt.json")["table"]:
        cells = [f"`{r['run']}`", "uniform" if r["real_share"] is None else str(r["real_share"])]
        for m in ("pixel_ap", "iap", "image_auroc"):
            s = r[m]
            d = decimals(float(np.std(list(s["per_seed"].values()), ddof=1)))
            cells.append(f"{signed(s['mean'], d)} {interval(s['ci'], d)}")
        v = vt[(r["run"], r["real_share"], "pixel_ap")]
        cells += [pval(v["p"]), v["verdict"]]
        rows.append(" | ".join(cells))
    add("real share", table("run | real_share | Δ pixel AP [95 %] | Δ IAP [95 %] | Δ image AUROC [95 %] | "
                            "p, pixel AP | verdict, pixel AP", rows))

    lc = load("detector_learning_curve_magnetic_tile.json")["table"]
    add("learning curve", table("steps per stage | " + HEAD6,
                                [" | ".join([str(r["steps"]), *(pm({**r[m], "n": 3}) for m in METRICS6)])
                                 for r in lc]))

    mt = load("downstream_magnetic_tile_400.json")
    s = mt["summary"]
    add("mt lead", grid_table(s))
    q = mt["quality"]
    meth = corr_mt["methods"]
    add("mt quality", table("method | KID ↓ | FID ↓ | domain Fréchet ↓ | IC-LPIPS | IS (EfficientNet-Lite0)",
                            [" | ".join([f"`{m}`", *(pm(q[m][k]) for k in ("kid", "fid", "domain_frechet",
                                                                             "ic_lpips", "isc"))]) for m in meth]))
    add("mt region", table("method | region KID ↓ | region FID ↓ | region domain Fréchet ↓ | region IC-LPIPS | "
                           "visibility ratio | TRTS pixel AP | TRTS AUPRO",
                           [" | ".join([f"`{m}`", *(pm(q[m][k]) for k in (
                               "region_kid", "region_fid", "region_domain_frechet", "region_ic_lpips",
                               "visibility_ratio", "trts_pixel_ap", "trts_aupro"))]) for m in meth]))
    add("mt correlation", corr_table(corr_mt, ("pixel_ap", "pixel_ap_gain", "iap90")))
    trts = [r for r in corr_mt["rows"] if "spearman_without_copypaste" in r and r["detection"] in
            ("pixel_ap", "pixel_ap_gain")]
    add("mt trts without copypaste", table(
        "TRTS metric | vs | ρ, 7 methods | p | ρ without copy-paste (6) | p",
        [f"{r['label']} | {tlabel(r['detection'])} | {signed(r['spearman'], 2)} | {pval(r['p'])} | "
         f"{signed(r['spearman_without_copypaste'], 2)} | {pval(r['p_without_copypaste'])}" for r in trts]))
    add("washer correlation", corr_table(corr_washer, ("pixel_ap", "pixel_ap_gain", "iap90")))

    ad = load("downstream_mt_adabldm.json")
    s = ad["summary"]
    runs = ["patchcore", "fewshot", "adabldm", "adabldm+fewshot", "copypaste", "copypaste+fewshot"]
    add("adabldm detection", table("run | " + HEAD6, summary_rows(s, runs)))
    q = ad["quality"]
    add("adabldm quality", table("method | KID ↓ | region KID ↓ | visibility ratio",
                                 [f"`{m}` | {pm(q[m]['kid'])} | {pm(q[m]['region_kid'])} | "
                                  f"{pm(q[m]['visibility_ratio'])}" for m in ("adabldm", "copypaste")]))
    per = {}
    for r in ad["runs"]:
        per.setdefault(r["run"], {})[r["seed"]] = r["metrics"]
    rows = []
    for a, b in (("adabldm+fewshot", "copypaste+fewshot"), ("adabldm", "copypaste"), ("adabldm+fewshot", "fewshot"),
                 ("copypaste+fewshot", "fewshot")):
        cells = [f"`{a}` − `{b}`"]
        for m in ("pixel_ap", "iap", "iap90", "aupro"):
            diffs = [100 * (per[a][k][m] - per[b][k][m]) for k in sorted(per[a])]
            signs = "".join("+" if x > 0 else "−" for x in diffs)
            sd = float(np.std(diffs, ddof=1))
            d = decimals(sd)
            cells.append(f"{signed(float(np.mean(diffs)), d)} ± {sd:.{d}f} ({signs})")
        rows.append(" | ".join(cells))
    add("adabldm paired", table("comparison (points, 3 seeds; signs per seed) | pixel AP | IAP | IAP90 | AUPRO", rows))

    w = load("downstream_embedded_washer_destseg.json")["summary"]
    add("washer destseg", grid_table(w))

    dd = load("diad_magnetic_tile_3seeds.json")["summary"]
    add("diad", table("run (3 seeds) | " + HEAD6, summary_rows(dd, ["patchcore", "diad", "fewshot"])))

    for name, title in (("transfer_embedded_washer_to_pcb_chip.json", "washer -> pcb_chip"),
                        ("transfer_embedded_pcb_chip_to_washer.json", "pcb_chip -> washer"),
                        ("transfer_magnetic_tile_crack.json", "MT crack")):
        s = load(name)["summary"]
        order = ["patchcore", "fewshot"] + sorted(k for k in s if k not in ("patchcore", "fewshot"))
        add(f"transfer {title}", table("run | image AUROC | pixel AUROC | pixel AP | IAP90 | AUPRO",
                                       summary_rows(s, order, metrics=("image_auroc", "pixel_auroc", "pixel_ap",
                                                                       "iap90", "aupro"))))
    for name in ("transfer_embedded_pcb_chip_to_washer_poisson.json",
                 "transfer_embedded_pcb_chip_to_washer_shared_types.json"):
        s = load(name)["summary"]
        add(f"control {name}", table("run | pixel AP | AUPRO", summary_rows(s, sorted(s),
                                                                            metrics=("pixel_ap", "aupro"))))
    return "\n".join(parts)


def tlabel(key: str) -> str:
    return {"pixel_ap": "pixel AP", "pixel_ap_gain": "gain", "iap90": "IAP90", "iap": "IAP"}[key]


def corr_table(corr: dict, targets) -> str:
    by = {(r["quality"], r["detection"]): r for r in corr["rows"]}
    labels = dict((r["quality"], r["label"]) for r in corr["rows"])
    head = "quality | " + " | ".join(f"ρ vs {tlabel(t)} [95 %] | p (uncorr.)" for t in targets)
    rows = []
    for qk, label in labels.items():
        cells = [label]
        for t in targets:
            r = by.get((qk, t))
            if r is None:
                cells += ["–", "–"]
                continue
            ci = r.get("spearman_ci")
            cells.append(signed(r["spearman"], 2) + (f" {interval(ci, 2)}" if ci else ""))
            cells.append(pval(r["p"]))
        rows.append(" | ".join(cells))
    return table(head, rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write goals, correlations and verdicts here")
    ap.add_argument("--tables", action="store_true", help="print the Markdown tables of RESULTS.md")
    args = ap.parse_args(argv)
    g = goals()
    corr = {"magnetic_tile": correlations("downstream_magnetic_tile_400.json"),
            "washer": correlations("quality_usefulness_washer.json")}
    verdicts = sweep_verdicts()
    if args.tables:
        print(tables(corr["magnetic_tile"], corr["washer"], verdicts))
    else:
        for x in g:
            print(f"#{x['issue']} {x['key']}: {x['status']} — {x['measured']} (target {x['target']})")
        for name, c in corr.items():
            small = sorted(c["rows"], key=lambda r: r["p"])[:4]
            print(f"{name}: {c['n_rows']} rows over {len(c['methods'])} methods; smallest p: " +
                  ", ".join(f"{r['label']} vs {r['detection']} rho {r['spearman']:+.2f} p {r['p']:.3f} "
                            f"(Holm {r['p_holm']:.2f})" for r in small))
        print("sweep verdicts:", sorted({v["verdict"] for v in verdicts["rows"]}))
    if args.json:
        from defectlab.bench import write_result

        write_result(args.json, {"goals": g, "correlations": corr, "paired_verdicts": verdicts}, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
