"""The quality step: every quality metric of a pool of synthetic defects against the held-out real ones, on
whole images and on windows around the defects, and TRTS (the seed's `fewshot` detector on the pool)."""
from __future__ import annotations

import numpy as np

# quality metrics of each method's synthetic defects: (key in the quality files, label, lower is better)
QUALITY_KEYS = (("kid", "KID", True), ("fid", "FID", True), ("domain_frechet", "domain Fréchet", True),
                ("domain_kernel", "domain KD", True), ("ic_lpips", "IC-LPIPS", False), ("isc", "IS", False),
                ("region_kid", "region KID", True), ("region_fid", "region FID", True),
                ("region_domain_frechet", "region domain Fréchet", True), ("region_ic_lpips", "region IC-LPIPS", False),
                ("visibility_ratio", "visibility ratio", False), ("trts_pixel_ap", "TRTS pixel AP", False),
                ("trts_aupro", "TRTS AUPRO", False))
LPIPS_SIZE = 128  # IC-LPIPS on images resized to 128 px: ST-LPIPS keeps stride 1 in its first layer (memory)


def method_quality(prepared, pool, n_max: int, seed: int) -> dict:
    """The quality metrics of (at most `n_max` of) the synthetic pool against (at most `n_max`, a seeded choice of)
    the held-out real defects, all at the benchmark's size, in one call (`defectlab.metrics.quality`): KID (subsets
    of half the smaller set), FID, the EfficientNet-Lite0 domain distance and IS; then IC-LPIPS (DFMGAN protocol)
    of the pool around the real support defects it was made from, at `LPIPS_SIZE` px."""
    from ..metrics import quality
    from ..metrics.domain import DomainParams
    from ..metrics.iclpips import ic_lpips

    real = prepared.heldout_images
    real = [real[i] for i in sorted(np.random.default_rng([seed, 7]).permutation(len(real))[:n_max])]
    fake = [s.image for s in pool[:n_max]]
    side = max(32, int(round(real[0].shape[0] / 32)) * 32)  # EfficientNet wants multiples of 32
    out = quality(real, fake, ic_lpips=False, domain_params=DomainParams(size=side))
    centres = [s.image for s in prepared.support]
    if len(centres) >= 1:
        r = ic_lpips(centres, fake, "dfmgan", size=min(LPIPS_SIZE, real[0].shape[0]))
        out.update(ic_lpips=r.value, ic_lpips_nonempty=r.value_nonempty, ic_lpips_network=r.network,
                   ic_lpips_protocol=r.protocol, ic_lpips_centres=len(centres))
    out.update(_region_quality(prepared, pool, n_max))
    return out


def _region_quality(prepared, pool, n_max: int) -> dict:
    """Issue 23: the quality metrics on windows around each defect (`metrics.region`, at most `n_max` windows a
    side, synthetic vs every held-out real defect) and the visibility of the defects against their ring."""
    from ..metrics import region, visibility

    held = [(im, m) for im, m, lab in zip(prepared.test_images, prepared.test_canvas_masks, prepared.test_labels)
            if lab != "good"]
    real_images, real_masks = [im for im, _ in held], [m for _, m in held]
    fake_images, fake_masks = [s.image for s in pool[:n_max]], [s.mask for s in pool[:n_max]]
    params = region.RegionParams(max_windows=n_max)
    out = region.region_quality(real_images, real_masks, fake_images, fake_masks, params)
    out.update(visibility.compare(real_images, real_masks, fake_images, fake_masks))
    return out


def trts_scores(det, pool, n_max: int) -> dict:
    """Train on real, test on synthetic (issue 23): the seed's `fewshot` detector scores the method's defects;
    pixel AP / AUPRO of its maps against the synthetic masks."""
    from ..metrics.trts import trts

    return trts(lambda images: det.predict(images)[0], pool[:n_max])
