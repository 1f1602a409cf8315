"""Every check that can fail before anything trains: methods, parameters, seeds, sizes, memory, the data set."""
from __future__ import annotations

from dataclasses import asdict

from ..detect.mix import check_real_share
from ..errors import DefectlabError
from .config import DETECTORS, DIAD, BenchmarkConfig
from .detector_runs import make_detector
from .transfer import check_transfer


def _open_dataset(cfg: BenchmarkConfig):
    from ..data import build_embedded, open_dataset

    if cfg.format == "embedded":  # built at --size so no resizing blurs its defects
        categories = [cfg.category] + ([cfg.transfer_from] if cfg.transfer_from not in (None, cfg.category) else [])
        return build_embedded(root=cfg.data, size=cfg.size, categories=categories, **cfg.embedded)
    if not cfg.data:
        raise DefectlabError("--data: a data set folder is needed (or --format embedded)")
    return open_dataset(cfg.data, cfg.format)


def validate_config(cfg: BenchmarkConfig):
    """Every check that can fail before any training (every image decoded, every mask read: nothing is written
    before a bad file is found); returns (dataset, {seed: split}, the defect records whose mask is empty)."""
    from .. import methods
    from ..data import few_shot_split
    from ..data.split import check_support_masks
    from ..limits import check_int, check_side
    from ..paramcheck import check_overrides

    if not cfg.methods and cfg.shots <= 0:
        raise DefectlabError("--methods: name at least one synthesis method (or use --shots > 0 for the few-shot baseline)")
    if len(set(cfg.methods)) != len(cfg.methods):
        raise DefectlabError(f"--methods: a method is listed twice: {', '.join(cfg.methods)}")
    for m in cfg.methods:
        methods.get(m)  # unknown name -> DefectlabError listing the known ones
    for m, params in cfg.method_params.items():
        if m == DIAD and cfg.diad:  # the DiAD row's parameters (DiADParams), e.g. diad.steps=300
            from ..detect import DiAD, DiADParams

            check_overrides(m, DiADParams, params)
            DiAD(**params)
            continue
        if m not in cfg.methods:
            raise DefectlabError(f"--method-param: {m!r} is not among --methods ({', '.join(cfg.methods)})")
        try:
            method = methods.create(m, **params)
        except (TypeError, ValueError) as exc:
            raise DefectlabError(f"--method-param: {m} does not take {params}: {exc}") from exc
        check_overrides(m, type(getattr(method, "params", None)), params)  # types, before anything trains
    if not cfg.seeds:
        raise DefectlabError("--seeds: give at least one seed")
    twice = sorted({s for s in cfg.seeds if cfg.seeds.count(s) > 1})
    if twice:
        raise DefectlabError(f"--seeds: seed {', '.join(map(str, twice))} listed twice (a run would count twice)")
    if cfg.quality not in ("all", "first", "none"):
        raise DefectlabError(f"--quality must be all, first or none, got {cfg.quality!r}")
    check_side("--size", cfg.size)
    check_int("--shots", cfg.shots, low=0)
    check_int("--quality-images", cfg.quality_images, low=2)
    if (cfg.steps is not None and cfg.steps < 1) or cfg.n_synthetic < 1:
        raise DefectlabError(f"--detector-steps and --n-synthetic must be >= 1, got {cfg.steps}, {cfg.n_synthetic}")
    names = cfg.detectors()
    unknown = [d for d in names if d not in DETECTORS]
    if not names or unknown:
        raise DefectlabError(f"--detector must be one or more of {', '.join(DETECTORS)} (comma-separated), "
                             f"got {cfg.detector_name!r}")
    if len(set(names)) != len(names):
        raise DefectlabError(f"--detector: a detector is listed twice: {cfg.detector_name}")
    check_real_share(cfg.real_share, "--real-share")
    for d in names:
        make_detector(cfg.for_detector(d))  # unknown detector parameters -> DefectlabError
    n_embedded = sum(cfg.embedded.values()) if cfg.format == "embedded" else 0
    _check_memory(cfg, n_embedded, 3)  # before the embedded set is built at --size
    dataset = _open_dataset(cfg)
    dataset.filter(category=cfg.category)  # unknown category -> DefectlabError naming the ones found
    if not dataset.defect_types(cfg.category):
        raise DefectlabError(f"{dataset.root}: category {cfg.category!r} has no defect images to test on")
    records = dataset.filter(category=cfg.category).records
    _check_memory(cfg, len(records), records[0].image().shape[2])
    empty_masks = dataset.check_files(cfg.category)  # all empty: a mask convention not understood, not "no defects"
    splits = {s: few_shot_split(dataset, cfg.category, cfg.shots, seed=s) for s in cfg.seeds}
    for s, split in splits.items():
        check_support_masks(split, empty_masks, s)
    check_transfer(cfg, dataset)
    return dataset, splits, empty_masks


def _check_memory(cfg: BenchmarkConfig, n_images: int, channels: int) -> None:
    """Refuse a --size / --n-synthetic / --quality-images that cannot fit in memory (issue #21)."""
    from ..detect import DetectorParams
    from ..limits import benchmark_bytes, check_memory

    det = {**asdict(DetectorParams()), **cfg.detector}
    need = benchmark_bytes(cfg.size, n_images, cfg.n_synthetic, cfg.quality_images if cfg.quality != "none" else 0,
                           det["batch_size"], det["base_channels"], det["depth"], channels=channels)
    images = f" for {n_images} images" if n_images else ""
    check_memory(f"--size {cfg.size} with --n-synthetic {cfg.n_synthetic}{images}", need)
