"""Synthesis methods, one subpackage per family (as the notebooks): `handcrafted`, `feature`, `generative`.

Shared pieces: `base` (parameters, input checks, blending, the Sample of every method), `learned` (helpers of
the methods that fit), `batch` (running one method over many images). Importing this package registers
nothing; `defectlab.methods` (the catalog) imports every family so that its methods register.
"""
from .batch import synthesize  # noqa: F401
