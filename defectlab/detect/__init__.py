"""Downstream detection: detectors trained on good + defective images, and the unsupervised PatchCore and DiAD."""
from .destseg import DeSTSegDetector, DeSTSegParams
from .diad import DiAD, DiADParams
from .detector import DetectorParams, SegmentationDetector, image_scores, match_channels
from .patchcore import PatchCore, PatchCoreParams
from .unet import CompactUNet

__all__ = ["CompactUNet", "DeSTSegDetector", "DeSTSegParams", "DiAD", "DiADParams", "DetectorParams", "PatchCore", "PatchCoreParams",
           "SegmentationDetector", "image_scores", "match_channels"]
