"""Named weight files: where each lives, its SHA-256, where it came from and under which licence.

Files live under `$DEFECTLAB_WEIGHTS` or, when that is unset, `<shared>/weights` (see
`defectlab.config.shared_dir`). Nothing is ever downloaded: `require(name)` returns the checked path
or raises a `DefectlabError` that says which file is missing, its checksum, where to put it and its URL.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .config import shared_dir
from .errors import DefectlabError


@dataclass(frozen=True)
class WeightFile:
    path: str  # relative to the weights root
    sha256: str
    url: str
    licence: str


_TAESD_COMMIT = "5cccb12dc72074a4be35680c3b108548a7c69978"
_TAESD_RAW = f"https://github.com/madebyollin/taesd/raw/{_TAESD_COMMIT}"

REGISTRY: dict[str, WeightFile] = {
    # TAEF2: tiny autoencoder distilled from the FLUX.2 VAE (github.com/madebyollin/taesd, MIT)
    "taef2_encoder": WeightFile("taef2/taef2_encoder.pth",
                                "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
                                f"{_TAESD_RAW}/taef2_encoder.pth", "MIT"),
    "taef2_decoder": WeightFile("taef2/taef2_decoder.pth",
                                "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
                                f"{_TAESD_RAW}/taef2_decoder.pth", "MIT"),
}

# (path, size, mtime_ns) -> sha256, so each file is hashed once per process
_CHECKED: dict[tuple[str, int, int], str] = {}


def root() -> Path | None:
    """The weights folder: $DEFECTLAB_WEIGHTS, else `<shared>/weights`; None when neither exists."""
    env = os.environ.get("DEFECTLAB_WEIGHTS")
    if env:
        return Path(env)
    shared = shared_dir()
    return shared / "weights" if shared else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_recorded(path: Path, want: str, remedy: str) -> None:
    """A file whose SHA-256 `want` was recorded when it was written: missing or changed -> one `DefectlabError`
    naming it, ending with `remedy` (what to do)."""
    if not Path(path).is_file():
        raise DefectlabError(f"{path}: missing (recorded SHA-256 {want}); {remedy}")
    got = sha256_of(Path(path))
    if got != want:
        raise DefectlabError(f"{path}: SHA-256 {got} differs from the recorded {want} (changed or corrupt); {remedy}")


def cached_sha256(path: Path) -> str:
    """`sha256_of(path)`, computed once per process for a given (path, size, modification time)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CHECKED:
        _CHECKED[key] = sha256_of(path)
    return _CHECKED[key]


def require(name: str) -> Path:
    """Path of the registered weight file `name`, after checking its SHA-256 (once per process)."""
    if name not in REGISTRY:
        raise DefectlabError(f"unknown weight file {name!r}; known: {', '.join(sorted(REGISTRY))}")
    entry = REGISTRY[name]
    base = root()
    how = (f"expected sha256 {entry.sha256}; download it from {entry.url} ({entry.licence} licence) and put it at "
           f"{'<weights root>' if base is None else base}/{entry.path} (the weights root is $DEFECTLAB_WEIGHTS, "
           f"else ../shared/weights)")
    if base is None:
        raise DefectlabError(f"weight file {entry.path}: no weights folder on this machine; {how}")
    path = base / entry.path
    if not path.is_file():
        raise DefectlabError(f"weight file {path}: not found; {how}")
    actual = cached_sha256(path)
    if actual != entry.sha256:
        raise DefectlabError(f"weight file {path}: checksum mismatch (found sha256 {actual}); {how}")
    return path


def available(name: str) -> bool:
    """True when `require(name)` would succeed."""
    try:
        require(name)
    except DefectlabError:
        return False
    return True


def missing(name: str) -> bool:
    """True when the file of `name` is simply not on this machine (no weights folder, or no file there).
    A file that is there but fails its checksum raises the `DefectlabError` of `require`: a corrupt file is
    never taken for an absent one (so no fallback hides it)."""
    if name not in REGISTRY:
        raise DefectlabError(f"unknown weight file {name!r}; known: {', '.join(sorted(REGISTRY))}")
    base = root()
    if base is None or not (base / REGISTRY[name].path).is_file():
        return True
    require(name)
    return False
