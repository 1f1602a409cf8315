"""Issue #36 hypothesis: the prior learns better in a channel-whitened latent space. PCA over the 32 TAEF2 channels,
fitted on the training latents, maps each direction to unit variance; a sample is mapped back before decoding, so
the errors the UNet makes in the directions the good images barely use shrink by their small spread instead of
showing as colour. An equal-budget A/B on the embedded washer: raw vs whitened latents, the same recipe and seed
(`--steps` optimiser steps of the default recipe's cosine schedule), KID of 100 DDIM samples vs the held-out goods.

    python benchmarks/prior_whitening.py raw 1000
    python benchmarks/prior_whitening.py white 1000

Each call trains its own prior (not cached), prints a line and writes
benchmarks/results/prior_whitening_<mode>_<steps>.json.
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def whitening(z):
    """(mean, W, W^-1) of channel PCA whitening for latents z (N, C, H, W); eigenvalues floored at 1e-4 x the largest."""
    import torch

    mu = z.mean((0, 2, 3), keepdim=True)
    flat = (z - mu).permute(1, 0, 2, 3).reshape(z.shape[1], -1)
    lam, vec = torch.linalg.eigh(flat @ flat.T / flat.shape[1])
    lam = lam.clamp(min=float(lam.max()) * 1e-4)
    return mu, (vec / lam.sqrt()).T, vec * lam.sqrt()


def main(argv=None) -> int:
    import tempfile

    import torch

    from defectlab.bench import write_result
    from defectlab.metrics.fid_kid import kid
    from defectlab.prior import PriorParams
    from defectlab.prior.autoencoders import taef2
    from defectlab.prior.embedded import embedded_goods
    from defectlab.prior.model import DomainPrior
    from defectlab.prior.store import views
    from defectlab.prior.train import encode, train

    argv = sys.argv[1:] if argv is None else argv
    mode, steps = argv[0], int(argv[1])
    torch.set_num_threads(1)
    ae = taef2()
    goods, held = embedded_goods("washer")
    z = encode(ae, views(goods, 128), True, show_progress=False)
    mu, w, w_inv = whitening(z)
    latents = torch.einsum("ij,bjhw->bihw", w, z - mu) if mode == "white" else z
    params = replace(PriorParams(), steps=steps, checkpoint_every=steps)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as run:
        unet, _, losses = train(latents, params, run, f"{mode}-{steps}", show_progress=False)
    seconds = time.time() - t0
    sampled = DomainPrior(unet, ae, params, {}).sample_latents(100, torch.Generator().manual_seed(0))
    if mode == "white":
        sampled = torch.einsum("ij,bjhw->bihw", w_inv, sampled) + mu
    images = ae.decode(sampled).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    k = kid(list(views(held, 128)), list(images))
    out = {"mode": mode, "steps": steps, "kid": k.mean, "kid_std": k.std, "sample_latent_std": float(sampled.std()),
           "real_latent_std": float(z.std()), "loss_last": float(np.mean(losses[-50:])), "train_seconds": round(seconds)}
    print(out)
    write_result(HERE / "results" / f"prior_whitening_{mode}_{steps}.json", out, argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
