"""Metrics: `detection` (AUROC, AP, AUPRO, IAP); the quality of generated images, in one call,
`quality(real, fake, fid=True, kid=True, isc=True, ic_lpips=True, domain=True)` (as torch-fidelity's
`calculate_metrics`), or one module per metric: `fid_kid` (FID, KID), `isc` (Inception Score), `iclpips`
(IC-LPIPS), `domain` (the domain-feature distance), on the Inception features of `inception`; `region` (the same
on defect windows), `visibility`, `trts`, `correlation`.

    from defectlab.metrics import fid_kid, iclpips, isc, quality
    scores = quality(real_defects, synthetic)    # a flat dict; every network-dependent value is labelled
    fid_kid.fid(real, fake); fid_kid.kid(real, fake); isc.inception_score(fake); iclpips.ic_lpips(real, fake)

Inputs are lists of float images (H, W, C) in [0, 1] or (N, C, H, W) arrays/tensors in [0, 1]. Submodules load
on first use, so importing `defectlab.metrics` pulls in neither torch-fidelity nor lpips.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from .domain import DomainParams
    from .fid_kid import KIDParams

_SUBMODULES = ("correlation", "detection", "domain", "fid_kid", "iclpips", "inception", "isc", "paired", "region", "trts",
               "visibility")


def quality(real, fake, *, fid: bool = True, kid: bool = True, isc: bool = True, ic_lpips: bool = True,
            domain: bool = True, ic_lpips_protocol: str = "dfmgan", rng: np.random.Generator | None = None,
            inception_weights=None, isc_network: str = "auto", lpips_variant: str = "auto",
            lpips_size: int | None = None, kid_params: KIDParams | None = None,
            domain_params: DomainParams | None = None, cache: bool = True) -> dict:
    """Every quality metric of `fake` against `real` in one flat, JSON-ready dict.

    Keys (those asked for): `n_real`, `n_fake`; `fid`, `kid`, `kid_std`, `kid_subset_size`, `kid_subsets`,
    `inception` (which Inception weights); `isc`, `isc_std`, `isc_network` ("IS (EfficientNet-Lite0)" or
    "IS (Inception)"; of `fake` alone); `ic_lpips`, `ic_lpips_nonempty`, `ic_lpips_network` ("ST-LPIPS alex", ...),
    `ic_lpips_protocol` (clusters around the `real` images, which should be real *defects*; the
    "anomalydiffusion" protocol needs `rng`); `domain_frechet`, `domain_kernel`, `domain_kernel_std`
    (the domain-feature distance, `defectlab.metrics.domain`). Lower is better for FID, KID and the domain
    distance; higher IS and IC-LPIPS mean more confident / more diverse images. FID and KID share one extraction
    of the Inception features.
    """
    from . import iclpips, inception
    from .domain import domain_distance
    from .fid_kid import frechet_distance, inception_label, kernel_inception_distance
    from .isc import inception_score

    out: dict = {}
    n_real = len(inception.as_uint8_images(real, "real"))
    n_fake = len(inception.as_uint8_images(fake, "fake"))
    out.update(n_real=n_real, n_fake=n_fake)
    if fid or kid:
        fr = inception.inception_features(real, "2048", weights=inception_weights, cache=cache)
        ff = inception.inception_features(fake, "2048", weights=inception_weights, cache=cache)
        out["inception"] = inception_label(inception_weights)
        if fid:
            out["fid"] = frechet_distance(fr, ff)
        if kid:
            k = kernel_inception_distance(fr, ff, kid_params)
            out.update(kid=k.mean, kid_std=k.std, kid_subset_size=k.subset_size, kid_subsets=k.subsets)
    if isc:
        s = inception_score(fake, network=isc_network, weights=inception_weights, cache=cache)
        out.update(isc=s.mean, isc_std=s.std, isc_network=s.network)
    if ic_lpips:
        r = iclpips.ic_lpips(real, fake, ic_lpips_protocol, rng=rng, variant=lpips_variant, size=lpips_size)
        out.update(ic_lpips=r.value, ic_lpips_nonempty=r.value_nonempty, ic_lpips_network=r.network,
                   ic_lpips_protocol=r.protocol)
    if domain:
        d = domain_distance(real, fake, domain_params, kid_params)
        out.update(domain_frechet=d.frechet, domain_kernel=d.kernel, domain_kernel_std=d.kernel_std,
                   domain_network=d.network)
    return out


def quality_table(scores: dict) -> str:
    """`quality(...)`'s dict as a Markdown table: one row per metric (value, spread, network and settings), values
    rounded to what the spread supports (3 significant digits at most)."""
    def num(v) -> str:
        return "–" if v is None else f"{v:.3g}"

    rows = []
    if "fid" in scores:
        rows.append(("FID ↓", num(scores["fid"]), "", scores.get("inception", "Inception")))
    if "kid" in scores:
        rows.append(("KID ↓", num(scores["kid"]), f"± {num(scores['kid_std'])}",
                     f"{scores.get('inception', 'Inception')}; {scores['kid_subsets']} subsets of "
                     f"{scores['kid_subset_size']}"))
    if "isc" in scores:
        rows.append(("IS", num(scores["isc"]), f"± {num(scores['isc_std'])}", scores["isc_network"]))
    if "ic_lpips" in scores:
        rows.append(("IC-LPIPS ↑", num(scores["ic_lpips"]), f"non-empty clusters only {num(scores['ic_lpips_nonempty'])}",
                     f"{scores['ic_lpips_network']}, {scores['ic_lpips_protocol']} protocol"))
    if "domain_frechet" in scores:
        rows.append(("domain Fréchet ↓", num(scores["domain_frechet"]), "", scores["domain_network"]))
        rows.append(("domain kernel ↓", num(scores["domain_kernel"]), f"± {num(scores['domain_kernel_std'])}",
                     scores["domain_network"]))
    head = [f"| metric ({scores['n_real']} real vs {scores['n_fake']} synthetic) | value | spread | network, settings |",
            "|---|---:|---|---|"]
    return "\n".join(head + [f"| {' | '.join(r)} |" for r in rows])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["quality", "quality_table", *_SUBMODULES]
