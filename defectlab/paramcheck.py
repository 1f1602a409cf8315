"""Check parameter overrides against a params dataclass's declared types, before anything runs.

`check_overrides("texture_gan", TextureGANParams, {"steps": "many"})` raises a `DefectlabError` naming
the method, the parameter, the value and the expected type. JSON values from the command line are
accepted where they mean the same thing: a list for a tuple, an integer for a float.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing

from .errors import DefectlabError


def _fits(value, hint) -> bool:
    if hint is typing.Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
        return all(_fits(v, args[0]) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a type this checker does not know: the method checks it itself


def _describe(hint) -> str:
    return getattr(hint, "__name__", None) if isinstance(hint, type) else str(hint).replace("typing.", "")


def check_overrides(method: str, params_cls, overrides: dict) -> None:
    """Refuse an override whose value does not match the declared type of its field."""
    if not (isinstance(params_cls, type) and dataclasses.is_dataclass(params_cls)):
        return
    try:
        hints = typing.get_type_hints(params_cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: nothing to check against
        return
    for name, value in overrides.items():
        if name in hints and not _fits(value, hints[name]):
            raise DefectlabError(f"{method}: parameter {name} must be {_describe(hints[name])}, got {value!r}")
