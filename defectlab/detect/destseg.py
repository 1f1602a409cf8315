"""A DeSTSeg-style detector (Zhang et al., CVPR 2023) on the offline pretrained backbone.

DeSTSeg measures synthesis in the paper this project follows. Three parts:
- a frozen ImageNet *teacher* (here EfficientNet-Lite0 at strides 4 / 8 / 16, standing in for the paper's
  ResNet-18 layers 1-3, `defectlab.backbone`);
- a *denoising student*, trained from scratch to reproduce the teacher's features of the **clean** image
  from the defective one (cosine loss per location). Where the clean image is known (synthetic defects
  made on a good training image: `meta["good_index"]`) that is the target; for real defects, whose clean
  image nobody has, only the cells away from the defect are taught; good images teach the identity;
- a *segmentation head* on the element-wise products of the L2-normalised teacher and student features,
  trained with the student frozen on the defect masks (focal + L1 loss, as the paper).

The anomaly map is the head's defect probability, upsampled to the image; the image score is the mean
of its top-k pixels. CPU economy (ours): teacher features are computed once per image and cached, and
both stages train on aligned crops of `crop` pixels (the networks are convolutional, so the whole image
is used at test time).
"""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import DefectlabError
from ..metrics.detection import image_scores
from ..progress import progress, tqdm
from ..sample import Sample, as_image, as_mask, torch_generator
from .detector import (image_batches, match_channels, params_from_state, read_state, same_size, state_bytes, torch_threads, training_inputs,
                       with_overrides, write_state)
from .mix import check_real_share, defect_chooser


@dataclass
class DeSTSegParams:
    backbone: str = "efficientnet-lite0"  # teacher; DeSTSeg Sec. 3.1 uses an ImageNet ResNet-18
    strides: tuple = (4, 8, 16)  # DeSTSeg Sec. 3.1: ResNet-18 layers 1-3, strides 4 / 8 / 16
    student_width: int = 16  # ours: a light encoder-only student (DeSTSeg: ResNet-18 encoder-decoder)
    head_width: int = 32  # ours (DeSTSeg: an ASPP head with 256 channels)
    student_steps: int = 400  # ours: optimiser steps of the student stage (DeSTSeg trains it first, Sec. 3.4)
    seg_steps: int = 400  # ours: steps of the segmentation stage, student frozen
    batch_size: int = 8  # ours (DeSTSeg code: 32); with `crop` sized for a CPU budget of ~1 min per stage
    crop: int = 96  # ours: training crop side (multiple of 16)
    lr: float = 1e-3  # Adam (ours; DeSTSeg code: SGD, lr 0.4 student / 0.01 head, for far more steps)
    defect_fraction: float = 0.5  # DRAEM / DeSTSeg: half of the training images carry a defect
    real_share: float | None = 0.75  # ours, from the sweep in benchmarks/RESULTS.md (MT, 5 seeds): share of defective draws from the real defects when synthetic ones are given too (None: uniform, detect.mix)
    focal_gamma: float = 4.0  # DeSTSeg code: focal loss with gamma 4
    l1_weight: float = 1.0  # DeSTSeg Eq. 6: focal + L1 on the segmentation output
    synth_pool: int = 200  # with an on-the-fly `synth`, defects drawn up front (teacher features are cached)
    top_k: int = 100  # image score = mean of the top-k pixels, as defectlab.metrics.detection.evaluate
    predict_batch: int = 8
    device: str | None = None  # None: CUDA when available, else CPU
    num_threads: int | None = None  # torch CPU threads while fitting/predicting (restored after)


# --------------------------------------------------------------------------------------- teacher
class TeacherFeatures:
    """Frozen backbone features of whole images, computed once per image content and kept in an LRU
    cache, so every run of a benchmark seed shares the good and test images' features."""

    def __init__(self, backbone: str, strides: Sequence[int], device: str = "cpu", max_items: int = 4000):
        from .. import backbone as bb

        self.net = bb.load(backbone, tuple(strides)).to(device)
        self.channels = list(self.net.channels)
        self.strides = list(strides)
        self.device = device
        self.max_items = max_items
        self._cache: OrderedDict[bytes, list] = OrderedDict()

    @staticmethod
    def _key(image: np.ndarray) -> bytes:
        import torch

        # the thread count too: convolutions split their sums by it, so the last bits of the features depend on it
        return (hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()
                + bytes(f"{image.shape}/{torch.get_num_threads()}", "ascii"))

    def __call__(self, images: Sequence[np.ndarray], batch: int = 8) -> list[list]:
        """Per image, one float16 tensor (C, h, w) per stride (h = ceil(H / stride))."""
        import torch

        keys = [self._key(im) for im in images]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        with torch.no_grad():
            for start in range(0, len(todo), batch):
                idx = todo[start:start + batch]
                # always a full batch (the last one padded with repeats): the convolutions take another code path at
                # other batch sizes, and an image's features must not depend on which others missed the cache with it
                x = _to_tensor([images[i] for i in idx + idx[:1] * (batch - len(idx))]).to(self.device)
                for i, feats in zip(idx, self._forward(x)):
                    self._cache[keys[i]] = feats
                    while len(self._cache) > self.max_items:
                        self._cache.popitem(last=False)
        out = []
        for k in keys:
            self._cache.move_to_end(k)
            out.append(self._cache[k])
        return out

    def _forward(self, x) -> list[list]:
        import torch.nn.functional as F

        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % 32, 0, (-h) % 32))  # the weights' "same" padding wants multiples of 32
        feats = self.net(x)
        sizes = [(math.ceil(h / s), math.ceil(w / s)) for s in self.strides]
        return [[f[b, :, :hh, :ww].half().cpu() for f, (hh, ww) in zip(feats, sizes)] for b in range(x.shape[0])]


_TEACHERS: dict[tuple, TeacherFeatures] = {}


def teacher_features(backbone: str, strides: Sequence[int], device: str = "cpu") -> TeacherFeatures:
    """One shared teacher (and feature cache) per backbone, strides and device in this process."""
    key = (backbone, tuple(strides), device)
    if key not in _TEACHERS:
        _TEACHERS[key] = TeacherFeatures(backbone, strides, device)
    return _TEACHERS[key]


def _to_tensor(images: Sequence[np.ndarray]):
    import torch

    return torch.from_numpy(np.stack([np.asarray(im, np.float32) for im in images])).permute(0, 3, 1, 2).contiguous()


# -------------------------------------------------------------------------------------- networks
def _networks(in_channels: int, teacher_channels: Sequence[int], p: DeSTSegParams):
    import torch
    from torch import nn

    def norm(c):
        return nn.GroupNorm(math.gcd(8, c), c)

    class Residual(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), norm(c), nn.ReLU(inplace=True),
                                      nn.Conv2d(c, c, 3, padding=1), norm(c))

        def forward(self, x):
            return torch.relu(x + self.body(x))

    class Student(nn.Module):
        """Image -> features shaped like the teacher's at strides 4 / 8 / 16."""

        def __init__(self):
            super().__init__()
            w = p.student_width
            widths = [w, 2 * w, 4 * w]
            self.stages = nn.ModuleList([
                nn.Sequential(nn.Conv2d(in_channels, w, 4, stride=4), norm(w), nn.ReLU(inplace=True), Residual(w)),
                nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), norm(2 * w), nn.ReLU(inplace=True), Residual(2 * w)),
                nn.Sequential(nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), norm(4 * w), nn.ReLU(inplace=True), Residual(4 * w)),
            ][:len(teacher_channels)])
            self.heads = nn.ModuleList([nn.Conv2d(c, t, 1) for c, t in zip(widths, teacher_channels)])

        def forward(self, x):
            out = []
            x = x * 2 - 1
            for stage, head in zip(self.stages, self.heads):
                x = stage(x)
                out.append(head(x))
            return out

    class SegHead(nn.Module):
        """Products of normalised teacher and student features (upsampled to stride 4) -> defect logit."""

        def __init__(self):
            super().__init__()
            c, w = sum(teacher_channels), p.head_width
            self.body = nn.Sequential(
                nn.Conv2d(c, w, 1), norm(w), nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, padding=1), norm(w), nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, padding=2, dilation=2), norm(w), nn.ReLU(inplace=True),  # wider context, as ASPP
                nn.Conv2d(w, 1, 1))

        def forward(self, teacher, student):
            import torch.nn.functional as F

            size = teacher[0].shape[-2:]
            prods = [F.interpolate(F.normalize(t, dim=1) * F.normalize(s, dim=1), size=size, mode="bilinear",
                                   align_corners=False) if t.shape[-2:] != size else F.normalize(t, dim=1) * F.normalize(s, dim=1)
                     for t, s in zip(teacher, student)]
            return self.body(torch.cat(prods, dim=1))[:, 0]

    return Student(), SegHead()


def _seeded(module, generator):
    """Re-initialise conv weights from `generator` (He normal), biases zero: same rng, same network."""
    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            nn.init.zeros_(m.bias)
    return module


# -------------------------------------------------------------------------------------- detector
@dataclass
class _Item:
    image: np.ndarray
    mask: np.ndarray
    teacher: list  # teacher features of `image`
    target: list  # teacher features the student must reproduce (the clean image's when known)
    known_clean: bool


class DeSTSegDetector:
    """`fit(goods, defects, rng, synth=...)` then `predict(images)` -> (maps in [0, 1], scores).
    Same interface as `SegmentationDetector`."""

    name = "destseg"
    STEP_FIELDS = ("student_steps", "seg_steps")

    def __init__(self, params: DeSTSegParams | None = None, **overrides):
        self.params = with_overrides(params or DeSTSegParams(), overrides, "destseg")
        p = self.params
        if min(p.student_steps, p.seg_steps, p.batch_size) < 1 or p.crop < 16 or p.crop % 16:
            raise DefectlabError("destseg: student_steps, seg_steps and batch_size must be >= 1 and crop a multiple of 16")
        check_real_share(p.real_share, "destseg: real_share")
        self.student = self.head = None
        self.channels: int | None = None
        self.losses: list[float] = []  # student losses, then segmentation losses
        self.student_losses: list[float] = []
        self.seg_losses: list[float] = []

    @property
    def device(self) -> str:
        import torch

        return self.params.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def _teacher(self) -> TeacherFeatures:
        return teacher_features(self.params.backbone, self.params.strides, self.device)

    # ----------------------------------------------------------------------------------- training
    def fit(self, goods: Sequence[np.ndarray], defects: Sequence[Sample] = (), rng: np.random.Generator | None = None, *,
            synth: Callable | None = None, foregrounds: Sequence[np.ndarray] | None = None,
            init_rng: np.random.Generator | None = None, show_progress: bool = True, desc: str = "destseg") -> "DeSTSegDetector":
        """Train on `goods` mixed with defective images (`defects`: `Sample`s; synthetic ones may carry
        `meta["good_index"]`, the index in `goods` of their clean image). `synth`: a synthesis method
        drawn `synth_pool` times up front. `init_rng`: the networks' initialisation (default: from `rng`);
        give runs that should be paired the same one."""
        goods, defects, _, _ = training_inputs(goods, defects, rng, foregrounds, synth, self.params.synth_pool)
        self.channels = goods[0].shape[2]
        with torch_threads(self.params.num_threads):
            items_good, items_defect = self._items(goods, defects, goods[0].shape[:2])
            self._train(rng, init_rng or rng, items_good, items_defect, show_progress, desc)
        return self

    def _items(self, goods, defects, shape):
        """Training items with their teacher features; sets the defect draw of the training mix (`detect.mix`)."""
        self._choose = defect_chooser(defects, self.params.real_share)
        teacher = self._teacher()
        good_feats = teacher(goods)
        items_good = [_Item(g, np.zeros(shape, bool), f, f, True) for g, f in zip(goods, good_feats)]
        images = [match_channels(same_size(as_image(s.image), shape, f"defects[{i}]"), self.channels) for i, s in enumerate(defects)]
        masks = [as_mask(s.mask, shape, f"defects[{i}] mask") for i, s in enumerate(defects)]
        items_defect = []
        for s, im, m, f in zip(defects, images, masks, teacher(images)):
            j = (s.meta or {}).get("good_index")
            known = j is not None and 0 <= int(j) < len(goods)
            items_defect.append(_Item(im, m, f, good_feats[int(j)] if known else f, known))
        return items_good, items_defect

    def _train(self, rng, init_rng, items_good, items_defect, show_progress, desc) -> None:
        import torch

        p = self.params
        gen = torch_generator(init_rng)
        student, head = _networks(self.channels, self._teacher().channels, p)
        self.student = _seeded(student, gen).to(self.device)
        self.head = _seeded(head, gen).to(self.device)
        batch = lambda: self._batch(rng, items_good, items_defect)  # noqa: E731

        def student_loss():  # stage 1: the denoising student
            x, _, _, target, weight = batch()
            return _cosine_loss(self.student(x), target, weight)

        self.student_losses = _optimise(self.student, p.student_steps, p.lr, student_loss, f"{desc} student", show_progress)

        from torchvision.ops import sigmoid_focal_loss

        def seg_loss():  # stage 2: the segmentation head on teacher x student products, student frozen
            x, y, teacher, _, _ = batch()
            with torch.no_grad():
                student = self.student(x)
            logits = self.head(teacher, student)
            target = torch.nn.functional.adaptive_avg_pool2d(y[:, None], logits.shape[-2:])[:, 0]
            return sigmoid_focal_loss(logits, target, alpha=-1, gamma=p.focal_gamma, reduction="mean") \
                + p.l1_weight * (torch.sigmoid(logits) - target).abs().mean()

        self.seg_losses = _optimise(self.head, p.seg_steps, p.lr, seg_loss, f"{desc} segmentation", show_progress)
        self.losses = self.student_losses + self.seg_losses

    def _batch(self, rng, items_good, items_defect):
        """A batch of aligned crops: pixels, mask, teacher features, the student's target, and where
        the student's loss counts (not on real defects, whose clean features are unknown)."""
        import torch
        import torch.nn.functional as F

        p = self.params
        h, w = items_good[0].image.shape[:2]
        ch, cw = min(p.crop, h - h % 16 or h), min(p.crop, w - w % 16 or w)
        xs, ys, teach, targ, weights = [], [], [], [], []
        for _ in range(p.batch_size):
            defective = items_defect and rng.random() < p.defect_fraction
            item = items_defect[self._choose(rng)] if defective else items_good[rng.integers(len(items_good))]
            top, left = _crop_origin(item.mask, (h, w), (ch, cw), rng)
            xs.append(item.image[top:top + ch, left:left + cw])
            ys.append(item.mask[top:top + ch, left:left + cw])
            teach.append([_crop_feature(f, top, left, ch, cw, s) for f, s in zip(item.teacher, p.strides)])
            targ.append([_crop_feature(f, top, left, ch, cw, s) for f, s in zip(item.target, p.strides)])
            weights.append(not item.known_clean)
        x = _to_tensor(xs).to(self.device)
        y = torch.from_numpy(np.stack(ys).astype(np.float32)).to(self.device)
        teacher = [torch.stack([t[k] for t in teach]).float().to(self.device) for k in range(len(p.strides))]
        target = [torch.stack([t[k] for t in targ]).float().to(self.device) for k in range(len(p.strides))]
        # student loss weight per cell: 1, except near a real defect (dilated by one cell at each scale)
        weight = []
        for t, s in zip(target, p.strides):
            wmap = torch.ones(t.shape[0], *t.shape[-2:], device=self.device)
            unknown = [i for i, u in enumerate(weights) if u]
            if unknown:
                cells = F.max_pool2d(y[unknown][:, None], s, stride=s, ceil_mode=True)
                cells = F.max_pool2d(cells, 3, stride=1, padding=1)[:, 0, :t.shape[-2], :t.shape[-1]]
                wmap[unknown] = 1 - cells
            weight.append(wmap)
        return x, y, teacher, target, weight

    # ---------------------------------------------------------------------------------- inference
    def predict(self, images: Sequence[np.ndarray], show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly maps (N, H, W) of defect probabilities and image scores (N,) = mean of top-k pixels."""
        import torch
        import torch.nn.functional as F

        if self.student is None:
            raise DefectlabError("DeSTSegDetector: call fit (or load) before predict")
        maps = []
        teacher = self._teacher()
        with torch.no_grad(), torch_threads(self.params.num_threads):
            for chunk in image_batches(images, self.params.predict_batch, self.channels, show_progress):
                feats = teacher(chunk)
                t = [torch.stack([f[k] for f in feats]).float().to(self.device) for k in range(len(self.params.strides))]
                x = _to_tensor(chunk).to(self.device)
                x = F.pad(x, (0, (-x.shape[-1]) % 16, 0, (-x.shape[-2]) % 16))  # student cells cover the teacher's
                logits = self.head(t, [s[..., :f.shape[-2], :f.shape[-1]] for s, f in zip(self.student(x), t)])
                prob = F.interpolate(torch.sigmoid(logits)[:, None], size=chunk[0].shape[:2], mode="bilinear",
                                     align_corners=False)[:, 0]
                maps.append(prob.cpu().numpy())
        maps = np.concatenate(maps) if maps else np.zeros((0, 0, 0), np.float32)
        return maps, image_scores(maps, self.params.top_k) if len(maps) else np.zeros(0, np.float32)

    # ------------------------------------------------------------------------------ save and load
    def state_bytes(self) -> bytes:
        if self.student is None:
            raise DefectlabError("DeSTSegDetector: nothing to save before fit")
        return state_bytes(self.params, self.channels, student=self.student, head=self.head)

    def save(self, path) -> str:
        """Write the trained student and head atomically (the teacher is the packaged backbone);
        returns the file's SHA-256 (pass it to `load`)."""
        return write_state(path, self.state_bytes())

    @classmethod
    def load(cls, path, sha256: str | None = None) -> "DeSTSegDetector":
        blob = read_state(path, sha256, "DeSTSeg detector")
        det = cls(params_from_state(DeSTSegParams, blob))
        det.channels = int(blob["channels"])
        student, head = _networks(det.channels, det._teacher().channels, det.params)
        student.load_state_dict(blob["student"])
        head.load_state_dict(blob["head"])
        det.student, det.head = student.to(det.device).eval(), head.to(det.device).eval()
        return det


# ------------------------------------------------------------------------------------- helpers
def _optimise(module, steps: int, lr: float, loss_fn, desc: str, show_progress: bool) -> list[float]:
    """Adam on `module` for `steps` steps of `loss_fn()`; then eval mode, frozen. Returns the losses."""
    import torch

    opt = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    losses: list[float] = []
    bar = progress(range(steps), desc=desc) if show_progress else tqdm(range(steps), disable=True)
    for _ in bar:
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if len(losses) % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    module.eval().requires_grad_(False)
    return losses


def _cosine_loss(student: list, target: list, weight: list):
    """DeSTSeg's student loss: 1 - cosine similarity per location, averaged where `weight` allows."""
    import torch.nn.functional as F

    total = 0.0
    for s, t, w in zip(student, target, weight):
        s = s[..., :t.shape[-2], :t.shape[-1]]
        d = 1 - F.cosine_similarity(s, t, dim=1)
        total = total + (d * w).sum() / w.sum().clamp(min=1)
    return total / len(student)


def _crop_origin(mask: np.ndarray, shape, crop, rng) -> tuple[int, int]:
    """A crop origin on the 16-px grid (features stay aligned); a defect's centre falls inside."""
    (h, w), (ch, cw) = shape, crop
    ys, xs = np.nonzero(mask)
    origin = []
    for size, c, coords in ((h, ch, ys), (w, cw, xs)):
        hi = (size - c) // 16
        if coords.size:
            centre = int(coords[rng.integers(coords.size)])
            lo_cell, hi_cell = max(0, -(-(centre - c + 1) // 16)), min(hi, centre // 16)
            cell = int(rng.integers(lo_cell, hi_cell + 1)) if hi_cell >= lo_cell else int(rng.integers(0, hi + 1))
        else:
            cell = int(rng.integers(0, hi + 1))
        origin.append(cell * 16)
    return origin[0], origin[1]


def _crop_feature(feature, top: int, left: int, ch: int, cw: int, stride: int):
    return feature[:, top // stride:(top + ch) // stride, left // stride:(left + cw) // stride]
