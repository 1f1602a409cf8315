"""Training AdaBLDM: noise prediction on (composite, trimap, prompt) pairs, through `accelerate`.

With Stable Diffusion weights only the trimap branch learns (paper / reference train.py: AdamW 1e-5, SD
locked); the offline model learns its UNet and word embeddings too. `accelerate launch -m
defectlab.adabldm.train ...` runs the same code on several GPUs.

Offline CPU recipe (128 px, TAEF2 latents; see benchmarks/RESULTS.md for its measured time):

    python -m defectlab.adabldm.train --data embedded --category washer --size 128 --out outputs/adabldm

GPU recipe with SD weights (256 px):

    accelerate launch -m defectlab.adabldm.train --data embedded --category washer --size 256 \
        --pretrained runwayml/stable-diffusion-v1-5 --recipe gpu --out outputs/adabldm_sd
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import DefectlabError
from ..progress import progress
from . import checkpoint
from .model import AdaBLDMModel
from .pairs import Pairs
from .params import GPU_SD_TRAIN, OFFLINE_TRAIN, TrainParams
from .prompts import WordPromptEncoder


class _Denoiser(nn.Module):
    """The modules a training step runs, as one module so accelerate/DDP can wrap (and sync) them."""

    def __init__(self, model: AdaBLDMModel):
        super().__init__()
        self.unet, self.controlnet, self.prompt_encoder = model.unet, model.controlnet, model.prompt_encoder

    def forward(self, latents, t, prompts: list[str], trimaps):
        cond, empty = self.prompt_encoder(prompts), self.prompt_encoder([""] * len(prompts))
        down, mid = self.controlnet(latents, t, encoder_hidden_states=empty, controlnet_cond=trimaps, return_dict=False)
        return self.unet(latents, t, encoder_hidden_states=cond, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample


@torch.no_grad()
def encode_pairs(model: AdaBLDMModel, pairs: Pairs, hflip: bool, batch: int = 16, show_progress: bool = False):
    """Latents of the composites (and of their mirror images), trimaps as (N, 3, S, S) in [0, 1], prompts."""
    images = torch.from_numpy(pairs.images).permute(0, 3, 1, 2).float()
    trimaps = torch.from_numpy(pairs.trimaps.astype(np.float32) / 255.0)[:, None].expand(-1, 3, -1, -1)
    prompts = list(pairs.prompts)
    if hflip:
        images, trimaps, prompts = torch.cat([images, images.flip(-1)]), torch.cat([trimaps, trimaps.flip(-1)]), prompts * 2
    dev = model.device
    chunks = range(0, len(images), batch)
    latents = [model.autoencoder.encode(images[i:i + batch].to(dev)).cpu()
               for i in (progress(chunks, desc="encoding pairs", leave=False) if show_progress else chunks)]
    return torch.cat(latents), trimaps.contiguous(), prompts


def train(model: AdaBLDMModel, pairs: Pairs, params: TrainParams, out: str | Path | None = None, resume: bool = True,
          show_progress: bool = True, log_every: int = 50, time_limit: float | None = None) -> list[float]:
    """Train `model` in place; returns the loss of every step run now. Checkpoints go to `out` (resumable).

    Step k's batch, noise and timesteps come from `np.random.default_rng([seed, k, process])`, so a resumed
    run draws the same data as an uninterrupted one."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    unet_too = params.unet_lr is not None
    model.to(accelerator.device)
    model.autoencoder.to(accelerator.device)
    model.unet.requires_grad_(unet_too)
    model.prompt_encoder.requires_grad_(unet_too and isinstance(model.prompt_encoder, WordPromptEncoder))
    model.controlnet.requires_grad_(True)
    groups = [{"params": list(model.controlnet.parameters()), "lr": params.lr}]
    if unet_too:
        extra = list(model.unet.parameters()) + [p for p in model.prompt_encoder.parameters() if p.requires_grad]
        groups.append({"params": extra, "lr": params.unet_lr})
    optimizer = torch.optim.AdamW(groups)
    start = 0
    ckpt = checkpoint.resolve(out) if (out is not None and resume) else None
    if ckpt is not None:
        start = checkpoint.load_weights(model, ckpt)["step"]
        checkpoint.load_optimizer(optimizer, ckpt)
    latents, trimaps, prompts = encode_pairs(model, pairs, params.hflip, show_progress=show_progress)
    denoiser, optimizer = accelerator.prepare(_Denoiser(model), optimizer)
    denoiser.train()
    sched = model.scheduler
    n_train = sched.config.num_train_timesteps
    history: list[float] = []
    t0 = time.time()
    show = show_progress and accelerator.is_main_process
    steps = range(start, params.steps)
    bar = progress(steps, desc="AdaBLDM training", initial=start, total=params.steps) if show else steps
    for step in bar:
        rng = np.random.default_rng([params.seed, step, accelerator.process_index])
        idx = torch.from_numpy(rng.integers(0, len(latents), params.batch_size))
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        z0 = latents[idx]
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, n_train, (len(idx),), generator=gen)
        zt = sched.add_noise(z0, noise, t)
        batch_prompts = ["" if rng.random() < params.prompt_dropout else prompts[i] for i in idx.tolist()]
        dev = accelerator.device
        pred = denoiser(zt.to(dev), t.to(dev), batch_prompts, trimaps[idx].to(dev))
        loss = nn.functional.mse_loss(pred.float(), noise.to(dev))
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        history.append(float(loss.detach()))
        if show and (step + 1) % log_every == 0:
            bar.set_postfix(loss=f"{np.mean(history[-log_every:]):.4f}")
        done = step + 1 == params.steps or (time_limit is not None and time.time() - t0 > time_limit)
        if out is not None and accelerator.is_main_process and ((step + 1) % params.checkpoint_every == 0 or done):
            checkpoint.save_checkpoint(out, model, step + 1, optimizer, {"train": params.to_dict()}, unet_too)
        if done:
            break
    accelerator.wait_for_everyone()
    model.eval()
    return history


def _load_data(args) -> tuple[list, list, list, str]:
    """(good images, foregrounds, few-shot defect Samples, object name) from defectlab.data."""
    from ..data import build_embedded, few_shot_split, foreground_for, read_magnetic_tile
    from ..sample import Sample

    if args.data == "embedded":
        ds = build_embedded()
    elif args.data == "magnetic_tile":
        if not args.path:
            raise DefectlabError("--data magnetic_tile needs --path to the Magnetic-tile-defect-datasets folder")
        ds = read_magnetic_tile(args.path)
    else:
        raise DefectlabError(f"--data must be 'embedded' or 'magnetic_tile', got {args.data!r}")
    category = args.category or ds.categories()[0]
    split = few_shot_split(ds, category, shots=args.shots, seed=args.seed)
    goods = [r.image() for r in split.good_train]
    fgs = [foreground_for(r, g) for r, g in zip(split.good_train, goods)]
    defects = [Sample(*r.load(), {"label": r.label, "category": r.category, "source": r.key}) for r in split.support]
    return goods, fgs, defects, category


def check_args(args) -> None:
    """The command line's numbers and the output folder, checked before any data is read or model built."""
    from ..limits import check_int, check_memory, check_side, image_bytes

    if args.threads is not None:
        check_int("--threads", args.threads, low=1)
    check_int("--shots", args.shots, low=0)
    if args.size is not None:
        check_side("--size", args.size, low=32)
        # the pairs (composite, trimap) held in memory, and a few float activations of the UNet per pixel
        check_memory(f"--size {args.size}", 256 * image_bytes(args.size) + 512 * args.size * args.size * 4)
    if getattr(args, "steps", None) is not None:
        check_int("--steps", args.steps, low=1)
    if getattr(args, "minutes", None) is not None and not args.minutes > 0:
        raise DefectlabError(f"--minutes must be > 0, got {args.minutes}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DefectlabError(f"{out}: exists and is not a folder")


def run(args) -> int:
    from ..config import quick_mode
    from .pairs import make_pairs
    from .params import ModelConfig
    from .prompts import vocabulary_for

    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    params = OFFLINE_TRAIN if args.recipe == "offline" else GPU_SD_TRAIN
    params = replace(params, seed=args.seed, size=args.size or params.size,
                     steps=args.steps or (60 if quick_mode() else params.steps))
    goods, fgs, defects, category = _load_data(args)
    pairs = make_pairs(goods, defects, np.random.default_rng(args.seed), 32 if quick_mode() else params.pairs,
                       params.size, fgs, params.rotation, params.scale)
    existing = checkpoint.resolve(args.out) if Path(args.out).exists() else None
    if existing is not None:
        model = checkpoint.load_model(existing)
    elif args.pretrained:
        model = AdaBLDMModel(ModelConfig(autoencoder="sd", pretrained=args.pretrained, latent_channels=4), seed=args.seed)
    else:
        model = AdaBLDMModel(ModelConfig(vocabulary=vocabulary_for(pairs.prompts + [""])), seed=args.seed)
    t0 = time.time()
    history = train(model, pairs, params, args.out, time_limit=args.minutes * 60 if args.minutes else None)
    if history:
        print(f"{category}: {len(history)} steps in {time.time() - t0:.0f} s, loss {np.mean(history[:20]):.4f} -> "
              f"{np.mean(history[-20:]):.4f}; checkpoint in {checkpoint.resolve(args.out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m defectlab.adabldm.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="embedded", help="'embedded' or 'magnetic_tile'")
    p.add_argument("--path", help="data set folder (Magnetic Tile)")
    p.add_argument("--category", help="category to learn (default: the first)")
    p.add_argument("--shots", type=int, default=2, help="real defects per type given to training")
    p.add_argument("--size", type=int, default=None, help="image side (default: 128 offline, 256 gpu)")
    p.add_argument("--recipe", choices=["offline", "gpu"], default="offline")
    p.add_argument("--pretrained", help="Stable Diffusion hub id or folder (UNet, CLIP, VAE); only the trimap branch trains")
    p.add_argument("--steps", type=int, help="override the recipe's step count")
    p.add_argument("--minutes", type=float, help="stop (and checkpoint) after this many minutes")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy shared machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run folder (checkpoints; re-running resumes)")
    return p


def main(argv=None) -> int:
    """Bad input ends as one line `error: ...` and exit status 2 (see `defectlab.cli.run_handler`)."""
    from ..cli import run_handler

    return run_handler(run, build_parser().parse_args(argv), prog="python -m defectlab.adabldm.train")


if __name__ == "__main__":
    raise SystemExit(main())
