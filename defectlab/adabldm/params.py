"""AdaBLDM's parameters with their published defaults (Li et al. 2024, arXiv:2402.19330, and its reference code)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import DefectlabError

PROMPT_TEMPLATE = "a {object} with a {defect}"  # reference test.py builds "a {obj} with a {cate}"


@dataclass
class SamplerParams:
    steps: int = 50  # reference test.py: ddim_steps=50 (DDIM, eta 0)
    guidance: float = 9.0  # reference test.py: unconditional_guidance_scale=9.0
    # Stage boundaries as fractions of the schedule. With 50 steps: steps 0-25 free diffusion (stage 1),
    # steps 26-45 latent editing before each step (stage 2), pixel editing after steps 45-49 so that steps
    # 46-49 and the output see pixel-edited latents (stage 3). Reference ddim_hacked.py: cutoff_index=45.
    latent_edit_from: float = 0.52  # 26 / 50
    pixel_edit_from: float = 0.92  # 46 / 50
    dilation: int = 5  # reference test.py: latent mask dilated by a (3 + 2) x (3 + 2) square
    eta: float = 0.0  # reference test.py: DDIM eta = 0
    # After a pixel edit the re-encoded clean latent is noised to the *next* timestep (what a DDIM step
    # outputs; the last step gives a clean latent). "current" re-noises to the step's own timestep like the
    # reference ddim_hacked.py (the output then keeps a little noise).
    renoise: str = "next"
    # Appended to the prompt built from object and defect names. None: the paper's ", black background." on the
    # Stable Diffusion path (reference test.py appends it to every inference prompt), nothing for the offline
    # model, whose word encoder never saw those words in training.
    prompt_suffix: str | None = None

    def stage_indices(self) -> tuple[int, int]:
        """(first latent-editing step, first step whose input is pixel-edited)."""
        a = int(round(self.latent_edit_from * self.steps))
        b = int(round(self.pixel_edit_from * self.steps))
        return a, b

    def stage_steps(self) -> dict[str, range]:
        """The steps each stage runs: free and latent editing *before* a step, pixel editing *after* it.

        `pixel_edit_from=1` switches stage 3 off (with 50 steps, 0.98 still pixel-edits the last step's output);
        `latent_edit_from=1` too switches all editing off."""
        a, b = self.stage_indices()
        n = self.steps
        if self.pixel_edit_from >= 1:
            return {"free": range(0, a), "latent_edit": range(a, n), "pixel_edit": range(n, n)}
        return {"free": range(0, a), "latent_edit": range(a, b), "pixel_edit": range(max(b - 1, 0), n)}

    def check(self) -> "SamplerParams":
        if self.steps < 1:
            raise DefectlabError(f"steps must be >= 1, got {self.steps}")
        if not 0 <= self.latent_edit_from <= self.pixel_edit_from <= 1:
            raise DefectlabError("stage boundaries must satisfy 0 <= latent_edit_from <= pixel_edit_from <= 1, got "
                                 f"{self.latent_edit_from}, {self.pixel_edit_from}")
        if self.dilation < 1 or self.dilation % 2 == 0:
            raise DefectlabError(f"dilation must be an odd kernel size >= 1, got {self.dilation}")
        if self.renoise not in ("next", "current"):
            raise DefectlabError(f"renoise must be 'next' or 'current', got {self.renoise!r}")
        return self


@dataclass
class AdaptParams:
    iterations: int = 200  # reference test.py: 200 fine-tuning iterations of the decoder
    lr: float = 1e-4  # reference test.py: AdamW(decoder.parameters(), lr=0.0001)
    preservation: float = 100.0  # reference test.py: recon_loss(preservation_ratio=100)
    # Ours (speed): adapt on the defect's bounding box grown by this many latent cells; None = the whole image,
    # as the paper. Outside the window the output is the good image, which is what the 100x preservation term
    # drives the decoder towards anyway; inside the mask the result is within ~31 dB PSNR of whole-image
    # adaptation at 1/3 of its time at 128 px (benchmarks/RESULTS.md, "AdaBLDM seconds per image").
    window_margin: int | None = 1


def deviations(sampler: SamplerParams, adapt: AdaptParams, window: bool = False) -> list[str]:
    """Where these settings depart from the paper's procedure (printed beside results)."""
    out = ["trained and generated on a native-resolution window around the defect (the paper resizes the whole "
           "image)"] if window else []
    if sampler.renoise == "next" and sampler.stage_steps()["pixel_edit"]:
        out.append("renoise='next' (the reference re-noises a pixel edit to the current step)")
    if adapt.iterations > 0 and adapt.window_margin is not None:
        out.append(f"decoder adapted on a window (defect box + {adapt.window_margin} latent cells), "
                   "good image outside it (the paper adapts on the whole image)")
    return out


@dataclass
class TrainParams:
    size: int = 128  # image side in pixels (offline CPU recipe); 256 for the GPU recipe (paper: 256)
    steps: int = 1500  # optimiser steps
    batch_size: int = 4  # reference train.py: batch_size=4
    lr: float = 1e-5  # reference train.py: learning_rate=1e-5 (trimap branch, SD frozen)
    unet_lr: float | None = None  # offline model: the UNet also learns (None = frozen, as with SD weights)
    prompt_dropout: float = 0.0  # fraction of empty prompts (classifier-free guidance, Ho & Salimans 2022)
    rotation: tuple[float, float] = (0.0, 360.0)  # paper Sec. III-B: defect rotated at random
    scale: tuple[float, float] = (0.85, 1.15)  # paper Sec. III-B: defect rescaled by 1 +- 0.15
    pairs: int = 256  # composite pairs made (and encoded) once, then drawn with flips
    hflip: bool = True
    checkpoint_every: int = 250
    seed: int = 0
    # Ours (issue #18): train on defect-centric windows at native resolution, a fresh pair every item and step
    # (`windows.WindowPairs`), instead of `pairs` fixed composites squashed to size x size.
    window: bool = False
    # Ours (issue #18, CPU): with `window`, train on crop x crop pieces of the windows that hold part of the defect
    # (one shape per batch, so a step costs a whole-image step at that size); None: whole windows, one at a time.
    crop: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# Offline default: trains UNet and trimap branch from scratch on CPU at 128 px in about 10-15 minutes.
OFFLINE_TRAIN = TrainParams(size=128, steps=1200, batch_size=8, lr=3e-4, unet_lr=3e-4, prompt_dropout=0.1,
                            pairs=256)
# Real data (issue #18): the offline recipe on native-resolution windows around the defect, fresh pairs each step,
# trained on 128-px crops of them (a CPU step then costs a whole-image step, however large the defect).
WINDOW_TRAIN = TrainParams(size=128, steps=1200, batch_size=8, lr=3e-4, unet_lr=3e-4, prompt_dropout=0.1, window=True,
                           crop=128)
# GPU recipe with Stable Diffusion weights (paper): 256 px, SD frozen, trimap branch AdamW 1e-5, batch 4.
GPU_SD_TRAIN = TrainParams(size=256, steps=30000, batch_size=4, lr=1e-5, unet_lr=None, prompt_dropout=0.0,
                           pairs=4096, checkpoint_every=1000)
RECIPES = {"offline": OFFLINE_TRAIN, "window": WINDOW_TRAIN, "gpu": GPU_SD_TRAIN}


def train_params(value) -> TrainParams:
    """A `TrainParams`, a recipe name ("offline", "window", "gpu") or a dict of fields over the window recipe if it
    sets `window` true, else over the offline one (what `--method-param adabldm.train=...` gives: `window`, or
    `{"window": true, "steps": 600}`)."""
    from dataclasses import fields, replace

    if isinstance(value, TrainParams):
        return value
    if isinstance(value, str):
        if value not in RECIPES:
            raise DefectlabError(f"adabldm: train must be one of {', '.join(RECIPES)} (or a dict of TrainParams "
                                 f"fields), got {value!r}")
        return RECIPES[value]
    if isinstance(value, dict):
        known = {f.name for f in fields(TrainParams)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise DefectlabError(f"adabldm: unknown train field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(WINDOW_TRAIN if value.get("window") else OFFLINE_TRAIN, **value)
    raise DefectlabError(f"adabldm: train must be a TrainParams, a recipe name or a dict, got {type(value).__name__}")


@dataclass
class ModelConfig:
    """What to build: the denoiser, the prompt encoder and the autoencoder (all saved with a checkpoint)."""

    autoencoder: str = "taef2"  # "taef2" (offline default), "tiny" (random, tests) or "sd" (AutoencoderKL)
    autoencoder_path: str | None = None  # hub id or folder for "sd"
    pretrained: str | None = None  # SD hub id / folder: UNet + CLIP text encoder from_pretrained
    revision: str | None = None  # hub commit hash or tag every from_pretrained is pinned to (None: the hub's latest)
    latent_channels: int = 32
    unet_channels: tuple[int, ...] = (64, 128, 128)
    layers_per_block: int = 1
    attention_dim: int = 64  # width of the learned word embedding (cross-attention dimension)
    attention_head_dim: int = 8
    norm_groups: int = 32
    vocabulary: list[str] = field(default_factory=list)
    max_words: int = 8
    tiny_seed: int = 0
    # the domain prior ε_θ started from (issue #36): its category, fingerprint and SHA-256, or None (from scratch);
    # with one, the UNet's prior weights stay locked and only its attention to the prompt learns (the paper keeps
    # SD locked)
    prior: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["unet_channels"] = list(self.unet_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        d["unet_channels"] = tuple(d.get("unet_channels", cls.unet_channels))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def tiny_config(vocabulary: list[str] | None = None) -> ModelConfig:
    """A very small random model for tests and the notebook's quick mode."""
    return ModelConfig(autoencoder="tiny", latent_channels=4, unet_channels=(32, 32), layers_per_block=1,
                       attention_dim=16, attention_head_dim=8, norm_groups=8, vocabulary=list(vocabulary or []))
