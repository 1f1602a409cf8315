"""Supervised defect segmentation: the detector that measures how useful synthetic defects are.

In the DRAEM / AnomalyDiffusion tradition a segmentation network is trained on good images mixed
with defective ones (synthetic, real few-shot, or both) and scored on held-out real defects. The
network predicts a per-pixel defect logit; the image score is the mean of its top-k pixels.
"""
from __future__ import annotations

import hashlib
import io
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import DefectlabError
from ..metrics.detection import image_scores
from ..progress import progress, tqdm
from ..sample import Sample, as_image, as_mask, torch_generator
from .mix import check_real_share, is_real
from .unet import CompactUNet


@dataclass
class DetectorParams:
    base_channels: int = 8  # DRAEM's discriminative U-Net (Zavrtanik et al. 2021, Sec. 3.2) uses 64; 8 trains in minutes on a CPU
    depth: int = 3  # poolings; U-Net (Ronneberger et al. 2015) uses 4, three suffice at 128-256 px
    steps: int = 500  # optimiser steps; DRAEM trains 700 epochs, far beyond a CPU budget
    batch_size: int = 8  # DRAEM, Sec. 4.1
    lr: float = 1e-3  # Adam default (Kingma & Ba 2015, Alg. 1); DRAEM's 1e-4 needs its much longer schedule
    defect_fraction: float = 0.5  # DRAEM: half of the training images carry a simulated anomaly (Sec. 3.3)
    synth_share: float = 0.5  # with both a pool and an on-the-fly method, share of defects made on the fly (ours)
    real_share: float | None = 0.75  # ours, from the sweep in benchmarks/RESULTS.md (MT, 5 seeds): share of defective draws from the real defects when synthetic ones are given too (None: uniform, detect.mix)
    focal_gamma: float = 2.0  # focal loss, Lin et al. 2017, Eq. 5; DRAEM Sec. 3.2 trains its segmentation with it
    focal_alpha: float = -1.0  # no class weighting (-1 in torchvision); the focal term already down-weights easy pixels
    top_k: int = 100  # image score = mean of the top-k pixels, as defectlab.metrics.detection.evaluate
    predict_batch: int = 16
    device: str | None = None  # None: CUDA when available, else CPU
    num_threads: int | None = None  # torch CPU threads while fitting/predicting (restored after); None: torch's own
    loader_workers: int = 0  # DataLoader worker processes making the training batches (0: this process); same bytes either way


@contextmanager
def torch_threads(n: int | None):
    """Use `n` torch CPU threads inside the block, then restore the previous count. On a shared
    machine one thread per process avoids the thread spinning that makes small convolutions slow."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grey <-> RGB so every training image has the detector's channel count."""
    if image.shape[2] == channels:
        return image
    if channels == 1:
        return image.mean(axis=2, keepdims=True)
    return np.repeat(image, 3, axis=2)


class SegmentationDetector:
    """`fit(goods, defects, rng, synth=...)` then `predict(images)` -> (maps in [0, 1], scores)."""

    name = "unet"
    STEP_FIELDS = ("steps",)

    def __init__(self, params: DetectorParams | None = None, **overrides):
        self.params = with_overrides(params or DetectorParams(), overrides, "detector")
        if self.params.steps < 1 or self.params.batch_size < 1:
            raise DefectlabError(f"detector steps and batch_size must be >= 1, got {self.params.steps}, {self.params.batch_size}")
        if self.params.loader_workers < 0:
            raise DefectlabError(f"detector loader_workers must be >= 0, got {self.params.loader_workers}")
        check_real_share(self.params.real_share, "unet: real_share")
        self.net = None
        self.channels: int | None = None
        self.losses: list[float] = []
        self._real = np.zeros(0, bool)  # which pool defects are real (fit sets it; the training mix reads it)

    @property
    def device(self) -> str:
        import torch

        return self.params.device or ("cuda" if torch.cuda.is_available() else "cpu")

    # ----------------------------------------------------------------------------------- training
    def fit(self, goods: Sequence[np.ndarray], defects: Sequence[Sample] = (), rng: np.random.Generator | None = None, *,
            synth: Callable | None = None, foregrounds: Sequence[np.ndarray] | None = None,
            init_rng: np.random.Generator | None = None, show_progress: bool = True,
            desc: str = "detector") -> "SegmentationDetector":
        """Train on `goods` (defect-free images) mixed with defective images.

        defects: pre-made `Sample`s (synthetic and/or real few-shot defects).
        synth: a synthesis method called on the fly as `synth(good, rng, foreground=fg)`.
        At least one of the two is needed. All images must share one size. `init_rng`: the network's
        initialisation (default: drawn from `rng`); runs that should be paired share one."""
        p = self.params
        # `synth` runs on the fly inside the training stream here, so no pool is drawn up front
        goods, defects, images, masks = training_inputs(goods, defects, rng, foregrounds, need_defects=synth is None)
        self.channels = goods[0].shape[2]
        good_arr = np.stack(goods)
        pool_img, pool_mask = (np.stack(images), np.stack(masks)) if defects else (None, None)
        self._real = np.array([is_real(s) for s in defects], bool)

        with torch_threads(p.num_threads):
            self._train(rng, init_rng, good_arr, pool_img, pool_mask, synth, foregrounds, show_progress, desc)
        return self

    def training_data(self, rng, good_arr, pool_img, pool_mask, synth, foregrounds):
        """The training stream as a `defectlab.data.SyntheticDefects`: a good image with probability
        1 - defect_fraction, else a defect made on the fly by `synth` (share `synth_share` when there is a
        pool too) or drawn from the pool. One item per image of every step, so workers start once."""
        from ..data.synthetic import Pool, SyntheticDefects

        p = self.params
        if getattr(synth, "needs_fit", False) and not getattr(synth, "fitted", False):
            raise DefectlabError(f"fit: the synthesis method {type(synth).__name__} needs fitting first "
                                 "(method.fit(goods, defects, rng))")
        methods, weights = [], []
        if synth is not None:
            methods.append(synth)
            weights.append(p.synth_share if pool_img is not None else 1.0)
        if pool_img is not None:
            pool_weight = 1.0 - p.synth_share if synth is not None else 1.0
            real = self._real if len(self._real) == len(pool_img) else np.zeros(len(pool_img), bool)
            groups = [real, ~real] if p.real_share is not None and real.any() and not real.all() else [np.ones_like(real)]
            shares = [p.real_share, 1.0 - p.real_share] if len(groups) == 2 else [1.0]
            for group, share in zip(groups, shares):
                methods.append(Pool([Sample(im, m) for im, m in zip(pool_img[group], pool_mask[group])]))
                weights.append(pool_weight * share)
        return SyntheticDefects(list(good_arr), methods, weights=weights, p_good=1.0 - p.defect_fraction,
                                seed=int(rng.integers(2**63 - 1)), length=p.steps * p.batch_size,
                                channels=self.channels, foregrounds=foregrounds)

    def _train(self, rng, init_rng, good_arr, pool_img, pool_mask, synth, foregrounds, show_progress, desc) -> None:
        import torch
        from torchvision.ops import sigmoid_focal_loss

        from ..data.synthetic import synthetic_loader

        p = self.params
        torch_rng = torch_generator(init_rng or rng)
        data = self.training_data(rng, good_arr, pool_img, pool_mask, synth, foregrounds)
        batches = iter(synthetic_loader(data, p.batch_size, rng, workers=p.loader_workers))
        self.net = CompactUNet(self.channels, p.base_channels, p.depth).init_weights(torch_rng).to(self.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=p.lr)
        self.net.train()
        self.losses = []
        bar = progress(range(p.steps), desc=desc) if show_progress else tqdm(range(p.steps), disable=True)
        for _ in bar:
            x, y, _label, _meta = next(batches)
            x, y = x.to(self.device), y.to(self.device)
            loss = sigmoid_focal_loss(self.net(x), y, alpha=p.focal_alpha, gamma=p.focal_gamma, reduction="mean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.losses.append(float(loss.detach()))
            if len(self.losses) % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(self.losses[-10:]):.4f}")
        self.net.eval()

    # ---------------------------------------------------------------------------------- inference
    def predict(self, images: Sequence[np.ndarray], show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly maps (N, H, W) of defect probabilities and image scores (N,) = mean of top-k pixels."""
        import torch

        if self.net is None:
            raise DefectlabError("SegmentationDetector: call fit (or load) before predict")
        maps = []
        with torch.no_grad(), torch_threads(self.params.num_threads):
            for chunk in image_batches(images, self.params.predict_batch, self.channels, show_progress):
                x = torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2).to(self.device)
                maps.append(torch.sigmoid(self.net(x)).cpu().numpy())
        maps = np.concatenate(maps) if maps else np.zeros((0, 0, 0), np.float32)
        return maps, image_scores(maps, self.params.top_k) if len(maps) else np.zeros(0, np.float32)

    # ------------------------------------------------------------------------------ save and load
    def state_bytes(self) -> bytes:
        if self.net is None:
            raise DefectlabError("SegmentationDetector: nothing to save before fit")
        return state_bytes(self.params, self.channels, state=self.net)

    def save(self, path) -> str:
        """Write the trained network atomically; returns the file's SHA-256 (pass it to `load`)."""
        return write_state(path, self.state_bytes())

    @classmethod
    def load(cls, path, sha256: str | None = None) -> "SegmentationDetector":
        blob = read_state(path, sha256, "detector")
        det = cls(params_from_state(DetectorParams, blob))
        det.channels = int(blob["channels"])
        det.net = CompactUNet(det.channels, det.params.base_channels, det.params.depth)
        det.net.load_state_dict(blob["state"])
        det.net.to(det.device).eval()
        return det


def image_batches(images, size: int, channels: int, show_progress: bool = False):
    """`images` in batches of `size` for `predict`, each image checked and in the detector's channel count; a batch
    whose images differ in size is a DefectlabError. A progress bar with `show_progress`."""
    starts = range(0, len(images), size)
    for start in progress(starts, desc="predict") if show_progress else starts:
        chunk = [match_channels(as_image(im, f"images[{start + i}]"), channels)
                 for i, im in enumerate(images[start:start + size])]
        if len({c.shape for c in chunk}) > 1:
            raise DefectlabError("predict: images in one batch must share a size")
        yield chunk


def with_overrides(params, overrides: dict, who: str):
    """`params` (a dataclass) with `overrides` applied; an unknown name is a DefectlabError listing the known ones."""
    if not overrides:
        return params
    unknown = set(overrides) - set(asdict(params))
    if unknown:
        raise DefectlabError(f"unknown {who} parameter(s): {', '.join(sorted(unknown))}; known: {', '.join(asdict(params))}")
    return type(params)(**{**asdict(params), **overrides})


def same_size(image: np.ndarray, shape, what: str) -> np.ndarray:
    if image.shape[:2] != tuple(shape):
        raise DefectlabError(f"{what}: size {image.shape[:2]} differs from the first good image's {tuple(shape)}; "
                             "resize every image to one size first")
    return image


def training_inputs(goods, defects, rng, foregrounds, synth=None, synth_pool: int = 0, need_defects: bool = True):
    """What a supervised detector's `fit` checks and trains on: the good images (checked, one size, the first one's
    channel count) and the defects (`Sample`s, plus `synth_pool` drawn up front from `synth`, each remembering its
    good image). Returns (goods, defects, defect images, defect masks)."""
    if rng is None:
        raise DefectlabError("fit needs an explicit numpy Generator `rng`")
    if not goods:
        raise DefectlabError("fit: no good images")
    if need_defects and not defects and synth is None:
        raise DefectlabError("fit: give pre-made `defects`, a `synth` method, or both")
    if foregrounds is not None and len(foregrounds) != len(goods):
        raise DefectlabError(f"fit: {len(foregrounds)} foregrounds for {len(goods)} good images")
    goods = [as_image(g, f"goods[{i}]") for i, g in enumerate(goods)]
    channels, shape = goods[0].shape[2], goods[0].shape[:2]
    goods = [match_channels(same_size(g, shape, f"goods[{i}]"), channels) for i, g in enumerate(goods)]
    defects = list(defects)
    if synth is not None:
        defects += draw_pool(synth, goods, foregrounds, rng, synth_pool)
    images = [match_channels(same_size(as_image(s.image), shape, f"defects[{i}]"), channels) for i, s in enumerate(defects)]
    masks = [as_mask(s.mask, shape, f"defects[{i}] mask") for i, s in enumerate(defects)]
    return goods, defects, images, masks


def draw_pool(synth, goods, foregrounds, rng, n: int) -> list[Sample]:
    """`n` defects drawn through `defectlab.data.SyntheticDefects` (the same stream any torch training
    loop gets), each remembering its good image (the student's clean target)."""
    from ..data.synthetic import SyntheticDefects

    data = SyntheticDefects(list(goods), [synth], p_good=0.0, seed=int(rng.integers(2**63 - 1)), length=n,
                            channels=goods[0].shape[2], foregrounds=foregrounds)
    pool = []
    for i in range(n):
        image, mask, _, meta = data.item(i, good=None)
        pool.append(Sample(image.numpy().transpose(1, 2, 0), mask.numpy() > 0.5, {"good_index": int(meta["good"])}))
    return pool


def state_bytes(params, channels: int, **modules) -> bytes:
    """A detector's saved state: its parameters (tuples as lists, so `weights_only` loading reads them), its channel
    count and each named module's tensors, in that order."""
    import torch

    buf = io.BytesIO()
    plain = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items()}
    torch.save({"params": plain, "channels": channels,
                **{name: {k: v.cpu() for k, v in m.state_dict().items()} for name, m in modules.items()}}, buf)
    return buf.getvalue()


def params_from_state(params_class, blob: dict):
    """The parameters `state_bytes` saved, as `params_class` (lists back to tuples)."""
    return params_class(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in blob["params"].items()})


def write_state(path, data: bytes) -> str:
    """A detector's saved state (`state_bytes()`), written atomically; returns its SHA-256 (for `read_state`)."""
    from ..imageio import atomic_write_bytes

    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_state(path, sha256: str | None, what: str) -> dict:
    """The dict a detector saved with `write_state`: SHA-256 checked first when given, loaded `weights_only`;
    a file torch cannot read is a DefectlabError naming it "not a saved <what>"."""
    import torch

    from ..imageio import sha256_file

    if sha256 is not None and sha256_file(path) != sha256:
        raise DefectlabError(f"{path}: SHA-256 differs from the expected {sha256}")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise DefectlabError(f"{path}: not a saved {what} ({exc})") from exc


def unsupervised_goods(goods, rng, max_goods: int, who: str) -> tuple[list, np.ndarray]:
    """The good images an unsupervised detector (PatchCore, DiAD) is given, checked, and the sorted indices of at
    most `max_goods` of them, chosen by `rng`, that it fits on."""
    if rng is None:
        raise DefectlabError(f"{who}.fit needs an explicit numpy Generator `rng`")
    if not goods:
        raise DefectlabError(f"{who}.fit: no good images")
    goods = [as_image(g, f"goods[{i}]") for i, g in enumerate(goods)]
    return goods, np.sort(rng.permutation(len(goods))[:max_goods])
