"""AdaBLDM as a registered synthesis method (`defectlab.create("adabldm")`): fit on the few-shot support set, then
put a defect of a learned kind into a good image."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..config import quick_mode
from ..errors import DefectlabError
from ..placement import PlacementPrior, oriented_angle, placement_record
from ..registry import register
from ..sample import Sample, as_image, as_mask
from .params import AdaptParams, ModelConfig, OFFLINE_TRAIN, SamplerParams, TrainParams, deviations, tiny_config, train_params


@dataclass
class AdaBLDMMethodParams:
    size: int = 128  # working resolution (offline CPU recipe; the paper works at 256 with SD)
    checkpoint: str | None = None  # trained run folder: fit() then only records the real masks
    object_name: str | None = None  # prompt object; default: the defects' category
    autoencoder: str | None = None  # None: "taef2", or "tiny" in quick mode
    # a TrainParams, or a recipe name / dict of fields (`params.train_params`): from the command line too
    train: TrainParams | str | dict = field(default_factory=lambda: OFFLINE_TRAIN)
    sampler: SamplerParams = field(default_factory=SamplerParams)
    adapt: AdaptParams = field(default_factory=AdaptParams)
    # ours (issue #36): where a support mask goes when no mask is given: "prior" = turned, moved and sized as its
    # type occurs in the support masks (`defectlab.placement`); "uniform" = any angle, anywhere on the foreground
    placement: str = "prior"
    # ours (issue #36), standing in for the paper's pretrained SD: "auto" = ε_θ starts from the domain prior of the
    # good images given to fit (`defectlab.prior`; trained once, cached), a prior folder = that prior, None = from
    # scratch (the offline recipe before issue #36)
    prior: str | None = "auto"
    # where fit() keeps its training checkpoints, so an interrupted fit resumes (the benchmark gives each seed one);
    # None: trained in memory only
    work_dir: str | None = None


def _quick(p: AdaBLDMMethodParams) -> AdaBLDMMethodParams:
    """Quick mode: a tiny model, a few training steps, short sampling and adaptation (minutes -> seconds)."""
    from dataclasses import replace

    return replace(p, autoencoder=p.autoencoder or "tiny", train=replace(p.train, steps=min(p.train.steps, 20), pairs=16),
                   sampler=replace(p.sampler, steps=min(p.sampler.steps, 10)),
                   adapt=replace(p.adapt, iterations=min(p.adapt.iterations, 10)))


@register("adabldm", family="adabldm")
class AdaBLDMMethod:
    """AdaBLDM (Li et al. 2024): trimap-controlled blended latent diffusion with online decoder adaptation."""

    needs_fit = True

    def __init__(self, params: AdaBLDMMethodParams | None = None, **overrides):
        from dataclasses import replace

        from ..synth.base import build_params, check_choice

        p = build_params(AdaBLDMMethodParams, params, overrides, "adabldm")
        check_choice("adabldm", "placement", p.placement, ("prior", "uniform"))
        p = replace(p, train=train_params(p.train))
        self.params = _quick(p) if quick_mode() else p
        self.fitted = False
        self.window = self.params.train.window
        self.pipeline = None
        self.real: list[tuple[np.ndarray, str]] = []
        self.prior = None  # placement.PlacementPrior of the real masks, by type (fit)
        self.object_name = self.params.object_name

    def fit(self, goods, defects, rng: np.random.Generator, *, foregrounds=None) -> "AdaBLDMMethod":
        from ..synth.learned import check_goods, require_defects
        from .checkpoint import load_model
        from .model import AdaBLDMModel
        from .pairs import make_pairs, names_of
        from .pipeline import AdaBLDM
        from .prompts import vocabulary_for
        from .train import train
        from .windows import WindowPairs

        p = self.params
        goods = check_goods(goods)
        defects = require_defects(defects, goods[0].shape[2], "AdaBLDM")
        names = [names_of(d, p.object_name or "object") for d in defects]
        self.object_name = p.object_name or names[0][0]
        self.real = [(d.mask, kind) for d, (_, kind) in zip(defects, names)]
        by_type: dict[str, list[np.ndarray]] = {}
        for m, kind in self.real:
            by_type.setdefault(kind, []).append(m)
        self.prior = PlacementPrior.fit(by_type)
        self.sources = [str(d.meta.get("source", "")) for d in defects if (d.meta or {}).get("source")]
        if p.checkpoint:
            from .checkpoint import read_state, resolve

            model = load_model(p.checkpoint)
            self.window = bool(read_state(resolve(p.checkpoint)).get("train", {}).get("window", False))
        else:
            self.window = p.train.window
            if self.window:
                pairs = WindowPairs(goods, foregrounds, defects, p.size, p.train.rotation, p.train.scale,
                                    p.train.hflip, object_name=self.object_name)
            else:
                pairs = make_pairs(goods, defects, rng, p.train.pairs, p.size, foregrounds, p.train.rotation,
                                   p.train.scale, object_name=self.object_name)
            kind = p.autoencoder or "taef2"
            cfg = tiny_config() if kind == "tiny" else ModelConfig(autoencoder=kind)
            cfg.vocabulary = vocabulary_for(pairs.prompts)
            model = AdaBLDMModel(cfg, seed=int(rng.integers(2**31)), prior=self._domain_prior(goods, cfg, kind))
            train(model, pairs, p.train, out=p.work_dir, show_progress=False, provenance={"sources": self.sources})
        self.pipeline = AdaBLDM(model, p.sampler, p.adapt)
        self.fitted = True
        return self

    def deviations(self) -> list[str]:
        """Where this configuration departs from the paper: what stands in for its pretrained Stable Diffusion, the
        prompt, the sampler and adaptation settings (`params.deviations`)."""
        p = self.params
        model = self.pipeline.model if self.pipeline is not None else None
        prior = model.cfg.prior if model is not None else None
        if model is not None and model.cfg.pretrained:
            first = "ε_θ: pretrained Stable Diffusion, locked (as the paper)"
        elif prior:
            first = (f"ε_θ started from the domain prior of the {prior['category']} good images (an unconditional "
                     "latent diffusion model, ours, issue #36) in place of the paper's pretrained Stable Diffusion; its "
                     "weights stay locked and only its attention to the prompt learns")
        else:
            first = "ε_θ trained from scratch on the few-shot pairs (no pretrained Stable Diffusion offline)"
        prompt = (f"prompt 'a {self.object_name or '{object}'} with a {{defect}}' (the paper's template, the data "
                  "set's category as the object) through learned word embeddings, not CLIP"
                  if model is None or not model.cfg.pretrained else None)
        return [first] + ([prompt] if prompt else []) + deviations(p.sampler, p.adapt, self.window)

    def _domain_prior(self, goods, cfg: ModelConfig, autoencoder: str):
        """The domain prior `params.prior` names, shaped like the UNet of `cfg` (None: from scratch)."""
        from ..prior import PriorParams, resolve_prior

        like = PriorParams(size=self.params.size, autoencoder=autoencoder, unet_channels=tuple(cfg.unet_channels),
                           layers_per_block=cfg.layers_per_block, norm_groups=cfg.norm_groups)
        return resolve_prior(self.params.prior, goods, like, category=self.object_name or "goods", who="AdaBLDM",
                             show_progress=False)

    def __call__(self, image, rng: np.random.Generator, *, foreground=None, mask=None,
                 defect_type: str | None = None) -> Sample:
        """A defect of `defect_type` (default: a learned type at random) in `mask` (default: a real support
        mask of that type, placed by `place_mask`)."""
        from ..synth.learned import require_fitted
        from ..resize import resize_image, resize_mask

        require_fitted(self, "generating")
        good = as_image(image)
        H, W, _ = good.shape
        s = self.params.size
        fg = None if foreground is None else as_mask(foreground, (H, W), "foreground")
        kinds = sorted({k for _, k in self.real})
        if defect_type is not None and defect_type not in kinds:
            raise DefectlabError(f"defect_type {defect_type!r} was not learned; known: {', '.join(kinds)}")
        kind = defect_type or self.real[int(rng.integers(len(self.real)))][1]
        where = None
        if mask is None:
            mask, kind, where = self.place_mask((H, W), fg, rng, defect_type)
        mask = as_mask(mask, (H, W), "mask")
        if self.window:
            return self._in_window(good, mask, fg, rng, kind, where)
        small_mask = resize_mask(mask, s, sampling="corner")
        if not small_mask.any():  # a defect thinner than a working-size pixel: keep its largest pixel
            cover = resize_image(mask.astype(np.float32)[:, :, None], s, interpolation="area")
            small_mask[np.unravel_index(np.argmax(cover), (s, s))] = True
        res = self.pipeline.generate(resize_image(good, s, interpolation="area"), small_mask,
                                     None if fg is None else resize_mask(fg, s, sampling="corner"),
                                     rng=rng, object_name=self.object_name, defect_name=kind)
        out = res.image
        if (H, W) != (s, s):  # back to the caller's size
            out = np.clip(resize_image(out, (H, W), interpolation="cubic"), 0, 1)
        # generated pixels inside the mask, the original outside (the mask covers every changed pixel; the
        # adapted decoder only approximates the good image there)
        out = np.where(mask[:, :, None], out, good).astype(np.float32)
        return Sample(out, mask, self._meta(res, kind, where))

    def place_mask(self, shape: tuple[int, int], foreground: np.ndarray | None, rng: np.random.Generator,
                   defect_type: str | None = None) -> tuple[np.ndarray, str, dict]:
        """(mask, its type, what was drawn): a real support mask of `defect_type` (default: any) turned and moved
        into the foreground, by the placement prior of the support masks (`placement="prior"`) or uniformly."""
        from .. import masks

        pool = [r for r in self.real if defect_type is None or r[1] == defect_type]
        src, kind = pool[int(rng.integers(len(pool)))]
        target = np.ones(shape, bool) if foreground is None else foreground
        if self.params.placement == "prior" and self.prior is not None:
            placed, _, where = self.prior.place(src, kind, target, rng, on_fail="clip")
        else:
            placed, m = masks.affine_jitter_place(src, target, rng, on_fail="clip")
            where = placement_record("uniform", src, placed, m, oriented_angle(src))
        return placed, kind, where

    def _meta(self, res, kind: str, where: dict | None, window=None) -> dict:
        p = self.params
        meta = {"method": "adabldm", "prompt": res.prompt, "defect_type": kind, "size": p.size,
                "sampler": asdict(p.sampler), "adapt": asdict(p.adapt),
                "deviations": self.deviations()}
        if where is not None:
            meta["placement"] = where
            if where["mode"] == "prior":
                meta["deviations"].append("support masks placed by a prior learned from them per type: observed "
                                          "orientations, positions and sizes (ours, issue #36; the paper's training "
                                          "pairs turn defects uniformly)")
        if window is not None:
            meta["window"] = [window[0].start, window[0].stop, window[1].start, window[1].stop]
        return meta

    def _in_window(self, good, mask, fg, rng, kind, where=None) -> Sample:
        """Generate on the native-resolution window around the mask and paste it back through the mask."""
        from .windows import defect_window

        rows, cols = defect_window(mask, self.params.size)
        res = self.pipeline.generate(good[rows, cols], mask[rows, cols], None if fg is None else fg[rows, cols],
                                     rng=rng, object_name=self.object_name, defect_name=kind)
        out = good.copy()  # outside the mask the good image: what adaptation's 100x preservation term aims at; inside,
        # adaptation's net effect is a softer edge (benchmarks/RESULTS.md, "What decoder adaptation changes")
        out[rows, cols] = np.where(mask[rows, cols][:, :, None], res.image, good[rows, cols])
        return Sample(out, mask, self._meta(res, kind, where, (rows, cols)))
