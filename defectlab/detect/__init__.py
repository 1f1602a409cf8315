"""Downstream detection: detectors trained on good + defective images, and the unsupervised PatchCore and DiAD.

The supervised detectors share one interface (`fit(goods, defects, rng, ...)`, `predict(images)` -> (maps, scores),
`save`, `load`) and are found by name: `create_detector("supersimplenet", steps=800)`, `SUPERVISED`."""
from .destseg import DeSTSegDetector, DeSTSegParams
from .diad import DiAD, DiADParams
from .detector import DetectorParams, SegmentationDetector, image_scores, match_channels
from .patchcore import PatchCore, PatchCoreParams
from .registry import SUPERVISED, create_detector, detector_class
from .supersimplenet import SuperSimpleNetDetector, SuperSimpleNetParams
from .unet import CompactUNet

__all__ = ["CompactUNet", "DeSTSegDetector", "DeSTSegParams", "DiAD", "DiADParams", "DetectorParams", "PatchCore",
           "PatchCoreParams", "SUPERVISED", "SegmentationDetector", "SuperSimpleNetDetector", "SuperSimpleNetParams",
           "create_detector", "detector_class", "image_scores", "match_channels"]
