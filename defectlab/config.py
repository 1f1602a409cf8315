"""Run-time settings read from the environment."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

_quick_override: bool | None = None


def quick_mode() -> bool:
    """True when DEFECTLAB_QUICK=1 (or inside `with quick():`): work shrinks to run in minutes on a CPU."""
    if _quick_override is not None:
        return _quick_override
    return os.environ.get("DEFECTLAB_QUICK", "0") not in ("", "0", "false", "False")


@contextmanager
def quick(enabled: bool = True):
    """Force quick mode on (or off) for a block, e.g. the demo's short fits of learned methods."""
    global _quick_override
    previous, _quick_override = _quick_override, enabled
    try:
        yield
    finally:
        _quick_override = previous


def shared_dir() -> Path | None:
    """The shared data folder (`../shared` beside the checkout, or $DEFECTLAB_SHARED), if present."""
    env = os.environ.get("DEFECTLAB_SHARED")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent.parent
    candidates += [here.parent / "shared", here / "shared"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def magnetic_tile_dir() -> Path | None:
    """`shared/datasets/magnetic_tile` if it is on this machine ($DEFECTLAB_MAGNETIC_TILE overrides)."""
    env = os.environ.get("DEFECTLAB_MAGNETIC_TILE")
    if env:
        return Path(env) if Path(env).is_dir() else None
    root = shared_dir()
    path = root / "datasets" / "magnetic_tile" if root else None
    return path if path and path.is_dir() else None


CHECKOUT = Path(__file__).resolve().parent.parent


def shown_path(path: str | os.PathLike) -> str:
    """A path as printed for a reader, without the folders of the machine that printed it: relative to the checkout
    when inside it (`data/cache/...`), `$TMPDIR/...` inside the temporary folder, `~/...` inside the home folder;
    a relative path or one elsewhere as given."""
    import tempfile

    given = Path(path)
    if not given.is_absolute():
        return str(path)
    resolved = given.resolve()
    for base, shown in ((CHECKOUT, None), (Path(tempfile.gettempdir()).resolve(), "$TMPDIR"),
                        (Path.home().resolve(), "~")):
        if resolved.is_relative_to(base):
            rest = resolved.relative_to(base).as_posix()
            return rest if shown is None else f"{shown}/{rest}"
    return str(path)


def cache_dir() -> Path:
    """Where generated data (the embedded data set, feature caches) lives: $DEFECTLAB_CACHE or `data/cache`."""
    env = os.environ.get("DEFECTLAB_CACHE")
    path = Path(env) if env else CHECKOUT / "data" / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path
