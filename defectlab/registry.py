"""Names of synthesis methods: `register` and lookup only (a leaf: it imports no method).

A method module registers a factory: `@register("cutpaste")` on a class whose constructor takes
keyword parameters (or a params dataclass). The catalog `defectlab.methods` imports every built-in
method so that it registers, and is where callers find them: `defectlab.create("cutpaste", area_ratio=(0.02, 0.15))`.
"""
from __future__ import annotations

from typing import Callable

from .errors import DefectlabError

_FACTORIES: dict[str, Callable] = {}


def register(name: str, family: str = "handcrafted"):
    def wrap(factory):
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise DefectlabError(f"synthesis method {name!r} is registered twice")
        factory.name = name
        factory.family = family
        _FACTORIES[name] = factory
        return factory

    return wrap


def registered(family: str | None = None) -> list[str]:
    """Names registered so far (only the modules imported yet), optionally of one family."""
    return sorted(n for n, f in _FACTORIES.items() if family is None or f.family == family)


def lookup(name: str) -> Callable:
    """The factory registered as `name`; an unknown name is an error listing the known ones."""
    if name not in _FACTORIES:
        raise DefectlabError(f"unknown synthesis method {name!r}; known: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name]
