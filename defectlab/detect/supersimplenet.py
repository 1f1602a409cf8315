"""SuperSimpleNet (Rolih et al., ICPR 2024; supervised extension "No Label Left Behind", 2025) on the offline backbone.

A whole detector on frozen features, small enough to train on a CPU in minutes:
- frozen ImageNet features at two depths (EfficientNet-Lite0 strides 8 and 16, standing in for the paper's
  WideResNet-50 layers 2 and 3), both upscaled to twice the finer map (stride 4) and averaged over 3 x 3
  neighbourhoods;
- a feature adaptor (a 1 x 1 convolution);
- feature-level synthetic anomalies: Gaussian noise added to the adapted features inside binarised Perlin masks
  (half of the masks empty), on good and defective images alike, never over a real defect;
- a segmentation head (1 x 1 convolutions) and a classification head (a 5 x 5 convolution on the features and the
  map, then max / mean pooling of both) trained with focal + truncated L1 losses on the real and synthetic masks.

Defects given to `fit` (real ones, `meta["real"]`, and pixel-level synthetic ones) are used as they are; the
feature-level noise comes on top. The map is the segmentation head's, upsampled and smoothed (Gaussian, sigma 4)
as the paper's `AnomalyMapGenerator`; the image score by default averages the classification head's probability
with the map's maximum (the paper's score is the first alone; the two rank different images, RESULTS.md).
CPU economy (ours): backbone features are computed once per image and cached (`destseg.teacher_features`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import DefectlabError
from ..masks import perlin_noise
from ..progress import progress, tqdm
from ..sample import Sample, torch_generator
from .detector import (image_batches, params_from_state, read_state, state_bytes, torch_threads, training_inputs,
                       with_overrides, write_state)
from .mix import check_real_share, defect_chooser


@dataclass
class SuperSimpleNetParams:
    backbone: str = "efficientnet-lite0"  # SuperSimpleNet Sec. 3.1: ImageNet WideResNet-50 (not shipped offline)
    strides: tuple = (8, 16)  # SuperSimpleNet Sec. 3.1: layers 2 and 3 (strides 8 and 16)
    patch_size: int = 3  # SuperSimpleNet Sec. 3.1: 3 x 3 neighbourhood averaging
    feature_scale: int = 1  # ours: cells at the finer map's stride (8 px); the paper upscales 2x (4x the CPU cost)
    cls_pool: int = 2  # ours: the classification conv on 2 x 2-averaged cells (the paper: on every cell)
    hidden: int = 256  # ours: the paper's 1024 hidden channels are for 1536 input channels; Lite0 gives 152
    noise_std: float = 0.015  # SuperSimpleNet Sec. 3.2: N(0, 0.015^2) feature noise
    perlin_threshold: float = 0.6  # SuperSimpleNet code, supervised setting: Perlin noise > 0.6
    unsupervised_perlin_threshold: float = 0.2  # SuperSimpleNet code, unsupervised setting on MVTec AD (VisA: 0.6)
    perlin_scales: tuple = (0, 6)  # SuperSimpleNet code: 2^U{0..5} lattice cells per axis
    empty_mask_chance: float = 0.5  # SuperSimpleNet code: half of the Perlin masks are emptied ("no_anomaly": empty)
    l1_threshold: float = 0.5  # SuperSimpleNet Eq. 4: truncated L1 margin on the map logits
    focal_gamma: float = 4.0  # SuperSimpleNet code (after DeSTSeg): focal loss with gamma 4
    steps: int = 1000  # ours: optimiser steps, a CPU budget (the paper: 300 epochs; plateau in benchmarks/RESULTS.md)
    batch_size: int = 16  # ours, for a CPU budget (SuperSimpleNet code: 32)
    adapt_lr: float = 4e-4  # ours: 4x the SuperSimpleNet code's 1e-4 (AdamW), for 1000 steps instead of 300 epochs
    head_lr: float = 8e-4  # ours: 4x the code's 2e-4 for both heads (AdamW, weight decay 1e-5 as the code)
    lr_milestones: tuple = (0.8, 0.9)  # SuperSimpleNet code: MultiStepLR at 80 % and 90 % of training, gamma 0.4
    lr_gamma: float = 0.4  # SuperSimpleNet code
    clip_grad: float = 1.0  # SuperSimpleNet code, supervised setting: gradient norm clipped at 1
    flips: bool = True  # SuperSimpleNet code, supervised setting: random flips (here of the cached feature maps)
    defect_fraction: float = 0.5  # ours, as DeSTSeg / DRAEM: half of the training images carry a defect
    real_share: float | None = 0.75  # ours, from the sweep in benchmarks/RESULTS.md (MT, 5 seeds): share of defective draws from the real defects when synthetic ones are given too (None: uniform, detect.mix)
    synth_pool: int = 200  # with an on-the-fly `synth`, defects drawn up front (features are cached)
    map_sigma: float = 4.0  # SuperSimpleNet code: Gaussian smoothing of the upsampled map
    image_score: str = "mean"  # ours: mean of the classification probability and the map's maximum; "cls": the paper's
    top_k: int = 100  # kept for the benchmark's evaluate(); the image score is `image_score`
    predict_batch: int = 16
    device: str | None = None  # None: CUDA when available, else CPU
    num_threads: int | None = None  # torch CPU threads while fitting / predicting (restored after)


def _networks(channels: int, p: SuperSimpleNetParams):
    import torch
    from torch import nn

    class Heads(nn.Module):
        """Adaptor, segmentation head and classification head (SuperSimpleNet Fig. 2)."""

        def __init__(self):
            super().__init__()
            self.adaptor = nn.Conv2d(channels, channels, 1)
            self.seg = nn.Sequential(nn.Conv2d(channels, p.hidden, 1), nn.BatchNorm2d(p.hidden),
                                     nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(p.hidden, 1, 1, bias=False))
            self.cls_conv = nn.Sequential(nn.Conv2d(channels + 1, 128, 5, padding=2), nn.BatchNorm2d(128),
                                          nn.ReLU(inplace=True))
            self.cls_fc = nn.Linear(128 * 2 + 2, 1)

        def classify(self, feats, logits):
            """Image logit from the features and the map: max and mean pooling of both (paper Sec. 3.3). The
            convolution runs on a `cls_pool`-times coarser grid (ours: 1/cls_pool^2 of its CPU cost)."""
            joint = torch.cat([feats, logits], dim=1)
            if p.cls_pool > 1:
                joint = torch.nn.functional.avg_pool2d(joint, p.cls_pool, ceil_mode=True)
            c = self.cls_conv(joint)
            pooled = [c.amax(dim=(2, 3)), c.mean(dim=(2, 3)), logits.amax(dim=(2, 3)), logits.mean(dim=(2, 3))]
            return self.cls_fc(torch.cat(pooled, dim=1))[:, 0]

        def forward(self, adapted, stop_grad: bool = False):
            """`stop_grad`: the classification head learns from the map without training it (the paper's
            unsupervised setting, where the map's only teacher is the synthetic noise)."""
            logits = self.seg(adapted)
            return logits, self.classify(adapted, logits.detach() if stop_grad else logits)

    return Heads()


def _init(module, generator):
    """Xavier-normal weights from `generator` (the paper's init), zero biases, BatchNorm at identity."""
    from torch import nn

    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


def focal(prob, target, gamma: float):
    """Binary focal loss on probabilities (Lin et al. 2017, Eq. 5, no class weighting), mean over elements."""
    import torch.nn.functional as F

    prob = prob.clamp(1e-6, 1 - 1e-6)
    p_t = prob * target + (1 - prob) * (1 - target)
    return (F.binary_cross_entropy(prob, target, reduction="none") * (1 - p_t) ** gamma).mean()


class SuperSimpleNetDetector:
    """`fit(goods, defects, rng, synth=...)` then `predict(images)` -> (maps in [0, 1], image scores)."""

    name = "supersimplenet"
    STEP_FIELDS = ("steps",)

    def __init__(self, params: SuperSimpleNetParams | None = None, **overrides):
        self.params = with_overrides(params or SuperSimpleNetParams(), overrides, "supersimplenet")
        p = self.params
        if min(p.steps, p.batch_size) < 1:
            raise DefectlabError("supersimplenet: steps and batch_size must be >= 1")
        check_real_share(p.real_share, "supersimplenet: real_share")
        if p.image_score not in ("mean", "cls", "map_max"):
            raise DefectlabError(f"supersimplenet: image_score must be mean, cls or map_max, got {p.image_score!r}")
        self.heads = None
        self.channels: int | None = None
        self.losses: list[float] = []

    @property
    def device(self) -> str:
        import torch

        return self.params.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def _backbone(self):
        from .destseg import teacher_features

        return teacher_features(self.params.backbone, self.params.strides, self.device)

    def features(self, images: Sequence[np.ndarray]):
        """(N, C, s h, s w) float32: the cached backbone maps resized to `feature_scale` (s) times the finer one,
        concatenated and averaged over `patch_size` neighbourhoods (SuperSimpleNet's feature extractor, s = 2)."""
        import torch
        import torch.nn.functional as F

        per_image = self._backbone()(images)
        h, w = per_image[0][0].shape[-2:]
        maps = [torch.stack([f[k] for f in per_image]).float().to(self.device) for k in range(len(per_image[0]))]
        s = self.params.feature_scale
        up = torch.cat([F.interpolate(m, size=(s * h, s * w), mode="bilinear", align_corners=True) for m in maps], 1)
        k = self.params.patch_size
        return F.avg_pool2d(up, k, stride=1, padding=k // 2, count_include_pad=False)

    # ----------------------------------------------------------------------------------- training
    def fit(self, goods: Sequence[np.ndarray], defects: Sequence[Sample] = (), rng: np.random.Generator | None = None, *,
            synth: Callable | None = None, foregrounds: Sequence[np.ndarray] | None = None,
            init_rng: np.random.Generator | None = None, show_progress: bool = True,
            desc: str = "supersimplenet") -> "SuperSimpleNetDetector":
        """Train on `goods` and `defects` (`Sample`s: real ones marked `meta["real"]`, synthetic ones not).
        With no defect at all it trains on the feature-level anomalies alone, in the paper's unsupervised setting
        (`unsupervised_perlin_threshold`, the map detached into the classification head, no clipping, no flips).
        `synth`: a pixel-level synthesis method, drawn `synth_pool` times up front. `init_rng`: the networks'
        initialisation (default: from `rng`); runs that should be paired share one."""
        goods, defects, images, masks = training_inputs(goods, defects, rng, foregrounds, synth, self.params.synth_pool,
                                                        need_defects=False)
        self.channels = goods[0].shape[2]
        with torch_threads(self.params.num_threads):
            self._train(rng, init_rng or rng, goods, images, masks, defect_chooser(defects, self.params.real_share),
                        show_progress, desc)
        return self

    def _train(self, rng, init_rng, goods, images, masks, choose, show_progress, desc) -> None:
        import torch
        import torch.nn.functional as F

        p = self.params
        gen = torch_generator(init_rng)
        noise_gen = torch_generator(rng)
        self._backbone()(goods + images)  # fill the feature cache once, in batches
        feats_probe = self.features(goods[:1])
        fh, fw = feats_probe.shape[-2:]
        self.heads = _init(_networks(feats_probe.shape[1], p), gen).to(self.device)
        heads = self.heads
        opt = torch.optim.AdamW([
            {"params": heads.adaptor.parameters(), "lr": p.adapt_lr},
            {"params": heads.seg.parameters(), "lr": p.head_lr, "weight_decay": 1e-5},
            {"params": [*heads.cls_conv.parameters(), *heads.cls_fc.parameters()], "lr": p.head_lr, "weight_decay": 1e-5}])
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(m * p.steps) for m in p.lr_milestones], gamma=p.lr_gamma)
        # no defect at all: the paper's unsupervised setting (its code's run_unsup): larger Perlin regions, the map
        # not trained through the classification head, no gradient clipping, no flips
        unsupervised = not images
        threshold = p.unsupervised_perlin_threshold if unsupervised else p.perlin_threshold
        heads.train()
        self.losses = []
        bar = progress(range(p.steps), desc=desc) if show_progress else tqdm(range(p.steps), disable=True)
        for _ in bar:
            batch_images, batch_masks = [], []
            for _ in range(p.batch_size):
                j = choose(rng) if images and rng.random() < p.defect_fraction else None
                batch_images.append(goods[int(rng.integers(len(goods)))] if j is None else images[j])
                batch_masks.append(np.zeros(goods[0].shape[:2], bool) if j is None else masks[j])
            full = torch.from_numpy(np.stack(batch_masks).astype(np.float32))[:, None].to(self.device)
            label = full.flatten(1).amax(1)
            feats = self.features(batch_images)
            if p.flips and not unsupervised:  # the cached maps flipped, not the images: a flipped image's features, nearly
                feats, full = _flip(feats, full, rng)
            # DeSTSeg's downsampling (bilinear, then 0.5), as the paper's training script
            mask = (F.interpolate(full, size=(fh, fw), mode="bilinear", align_corners=False) >= 0.5).float()
            adapted = heads.adaptor(feats)
            noise_mask = self._perlin(len(batch_images), (fh, fw), rng, threshold) * (1 - mask)  # never on a real defect
            noise = torch.randn(adapted.shape, generator=noise_gen).to(self.device) * p.noise_std
            adapted = adapted + noise * noise_mask
            mask = torch.clamp(mask + noise_mask, 0, 1)
            label = torch.maximum(label, mask.flatten(1).amax(1))
            logits, score = heads(adapted, stop_grad=unsupervised)
            normal, anomalous = logits[mask == 0], logits[mask > 0]
            trunc = sum(x.mean() for x in (torch.clamp(normal + p.l1_threshold, min=0),
                                           torch.clamp(-anomalous + p.l1_threshold, min=0)) if x.numel())
            loss = trunc + focal(torch.sigmoid(logits), mask, p.focal_gamma) \
                + focal(torch.sigmoid(score), label, p.focal_gamma)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if p.clip_grad and not unsupervised:
                torch.nn.utils.clip_grad_norm_(heads.parameters(), p.clip_grad)
            opt.step()
            sched.step()
            self.losses.append(float(loss.detach()))
            if len(self.losses) % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(self.losses[-20:]):.4f}")
        heads.eval().requires_grad_(False)

    def _perlin(self, n: int, shape, rng, threshold: float):
        """`n` Perlin masks (n, 1, h, w) at the feature resolution, binarised at `threshold`, each emptied with
        `empty_mask_chance` (SuperSimpleNet's anomaly generator)."""
        import torch

        p = self.params
        out = np.zeros((n, 1, *shape), np.float32)
        lo, hi = p.perlin_scales
        for i in range(n):
            res = (2 ** int(rng.integers(lo, hi)), 2 ** int(rng.integers(lo, hi)))
            noise = perlin_noise(shape, res, rng) > threshold
            if rng.random() >= p.empty_mask_chance:
                out[i, 0] = noise
        return torch.from_numpy(out).to(self.device)

    # ---------------------------------------------------------------------------------- inference
    def predict(self, images: Sequence[np.ndarray], show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly maps (N, H, W) in [0, 1] and image scores (N,): by default the mean of the classification head's
        probability and the map's maximum (`image_score`; "cls" is the paper's score)."""
        import torch
        import torch.nn.functional as F
        from torchvision.transforms.functional import gaussian_blur

        if self.heads is None:
            raise DefectlabError("SuperSimpleNetDetector: call fit (or load) before predict")
        maps, scores = [], []
        sigma = self.params.map_sigma
        with torch.no_grad(), torch_threads(self.params.num_threads):
            for chunk in image_batches(images, self.params.predict_batch, self.channels, show_progress):
                logits, score = self.heads(self.heads.adaptor(self.features(chunk)))
                up = F.interpolate(logits, size=chunk[0].shape[:2], mode="bilinear", align_corners=False)
                if sigma > 0:
                    up = gaussian_blur(up, [2 * math.ceil(3 * sigma) + 1] * 2, [sigma, sigma])
                prob, cls = torch.sigmoid(up)[:, 0], torch.sigmoid(score)
                peak = prob.flatten(1).amax(1)
                scores.append({"cls": cls, "map_max": peak, "mean": (cls + peak) / 2}[self.params.image_score].cpu().numpy())
                maps.append(prob.cpu().numpy())
        if not maps:
            return np.zeros((0, 0, 0), np.float32), np.zeros(0, np.float32)
        return np.concatenate(maps).astype(np.float32), np.concatenate(scores).astype(np.float32)

    # ------------------------------------------------------------------------------ save and load
    def state_bytes(self) -> bytes:
        if self.heads is None:
            raise DefectlabError("SuperSimpleNetDetector: nothing to save before fit")
        return state_bytes(self.params, self.channels, heads=self.heads)

    def save(self, path) -> str:
        """Write the trained adaptor and heads atomically (the backbone is the packaged one); returns the SHA-256."""
        return write_state(path, self.state_bytes())

    @classmethod
    def load(cls, path, sha256: str | None = None) -> "SuperSimpleNetDetector":
        blob = read_state(path, sha256, "SuperSimpleNet detector")
        det = cls(params_from_state(SuperSimpleNetParams, blob))
        det.channels = int(blob["channels"])
        width = blob["heads"]["adaptor.weight"].shape[0]
        det.heads = _networks(width, det.params)
        det.heads.load_state_dict(blob["heads"])
        det.heads.to(det.device).eval().requires_grad_(False)
        return det


def _flip(feats, masks, rng):
    """Each item flipped left-right and / or up-down (probability 1/2 each), features and masks alike."""
    import torch

    out_f, out_m = [], []
    for f, m in zip(feats, masks):
        dims = [d for d, flip in ((-1, rng.random() < 0.5), (-2, rng.random() < 0.5)) if flip]
        out_f.append(f.flip(dims) if dims else f)
        out_m.append(m.flip(dims) if dims else m)
    return torch.stack(out_f), torch.stack(out_m)
