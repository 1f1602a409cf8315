"""DiAD (He et al., AAAI 2024): anomaly detection by guided latent-diffusion reconstruction, no defects needed.

A latent diffusion model learns the good images only. At test time the image's latent is noised to timestep
`timestep` and denoised by DDIM while the semantic-guided (SG) network, fed the image itself, steers every step
(`defectlab.detect.diad_nets`): what the model never saw (a defect) comes back as the good appearance it knows,
the rest as it was. The anomaly map is the distance between pretrained-CNN features of the input and of the
reconstruction: 1 - cosine similarity per position at strides 4 / 8 / 16, each upsampled to the image and summed,
then Gaussian-blurred; the image score is the map's maximum.

    model = DiAD().fit(goods, np.random.default_rng(0))
    maps, scores = model.predict(images)
    recon = model.reconstruct(images)          # what the maps compare the images with

Offline path (the default): TAEF2 latents (`defectlab.taesd`), a small UNet and SG network trained from scratch
on the good images at 128 px, EfficientNet-Lite0 features (`defectlab.backbone`). Full-scale path: the same code
with `autoencoder="sd", autoencoder_path=...` (an SD VAE folder) and larger `unet_channels`.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ..errors import DefectlabError
from ..progress import progress
from ..sample import as_image
from .detector import read_state, torch_threads, unsupervised_goods, write_state


@dataclass
class DiADParams:
    size: int = 128  # ours: working side on a CPU (DiAD: 256 px, SD latents 32 x 32); TAEF2 latents are size / 8
    autoencoder: str = "taef2"  # ours: TAEF2 offline; DiAD: SD v1.5's KL autoencoder ("sd" + autoencoder_path)
    autoencoder_path: str | None = None  # SD VAE folder or hub id, only with autoencoder="sd"
    unet_channels: tuple = (32, 64, 128)  # ours (CPU budget); DiAD: SD v1.5's UNet, (320, 640, 1280, 1280)
    layers_per_block: int = 1  # ours; SD v1.5: 2
    norm_groups: int = 8  # ours; SD: 32 (the channels here are narrower)
    guide_embedding: tuple = (16, 32, 64, 128)  # SG image stem: 3 stride-2 convs to 1/8 (DiAD / ControlNet: 16, 32, 96, 256)
    deepest_only: bool = True  # DiAD reference code: only_mid_control, the SG network feeds the SFF-fused deepest level + middle
    timestep: int = 300  # ours: partial noising; DiAD's reference test noises to t = 999 (SD's capacity; see RESULTS)
    ddim_steps: int = 10  # DiAD reference test: DDIM, 10 steps, eta 0
    steps: int = 1000  # ours: optimiser steps from scratch (DiAD fine-tunes SD with AdamW for many epochs)
    batch_size: int = 8  # ours; DiAD: 12 with 4 accumulated batches
    lr: float = 2e-4  # ours, networks from scratch (DiAD: AdamW 1e-5 on pretrained SD)
    hflip: bool = True  # ours: mirrored good images double the training set
    max_goods: int = 200  # ours: cap on good training images
    backbone: str = "efficientnet-lite0"  # DiAD: ImageNet ResNet-50 (the offline EfficientNet-Lite0 here)
    feature_strides: tuple = (4, 8, 16)  # DiAD: ResNet-50 stages 1-3, strides 4 / 8 / 16, maps added ("a" mode)
    smoothing_sigma: float = 5.0  # DiAD reference test: Gaussian blur of the map, sigma 5 px
    predict_batch: int = 8
    num_threads: int | None = None  # torch CPU threads while fitting / predicting (restored after)
    # ours (issue #36), standing in for DiAD's pretrained SD: "auto" = the domain prior of the good images given to
    # fit (`defectlab.prior`; trained once, cached): the UNet is the prior's and stays locked (ControlNet / DiAD
    # keep SD locked), the SG network starts from a copy of its encoder and learns. A prior folder: that prior.
    # None: UNet and SG network from scratch (`unet_channels`, `layers_per_block`, `norm_groups` apply only then).
    prior: str | None = "auto"
    # ours: with a prior, "UNetMidBlock2DCrossAttn" (its two ResNets hold the prior's; its attention, to no text,
    # starts at zero and stays locked, so the UNet computes exactly the prior)
    mid_block: str = "UNetMidBlock2D"


_TUPLES = ("unet_channels", "guide_embedding", "feature_strides")


def scheduler():
    """DDIM on SD's noise schedule (scaled linear betas 0.00085-0.012, 1000 steps, as DiAD's LDM config);
    "trailing" spacing so a chain from timestep 999 starts at 999."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing")


def _copy_prior(unet, prior) -> None:
    from ..prior import init_from_prior

    init_from_prior(unet, prior.unet)


class DiAD:
    """`fit(goods, rng)` then `predict(images)` -> (maps, scores); `score(image)` -> one map; `reconstruct(images)`.
    Maps are raw summed cosine distances (not in [0, 1]); the image score is the map's maximum."""

    name = "diad"

    def __init__(self, params: DiADParams | None = None, **overrides):
        self.params = params or DiADParams()
        if overrides:
            unknown = set(overrides) - set(asdict(self.params))
            if unknown:
                raise DefectlabError(f"unknown diad parameter(s): {', '.join(sorted(unknown))}")
            self.params = DiADParams(**{**asdict(self.params), **overrides})
        p = self.params
        step = 8 * 2 ** (len(p.unet_channels) - 1)  # the autoencoder's 8, then one halving per UNet level
        if p.size < step or p.size % step:
            raise DefectlabError(f"diad: size must be a multiple of {step} for {len(p.unet_channels)} UNet levels, got {p.size}")
        if not 0 <= p.timestep <= 999:
            raise DefectlabError(f"diad: timestep must be in [0, 999], got {p.timestep}")
        if p.ddim_steps < 1:
            raise DefectlabError(f"diad: ddim_steps must be >= 1, got {p.ddim_steps}")
        self.net = None
        self.channels: int | None = None
        self.noise_seed: int | None = None
        self.losses: list[float] = []
        self.prior_record: dict | None = None  # category, fingerprint and SHA-256 of the prior fit started from
        self._ae = None
        self._features = None

    def deviations(self) -> list[str]:
        """What stands in for the paper's pretrained model, and other departures (issue #36)."""
        p = self.params
        out = [f"UNet: the domain prior of the good images ({self.prior_record['category']}, an unconditional latent "
               "diffusion model trained on them, `defectlab.prior`), locked, stands in for DiAD's pretrained Stable "
               "Diffusion" if self.prior_record else
               "UNet and SG network trained from scratch on the good images (no pretrained Stable Diffusion)"]
        if p.autoencoder == "taef2":
            out.append("TAEF2 latents instead of SD v1.5's KL autoencoder")
        out.append(f"{p.size} px (DiAD: 256); noised to t = {p.timestep} (DiAD's test: 999)")
        if p.backbone != "resnet50":
            out.append(f"{p.backbone} features for the anomaly map (DiAD: ImageNet ResNet-50)")
        return out

    # ------------------------------------------------------------------------------------ pieces
    def autoencoder(self):
        if self._ae is None:
            from ..prior.autoencoders import build

            self._ae = build(self.params.autoencoder, self.params.autoencoder_path)
        return self._ae

    def _prior(self, goods, show_progress: bool):
        """The domain prior `params.prior` names (None: none); with one, the UNet takes the prior's architecture."""
        from dataclasses import replace

        from ..prior import PriorParams, resolve_prior

        p = self.params
        prior = resolve_prior(p.prior, goods, PriorParams(size=p.size, autoencoder=p.autoencoder), who="DiAD",
                              show_progress=show_progress)
        self.prior_record = None if prior is None else {k: prior.record[k] for k in ("category", "fingerprint", "sha256")}
        if prior is not None:
            self.params = replace(p, unet_channels=tuple(prior.params.unet_channels),
                                  layers_per_block=prior.params.layers_per_block, norm_groups=prior.params.norm_groups,
                                  mid_block="UNetMidBlock2DCrossAttn")
        return prior

    def _build(self, seed: int, prior=None):
        """The UNet and SG network; with a prior, the UNet is the prior's and the SG network copies its encoder."""
        from .diad_nets import build_denoiser

        p = self.params
        return build_denoiser(self.autoencoder().channels, p.unet_channels, p.layers_per_block, p.norm_groups,
                              p.guide_embedding, p.deepest_only, seed,
                              init=None if prior is None else lambda unet: _copy_prior(unet, prior), mid_block=p.mid_block)

    def _tensor(self, images: Sequence[np.ndarray]):
        """Images -> (B, 3, size, size) in [0, 1] (grey replicated), the autoencoder's and the guide's input."""
        import torch

        from ..resize import resize_image

        s = self.params.size
        out = []
        for i, im in enumerate(images):
            im = as_image(im, f"images[{i}]")
            im = im if im.shape[:2] == (s, s) else resize_image(im, (s, s))
            im = np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im[:, :, :3]
            out.append(torch.from_numpy(np.ascontiguousarray(im, np.float32)).permute(2, 0, 1))
        return torch.stack(out)

    # ------------------------------------------------------------------------------------ training
    def fit(self, goods: Sequence[np.ndarray], rng: np.random.Generator | None = None, show_progress: bool = True,
            **_ignored) -> "DiAD":
        """Train the UNet and the SG network (noise prediction, the guide fed the clean image) on good images."""
        import torch

        from ..sample import torch_generator

        p = self.params
        goods, keep = unsupervised_goods(goods, rng, p.max_goods, "DiAD")
        self.channels = goods[0].shape[2]
        self.noise_seed = int(rng.integers(2**62))
        gen = torch_generator(rng)
        with torch_threads(p.num_threads):
            prior = self._prior(goods, show_progress)  # on every good image (the prior's fingerprint), not the subset
            self.net = self._build(int(rng.integers(2**31)), prior)
            ae = self.autoencoder()
            with torch.no_grad():
                images = self._tensor([goods[i] for i in keep])
                if p.hflip:
                    images = torch.cat([images, images.flip(-1)])
                latents = torch.cat([ae.encode(images[i:i + 16]) for i in range(0, len(images), 16)])
            sched = scheduler()
            if prior is not None:
                self.net.unet.requires_grad_(False)
            opt = torch.optim.AdamW([q for q in self.net.parameters() if q.requires_grad], lr=p.lr)
            self.net.train()
            steps = range(p.steps)
            bar = progress(steps, desc="DiAD training") if show_progress else steps
            for _ in bar:
                idx = torch.randint(len(latents), (p.batch_size,), generator=gen)
                z0 = latents[idx]
                noise = torch.randn(z0.shape, generator=gen)
                t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=gen)
                pred = self.net(sched.add_noise(z0, noise, t), t, images[idx])
                loss = torch.nn.functional.mse_loss(pred, noise)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.losses.append(float(loss.detach()))
            self.net.eval().requires_grad_(False)
        return self

    # ------------------------------------------------------------------------------------ testing
    def _noise(self, image_tensor, shape):
        """The starting noise of one image: from the fitted seed and the image's bytes (not its position)."""
        import torch

        digest = hashlib.blake2b(image_tensor.numpy().tobytes(), digest_size=8, key=self.noise_seed.to_bytes(8, "little"))
        return torch.randn(shape, generator=torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") >> 1))

    def _timesteps(self, sched, timestep: int) -> list[int]:
        full = min(1000, max(self.params.ddim_steps, int(round(self.params.ddim_steps * 1000 / (timestep + 1)))))
        sched.set_timesteps(full)
        return [int(t) for t in sched.timesteps if int(t) <= timestep]

    def _reconstruct(self, x, timestep: int):
        """(B, 3, S, S) images -> reconstructions: noise the latents to `timestep`, DDIM back with the guide."""
        import torch

        ae = self.autoencoder()
        z0 = ae.encode(x)
        sched = scheduler()
        ts = self._timesteps(sched, timestep)
        if not ts:
            return ae.decode(z0)
        noise = torch.stack([self._noise(x[b], z0.shape[1:]) for b in range(len(x))])
        z = sched.add_noise(z0, noise, torch.tensor([ts[0]] * len(x)))
        for t in ts:
            tt = torch.tensor([t] * len(x))
            z = sched.step(self.net(z, tt, x), t, z, eta=0.0).prev_sample
        return ae.decode(z)

    def _check_fitted(self):
        if self.net is None:
            raise DefectlabError("DiAD: call fit (or load) before predict")

    def reconstruct(self, images: Sequence[np.ndarray], timestep: int | None = None) -> list[np.ndarray]:
        """Each image's reconstruction at the working size, with the training images' channel count, in [0, 1]."""
        import torch

        self._check_fitted()
        out = []
        with torch.no_grad(), torch_threads(self.params.num_threads):
            for start in range(0, len(images), self.params.predict_batch):
                chunk = images[start:start + self.params.predict_batch]
                rec = self._reconstruct(self._tensor(chunk), self.params.timestep if timestep is None else timestep)
                for r in rec:
                    r = r.permute(1, 2, 0).numpy().astype(np.float32)
                    out.append(r.mean(axis=2, keepdims=True) if self.channels == 1 else r)
        return out

    def _feature_net(self):
        if self._features is None:
            from .. import backbone

            self._features = backbone.load(self.params.backbone, tuple(self.params.feature_strides))
        return self._features

    def distance_maps(self, x, rec):
        """Summed 1 - cosine similarity of backbone features, (B, S, S), before the blur."""
        import torch
        import torch.nn.functional as F

        feats = self._feature_net()
        total = torch.zeros(x.shape[0], 1, *x.shape[-2:])
        for a, b in zip(feats(x), feats(rec)):
            d = 1 - F.cosine_similarity(a, b, dim=1)[:, None]
            total += F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return total[:, 0]

    def predict(self, images: Sequence[np.ndarray], show_progress: bool = False, timestep: int | None = None):
        """(maps (N, H, W) float32 at the images' size, scores (N,) = each map's maximum)."""
        import torch
        import torch.nn.functional as F
        from scipy.ndimage import gaussian_filter

        self._check_fitted()
        p = self.params
        timestep = p.timestep if timestep is None else timestep
        if len({np.asarray(im).shape[:2] for im in images}) > 1:
            raise DefectlabError("DiAD.predict: images in one call must share a size (score() takes one image)")
        maps = []
        with torch.no_grad(), torch_threads(p.num_threads):
            starts = range(0, len(images), p.predict_batch)
            for start in progress(starts, desc="diad") if show_progress else starts:
                chunk = images[start:start + p.predict_batch]
                x = self._tensor(chunk)
                rec = self._reconstruct(x, timestep)
                if self.channels == 1:  # compare grey with grey: the decoder's tint is no defect
                    rec = rec.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
                dist = self.distance_maps(x, rec)
                for im, d in zip(chunk, dist):
                    h, w = np.asarray(im).shape[:2]
                    m = d if (h, w) == tuple(d.shape) else F.interpolate(d[None, None], size=(h, w), mode="bilinear",
                                                                         align_corners=False)[0, 0]
                    maps.append(gaussian_filter(m.numpy(), p.smoothing_sigma).astype(np.float32))
        if not maps:
            return np.zeros((0, 0, 0), np.float32), np.zeros(0, np.float32)
        maps = np.stack(maps)
        return maps, maps.reshape(len(maps), -1).max(axis=1)

    def score(self, image: np.ndarray) -> np.ndarray:
        return self.predict([image])[0][0]

    # ------------------------------------------------------------------------------------ files
    def state_bytes(self) -> bytes:
        import torch

        self._check_fitted()
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.params).items()}
        buf = io.BytesIO()
        torch.save({"params": params, "channels": self.channels, "noise_seed": self.noise_seed,
                    "prior": self.prior_record, "net": {k: v.cpu() for k, v in self.net.state_dict().items()}}, buf)
        return buf.getvalue()

    def save(self, path) -> str:
        """Write the trained UNet and SG network atomically (the autoencoder and the backbone are the checked
        weight files); returns the file's SHA-256 (pass it to `load`)."""
        return write_state(path, self.state_bytes())

    @classmethod
    def load(cls, path, sha256: str | None = None) -> "DiAD":
        blob = read_state(path, sha256, "DiAD detector")
        try:
            params = {k: (tuple(v) if k in _TUPLES else v) for k, v in blob["params"].items()}
            model = cls(DiADParams(**params))
            model.channels, model.noise_seed = int(blob["channels"]), int(blob["noise_seed"])
            model.prior_record = blob.get("prior")
            model.net = model._build(0)
            model.net.load_state_dict(blob["net"])
        except DefectlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - unpickling and state-dict errors come in many types
            raise DefectlabError(f"{path}: not a saved DiAD detector ({exc})") from exc
        model.net.eval().requires_grad_(False)
        return model


def noise_level_panels(model: DiAD, images: Sequence[np.ndarray], timesteps: Sequence[int]):
    """For `viz.grid_figure`: one row per image, [input, then reconstruction and anomaly map at each timestep],
    maps coloured on one scale (the largest value over every panel), and the column labels."""
    import matplotlib

    from ..resize import resize_image
    from ..viz import to_rgb

    s = model.params.size
    inputs = [to_rgb(resize_image(as_image(im), (s, s))) for im in images]
    recs = {t: model.reconstruct(images, timestep=t) for t in timesteps}
    maps = {t: model.predict(inputs, timestep=t)[0] for t in timesteps}
    top = max(float(m.max()) for m in maps.values()) or 1.0
    cmap = matplotlib.colormaps["inferno"]
    rows = [[inputs[i]] + [p for t in timesteps for p in (to_rgb(np.clip(recs[t][i], 0, 1)),
                                                         cmap(maps[t][i] / top)[:, :, :3].astype(np.float32))]
            for i in range(len(images))]
    labels = ["input"] + [f"{kind} t={t}" for t in timesteps for kind in ("reconstruction", "map")]
    return rows, labels
