"""A per-category domain prior (issue #36): an unconditional latent diffusion model of the good surface.

Trained on a category's good training images only (never test images) in the TAEF2 latent space, it stands in
for the pretrained latent diffusion model that AdaBLDM and DiAD start from in their papers: AdaBLDM's ε_θ and
DiAD's UNet are initialised from it (`init_from_prior`). It imports nothing from `adabldm`, `detect` or `synth`;
they import it.

    prior = trained_prior(goods, category="washer")   # or: defectlab prior train --category washer
    samples = prior.sample(16, np.random.default_rng(0))
"""
from .model import DomainPrior, build_unet, ddim_scheduler, ddpm_scheduler
from .params import PriorParams, tiny_params
from .store import AUTO, cache_root, load_prior, resolve_prior, trained_prior, views
from .transfer import init_from_prior

__all__ = ["AUTO", "DomainPrior", "PriorParams", "build_unet", "cache_root", "ddim_scheduler", "ddpm_scheduler",
           "init_from_prior", "load_prior", "resolve_prior", "tiny_params", "trained_prior", "views"]
