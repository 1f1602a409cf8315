"""Training the prior: noise prediction on the latents of good images, resumable, with an EMA of the weights.

The latents are encoded once (each good image and, with `hflip`, its mirror image). Step k's batch, noise and
timesteps come from `np.random.default_rng([seed, k])`, so a resumed run gives the same bytes as an uninterrupted
one. A run folder holds `step-NNNNNNN/` checkpoints (weights, EMA, optimiser and learning-rate schedule, each
checksummed in `state.json`), written beside their final name and renamed into place, and `latest` naming the newest.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import DefectlabError
from ..progress import progress
from .model import NUM_TRAIN_TIMESTEPS, build_unet, ddpm_scheduler
from .params import PriorParams

FILES = ("unet.safetensors", "ema.pt", "optimizer.pt", "lr.pt")
STATE, LATEST = "state.json", "latest"


@torch.no_grad()
def encode(autoencoder, views: np.ndarray, hflip: bool, batch: int = 32, show_progress: bool = True) -> torch.Tensor:
    """Latents of `views` (N, S, S, 3) in [0, 1], then of their mirror images."""
    images = torch.from_numpy(np.ascontiguousarray(views, np.float32)).permute(0, 3, 1, 2)
    if hflip:
        images = torch.cat([images, images.flip(-1)])
    chunks = range(0, len(images), batch)
    bar = progress(chunks, desc="encoding good images", leave=False) if show_progress else chunks
    return torch.cat([autoencoder.encode(images[i:i + batch]) for i in bar])


def _optimizers(unet, params: PriorParams):
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    optimizer = torch.optim.AdamW(unet.parameters(), lr=params.lr)
    schedule = get_scheduler("cosine", optimizer, num_warmup_steps=params.warmup, num_training_steps=params.steps)
    ema = EMAModel(unet.parameters(), decay=params.ema_decay)
    return optimizer, schedule, ema


def _save(run: Path, step: int, unet, optimizer, schedule, ema, state: dict) -> Path:
    from safetensors.torch import save

    from ..staging import write_step_folder

    blobs = {"unet.safetensors": save({k: v.contiguous() for k, v in unet.state_dict().items()})}
    for name, obj in (("ema.pt", ema.state_dict()), ("optimizer.pt", optimizer.state_dict()),
                      ("lr.pt", schedule.state_dict())):
        buf = io.BytesIO()
        torch.save(obj, buf)
        blobs[name] = buf.getvalue()
    return write_step_folder(run, step, blobs, state, state_name=STATE, latest=LATEST)


def _read(folder: Path, name: str, state: dict) -> bytes:
    data = (folder / name).read_bytes()
    if hashlib.sha256(data).hexdigest() != state["sha256"][name]:
        raise DefectlabError(f"{folder / name}: SHA-256 differs from {folder / STATE} (changed or corrupt); "
                             f"delete {folder.parent} to train again")
    return data


def _resume(run: Path, unet, optimizer, schedule, ema, fingerprint: str) -> int:
    """Load the newest checkpoint of `run` into the objects; its step (0 when there is none)."""
    from safetensors.torch import load

    pointer = run / LATEST
    if not pointer.is_file():
        return 0
    folder = run / pointer.read_text().strip()
    try:
        state = json.loads((folder / STATE).read_text())
    except (OSError, ValueError) as exc:
        raise DefectlabError(f"{folder / STATE}: unreadable ({exc}); delete {run} to train again") from exc
    if state.get("fingerprint") != fingerprint:
        raise DefectlabError(f"{run}: a checkpoint of another prior (other images or parameters); delete it or "
                             "choose another folder")
    unet.load_state_dict(load(_read(folder, "unet.safetensors", state)))
    ema.load_state_dict(torch.load(io.BytesIO(_read(folder, "ema.pt", state)), weights_only=True))
    optimizer.load_state_dict(torch.load(io.BytesIO(_read(folder, "optimizer.pt", state)), weights_only=True))
    schedule.load_state_dict(torch.load(io.BytesIO(_read(folder, "lr.pt", state)), weights_only=True))
    return int(state["step"])


def train(latents: torch.Tensor, params: PriorParams, run: str | Path, fingerprint: str, *,
          time_limit: float | None = None, show_progress: bool = True) -> tuple[nn.Module, int, list[float]]:
    """Train (or resume) in `run`; returns (the EMA UNet, the step reached, the losses of the steps run now).
    With `time_limit` (seconds) it checkpoints and stops early; call again to go on."""
    run = Path(run)
    unet = build_unet(params, latents.shape[1], params.seed)
    optimizer, schedule, ema = _optimizers(unet, params)
    start = _resume(run, unet, optimizer, schedule, ema, fingerprint)
    sched = ddpm_scheduler()
    unet.train()
    losses: list[float] = []
    t0 = time.time()
    steps = range(start, params.steps)
    bar = progress(steps, desc="domain prior", initial=start, total=params.steps) if show_progress else steps
    step = start
    for step in bar:
        rng = np.random.default_rng([params.seed, step])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        z0 = latents[torch.from_numpy(rng.integers(0, len(latents), params.batch_size))]
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(z0),), generator=gen)
        loss = nn.functional.mse_loss(unet(sched.add_noise(z0, noise, t), t).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        ema.step(unet.parameters())
        losses.append(float(loss.detach()))
        if show_progress and (step + 1) % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        out_of_time = time_limit is not None and time.time() - t0 > time_limit
        if (step + 1) % params.checkpoint_every == 0 or step + 1 == params.steps or out_of_time:
            _save(run, step + 1, unet, optimizer, schedule, ema, {"fingerprint": fingerprint})
        if out_of_time:
            step += 1
            break
    else:
        step = params.steps
    ema.copy_to(unet.parameters())
    return unet.eval().requires_grad_(False), step, losses
