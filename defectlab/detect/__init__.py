"""Downstream detection: detectors trained on good + defective images, and the unsupervised PatchCore."""
from .destseg import DeSTSegDetector, DeSTSegParams
from .detector import DetectorParams, SegmentationDetector, image_scores, match_channels
from .patchcore import PatchCore, PatchCoreParams
from .unet import CompactUNet

__all__ = ["CompactUNet", "DeSTSegDetector", "DeSTSegParams", "DetectorParams", "PatchCore", "PatchCoreParams",
           "SegmentationDetector", "image_scores", "match_channels"]
