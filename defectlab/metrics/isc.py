"""Inception Score, offline: from EfficientNet-Lite0's ImageNet softmax, or Inception's when its file is here.

IS = exp(E_x KL(p(y|x) || p(y))) (Salimans et al., NeurIPS 2016), computed from the classifier's logits with
torch-fidelity's `isc_features_to_metric`. Which classifier computed it is part of the result's name:
"IS (EfficientNet-Lite0)" (1000 ImageNet classes, `defectlab.backbone.imagenet_classifier`, weights from the
package registry) is **not** the Inception Score papers report, which is "IS (Inception)" (torch-fidelity's
InceptionV3 with its 1008-way head; needs torch-fidelity's weights file, see `defectlab.metrics.inception`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import DefectlabError
from . import inception as _inception

IS_EFFICIENTNET = "IS (EfficientNet-Lite0)"
IS_INCEPTION = "IS (Inception)"


class ISResult(NamedTuple):
    mean: float
    std: float
    splits: int
    network: str = IS_INCEPTION  # which classifier: "IS (Inception)" or "IS (EfficientNet-Lite0)"


@dataclass
class ISParams:
    splits: int = 10  # Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016 (10 splits)
    seed: int = 2020  # torch-fidelity's default rng_seed, for its shuffle


@dataclass
class ClassifierInput:
    size: int = 224  # EfficientNet-Lite0's ImageNet training resolution (Tan & Le, ICML 2019; lite0: 224)
    batch_size: int = 16


def _params(params, overrides) -> ISParams:
    p = params or ISParams()
    for k, v in overrides.items():
        if not hasattr(p, k):
            raise DefectlabError(f"IS: unknown parameter {k!r} (known: splits, seed)")
        setattr(p, k, v)
    return p


def inception_score_from_logits(logits, params: ISParams | None = None, network: str = IS_INCEPTION,
                                **overrides) -> ISResult:
    """exp(E_x KL(p(y|x) || p(y))) per split, mean and std over splits (torch-fidelity's arithmetic); the number
    of splits is capped so that each holds at least 2 images (a split of one image always scores exactly 1)."""
    import torch
    from torch_fidelity.metric_isc import isc_features_to_metric

    p = _params(params, overrides)
    arr = np.asarray(logits, dtype=np.float32)
    if arr.ndim != 2 or len(arr) < 1:
        raise DefectlabError(f"logits: expected (N, classes), got shape {arr.shape}")
    splits = max(1, min(int(p.splits), len(arr) // 2))  # >= 2 images per split: one image alone always gives 1
    out = isc_features_to_metric(torch.from_numpy(arr), splits=splits, shuffle=True, rng_seed=p.seed)
    return ISResult(float(out["inception_score_mean"]), float(out["inception_score_std"]), splits, network)


_CLASSIFIER: list = []


def efficientnet_logits(images, inp: ClassifierInput | None = None) -> np.ndarray:
    """(N, 1000) ImageNet logits of EfficientNet-Lite0 for images in [0, 1], resized (bilinear, antialiased)
    to `inp.size` squared."""
    import torch
    import torch.nn.functional as F

    from ..backbone import imagenet_classifier

    inp = inp or ClassifierInput()
    u8 = _inception.as_uint8_images(images, "images")
    if not _CLASSIFIER:
        _CLASSIFIER.append(imagenet_classifier())
    net = _CLASSIFIER[0]
    out = []
    with torch.no_grad():
        for start in range(0, len(u8), inp.batch_size):
            chunk = [torch.from_numpy(im).float()[None] / 255.0 for im in u8[start:start + inp.batch_size]]
            x = torch.cat([F.interpolate(t, size=(inp.size, inp.size), mode="bilinear", align_corners=False,
                                         antialias=True) for t in chunk])
            out.append(net(x).double().numpy())
    return np.concatenate(out)


def inception_score(fake, *, network: str = "auto", weights=None, cache: bool = True,
                    params: ISParams | None = None, **overrides) -> ISResult:
    """Inception Score of a set of images; `result.network` names the classifier.

    network: "inception" (torch-fidelity's InceptionV3 with its classifier head: needs torch-fidelity's weights
    file, or `weights`; the fid-helper network has no head and raises a DefectlabError), "efficientnet"
    (EfficientNet-Lite0, offline, "IS (EfficientNet-Lite0)": not comparable with published Inception Scores),
    or "auto" (Inception when `weights` are given, or when the Inception file found - $DEFECTLAB_INCEPTION_WEIGHTS,
    torch-fidelity's file - has the classifier head; else EfficientNet-Lite0).
    """
    if network not in ("auto", "inception", "efficientnet"):
        raise DefectlabError(f"network: expected auto, inception or efficientnet, got {network!r}")
    if network == "auto":  # explicit `weights` mean Inception; otherwise whichever Inception file is found must
        if weights is not None:  # have the classifier head (the fid-helper network has none)
            network = "inception"
        else:
            try:
                network = "inception" if _inception.resolve_weights(None).has_classifier else "efficientnet"
            except DefectlabError:
                network = "efficientnet"
    if network == "efficientnet":
        return inception_score_from_logits(efficientnet_logits(fake), params, IS_EFFICIENTNET, **overrides)
    logits = _inception.inception_features(fake, "logits_unbiased", weights=weights, cache=cache)
    return inception_score_from_logits(logits, params, IS_INCEPTION, **overrides)


__all__ = ["ClassifierInput", "IS_EFFICIENTNET", "IS_INCEPTION", "ISParams", "ISResult", "efficientnet_logits",
           "inception_score", "inception_score_from_logits"]
