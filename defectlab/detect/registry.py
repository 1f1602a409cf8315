"""The supervised detectors by name. Each has `fit / predict / save / load`, a `params` dataclass and `STEP_FIELDS`:
the parameters that one `steps` budget sets (DeSTSeg trains two stages, each for `steps`)."""
from __future__ import annotations

from ..errors import DefectlabError

SUPERVISED = ("destseg", "supersimplenet", "unet")


def detector_class(name: str):
    from .destseg import DeSTSegDetector
    from .detector import SegmentationDetector
    from .supersimplenet import SuperSimpleNetDetector

    classes = {"destseg": DeSTSegDetector, "supersimplenet": SuperSimpleNetDetector, "unet": SegmentationDetector}
    if name not in classes:
        raise DefectlabError(f"unknown detector {name!r}; available: {', '.join(SUPERVISED)}")
    return classes[name]


def create_detector(name: str, steps: int | None = None, /, **overrides):
    """Detector `name` with its defaults, `steps` optimiser steps (per stage for DeSTSeg; None: its default) and
    parameter `overrides` (which win over `steps`)."""
    cls = detector_class(name)
    budget = {field: int(steps) for field in cls.STEP_FIELDS} if steps is not None else {}
    return cls(**{**budget, **overrides})
