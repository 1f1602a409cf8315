"""Does the prior look like the surface? Its free samples against held-out good images, by KID, beside the floor
KID(good training images, held-out good images): two sets of real good images differ by that much already.

Issue #36's goal: KID(samples, held-out) <= max(2 x floor, 0.01)."""
from __future__ import annotations

import numpy as np

from .store import views


def sample_kid(prior, goods, heldout, n_samples: int = 100, rng: np.random.Generator | None = None,
               steps: int = 50) -> dict:
    """KID of `n_samples` free samples and the floor (as many good training images), both against `heldout`,
    everything seen at the prior's size; with the goal and whether it is met."""
    from ..metrics.fid_kid import kid

    rng = rng or np.random.default_rng(0)
    size = prior.params.size
    held = views(heldout, size)
    train = views(goods, size)
    train = train[np.sort(rng.permutation(len(train))[:n_samples])]
    samples = prior.sample(n_samples, rng, steps=steps)
    ours, floor = kid(list(held), list(samples)), kid(list(held), list(train))
    goal = max(2 * floor.mean, 0.01)
    return {"kid": ours.mean, "kid_std": ours.std, "floor": floor.mean, "floor_std": floor.std, "goal": goal,
            "met": bool(ours.mean <= goal), "samples": n_samples, "heldout": len(held), "train_images": len(train),
            "ddim_steps": steps, "_samples": samples, "_heldout": held}


def samples_beside_real(samples, real, n: int = 16, columns: int = 8, title: str = ""):
    """A figure: `n` prior samples (top rows) above `n` real held-out good images (bottom rows)."""
    from ..viz import grid_figure

    def rows(images, label):
        images = list(images[:n])
        return [images[i:i + columns] for i in range(0, len(images), columns)], [label] * -(-len(images) // columns)

    top, top_labels = rows(samples, "prior")
    bottom, bottom_labels = rows(real, "real")
    fig = grid_figure(top + bottom, top_labels + bottom_labels, col_labels=(), cell=1.3)
    if title:
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
    return fig
