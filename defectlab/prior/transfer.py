"""Starting a conditioned denoiser from the prior: AdaBLDM's ε_θ and DiAD's UNet share the prior's ResNet blocks.

Every parameter whose name and shape the two networks share is copied (time embedding, input / output convs,
ResNet blocks, down- and up-samplers). Blocks the prior does not have (AdaBLDM's cross-attention to the prompt)
start with a zero output projection, so before any training the conditioned network predicts exactly the
prior's noise, whatever the prompt: fine-tuning starts from a model of the surface, not from noise.
"""
from __future__ import annotations

import torch

from ..errors import DefectlabError


def init_from_prior(unet: torch.nn.Module, prior_unet: torch.nn.Module) -> list[str]:
    """Copy the prior's weights into `unet` where names and shapes agree; zero the output projection of each
    attention block the prior lacks. Returns the names copied. Raises when the two do not share their blocks."""
    theirs = prior_unet.state_dict()
    mine = unet.state_dict()
    copied = [k for k, v in theirs.items() if k in mine and mine[k].shape == v.shape]
    resnets = [k for k in theirs if ".resnets." in k]
    missing = [k for k in resnets if k not in copied]
    if not resnets or missing:
        raise DefectlabError(f"the denoiser does not share the prior's ResNet blocks ({len(missing)} of "
                             f"{len(resnets)} differ, e.g. {missing[:1]}): build it with the prior's unet_channels, "
                             "layers_per_block and norm_groups")
    with torch.no_grad():
        for k in copied:
            mine[k].copy_(theirs[k])
        for name, module in unet.named_modules():
            if name.endswith("proj_out") and name.rsplit(".", 1)[0] + ".proj_in" in dict(unet.named_modules()) \
                    and not any(k.startswith(name + ".") for k in theirs):
                for p in module.parameters():
                    p.zero_()
    return copied
