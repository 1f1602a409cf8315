"""AdaBLDM inference: three-stage DDIM sampling, then online decoder adaptation (paper Sec. III-C/D).

Stage 1 (free diffusion): plain guided DDIM steps from noise.
Stage 2 (latent editing): before each step, outside the defect mask dilated on the latent grid, the latent
is replaced by the good image's latent noised to the current timestep.
Stage 3 (pixel editing): after each step, the predicted clean image is decoded, pasted inside the
(undilated) defect mask onto the good image, re-encoded and re-noised (`SamplerParams.renoise`).
Then a copy of the decoder is adapted to this image (see `adapt.py`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import DefectlabError
from ..progress import progress
from ..sample import Sample, as_image, as_mask, torch_generator
from .adapt import decode_adapted
from .model import AdaBLDMModel, trimap_tensor
from .params import AdaptParams, ModelConfig, SamplerParams, tiny_config
from .prompts import prompt_for

STAGES = ("free", "latent_edit", "pixel_edit", "adapted")
SD_PROMPT_SUFFIX = ", black background."  # reference test.py appends it to every inference prompt


@dataclass
class AdaBLDMResult:
    image: np.ndarray  # final image (H, W, C) in [0, 1], C as the good image
    mask: np.ndarray  # bool (H, W): the defect mask used
    prompt: str
    stages: dict[str, np.ndarray] = field(default_factory=dict)  # decoded image at the end of each stage
    trimap: np.ndarray | None = None  # (H, W, 3) in [0, 1]
    latent_mask: np.ndarray | None = None  # bool (h, w): dilated mask on the latent grid
    adapt_losses: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of "sampling" and "adaptation"

    def sample(self, meta: dict | None = None) -> Sample:
        return Sample(self.image, self.mask, dict(meta or {}, prompt=self.prompt))


def _to_tensor(image: np.ndarray, device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32)).permute(2, 0, 1)[None].to(device)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _to_image(x: torch.Tensor, channels: int) -> np.ndarray:
    arr = x[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float32)
    return arr.mean(axis=2, keepdims=True) if channels == 1 else np.ascontiguousarray(arr)


def latent_mask_for(mask: np.ndarray, factor: int, kernel: int) -> np.ndarray:
    """The defect mask on the latent grid, dilated by a `kernel` x `kernel` square (`masks.dilate_on_latent_grid`)."""
    from .. import masks

    out = np.asarray(masks.dilate_on_latent_grid(mask, factor=factor, kernel=kernel), bool)
    want = (mask.shape[0] // factor, mask.shape[1] // factor)
    if out.shape != want:
        raise DefectlabError(f"dilate_on_latent_grid returned {out.shape}, expected the latent grid {want}")
    return out


class AdaBLDM:
    """A trained AdaBLDM model with its sampling and adaptation settings."""

    def __init__(self, model: AdaBLDMModel, sampler: SamplerParams | None = None, adapt: AdaptParams | None = None):
        self.model = model.eval()
        self.sampler = (sampler or SamplerParams()).check()
        self.adapt = adapt or AdaptParams()

    @classmethod
    def tiny(cls, vocabulary: list[str] | None = None, seed: int = 0, **kw) -> "AdaBLDM":
        """Untrained tiny model (tests, quick notebook runs): meaningless pictures, the full procedure."""
        return cls(AdaBLDMModel(tiny_config(vocabulary), seed=seed), **kw)

    @classmethod
    def from_checkpoint(cls, folder: str | Path, **kw) -> "AdaBLDM":
        from .checkpoint import load_model

        return cls(load_model(folder), **kw)

    @classmethod
    def from_pretrained(cls, sd_path: str, trimap_branch: str | Path | None = None, **kw) -> "AdaBLDM":
        """SD weights (hub id or folder: UNet, CLIP, VAE) plus, optionally, a trained trimap-branch checkpoint."""
        if trimap_branch is not None:
            return cls.from_checkpoint(trimap_branch, **kw)
        return cls(AdaBLDMModel(ModelConfig(autoencoder="sd", pretrained=sd_path, latent_channels=4)), **kw)

    @property
    def factor(self) -> int:
        return self.model.autoencoder.factor

    def prompt(self, object_name: str, defect_name: str, sampler: SamplerParams | None = None) -> str:
        """The inference prompt: "a {object} with a {defect}" plus the suffix (`SamplerParams.prompt_suffix`)."""
        suffix = (sampler or self.sampler).prompt_suffix
        if suffix is None:
            suffix = SD_PROMPT_SUFFIX if self.model.cfg.pretrained else ""
        return prompt_for(object_name, defect_name) + suffix

    @torch.no_grad()
    def generate(self, good_image: np.ndarray, defect_mask: np.ndarray, foreground: np.ndarray | None = None, *,
                 rng: np.random.Generator, prompt: str | None = None, object_name: str | None = None,
                 defect_name: str | None = None, sampler: SamplerParams | None = None,
                 adapt: AdaptParams | None = None, trace: list | None = None,
                 show_progress: bool = False) -> AdaBLDMResult:
        """Put a defect of the prompt's kind inside `defect_mask` of `good_image`. Same rng state, same bytes.

        `result.stages` holds a picture for each stage that ran (`SamplerParams.stage_steps`), in order.
        `trace` (a list) receives, per edited step, the tensors the tests check."""
        sp = (sampler or self.sampler).check()
        ap = adapt or self.adapt
        good = as_image(good_image, "good_image")
        H, W, C = good.shape
        f = self.factor
        if H % f or W % f:
            raise DefectlabError(f"good_image: height and width must be multiples of {f}, got {(H, W)}")
        mask = as_mask(defect_mask, (H, W), "defect_mask")
        if not mask.any():
            raise DefectlabError("defect_mask: empty mask")
        fg = np.ones((H, W), bool) if foreground is None else as_mask(foreground, (H, W), "foreground")
        if prompt is None:
            if object_name is None or defect_name is None:
                raise DefectlabError("give a prompt, or object_name and defect_name")
            prompt = self.prompt(object_name, defect_name, sp)
        m, ae, dev = self.model, self.model.autoencoder, self.model.device
        gen = torch_generator(rng, "cpu")
        t_start = time.perf_counter()

        def noise(like):
            return torch.randn(like.shape, generator=gen).to(dev)

        x_good = _to_tensor(good, dev)
        z_good = ae.encode(x_good)
        trimap = trimap_tensor(fg | mask, mask, dev)
        lmask_np = latent_mask_for(mask, f, sp.dilation)
        lmask = torch.from_numpy(lmask_np.astype(np.float32))[None, None].to(dev)
        pmask = torch.from_numpy(mask.astype(np.float32))[None, None].to(dev)
        cond, empty = m.embed([prompt]), m.embed([""])

        sched = m.scheduler
        sched.set_timesteps(sp.steps)
        timesteps = list(sched.timesteps)
        ran = {name: r for name, r in sp.stage_steps().items() if len(r)}
        last = {name: r[-1] for name, r in ran.items()}  # a stage's picture: the clean prediction after its last step
        z = noise(z_good)
        stages: dict[str, np.ndarray] = {}
        steps = enumerate(timesteps)
        for i, t in progress(steps, desc="AdaBLDM sampling", total=len(timesteps), leave=False) if show_progress else steps:
            if i in ran.get("latent_edit", ()):  # stage 2: latent editing before the step
                source = sched.add_noise(z_good, noise(z_good), t[None])
                edited = source * (1 - lmask) + z * lmask
                if trace is not None:
                    trace.append({"stage": "latent_edit", "step": i, "before": z, "source": source,
                                  "after": edited, "latent_mask": lmask_np})
                z = edited
            eps = m.guided_noise(z, t, cond, empty, trimap, sp.guidance)
            out = sched.step(eps, t, z, eta=sp.eta, generator=gen if sp.eta > 0 else None)
            z, z0 = out.prev_sample, out.pred_original_sample
            for name in ("free", "latent_edit"):
                if last.get(name) == i and i + 1 < len(timesteps):
                    stages[name] = _to_image(ae.decode(z0), C)
            if i in ran.get("pixel_edit", ()):  # stage 3: pixel editing after the step
                decoded = ae.decode(z0)
                pasted = decoded * pmask + x_good * (1 - pmask)
                z0_edit = ae.encode(pasted)
                t_re = t if sp.renoise == "current" else (timesteps[i + 1] if i + 1 < len(timesteps) else None)
                z = z0_edit if t_re is None else sched.add_noise(z0_edit, noise(z0_edit), t_re[None])
                if trace is not None:
                    trace.append({"stage": "pixel_edit", "step": i, "decoded": decoded, "pasted": pasted,
                                  "good": x_good, "mask": pmask})
        before = ae.decode(z)
        stages[list(ran)[-1]] = _to_image(before, C)  # the last stage that ran ends with the sampler's output
        t_sampled = time.perf_counter()
        final, losses = decode_adapted(ae.decoder, z, before, x_good, pmask, lmask_np, ap, f, show_progress)
        if ap.iterations > 0:
            stages["adapted"] = _to_image(final, C)
        seconds = {"sampling": t_sampled - t_start, "adaptation": time.perf_counter() - t_sampled}
        tri = trimap[0].permute(1, 2, 0).cpu().numpy()
        return AdaBLDMResult(_to_image(final, C), mask, prompt, stages, tri, lmask_np, losses, seconds)

    def with_params(self, sampler: SamplerParams | None = None, adapt: AdaptParams | None = None, **kw) -> "AdaBLDM":
        """A view sharing the networks with other settings, e.g. `with_params(guidance=5.0)`."""
        sp = replace(sampler or self.sampler, **{k: v for k, v in kw.items() if k in SamplerParams.__dataclass_fields__})
        ap = replace(adapt or self.adapt, **{k: v for k, v in kw.items() if k in AdaptParams.__dataclass_fields__})
        return AdaBLDM(self.model, sp, ap)
