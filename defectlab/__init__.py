"""defectlab: industrial defect synthesis, its quality metrics and downstream detection."""
from .errors import DefectlabError
from .methods import available, create, get
from .registry import register
from .sample import Sample, as_image, as_mask, torch_generator

__version__ = "0.1.0"
__all__ = ["DefectlabError", "Sample", "as_image", "as_mask", "torch_generator", "available", "create", "get", "register"]
