"""Training AdaBLDM: noise prediction on (composite, trimap, prompt) pairs, through `accelerate`.

With Stable Diffusion weights only the trimap branch learns (paper / reference train.py: AdamW 1e-5, SD
locked); the offline model learns its UNet and word embeddings too. `accelerate launch -m
defectlab.adabldm.train ...` runs the same code on several GPUs.

Offline CPU recipe (128 px, TAEF2 latents; see benchmarks/RESULTS.md for its measured time):

    defectlab adabldm train --data embedded --category washer --size 128 --out outputs/adabldm

GPU recipe with SD weights (256 px):

    accelerate launch -m defectlab.adabldm.train --data embedded --category washer --size 256 \
        --pretrained runwayml/stable-diffusion-v1-5 --recipe gpu --out outputs/adabldm_sd
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import DefectlabError
from ..progress import progress
from . import checkpoint
from .model import AdaBLDMModel
from .pairs import Pairs
from .windows import MULTIPLE, WindowPairs
from .params import OFFLINE_TRAIN, RECIPES, TrainParams
from .prompts import WordPromptEncoder

PROG = "python -m defectlab.adabldm.train"  # also `defectlab adabldm train` (defectlab.cli)


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


def _window_loss(model: AdaBLDMModel, denoiser, pairs: WindowPairs, rng, params: TrainParams, n_train: int, dev):
    """Mean noise-prediction loss over `batch_size` fresh window pairs. Pairs of one shape go through the networks
    together (with `params.crop`, all but the windows of images smaller than the crop); each pair weighs the same."""
    items = [pairs.one(rng, params.crop) for _ in range(params.batch_size)]
    prompts = ["" if rng.random() < params.prompt_dropout else prompt for _, _, prompt in items]
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    groups: dict[tuple, list[int]] = {}
    for i, (image, _, _) in enumerate(items):
        groups.setdefault(image.shape, []).append(i)  # insertion order: same draws, same order, same bytes
    total = 0.0
    for index in groups.values():
        images = torch.from_numpy(np.stack([items[i][0] for i in index])).permute(0, 3, 1, 2).to(dev)
        tri = np.stack([items[i][1] for i in index]).astype(np.float32) / 255.0
        trimap = torch.from_numpy(tri)[:, None].expand(-1, 3, -1, -1).to(dev)
        with torch.no_grad():
            z0 = model.autoencoder.encode(images)
        noise = torch.randn(z0.shape, generator=gen).to(dev)
        t = torch.randint(0, n_train, (len(index),), generator=gen).to(dev)
        pred = denoiser(model.scheduler.add_noise(z0, noise, t), t, [prompts[i] for i in index], trimap)
        total = total + nn.functional.mse_loss(pred.float(), noise, reduction="none").flatten(1).mean(1).sum()
    return total / len(items)


def train(model: AdaBLDMModel, pairs: Pairs | WindowPairs, params: TrainParams, out: str | Path | None = None, resume: bool = True,
          show_progress: bool = True, log_every: int = 50, time_limit: float | None = None,
          provenance: dict | None = None) -> list[float]:
    """Train `model` in place; returns the loss of every step run now. Checkpoints go to `out` (resumable).

    Step k's batch, noise and timesteps come from `np.random.default_rng([seed, k, process])`, so a resumed
    run draws the same data as an uninterrupted one."""
    from accelerate import Accelerator

    if params.crop is not None and (params.crop < MULTIPLE or params.crop % MULTIPLE):
        raise DefectlabError(f"crop must be a multiple of {MULTIPLE} (the latent grid), got {params.crop}")
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    unet_too = params.unet_lr is not None
    model.to(accelerator.device)
    model.autoencoder.to(accelerator.device)
    model.unet.requires_grad_(unet_too)
    model.prompt_encoder.requires_grad_(unet_too and isinstance(model.prompt_encoder, WordPromptEncoder))
    model.controlnet.requires_grad_(True)
    for q in model.locked():  # started from the domain prior: its weights stay (the paper keeps SD locked)
        q.requires_grad_(False)
    groups = [{"params": list(model.controlnet.parameters()), "lr": params.lr}]
    if unet_too:
        extra = [q for q in model.unet.parameters() if q.requires_grad] + \
            [p for p in model.prompt_encoder.parameters() if p.requires_grad]
        groups.append({"params": extra, "lr": params.unet_lr})
    optimizer = torch.optim.AdamW(groups)
    start = 0
    ckpt = checkpoint.resolve(out) if (out is not None and resume) else None
    if ckpt is not None:
        start = checkpoint.load_weights(model, ckpt)["step"]
        checkpoint.load_optimizer(optimizer, ckpt)
    fresh = isinstance(pairs, WindowPairs)  # a new window pair per item and step (else: fixed pairs, encoded once)
    if not fresh:
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
        dev = accelerator.device
        if fresh:
            loss = _window_loss(model, denoiser, pairs, rng, params, n_train, dev)
        else:
            idx = torch.from_numpy(rng.integers(0, len(latents), params.batch_size))
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            z0 = latents[idx]
            noise = torch.randn(z0.shape, generator=gen)
            t = torch.randint(0, n_train, (len(idx),), generator=gen)
            zt = sched.add_noise(z0, noise, t)
            batch_prompts = ["" if rng.random() < params.prompt_dropout else prompts[i] for i in idx.tolist()]
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
            checkpoint.save_checkpoint(out, model, step + 1, optimizer, {"train": params.to_dict(), **(provenance or {})},
                                       unet_too)
        if done:
            break
    accelerator.wait_for_everyone()
    model.eval()
    return history


@dataclass
class TrainingData:
    """What training (and generation with the same split) reads: goods, foregrounds, real defects, provenance."""

    goods: list  # good training images, full resolution
    foregrounds: list
    defects: list  # few-shot real defects as Samples (meta: label, category, source = record key)
    category: str
    root: str  # data set folder ("embedded" for the embedded set)
    heldout: list  # record keys of the held-out defect images (never seen by training)
    heldout_records: list = field(default_factory=list, repr=False)  # their Records (galleries load them)

    @property
    def sources(self) -> list[str]:
        return [d.meta["source"] for d in self.defects]


def shots_arg(text: str):
    """The command-line `--shots` value: 'auto' or an integer."""
    return text if text == "auto" else int(text)


def auto_shots(dataset, category: str, cap: int = 10) -> int:
    """Up to `cap` shots per type, leaving at least one held-out image of the rarest type."""
    counts = [len(dataset.filter(category=category, label=t)) for t in dataset.filter(category=category).defect_types()]
    return max(1, min(cap, min(counts) - 1)) if counts else 1


def load_training_data(data: str = "embedded", path: str | Path | None = None, category: str | None = None,
                       shots: int | str = 2, seed: int = 0) -> TrainingData:
    """The few-shot split of any data set `open_dataset` reads (`data` = "embedded", "auto" or a format name:
    mvtec, btad, ksdd2, visa, magnetic_tile; MVTec-layout exports read as "mvtec")."""
    from ..data import FORMATS, build_embedded, few_shot_split, foreground_for, open_dataset
    from ..data.split import check_support_masks
    from ..sample import Sample

    if data == "embedded" and path is None:
        ds, root = build_embedded(), "embedded"
    elif data in ("auto", "embedded", *FORMATS):
        if path is None:
            raise DefectlabError(f"--data {data} needs --path to the data set folder")
        ds, root = open_dataset(path, "auto" if data == "embedded" else data), str(path)
    else:
        raise DefectlabError(f"--data must be 'embedded', 'auto' or one of {', '.join(FORMATS)}; got {data!r}")
    category = category or ds.categories()[0]
    if category not in ds.categories():
        raise DefectlabError(f"{root}: no category {category!r}; it has {', '.join(ds.categories())}")
    empty = ds.check_defect_masks(category)  # all empty: an error naming the files, as in the benchmark
    split = few_shot_split(ds, category, shots=auto_shots(ds, category) if shots == "auto" else shots, seed=seed)
    check_support_masks(split, empty, seed)
    goods = [r.image() for r in split.good_train]
    fgs = [foreground_for(r, g) for r, g in zip(split.good_train, goods)]
    defects = [Sample(*r.load(), {"label": r.label, "category": r.category, "source": r.key}) for r in split.support
               if r.key not in {e.key for e in empty}]
    return TrainingData(goods, fgs, defects, category, root, [r.key for r in split.heldout], list(split.heldout))


def check_args(args) -> None:
    """The command line's numbers and the output folder, checked before any data is read or model built."""
    from ..limits import check_int, check_memory, check_side, image_bytes

    if args.threads is not None:
        check_int("--threads", args.threads, low=1)
    if args.shots != "auto":
        check_int("--shots", args.shots, low=0)
    if args.size is not None:
        check_side("--size", args.size, low=32)
        # the pairs (composite, trimap) held in memory, and a few float activations of the UNet per pixel
        check_memory(f"--size {args.size}", 256 * image_bytes(args.size) + 512 * args.size * args.size * 4)
    if getattr(args, "steps", None) is not None:
        check_int("--steps", args.steps, low=1)
    crop = getattr(args, "crop", None)
    if crop is not None and crop != 0 and (crop < MULTIPLE or crop % MULTIPLE):  # train() checks it too, after loading
        raise DefectlabError(f"--crop must be 0 (whole windows) or a multiple of {MULTIPLE}, got {crop}")
    if getattr(args, "minutes", None) is not None and not args.minutes > 0:
        raise DefectlabError(f"--minutes must be > 0, got {args.minutes}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DefectlabError(f"{out}: exists and is not a folder")


def train_run(out: str | Path, data: TrainingData, params: TrainParams = OFFLINE_TRAIN, *, pretrained: str | None = None,
              revision: str | None = None, prior=None,
              minutes: float | None = None, show_progress: bool = True) -> tuple[Path, list[float]]:
    """Train (or resume) a run folder on `data`'s few-shot support; returns (checkpoint folder, losses of this call).
    `prior`: a `defectlab.prior.DomainPrior` the offline UNet starts from (None: from scratch).

    The checkpoints record the training images (`state.json`: `sources`, `heldout`, `data`, `category`)."""
    from ..config import quick_mode
    from .pairs import make_pairs
    from .params import ModelConfig
    from .prompts import vocabulary_for

    if params.window:
        pairs = WindowPairs(data.goods, data.foregrounds, data.defects, params.size, params.rotation, params.scale,
                            params.hflip)
    else:
        pairs = make_pairs(data.goods, data.defects, np.random.default_rng(params.seed),
                           32 if quick_mode() else params.pairs, params.size, data.foregrounds, params.rotation,
                           params.scale)
    existing = checkpoint.resolve(out) if Path(out).exists() else None
    if existing is not None:
        model = checkpoint.load_model(existing)
    elif pretrained:
        model = AdaBLDMModel(ModelConfig(autoencoder="sd", pretrained=pretrained, latent_channels=4, revision=revision),
                             seed=params.seed)
    else:
        model = AdaBLDMModel(ModelConfig(vocabulary=vocabulary_for(pairs.prompts + [""])), seed=params.seed, prior=prior)
    provenance = {"data": data.root, "category": data.category, "sources": data.sources, "heldout": data.heldout}
    history = train(model, pairs, params, out, show_progress=show_progress, provenance=provenance,
                    time_limit=minutes * 60 if minutes else None)
    return checkpoint.resolve(out), history


def run(args) -> int:
    from ..config import quick_mode

    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    params = RECIPES[args.recipe]
    params = replace(params, seed=args.seed, size=args.size or params.size,
                     steps=args.steps or (60 if quick_mode() else params.steps))
    if args.crop is not None:
        params = replace(params, crop=args.crop or None)
    data = load_training_data(args.data, args.path, args.category, args.shots, args.seed)
    prior = None
    if not args.pretrained and args.prior != "none":
        from ..prior import PriorParams, resolve_prior

        prior = resolve_prior(args.prior, data.goods, PriorParams(size=params.size), category=data.category,
                              who="AdaBLDM")
    t0 = time.time()
    ckpt, history = train_run(args.out, data, params, pretrained=args.pretrained, revision=args.revision,
                              prior=prior, minutes=args.minutes)
    if history:
        print(f"{data.category}: {len(history)} steps in {time.time() - t0:.0f} s, loss {np.mean(history[:20]):.4f} -> "
              f"{np.mean(history[-20:]):.4f}; checkpoint in {ckpt}")
    return 0


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="embedded",
                   help="'embedded' (default), or with --path: 'auto', mvtec, btad, ksdd2, visa, magnetic_tile")
    p.add_argument("--path", help="data set folder (any layout open_dataset reads)")
    p.add_argument("--category", help="category to learn (default: the first)")
    p.add_argument("--shots", type=shots_arg, default=2,
                   help="real defects per type given to training, or 'auto': up to 10, one left held out per type")
    p.add_argument("--size", type=int, default=None, help="image side (default: 128 offline, 256 gpu)")
    p.add_argument("--recipe", choices=list(RECIPES), default="offline",
                   help="offline: whole images at --size; window: native-resolution windows around each defect")
    p.add_argument("--crop", type=int, default=None,
                   help="window recipe: train on crop x crop pieces of each window (default 128; 0: whole windows)")
    p.add_argument("--pretrained", help="Stable Diffusion hub id or folder (UNet, CLIP, VAE); only the trimap branch trains")
    p.add_argument("--revision", help="pin the hub weights of --pretrained to this commit hash or tag")
    p.add_argument("--prior", default="auto",
                   help="offline ε_θ starts from a domain prior: auto (the prior of the split's good images, trained "
                        "once and cached), a prior folder (e.g. from `defectlab prior train`), or none (from scratch)")
    p.add_argument("--steps", type=int, help="override the recipe's step count")
    p.add_argument("--minutes", type=float, help="stop (and checkpoint) after this many minutes")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy shared machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run folder (checkpoints; re-running resumes)")
    return p


def main(argv=None, prog: str = PROG) -> int:
    """Bad input ends as one line `<prog>: error: ...` and exit status 2 (see `defectlab.cli.run_handler`).
    Also `defectlab adabldm train ...` (`defectlab.cli`), which passes its own `prog`."""
    from ..cli import run_handler

    return run_handler(run, build_parser(prog).parse_args(argv), prog=prog)


if __name__ == "__main__":
    raise SystemExit(main())
