"""The domain prior's settings: the network (shaped like AdaBLDM's offline UNet, so its ε_θ can start from it)
and the training recipe that fits the 30-minute CPU budget of issue #36."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PriorParams:
    size: int = 128  # ours: the side AdaBLDM's offline recipe and DiAD work at (TAEF2 latents 16 x 16)
    autoencoder: str = "taef2"  # ours: the offline latent space (LDM, Rombach et al. 2022: a KL autoencoder); "tiny" in tests
    unet_channels: tuple = (64, 128, 128)  # ours: AdaBLDM's offline UNet widths (LDM's UNets are 224-1280 wide)
    layers_per_block: int = 1  # ours: as AdaBLDM's offline UNet (LDM: 2)
    norm_groups: int = 32  # diffusers / LDM default
    steps: int = 4000  # ours: measured to fit 30 min on 2 CPU cores (benchmarks/RESULTS.md)
    batch_size: int = 32  # ours (LDM: 48-96 on GPUs)
    lr: float = 2e-4  # ours; LDM trains its UNets with AdamW around 1e-4 to 2e-6 x batch
    warmup: int = 200  # ours: linear warm-up steps, then cosine decay (diffusers get_scheduler)
    ema_decay: float = 0.999  # DDPM (Ho et al. 2020) keeps an EMA of the weights (0.9999 over 800k steps); ours: short run
    hflip: bool = True  # mirrored good images double the training set (as AdaBLDM's pairs)
    checkpoint_every: int = 500
    seed: int = 0  # ours: the prior is a fixed function of the good images (like pretrained weights), whatever the caller's seed

    def to_dict(self) -> dict:
        d = asdict(self)
        d["unet_channels"] = list(self.unet_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PriorParams":
        known = set(cls.__dataclass_fields__)
        d = {k: v for k, v in d.items() if k in known}
        if "unet_channels" in d:
            d["unet_channels"] = tuple(d["unet_channels"])
        return cls(**d)


def tiny_params(**overrides) -> PriorParams:
    """A very small prior for tests and quick mode (random tiny autoencoder, 4 latent channels)."""
    base = dict(autoencoder="tiny", unet_channels=(32, 32), norm_groups=8, steps=20, batch_size=4, warmup=2,
                checkpoint_every=10)
    return PriorParams(**{**base, **overrides})
