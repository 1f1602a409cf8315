"""The benchmark's configuration (`BenchmarkConfig`), its run names and which methods score or transfer."""
from __future__ import annotations

from dataclasses import dataclass, field

FEWSHOT = "fewshot"
PATCHCORE = "patchcore"
DIAD = "diad"
DETECTOR_SEP = "~"  # a further detector's runs: "cutpaste+fewshot~supersimplenet"
from ..detect.registry import SUPERVISED as DETECTORS  # noqa: E402 - the supervised detectors by name
# config keys that must match for an interrupted benchmark to resume (methods and seeds may grow)
_RESUME_KEYS = ("data", "format", "category", "shots", "size", "steps", "n_synthetic", "detector", "embedded",
                "detector_name", "keep_aspect", "patchcore", "transfer_from", "transfer_types", "real_share")
# parameters of a method's transferred runs over its own (a user's --method-param wins): copy-paste blends
# in the gradient domain, so a defect from another surface takes this one's brightness and colour
TRANSFER_PARAMS = {"copypaste": {"blend": "poisson"}}


@dataclass
class BenchmarkConfig:
    category: str
    methods: list[str]
    data: str | None = None
    format: str = "auto"  # auto | mvtec | magnetic_tile | btad | ksdd2 | visa | embedded
    shots: int = 10  # real defects per type for training; AnomalyDiffusion (Hu et al. 2024) uses 1/3 of each type
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    size: int = 256  # long side of every image (aspect kept, zero-padded to a square canvas)
    steps: int | None = None  # detector optimiser steps per run (destseg: per stage); None: the detector's own default
    n_synthetic: int = 200  # synthetic defects per method and seed
    quality: str = "all"  # KID / FID of each method's defects vs the held-out real ones: for "all" seeds, the "first", "none"
    quality_images: int = 100  # at most this many real and synthetic images per KID / FID (Inception on a CPU is slow)
    detector: dict = field(default_factory=dict)  # parameter overrides of the detector (DeSTSegParams / DetectorParams)
    detector_name: str = "destseg"  # destseg | supersimplenet (pretrained features) | unet (from scratch); several: "a,b"
    real_share: float | None = None  # share of a `+fewshot` run's defective draws taken from the real ones (None: the detector's default)
    keep_aspect: bool = True  # False: squash every image to the square (the protocol before the letterbox)
    patchcore: bool = True  # the unsupervised PatchCore row
    diad: bool = False  # the unsupervised DiAD reconstruction row (off by default: it trains a diffusion model)
    grid_images: int = 5  # test images shown in detections.png
    embedded: dict = field(default_factory=dict)  # build_embedded counts (n_train, n_test_good, n_test_defect)
    method_params: dict = field(default_factory=dict)  # {method: {parameter: value}} over its published defaults
    command: str | None = None
    transfer_from: str | None = None  # category whose few-shot defects the transferred runs' methods learn from
    transfer_types: list[str] = field(default_factory=list)  # only these defect types of it (empty: all)

    def run_names(self) -> list[str]:
        """Every run: the first detector's under their plain names, then each further detector's supervised runs
        as `<run>~<detector>` (`detector_run`)."""
        names = [PATCHCORE] if self.patchcore else []
        names += [DIAD] if self.diad else []
        names += [FEWSHOT] if self.shots > 0 else []
        for m in self.methods:
            names += [m, f"{m}+{FEWSHOT}"] if self.shots > 0 and not scores_itself(m) else [m]
            if m in self.transfer_methods():
                names += [self.transferred(m), f"{self.transferred(m)}+{FEWSHOT}"]
        return names + [self.detector_run(r, d) for d in self.detectors()[1:] for r in names if supervised(r)]

    def data_available(self) -> bool:
        """The data set can be read here: the embedded one always, a folder when it exists."""
        from pathlib import Path

        return self.format == "embedded" or bool(self.data and Path(self.data).is_dir())

    def detectors(self) -> list[str]:
        """The supervised detectors, in order: `detector_name` "destseg,supersimplenet" names two."""
        return [d.strip() for d in self.detector_name.split(",") if d.strip()]

    def detector_run(self, run: str, detector: str) -> str:
        """A supervised run's name under `detector`: the plain name for the first detector, else `<run>~<detector>`."""
        return run if detector == self.detectors()[0] else f"{run}{DETECTOR_SEP}{detector}"

    def for_detector(self, detector: str) -> "BenchmarkConfig":
        """This configuration as seen by one detector: `detector_name` is that detector alone, and `detector` holds
        its parameter overrides (with several detectors, {name: {parameter: value}}; flat ones are the first's)."""
        from dataclasses import replace

        nested = len(self.detectors()) > 1 and set(self.detector) <= set(self.detectors())
        own = self.detector.get(detector, {}) if nested else self.detector if detector == self.detectors()[0] else {}
        return replace(self, detector_name=detector, detector=dict(own))

    @property
    def transfer(self) -> bool:
        return bool(self.transfer_from or self.transfer_types)

    def transfer_label(self) -> str:
        """The source in run names: "washer", "Crack" (types of the benchmarked category), "washer.crack-scratch"."""
        types = "-".join(self.transfer_types)
        if self.transfer_from and self.transfer_from != self.category:
            return f"{self.transfer_from}.{types}" if types else self.transfer_from
        return types

    def transferred(self, method: str) -> str:
        return f"{method}@{self.transfer_label()}"

    def transfer_methods(self) -> list[str]:
        """The methods that get transferred runs: those that learn from the few-shot defects."""
        return [m for m in self.methods if transferable(m)] if self.transfer else []

    def synth_names(self) -> list[str]:
        """Every pool of synthetic defects (quality files, tables): the methods, then their transferred runs."""
        return list(self.methods) + [self.transferred(m) for m in self.transfer_methods()]

    def transfer_params(self, method: str) -> dict:
        """A transferred run's parameters: `TRANSFER_PARAMS` when the defects come from another category (within
        the category the surface is the same: nothing to adapt), under the user's `method_params`."""
        other = self.transfer_from not in (None, self.category)
        return {**(TRANSFER_PARAMS.get(method, {}) if other else {}), **self.method_params.get(method, {})}


def scores_itself(method: str) -> bool:
    """A method whose anomalies live in feature space: it returns images unchanged, so a detector
    trained on its samples learns nothing; its own `score(image)` map is what gets tested."""
    from .. import methods

    return callable(getattr(methods.get(method), "score", None))


def transferable(method: str) -> bool:
    """A method whose synthesis learns from the few-shot defects (`needs_fit`, not a feature-space scorer, and
    not marked `uses_defects = False`): only for it does a defect source of another category change anything."""
    from .. import methods

    cls = methods.get(method)
    return bool(getattr(cls, "needs_fit", False)) and getattr(cls, "uses_defects", True) and not scores_itself(method)


def base_method(name: str) -> str:
    """The registered method of a pool or run name: "copypaste@washer+fewshot~supersimplenet" -> "copypaste"."""
    return name.split(DETECTOR_SEP)[0].split("+")[0].split("@")[0]


def base_run(name: str) -> str:
    """A run's name without its detector: "copypaste+fewshot~supersimplenet" -> "copypaste+fewshot"."""
    return name.split(DETECTOR_SEP)[0]


def supervised(run: str) -> bool:
    """A run that trains a supervised detector (not PatchCore, DiAD or a feature-space method's own scorer)."""
    return base_run(run) == FEWSHOT or (base_run(run) not in (PATCHCORE, DIAD) and not scores_itself(base_method(run)))
