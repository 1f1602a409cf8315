"""Metrics: `detection` (AUROC, AP, AUPRO, IAP), `quality` (one call: FID, KID, IS, IC-LPIPS, domain distance;
per metric: `isc`, `iclpips`, `domain`), `region` (on defect windows), `visibility`, `trts`, `correlation`.

Submodules load on first use, so importing `defectlab.metrics` pulls in neither torch-fidelity nor lpips.
"""
from __future__ import annotations

import importlib

_SUBMODULES = ("correlation", "detection", "domain", "iclpips", "inception", "isc", "quality", "region", "trts",
               "visibility")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_SUBMODULES)
