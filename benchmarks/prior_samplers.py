"""Issue #36 diagnosis: is the domain prior's sampler what draws the wrong colours? KID of 100 free samples of the
embedded washer's cached prior against its held-out good washers, per sampler: DDIM 50 steps (the default), with
x0 clipped to ±3, with dynamic thresholding, ancestral DDPM 100 steps, DDIM with "leading" spacing.

    python benchmarks/prior_samplers.py --threads 1     # needs `make prior-weights` first

Prints one line per sampler and writes benchmarks/results/prior_samplers_washer.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def samplers(kw: dict) -> dict:
    from diffusers import DDIMScheduler, DDPMScheduler

    ddim = dict(kw, set_alpha_to_one=False, timestep_spacing="trailing")
    return {
        "ddim50": (lambda: DDIMScheduler(**ddim, clip_sample=False), 50),
        "ddim50_clip3": (lambda: DDIMScheduler(**ddim, clip_sample=True, clip_sample_range=3.0), 50),
        "ddim50_dynthr": (lambda: DDIMScheduler(**ddim, clip_sample=False, thresholding=True,
                                                dynamic_thresholding_ratio=0.995, sample_max_value=3.0), 50),
        "ddpm100": (lambda: DDPMScheduler(**kw, clip_sample=False, timestep_spacing="trailing"), 100),
        "ddim50_leading": (lambda: DDIMScheduler(**dict(ddim, timestep_spacing="leading", steps_offset=1),
                                                 clip_sample=False), 50),
    }


def main(argv=None) -> int:
    import torch

    from defectlab.bench import write_result
    from defectlab.metrics.fid_kid import kid
    from defectlab.prior import model as M
    from defectlab.prior.embedded import embedded_goods, embedded_prior
    from defectlab.prior.store import views
    from defectlab.prior.train import encode

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    prior = embedded_prior("washer", train=False, show_progress=False)
    goods, held = embedded_goods("washer")
    held = list(views(held, prior.size))
    real = encode(prior.autoencoder, views(goods[:64], prior.size), False, show_progress=False)
    out = {"prior": prior.record["fingerprint"][:16], "real_latent_std": float(real.std()), "samplers": {}}
    kw = dict(num_train_timesteps=M.NUM_TRAIN_TIMESTEPS, beta_start=M.BETA_START, beta_end=M.BETA_END,
              beta_schedule="scaled_linear")
    for name, (make, steps) in samplers(kw).items():
        t0 = time.time()
        z = prior.sample_latents(args.samples, torch.Generator().manual_seed(0), steps, batch=25, scheduler=make)
        images = prior.autoencoder.decode(z).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        k = kid(held, list(images))
        out["samplers"][name] = {"kid": k.mean, "kid_std": k.std, "latent_std": float(z.std()),
                                 "seconds": round(time.time() - t0)}
        print(name, out["samplers"][name], flush=True)
    write_result(HERE / "results" / "prior_samplers_washer.json", out, argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
