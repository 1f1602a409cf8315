"""`run_benchmark`: the whole protocol (the package docstring), from the checks to results.json and results.md."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from ..imageio import atomic_write_bytes
from ..progress import progress, tqdm
from ..staging import check_outside
from .checks import validate_config
from .config import BenchmarkConfig
from .correlation import quality_correlations
from .figures import write_plots
from .folder import prepare_out, write_json
from .results import (empty_masks_record, load_runs, package_versions, paired_statistics, quality_records,
                      results_markdown)
from .runs import run_seed
from .tables import summarize
from .transfer import benchmark_fingerprint, transfer_sources


def run_benchmark(data: str | Path | None, category: str, methods: Sequence[str], out: str | Path, *,
                  format: str = "auto", shots: int = 10, seeds: Sequence[int] = (0, 1, 2), size: int = 256,
                  steps: int | None = None, n_synthetic: int = 200, quality: bool | str = "all", detector: dict | None = None,
                  detector_name: str = "destseg", real_share: float | None = None, keep_aspect: bool = True, patchcore: bool = True, diad: bool = False,
                  embedded: dict | None = None, quality_images: int = 100, threads: int | None = None, overwrite: bool = False,
                  method_params: dict | None = None, show_progress: bool = True, command: str | None = None,
                  transfer_from: str | None = None, transfer_types: Sequence[str] = ()) -> dict:
    """Run the protocol (the package docstring) and write its outputs under `out`; returns results.json's content.

    `embedded`: with `format="embedded"`, counts for `build_embedded` (n_train, n_test_good, n_test_defect);
    its default of 3 defects per type only allows `shots` <= 2. `method_params`: {method: {parameter: value}}
    passed to `defectlab.create`, e.g. {"texture_gan": {"steps": 600}}. `threads`: torch CPU threads for the
    whole run (restored after); 1 is fastest on a machine whose cores other jobs are using. `transfer_from` /
    `transfer_types`: the transferred runs `<method>@<source>` (the package docstring). `detector_name`: one of
    `defectlab.detect.SUPERVISED`; `real_share`: the share of a `+fewshot` run's defective draws taken from the real
    defects (`defectlab.detect.mix`; None: the detector's default)."""
    from ..detect.detector import torch_threads
    from ..limits import check_int

    if threads is not None:
        check_int("--threads", threads, low=1)
    with torch_threads(threads):
        return _run_benchmark(data, category, methods, out, format=format, shots=shots, seeds=seeds, size=size,
                              steps=steps, n_synthetic=n_synthetic, quality=quality, detector=detector,
                              detector_name=detector_name, real_share=real_share, keep_aspect=keep_aspect, patchcore=patchcore, diad=diad,
                              embedded=embedded, quality_images=quality_images, overwrite=overwrite,
                              method_params=method_params, show_progress=show_progress, command=command,
                              transfer_from=transfer_from, transfer_types=transfer_types)


def _run_benchmark(data, category, methods, out, *, format, shots, seeds, size, steps, n_synthetic, quality, detector,
                   detector_name, real_share, keep_aspect, patchcore, diad,
                   embedded, quality_images, overwrite, method_params, show_progress, command,
                   transfer_from, transfer_types) -> dict:
    from ..bench import machine_info
    from ..detect.prepare import ImageCache

    t0 = time.time()
    cfg = BenchmarkConfig(category=category, methods=list(methods), data=str(Path(data).resolve()) if data else None,
                          format=format, shots=int(shots), seeds=[int(s) for s in seeds], size=int(size),
                          steps=None if steps is None else int(steps), n_synthetic=int(n_synthetic),
                          quality={True: "all", False: "none"}.get(quality, quality), quality_images=int(quality_images),
                          detector=dict(detector or {}), detector_name=detector_name, real_share=real_share, keep_aspect=bool(keep_aspect),
                          patchcore=bool(patchcore), diad=bool(diad), embedded=dict(embedded or {}),
                          method_params={m: dict(v) for m, v in (method_params or {}).items()}, command=command,
                          transfer_from=transfer_from or None, transfer_types=list(transfer_types or []))
    out = Path(out)
    if cfg.data:
        check_outside(out, cfg.data)  # plots written into the data set would be read as test images next time
    dataset, splits, empty_masks = validate_config(cfg)
    sources = transfer_sources(cfg, dataset, splits)
    prepare_out(out, asdict(cfg), overwrite, benchmark_fingerprint(cfg, dataset, splits, sources))
    cache = ImageCache(cfg.size, keep_aspect=cfg.keep_aspect)
    total = len(cfg.seeds) * len(cfg.run_names())
    bar = progress(total=total, desc="benchmark runs", leave=True) if show_progress else tqdm(total=total, disable=True)
    with bar:
        for seed in cfg.seeds:
            run_seed(seed, splits[seed], cfg, cache, out, show_progress, bar, sources.get(seed))
    runs, qual = load_runs(cfg, out)
    summary = summarize(runs)
    results = {"config": asdict(cfg), "format": dataset.format, "machine": machine_info(), "versions": package_versions(),
               "wall_seconds": round(time.time() - t0, 1),
               "compute_seconds": round(sum(r["train_seconds"] + r["test_seconds"] for r in runs), 1),
               "empty_defect_masks": empty_masks_record(empty_masks),
               "runs": [{k: v for k, v in r.items() if k != "curves"} for r in runs],
               "summary": summary, "quality": qual, "quality_runs": quality_records(cfg, out),
               "correlation": quality_correlations(cfg, summary, qual, out), **paired_statistics(cfg, runs)}
    write_plots(cfg, out, cache, splits)
    write_json(out / "results.json", results)  # last: its presence marks a finished benchmark
    atomic_write_bytes(out / "results.md", results_markdown(cfg, results).encode())
    return results
