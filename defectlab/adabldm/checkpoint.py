"""Checkpoints: `<run>/step-NNNNNNN/` folders written beside their final name and renamed into place,
then `<run>/latest` (one line, written atomically) points at the newest one. A crash mid-write leaves the
previous checkpoint and pointer untouched.

Each folder holds `model.safetensors` (the trainable modules), `config.json` (the `ModelConfig`, so the
networks can be rebuilt), `state.json` (step, training parameters, and the SHA-256 of each other file) and
`optimizer.pt`. Loading checks every checksum: a corrupt or edited file is a `DefectlabError` naming it,
never weights silently loaded. (Checkpoints written before checksums were recorded load with a warning.)
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from ..errors import DefectlabError
from .params import ModelConfig

MODEL_FILE, CONFIG_FILE, STATE_FILE, OPTIM_FILE, LATEST = "model.safetensors", "config.json", "state.json", "optimizer.pt", "latest"


def _state_dict(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().cpu().contiguous() for name, mod in modules.items()
            for k, v in mod.state_dict().items()}


def save_checkpoint(run: str | Path, model, step: int, optimizer=None, state: dict | None = None,
                    unet_too: bool = True, keep: int = 2) -> Path:
    """Write checkpoint `step` of `model` under `run`; keep the newest `keep` checkpoints."""
    from safetensors.torch import save

    from ..staging import write_step_folder

    files = {MODEL_FILE: save(_state_dict(model.trainable(unet_too))),
             CONFIG_FILE: json.dumps(model.cfg.to_dict(), indent=1).encode()}
    if optimizer is not None:
        buf = io.BytesIO()
        torch.save(optimizer.state_dict(), buf)
        files[OPTIM_FILE] = buf.getvalue()
    return write_step_folder(run, step, files, dict(state or {}, unet_trained=unet_too), state_name=STATE_FILE,
                             latest=LATEST, keep=keep)


def resolve(folder: str | Path) -> Path | None:
    """The checkpoint folder inside a run folder (via `latest`), the folder itself, or None when there is none."""
    folder = Path(folder)
    if (folder / MODEL_FILE).is_file():
        return folder
    if (folder / LATEST).is_file():
        target = folder / (folder / LATEST).read_text().strip()
        if (target / MODEL_FILE).is_file():
            return target
        raise DefectlabError(f"{folder / LATEST}: points at {target}, which holds no {MODEL_FILE}")
    return None


def read_state(folder: Path) -> dict:
    path = Path(folder) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DefectlabError(f"{path}: unreadable checkpoint state ({exc})") from exc
    if not isinstance(state, dict) or "step" not in state:
        raise DefectlabError(f"{path}: not an AdaBLDM checkpoint state (no 'step')")
    return state


def verify(folder: str | Path) -> dict:
    """Check every file of a checkpoint folder against the SHA-256 its state.json records; returns the state."""
    from ..weights import sha256_of

    folder = Path(folder)
    state = read_state(folder)
    recorded = state.get("sha256")
    if recorded is None:
        warnings.warn(f"{folder}: checkpoint written before checksums were recorded; its files are not verified",
                      stacklevel=2)
        return state
    for name in (MODEL_FILE, CONFIG_FILE):
        if name not in recorded:
            raise DefectlabError(f"{folder / STATE_FILE}: records no checksum for {name}")
    for name, expected in recorded.items():
        path = folder / name
        if not path.is_file():
            raise DefectlabError(f"{path}: missing from the checkpoint")
        actual = sha256_of(path)
        if actual != expected:
            raise DefectlabError(f"{path}: checksum mismatch (sha256 {actual}, the checkpoint recorded {expected}); "
                                 "the file is corrupt or was changed after training")
    return state


def load_weights(model, folder: str | Path, *, check: bool = True) -> dict:
    """Load a checkpoint's trainable modules into `model`; returns its state.json."""
    from safetensors.torch import load_file

    ckpt = resolve(folder)
    if ckpt is None:
        raise DefectlabError(f"{folder}: no AdaBLDM checkpoint ({MODEL_FILE} or {LATEST}) there")
    state = verify(ckpt) if check else read_state(ckpt)
    try:
        tensors = load_file(str(ckpt / MODEL_FILE))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise DefectlabError(f"{ckpt / MODEL_FILE}: not a readable safetensors file ({exc})") from exc
    for name, mod in model.trainable(state.get("unet_trained", True)).items():
        part = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        try:
            mod.load_state_dict(part)
        except RuntimeError as exc:
            raise DefectlabError(f"{ckpt / MODEL_FILE}: {name} weights do not fit the model ({exc})") from exc
    return state


def load_model(folder: str | Path, seed: int = 0):
    """Rebuild the networks from config.json and load the trained weights."""
    from .model import AdaBLDMModel

    ckpt = resolve(folder)
    if ckpt is None:
        raise DefectlabError(f"{folder}: no AdaBLDM checkpoint ({MODEL_FILE} or {LATEST}) there")
    verify(ckpt)
    try:
        cfg = ModelConfig.from_dict(json.loads((ckpt / CONFIG_FILE).read_text()))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise DefectlabError(f"{ckpt / CONFIG_FILE}: not a readable model configuration ({exc})") from exc
    model = AdaBLDMModel(cfg, seed=seed)
    load_weights(model, ckpt, check=False)  # verified above
    return model.eval()


def load_optimizer(optimizer, folder: Path) -> None:
    path = folder / OPTIM_FILE
    if path.is_file():
        try:
            optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, ValueError, KeyError, EOFError, OSError) as exc:
            raise DefectlabError(f"{path}: optimizer state unreadable or of another model ({exc})") from exc


def training_sources(folder: str | Path) -> list[str]:
    """Record keys ("category/split/label/name") of the real defects a checkpoint was trained on."""
    ckpt = resolve(folder)
    if ckpt is None:
        raise DefectlabError(f"{folder}: no AdaBLDM checkpoint ({MODEL_FILE} or {LATEST}) there")
    state = read_state(ckpt)
    if "sources" not in state:
        raise DefectlabError(f"{ckpt / STATE_FILE}: records no training images (trained before they were recorded); "
                             "retrain it to use it where held-out images matter")
    return list(state["sources"])


def refuse_if_trained_on(folder: str | Path, heldout_keys) -> None:
    """Raise a DefectlabError when the checkpoint's training defects include any of `heldout_keys` (record keys
    or Records): a benchmark must not test on images its synthesis model learned from."""
    keys = {getattr(k, "key", k) for k in heldout_keys}
    seen = sorted(keys.intersection(training_sources(folder)))
    if seen:
        more = f" and {len(seen) - 3} more" if len(seen) > 3 else ""
        raise DefectlabError(f"{resolve(folder)}: trained on held-out test image(s) {', '.join(seen[:3])}{more}; "
                             "train AdaBLDM on this seed's support set instead")
