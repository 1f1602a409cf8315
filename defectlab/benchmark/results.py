"""A finished benchmark's results: the run records and quality files gathered (`load_runs`), the versions, and
`results.md`."""
from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import numpy as np

from ..config import shown_path
from ..data.records import name_files
from ..metrics.correlation import MIN_METHODS, TOO_FEW
from ..metrics.paired import EXACT_MAX_SEEDS, min_attainable_p, seeds_needed
from .config import DETECTOR_SEP, DIAD, FEWSHOT, PATCHCORE, BenchmarkConfig, base_method, base_run, scores_itself
from .correlation import BOOTSTRAP_RESAMPLES
from .folder import quality_file, run_file
from .quality import LPIPS_SIZE
from .tables import fmt_interval, fmt_num, by_type_table, markdown_table, mean_std, region_table
from .transfer import transfer_note


def package_versions() -> dict:
    import sklearn
    import torch
    import torchvision

    from .. import __version__

    return {"defectlab": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "torchvision": torchvision.__version__, "scikit-learn": sklearn.__version__}


def load_runs(cfg: BenchmarkConfig, out: Path) -> tuple[list[dict], dict]:
    """The run records, and per method every numeric quality value as mean ± std over seeds (labels such as
    the networks used are kept as they are)."""
    runs = [json.loads(run_file(out, r, s).read_text()) for s in cfg.seeds for r in cfg.run_names()]
    return runs, aggregate_quality(quality_records(cfg, out))


def quality_records(cfg: BenchmarkConfig, out: Path) -> list[dict]:
    """Each method's quality file per seed, as written (results.json keeps them: merged benchmarks need them)."""
    return [json.loads(quality_file(out, m, s).read_text()) for s in cfg.seeds for m in cfg.synth_names()
            if quality_file(out, m, s).is_file()]


def aggregate_quality(records: list[dict]) -> dict:
    """{method: {key: mean ± std over the records}} for numeric values; a label (a network's name) as it is."""
    by_method: dict[str, list[dict]] = {}
    for q in records:
        by_method.setdefault(q["method"], []).append(q)
    quality = {}
    for m, qs in by_method.items():
        entry = {}
        for k in qs[0]:
            if k in ("method", "seed"):
                continue
            values = [q.get(k) for q in qs]
            if all(isinstance(v, (int, float)) or v is None for v in values):
                entry[k] = mean_std(values)
            else:
                entry[k] = values[0]
        quality[m] = entry
    return quality


PAIRED_TABLE_METRICS = (("pixel_ap", "pixel AP"), ("iap", "IAP"), ("iap90", "IAP90"))
PAIRED_RESAMPLES = 10000


def paired_statistics(cfg: BenchmarkConfig, runs: list[dict]) -> dict:
    """results.json's `paired` ({detector: {run: {metric: difference to `fewshot`, interval, p, Holm p, verdict}}},
    `metrics.paired.paired_table`) and `detector_agreement`, from the run records. The rng depends on the
    configuration only (the number of seeds), and the runs are taken in `cfg.run_names()` order, so a merge of
    seeds run apart gives the numbers of one run over all of them."""
    from ..metrics.paired import detector_agreement, paired_table

    order = {name: i for i, name in enumerate(cfg.run_names())}
    detectors = cfg.detectors()
    per_seed: dict = {d: {} for d in detectors}
    for r in sorted(runs, key=lambda r: (order.get(r["run"], len(order)), r["run"], r["seed"])):
        if r["run"] not in (PATCHCORE, DIAD):  # no defects, another model: not paired with `fewshot`, not in Holm's family
            # a feature-space method's own scorer is compared within the first detector's table
            det = r.get("detector") if r.get("detector") in detectors else detectors[0]
            per_seed[det].setdefault(base_run(r["run"]), {})[r["seed"]] = r["metrics"]
    paired = {d: paired_table(per_seed[d], FEWSHOT, rng=np.random.default_rng([len(cfg.seeds), 23]),
                              resamples=PAIRED_RESAMPLES) for d in detectors}
    return {"paired": paired, "detector_agreement": detector_agreement(paired)}


def _detector_text(cfg: BenchmarkConfig) -> str:
    """Each detector and the steps its runs trained for (a parameter override, the configured budget, else its
    default); the runs of a second detector carry its name: `<run>~<detector>`."""
    from .detector_runs import make_detector

    parts = []
    for d in cfg.detectors():
        det = make_detector(cfg.for_detector(d))
        steps = getattr(det.params, det.STEP_FIELDS[0])
        parts.append(f"`{d}` ({steps} steps{' per stage' if d == 'destseg' else ''})")
    if len(parts) == 1:
        return f"detector {parts[0]}"
    return (f"detectors {', '.join(parts)} (runs of `{cfg.detectors()[1]}` and later are named "
            f"`<run>{DETECTOR_SEP}<detector>`)")


def fmt_p(p) -> str:
    """Three significant digits: 2/32 shows as 0.0625, the smallest p of 5 seeds, not rounded to 0.062."""
    return f"{p:.3g}" if isinstance(p, float) and np.isfinite(p) else "–"


def paired_section(results: dict) -> list[str]:
    """results.md lines: each run's difference to `fewshot` per seed (pixel AP, IAP, IAP90), for every detector."""
    tables = {d: t for d, t in (results.get("paired") or {}).items() if t}
    if not tables:
        return []
    lines = [f"## Paired difference to `{FEWSHOT}`", ""]
    n_seeds, n_runs = 0, max(len(t) for t in tables.values())
    for detector, table in tables.items():
        if len(tables) > 1:
            lines += [f"Detector `{detector}`:", ""]
        lines += ["| run | metric | Δ mean | 95 % interval | p | p (Holm) | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for run, row in table.items():
            for key, title in PAIRED_TABLE_METRICS:
                c = row.get(key)
                if not c:
                    continue
                n_seeds = max(n_seeds, c["n_seeds"])
                lines.append(f"| `{run}` | {title} | {fmt_num(c['mean'], 3)} | {fmt_interval(c['ci'], 3)} | "
                             f"{fmt_p(c['p'])} | {fmt_p(c['p_holm'])} | {c['verdict']} |")
        lines.append("")
    agreement = results.get("detector_agreement") or {}
    if agreement.get("n_detectors", 0) >= 2:
        lines += ["Detectors agree? Kendall τ of the runs' pixel AP differences: " + "; ".join(
            f"{pair} {fmt_num(v['tau'])} ({v['n_runs']} runs)" for pair, v in agreement["kendall_tau"].items())
            + "; verdicts differ for " + (", ".join(f"`{r}`" for r in agreement["disagree"]) or "no run") + ".", ""]
    flips = (f"all 2^{n_seeds} sign vectors" if n_seeds <= EXACT_MAX_SEEDS
             else f"Monte-Carlo, {PAIRED_RESAMPLES} random sign vectors")
    needed = seeds_needed(n_runs)
    lines += [f"Δ: the run's metric minus `{FEWSHOT}`'s on the same seed (same split and initialisation), averaged "
              f"over {n_seeds} seed(s); interval: percentile bootstrap over seeds ({PAIRED_RESAMPLES} resamples, "
              "widened to contain Δ where it missed); p: two-sided sign-flip permutation test of the mean "
              f"difference ({flips}); p (Holm): Holm-corrected per metric across the runs of the table. "
              f"With {n_seeds} seed(s) the smallest attainable p is 2/2^{n_seeds} = {min_attainable_p(n_seeds):.3g}; "
              f"Holm over {n_runs} runs multiplies the smallest p by {n_runs}, so \"helps\" / \"hurts\" "
              f"(Holm p < 0.05, interval excluding 0) needs at least {needed} seeds"
              f"{': out of reach here, whatever the data' if n_seeds < needed else ''}.", ""]
    return lines


EMPTY_MASKS_COUNTED = ("counted as defective for image metrics, contribute no pixels to the pixel metrics, "
                       "and are left out of the real defects given to training")


def empty_masks_record(records) -> dict | None:
    """results.json's `empty_defect_masks`: the defect images whose mask is empty and how they were counted."""
    keys = [r.key for r in records]
    return {"count": len(keys), "images": keys, "counted": EMPTY_MASKS_COUNTED} if keys else None


def empty_masks_note(record: dict) -> str:
    n = record["count"]
    return (f"{n} defect image{'s have' if n > 1 else ' has'} empty masks ({name_files(record['images'])}): "
            f"{record['counted']}.")


def results_markdown(cfg: BenchmarkConfig, results: dict) -> str:
    s = results["summary"]
    lines = [f"# Downstream detection: `{cfg.category}`", ""]
    commands = [cfg.command] if cfg.command else [m["command"] for m in results.get("merged_from", []) if m["command"]]
    if commands:
        lines += ["```", *commands, "```", ""]
    if results.get("merged_from"):
        lines += ["Merged from " + "; ".join(f"`{m['source']}` (seed{'s' if len(m['seeds']) > 1 else ''} "
                                             f"{', '.join(map(str, m['seeds']))})" for m in results["merged_from"])
                  + " (`defectlab benchmark-merge`): the same configuration, seeds run apart.", ""]
    split = results["runs"][0]["split"] if results["runs"] else {}
    data = shown_path(cfg.data) if cfg.data else "embedded"
    spread = f"mean ± std over {len(cfg.seeds)} seeds" if len(cfg.seeds) > 1 else "one seed"
    lines += [f"Data `{data}` ({results['format']}), {cfg.shots} real defects per type for training, "
              f"seeds {', '.join(map(str, cfg.seeds))}, long side {cfg.size} px "
              f"({'aspect kept, zero-padded' if cfg.keep_aspect else 'squashed to a square'}), {_detector_text(cfg)}, "
              f"{cfg.n_synthetic} synthetic defects per method. Test set (seed {cfg.seeds[0]}): "
              f"{split.get('heldout', '?')} held-out real defects + {split.get('good_test', '?')} good images; "
              f"training: {split.get('good_train', '?')} good images.", "",
              *([empty_masks_note(results["empty_defect_masks"]), ""] if results.get("empty_defect_masks") else []),
              f"## Detection ({spread}) and quality of each method's synthetic defects", "",
              markdown_table(s, results["quality"], cfg.run_names()), "",
              "`fewshot`: the real support defects only; `<method>`: its synthetic defects only; "
              "`<method>+fewshot`: both. pixel AP, IAP and IAP90 are the metrics that small defects cannot flatter. "
              f"Quality: at most {cfg.quality_images} of the method's synthetic images vs at most as many held-out "
              "real defect images "
              f"({'every seed' if cfg.quality == 'all' else 'first seed only' if cfg.quality == 'first' else 'not computed'}; "
              "one row per method, for its runs alone and with the real defects): KID (Inception; mean of 100 "
              "subsets of half the smaller set), "
              "FID (Inception, at the n shown; biased upward at small n), the domain distance (Fréchet and kernel "
              "distance of pooled EfficientNet-Lite0 features, the detector's backbone: *not* FID), IC-LPIPS (DFMGAN "
              f"protocol, clusters around the real support defects, {LPIPS_SIZE} px) and IS; the networks are named in "
              "the column titles.", ""]
    scorers = [m for m in cfg.methods if scores_itself(m)]
    if scorers:
        lines += [", ".join(f"`{m}`" for m in scorers) + ": feature-space method(s), tested through their own anomaly "
                  "maps (`score()`, fitted on the good training images; no detector, and no KID / FID: they leave "
                  "pixels unchanged).", ""]
    if cfg.transfer:
        lines += [transfer_note(cfg, results), ""]
        table = by_type_table(cfg, results["runs"])
        if table:
            over = "mean over seeds" if len(cfg.seeds) > 1 else "one seed"
            lines += [f"Pixel AP by held-out defect type (good test images + that type's defects; {over}):",
                      "", table, ""]
    if cfg.method_params:
        lines += ["Method parameters over the published defaults: " + "; ".join(
            f"`{m}` " + ", ".join(f"{k}={v}" for k, v in ps.items()) for m, ps in cfg.method_params.items()) + ".", ""]
    if FEWSHOT in s and s[FEWSHOT]["pixel_ap"]["mean"] is not None:
        base = s[FEWSHOT]
        best = max((r for r in s if r.endswith(f"+{FEWSHOT}")), key=lambda r: s[r]["pixel_ap"]["mean"] or -1, default=None)
        if best:
            lines += [f"Best addition to the {cfg.shots} real defects per type: `{best}`: pixel AP "
                      f"{s[best]['pixel_ap']['mean']:.3f} vs {base['pixel_ap']['mean']:.3f} few-shot only "
                      f"({s[best]['pixel_ap']['mean'] - base['pixel_ap']['mean']:+.3f}); IAP90 "
                      f"{s[best]['iap90']['mean']:.3f} vs {base['iap90']['mean']:.3f}.", ""]
    region = region_table(results["quality"], [m for m in cfg.synth_names() if not scores_itself(base_method(m))])
    if region:
        lines += ["## Where the defect is: region quality, visibility, TRTS", "", region, "",
                  "Region metrics: each defect's square window (its box plus half the box's longer side of context on "
                  "every side, at least 32 px, resized to 128 px), synthetic windows vs the same windows around every "
                  "held-out real defect (n = windows shown; KID subsets of half the smaller set; region IC-LPIPS "
                  "clusters around the real windows). Visibility: contrast of the defect against the ring around it "
                  "(mean and Sobel-energy contrast, each normalised by the ring's spread), median over defects; ratio "
                  "= synthetic / real; ⚠ = synthetic defects less than half as visible as the real ones. TRTS: a "
                  "detector trained on the real support defects only, scored on the synthetic masks (empty when not "
                  "run).", ""]
    lines += paired_section(results)
    if results["correlation"]:
        lines += ["## Quality vs detection: rank correlation over methods", ""]
        lines += ["| quality | detection | Spearman ρ | 95 % interval | Kendall τ | 95 % interval | p (perm.) | p (Holm) |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in results["correlation"]:
            few = c.get("verdict") == TOO_FEW
            lines.append(f"| {c.get('label', c['quality'])} | {c['detection']} | {fmt_num(c['spearman'])} | "
                         f"{fmt_interval(c.get('spearman_ci'))} | {fmt_num(c['kendall'])} | {fmt_interval(c.get('kendall_ci'))} | "
                         f"{TOO_FEW if few else fmt_p(c.get('spearman_p'))} | {TOO_FEW if few else fmt_p(c.get('spearman_p_holm'))} |")
        first = results["correlation"][0]
        how = (f"bootstrap over {first.get('bootstrap')} ({first.get('n_boot')} finite of {BOOTSTRAP_RESAMPLES} "
               f"resamples, {first.get('n_seeds')} seed(s); pixel AP / IAP of a resample from 1000-bin histograms)"
               if first.get("bootstrap") else "no bootstrap")
        lines += ["", f"Over the {first['n_methods']} `method`-alone runs; {how}. Lower KID / FID / domain distance "
                  "is better, so a quality metric that predicts usefulness correlates *negatively* with AP; "
                  "IC-LPIPS (diversity) and IS would correlate positively. With a handful of methods an interval "
                  "that spans 0 means: no evidence either way. p (perm.): exact two-sided permutation p of Spearman ρ "
                  f"over all M! orderings of the methods' detection values (smallest attainable: 2/M! = "
                  f"{2 / math.factorial(first['n_methods']):.3g} for M = {first['n_methods']}); p (Holm): "
                  f"Holm-corrected across the rows of this table. Fewer than {MIN_METHODS} methods: "
                  f"\"{TOO_FEW}\".", "", "![quality vs pixel AP](quality_vs_ap.png)", ""]
    else:
        lines += ["No rank correlation of quality with detection over methods: it needs at least three methods with "
                  "quality scores.", ""]
    if not results.get("merged_from"):  # a merge has no images to draw from: its sources keep their plots
        lines += ["## Plots", "", "![PR curves](pr_curves.png)", "", "![detections](detections.png)", ""]
    lines += [f"Machine: {results['machine'].get('processor')}, {results['machine'].get('cpu_count')} CPUs, "
              f"GPU {results['machine'].get('cuda')}; "
              f"{'the merged invocations' if results.get('merged_from') else 'this invocation'} {results['wall_seconds']:.0f} s, "
              f"training + testing {results['compute_seconds']:.0f} s in all.", ""]
    return "\n".join(lines)
