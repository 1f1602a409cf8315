"""IC-LPIPS (intra-cluster LPIPS): the diversity of generated images around each real defect, offline.

Networks, labelled in every result (`ICLPIPSResult.network`):
- "LPIPS alex" / "LPIPS vgg": `lpips` proper (Zhang et al., CVPR 2018) - its linear heads ship with the
  package, its trunk is torchvision's ImageNet AlexNet / VGG-16, used whenever that file is on this machine;
- "ST-LPIPS alex" / "ST-LPIPS vgg": the shift-tolerant LPIPS of Ghildyal & Liu (ECCV 2022), trunk and heads
  both trained and shipped inside the `stlpips-pytorch` wheel (BSD-2): the offline default;
- "LPIPS alex (random trunk)": a seeded random trunk under lpips' heads, for testing the arithmetic only.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DefectlabError
from . import inception as _inception


LPIPS_BACKBONES = {
    # torchvision ImageNet weights lpips builds its trunk from (torchvision AlexNet_Weights / VGG16_Weights V1)
    "alex": ("alexnet-owt-7be5be79.pth", "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
             "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16-397923af.pth", "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
            "https://download.pytorch.org/models/vgg16-397923af.pth"),
}
ENV_LPIPS = "DEFECTLAB_LPIPS_BACKBONE"


@dataclass(frozen=True)
class ICLPIPSProtocol:
    net: str
    max_per_cluster: int
    random_members: bool  # draw the members at random (else the first ones, in generation order)
    ordered_pairs: bool  # average over ordered pairs (i, j), i != j (else unordered i < j)


PROTOCOLS = {
    # Duan et al., DFMGAN (AAAI 2023), Sec. 4.2, after Ojha et al. (CVPR 2021) Sec. 4: AlexNet LPIPS,
    # centres = real defect images, <= 200 images per cluster, mean over ordered pairs
    "dfmgan": ICLPIPSProtocol("alex", 200, False, True),
    # Hu et al., AnomalyDiffusion (AAAI 2024), Sec. 4.1 (also DualAnoDiff): VGG LPIPS, <= 50 random per cluster
    "anomalydiffusion": ICLPIPSProtocol("vgg", 50, True, False),
}


@dataclass
class ICLPIPSResult:
    value: float  # the protocol's headline number (DFMGAN: empty clusters count as 0)
    value_nonempty: float  # mean over clusters that have at least one pair
    per_cluster: list = field(default_factory=list)  # NaN for clusters with fewer than 2 members
    cluster_sizes: list = field(default_factory=list)  # all generated images assigned to each centre
    protocol: str = "dfmgan"
    pretrained: bool = True  # False: a randomly initialised backbone (tests, offline demos) - not comparable
    network: str = "LPIPS alex"  # which LPIPS computed it: "LPIPS alex", "ST-LPIPS vgg", "... (random trunk)"


def lpips_backbone_path(net: str, path: str | os.PathLike | None = None) -> Path | None:
    """Where the torchvision weights for `net` are: `path`, $DEFECTLAB_LPIPS_BACKBONE (a file or a folder),
    the torch hub cache, or `<weights root>/torchvision/`; None when absent."""
    import torch.hub

    from ..weights import root

    name = LPIPS_BACKBONES[net][0]
    given = path if path is not None else os.environ.get(ENV_LPIPS) or None
    if given is not None:
        given = Path(given)
        return given / name if given.is_dir() else given
    candidates = [Path(torch.hub.get_dir()) / "checkpoints" / name]
    if root() is not None:
        candidates.append(root() / "torchvision" / name)
    return next((c for c in candidates if c.is_file()), None)


def lpips_backbone_available(net: str = "alex") -> bool:
    path = lpips_backbone_path(net)
    return path is not None and path.is_file()


def _require_backbone(net: str, path) -> Path:
    from ..weights import cached_sha256

    name, sha, url = LPIPS_BACKBONES[net]
    found = lpips_backbone_path(net, path)
    how = (f"expected {name} (sha256 {sha}) from {url}; put it in the torch hub cache (torch.hub.get_dir()/"
           f"checkpoints) or point ${ENV_LPIPS} (or the `backbone` argument) at it or at its folder")
    if found is None or not found.is_file():
        raise DefectlabError(f"LPIPS backbone {found or name}: not found; {how}")
    actual = cached_sha256(found)
    if actual != sha:
        raise DefectlabError(f"LPIPS backbone {found}: checksum mismatch (sha256 {actual}); {how}")
    return found


# shift-tolerant LPIPS (trunk + linear heads) inside the stlpips-pytorch 0.0.2 wheel, weights/vST0.0/
STLPIPS_WEIGHTS = {
    "alex": ("alex_shift_tolerant.pth", "b356b382f96010f77d085ee8343ecd9fd322d0a56e8de2b2d0549fafcad8b9ee"),
    "vgg": ("vgg_shift_tolerant.pth", "44597da68f49c1837c100ff52299050f274d102eb102e5837178c79be6f0e250"),
}
VARIANTS = ("auto", "lpips", "st")


def stlpips_weights_path(net: str) -> Path:
    """The checked path of the shift-tolerant LPIPS weights for `net`, or a DefectlabError saying what to install."""
    from ..weights import cached_sha256

    name, sha = STLPIPS_WEIGHTS[net]
    try:
        import stlpips_pytorch
    except ImportError as exc:
        raise DefectlabError(f"ST-LPIPS {net}: `pip install stlpips-pytorch torchsummary` (ships {name}, "
                             f"sha256 {sha})") from exc
    path = Path(stlpips_pytorch.__file__).parent / "weights" / "vST0.0" / name
    if not path.is_file():
        raise DefectlabError(f"ST-LPIPS weights {path}: not found; reinstall stlpips-pytorch==0.0.2")
    actual = cached_sha256(path)
    if actual != sha:
        raise DefectlabError(f"ST-LPIPS weights {path}: checksum mismatch (sha256 {actual}, expected {sha}); "
                             "reinstall stlpips-pytorch==0.0.2")
    return path


def _stlpips_model(net: str):
    import torch

    path = stlpips_weights_path(net)
    from stlpips_pytorch import stlpips

    with torch.random.fork_rng(devices=[]):  # the modules initialise from the global RNG: leave it untouched
        model = stlpips.LPIPS(net=net, variant="shift_tolerant", pretrained=False, verbose=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # `lins.k` are the same modules as `link` (registered twice by stlpips): those names alone may be missing
    bad = [k for k in missing if not k.startswith("lins.")] + list(unexpected)
    if bad:
        raise DefectlabError(f"ST-LPIPS weights {path}: keys do not match the network ({', '.join(bad[:5])})")
    return model


_ST_MODELS: dict = {}


def resolve_variant(net: str, variant: str = "auto", backbone=None) -> str:
    """"lpips" when asked, or (auto) when torchvision's trunk weights are found; else "st" (shift-tolerant)."""
    if variant not in VARIANTS:
        raise DefectlabError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    if variant != "auto":
        return variant
    found = lpips_backbone_path(net, backbone)
    return "lpips" if found is not None and found.is_file() else "st"


def network_label(net: str, variant: str, random_backbone: int | None = None) -> str:
    if random_backbone is not None:
        return f"LPIPS {net} (random trunk)"
    return f"{'ST-LPIPS' if variant == 'st' else 'LPIPS'} {net}"


def lpips_model(net: str = "alex", backbone=None, random_backbone: int | None = None, variant: str = "auto"):
    """An eval-mode LPIPS network with trained linear heads and an offline trunk; `model.label` names it.

    variant: "lpips" (lpips proper: torchvision's ImageNet trunk, `backbone` or found as `lpips_backbone_path`
    says), "st" (shift-tolerant LPIPS, trunk and heads from the stlpips-pytorch wheel), "auto" (lpips when its
    trunk file is found, else ST-LPIPS).
    random_backbone: a seed; lpips' trunk is then randomly initialised (He normal, explicit generator) instead of
    loading ImageNet weights - the numbers are then only good for testing the arithmetic.
    """
    import lpips
    import torch

    if net not in LPIPS_BACKBONES:
        raise DefectlabError(f"net: expected one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
    if random_backbone is None and resolve_variant(net, variant, backbone) == "st":
        if net not in _ST_MODELS:  # frozen and read-only: one per process
            model = _stlpips_model(net).eval().requires_grad_(False)
            model.label = network_label(net, "st")
            _ST_MODELS[net] = model
        return _ST_MODELS[net]
    with torch.random.fork_rng(devices=[]), _trunks_without_pretrained_argument():
        # lpips/torchvision initialise from the global RNG: leave it untouched
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    slices = [(int(k), m) for s in model.net.children() for k, m in s.named_children()]
    if random_backbone is not None:
        g = torch.Generator().manual_seed(int(random_backbone))
        with torch.no_grad():
            for _, module in slices:
                if getattr(module, "weight", None) is not None:
                    fan_in = module.weight[0].numel()
                    module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                    module.bias.zero_()
    else:
        path = _require_backbone(net, backbone)
        state = torch.load(path, map_location="cpu", weights_only=True)
        for index, module in slices:
            own = {k: state[f"features.{index}.{k}"] for k in module.state_dict()}
            module.load_state_dict(own)
    model = model.eval().requires_grad_(False)
    model.label = network_label(net, "lpips", random_backbone)
    return model


@contextmanager
def _trunks_without_pretrained_argument():
    """lpips builds its trunk as `torchvision.models.alexnet(pretrained=False)` (vgg16, squeezenet1_1 alike), an
    argument torchvision deprecated in 0.13 (two warnings per call). Our trunks are always built untrained
    (`pnet_rand=True`; the weights are loaded or drawn afterwards), so lpips gets, while it builds, constructors
    that say so with torchvision's own argument: `weights=None`."""
    import types

    import torchvision.models as tv
    from lpips import pretrained_networks

    def untrained(build):
        def make(pretrained=False, **kwargs):
            if pretrained:
                raise DefectlabError("lpips asked for a downloaded ImageNet trunk; defectlab loads its own offline")
            return build(weights=None, **kwargs)
        return make

    shim = types.SimpleNamespace(**{name: untrained(getattr(tv, name)) for name in ("alexnet", "vgg16", "squeezenet1_1")})
    saved = pretrained_networks.tv
    pretrained_networks.tv = shim
    try:
        yield
    finally:
        pretrained_networks.tv = saved


def _lpips_tensor(images, size: tuple[int, int] | None, what: str):
    """Images to a float (N, 3, H, W) tensor in [-1, 1], resized (bilinear, antialiased) to `size`."""
    import torch
    import torch.nn.functional as F

    u8 = _inception.as_uint8_images(images, what)
    size = size or u8[0].shape[1:]
    out = []
    for im in u8:
        t = torch.from_numpy(im).float()[None] / 127.5 - 1.0
        if tuple(t.shape[2:]) != tuple(size):
            t = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        out.append(t)
    return torch.cat(out)


def _lpips_features(model, x, batch_size: int = 16) -> list:
    """Per layer: unit-normalised trunk activations (N, C*H*W), the linear weights spread over H*W, and each
    image's weighted squared norm s; then LPIPS(i, j) = sum over layers of (s_i + s_j - 2 <a_i, w a_j>) / (H*W)."""
    import lpips
    import torch

    parts: list[list] = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            outs = model.net(model.scaling_layer(x[start:start + batch_size]))
            for k, out in enumerate(outs):
                a = lpips.normalize_tensor(out)
                hw = a.shape[2] * a.shape[3]
                w = model.lins[k].model[-1].weight.view(1, -1, 1, 1)
                s = (a.double() ** 2 * w.double()).flatten(1).sum(1) / hw
                if len(parts) <= k:
                    parts.append([[], w.expand_as(a[:1]).flatten(1) / hw, []])
                parts[k][0].append(a.flatten(1))
                parts[k][2].append(s)
    return [(torch.cat(a), w, torch.cat(s)) for a, w, s in parts]


def _pairwise(fa: list, fb: list):
    """LPIPS distance matrix between the images behind two feature lists (batched, no Python pair loop)."""
    import torch

    total = 0
    for (a, w, sa), (b, _, sb) in zip(fa, fb):  # norms in float64; the float32 products err by ~1e-7
        dots = [(a[r:r + 32] * w) @ b.T for r in range(0, len(a), 32)]
        total = total + sa[:, None] + sb[None, :] - 2 * torch.cat(dots).double()
    return total.clamp_min(0).numpy()


def lpips_distances(model, images_a, images_b=None, size=None, batch_size: int = 16) -> np.ndarray:
    """Matrix of LPIPS distances between two image lists (or within one), inputs in [0, 1]."""
    xa = _lpips_tensor(images_a, size, "images_a")
    fa = _lpips_features(model, xa, batch_size)
    if images_b is None:
        return _pairwise(fa, fa)
    fb = _lpips_features(model, _lpips_tensor(images_b, tuple(xa.shape[2:]), "images_b"), batch_size)
    return _pairwise(fa, fb)


def ic_lpips(real_defects, generated, protocol: str = "dfmgan", *, rng: np.random.Generator | None = None,
             backbone=None, random_backbone: int | None = None, batch_size: int = 16, variant: str = "auto",
             size: int | tuple[int, int] | None = None) -> ICLPIPSResult:
    """Intra-cluster LPIPS: diversity of generated images around each real defect image (higher = more diverse).

    Each generated image joins the cluster of its nearest real image (LPIPS); within each cluster the mean
    pairwise LPIPS is taken, then the mean over clusters. Protocols (see `PROTOCOLS`):
    "dfmgan" (AlexNet, first <= 200 per cluster, ordered pairs; `value` counts clusters without a pair as 0,
    `value_nonempty` leaves them out) and "anomalydiffusion" (VGG, <= 50 random per cluster - needs `rng` -
    unordered pairs, clusters with < 2 images ignored: both values equal).
    All images are resized to `size` (default: the first real image's size) and fed in [-1, 1].
    variant: "auto" (lpips proper when torchvision's trunk file is found, else ST-LPIPS: `network` says which),
    "lpips" or "st"; the protocol fixes the net (AlexNet or VGG-16).
    """
    if protocol not in PROTOCOLS:
        raise DefectlabError(f"protocol: expected one of {sorted(PROTOCOLS)}, got {protocol!r}")
    proto = PROTOCOLS[protocol]
    if proto.random_members and rng is None:
        raise DefectlabError(f"rng: protocol {protocol!r} draws cluster members at random; pass a "
                             f"numpy.random.Generator")
    model = lpips_model(proto.net, backbone, random_backbone, variant)
    size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else size
    real = _lpips_tensor(real_defects, size, "real_defects")
    size = tuple(real.shape[2:])
    centres = _lpips_features(model, real, batch_size)
    gen_u8 = _inception.as_uint8_images(generated, "generated")
    assign = []
    for start in range(0, len(gen_u8), 64):  # chunks keep the generated features' memory bounded
        chunk = _lpips_tensor([im.transpose(1, 2, 0) for im in gen_u8[start:start + 64]], size, "generated")
        assign.append(_pairwise(_lpips_features(model, chunk, batch_size), centres).argmin(axis=1))
    assign = np.concatenate(assign)
    per_cluster, sizes = [], []
    for c in range(len(real)):
        members = np.flatnonzero(assign == c)
        sizes.append(int(members.size))
        if members.size > proto.max_per_cluster:
            members = np.sort(rng.choice(members, proto.max_per_cluster, replace=False)) if proto.random_members \
                else members[:proto.max_per_cluster]
        if members.size < 2:
            per_cluster.append(float("nan"))
            continue
        d = lpips_distances(model, [gen_u8[i].transpose(1, 2, 0) for i in members], size=size,
                            batch_size=batch_size)
        off = ~np.eye(len(members), dtype=bool) if proto.ordered_pairs else np.triu(np.ones_like(d, bool), 1)
        per_cluster.append(float(d[off].mean()))
    values = np.array(per_cluster)
    nonempty = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    headline = float(np.nan_to_num(values, nan=0.0).mean()) if protocol == "dfmgan" else nonempty
    return ICLPIPSResult(headline, nonempty, per_cluster, sizes, protocol, random_backbone is None, model.label)


__all__ = ["ICLPIPSProtocol", "ICLPIPSResult", "LPIPS_BACKBONES", "PROTOCOLS", "STLPIPS_WEIGHTS", "ic_lpips",
           "lpips_backbone_available", "lpips_backbone_path", "lpips_distances", "lpips_model", "network_label",
           "resolve_variant", "stlpips_weights_path"]
