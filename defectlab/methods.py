"""The catalog of built-in synthesis methods: find them by name, build them.

    defectlab.available()                 # every name; available("handcrafted") for one family
    defectlab.create("draem", **params)   # built with `params` overriding its published defaults

The first call imports every family (`synth.handcrafted`, `synth.feature`, `synth.generative`, and
AdaBLDM's method) so that each registers in `defectlab.registry`; importing this module alone is cheap.
"""
from __future__ import annotations

import importlib
from typing import Callable

from . import registry

BUILTIN = (
    "defectlab.synth.handcrafted.cutpaste", "defectlab.synth.handcrafted.cutpaste_scar",
    "defectlab.synth.handcrafted.bezier", "defectlab.synth.handcrafted.draem", "defectlab.synth.handcrafted.memseg",
    "defectlab.synth.handcrafted.glass_local", "defectlab.synth.handcrafted.copypaste",
    "defectlab.synth.feature.simplenet", "defectlab.synth.feature.glass_global",
    "defectlab.synth.generative.gan", "defectlab.synth.generative.realnet", "defectlab.synth.generative.defectfill",
    "defectlab.synth.generative.defect_gan",
    "defectlab.adabldm.method",
)


def load_builtin() -> None:
    """Import every built-in method module (each registers itself); cheap after the first call."""
    for module in BUILTIN:
        importlib.import_module(module)


def available(family: str | None = None) -> list[str]:
    """Names of the registered methods, optionally of one family."""
    load_builtin()
    return registry.registered(family)


def get(name: str) -> Callable:
    """The method class registered as `name` (its docstring and params dataclass document it)."""
    load_builtin()
    return registry.lookup(name)


def create(name: str, **params):
    """Build the configured method `name` with `params` overriding its published defaults."""
    return get(name)(**params)
