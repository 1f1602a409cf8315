"""The AdaBLDM network: a prompt-conditioned denoising UNet plus a trimap branch (ControlNet).

The trimap branch is a trainable copy of the UNet's encoder (`ControlNetModel.from_unet`) fed the
trimap (background 0 / object 127 / defect 255, three channels in [0, 1]) and the *empty* prompt; its
residuals are added to the UNet, which sees the real prompt ("a {object} with a {defect}").
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import DefectlabError
from ..prior import autoencoders
from .params import ModelConfig
from .prompts import CLIPPromptEncoder, WordPromptEncoder


def sd_scheduler():
    """DDIM with Stable Diffusion v1's noise schedule (scaled linear betas 0.00085-0.012, 1000 steps)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def _offline_unet(cfg: ModelConfig):
    from diffusers import UNet2DConditionModel

    n = len(cfg.unet_channels)
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1)
    up = ("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",)
    return UNet2DConditionModel(
        sample_size=16, in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        down_block_types=down, up_block_types=up, block_out_channels=tuple(cfg.unet_channels),
        layers_per_block=cfg.layers_per_block, cross_attention_dim=cfg.attention_dim,
        attention_head_dim=cfg.attention_head_dim, norm_num_groups=cfg.norm_groups)


class AdaBLDMModel(nn.Module):
    """`prior`: a `defectlab.prior.DomainPrior` the offline UNet starts from (its shape, its ResNet blocks copied, its
    prompt attention starting at zero, so before training ε_θ is the prior); `cfg` records its shape and which."""

    def __init__(self, cfg: ModelConfig, seed: int = 0, prior=None):
        super().__init__()
        from diffusers import ControlNetModel, UNet2DConditionModel

        self.cfg = cfg
        self.autoencoder = autoencoders.build(cfg.autoencoder, cfg.autoencoder_path or cfg.pretrained,
                                              seed=cfg.tiny_seed, channels=cfg.latent_channels, revision=cfg.revision)
        if self.autoencoder.channels != cfg.latent_channels:
            raise DefectlabError(f"autoencoder {cfg.autoencoder!r} has {self.autoencoder.channels} latent channels, "
                                 f"the model config says {cfg.latent_channels}")
        # diffusers initialises from torch's global generator: fork it so construction depends on `seed` only
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if cfg.pretrained:
                self.unet = UNet2DConditionModel.from_pretrained(cfg.pretrained, subfolder="unet", revision=cfg.revision)
                self.prompt_encoder = CLIPPromptEncoder(cfg.pretrained, revision=cfg.revision)
            else:
                if prior is not None:  # the UNet takes the prior's shape (recorded in cfg, so a checkpoint rebuilds it)
                    cfg.unet_channels = tuple(prior.params.unet_channels)
                    cfg.layers_per_block, cfg.norm_groups = prior.params.layers_per_block, prior.params.norm_groups
                self.unet = _offline_unet(cfg)
                self.prompt_encoder = WordPromptEncoder(cfg.vocabulary, cfg.attention_dim, cfg.max_words)
                if prior is not None:
                    from ..prior import init_from_prior

                    init_from_prior(self.unet, prior.unet)
                    cfg.prior = {k: prior.record[k] for k in ("category", "fingerprint", "sha256")}
            channels = (16, 32, 96, 256) if cfg.pretrained else (16, 32, 64, 128)  # 3 stride-2 convs: /8
            self.controlnet = ControlNetModel.from_unet(self.unet, conditioning_embedding_out_channels=channels)
        self.scheduler = sd_scheduler()

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def locked(self) -> list[nn.Parameter]:
        """UNet weights that stay as the domain prior made them (all but the prompt attention), or none."""
        if not self.cfg.prior:
            return []
        return [q for name, q in self.unet.named_parameters() if ".attentions." not in name]

    def trainable(self, unet_too: bool) -> dict[str, nn.Module]:
        """Modules whose weights training changes (and checkpoints hold)."""
        mods = {"controlnet": self.controlnet}
        if unet_too:
            mods["unet"] = self.unet
            if isinstance(self.prompt_encoder, WordPromptEncoder):
                mods["prompt"] = self.prompt_encoder
        return mods

    def embed(self, prompts: list[str]) -> torch.Tensor:
        return self.prompt_encoder(prompts)

    def noise_residual(self, latents, t, prompt_emb, empty_emb, trimap) -> torch.Tensor:
        """Predicted noise: the trimap branch (empty prompt) feeds residuals into the UNet (real prompt)."""
        down, mid = self.controlnet(latents, t, encoder_hidden_states=empty_emb, controlnet_cond=trimap,
                                    return_dict=False)
        return self.unet(latents, t, encoder_hidden_states=prompt_emb, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample

    def guided_noise(self, latents, t, prompt_emb, empty_emb, trimap, guidance: float) -> torch.Tensor:
        """Classifier-free guidance: uncond = empty prompt in the UNet; the trimap branch is used in both halves."""
        if guidance == 1.0:
            return self.noise_residual(latents, t, prompt_emb, empty_emb, trimap)
        both = self.noise_residual(torch.cat([latents, latents]), t, torch.cat([empty_emb, prompt_emb]),
                                   torch.cat([empty_emb, empty_emb]), torch.cat([trimap, trimap]), )
        uncond, cond = both.chunk(2)
        return uncond + guidance * (cond - uncond)


def trimap_tensor(foreground: np.ndarray, defect: np.ndarray, device=None) -> torch.Tensor:
    """Trimap (background 0 / object 127 / defect 255) as a (1, 3, H, W) tensor in [0, 1]."""
    from .. import masks

    tri = np.asarray(masks.trimap(np.asarray(foreground, bool), np.asarray(defect, bool)))
    tri = tri.astype(np.float32) / 255.0 if tri.dtype == np.uint8 else tri.astype(np.float32)
    if tri.max() > 1.0 + 1e-6:
        tri = tri / 255.0
    if tri.ndim == 2:
        tri = tri[:, :, None]
    if tri.shape[2] == 1:
        tri = np.repeat(tri, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(tri)).permute(2, 0, 1)[None].to(device or "cpu")
