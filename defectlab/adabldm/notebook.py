"""Pictures and an ipywidgets control panel for notebooks/05_adabldm.ipynb (kept here so the notebook stays thin)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..viz import overlay, to_rgb
from .params import AdaptParams, SamplerParams

MASK_SOURCES = ("real few-shot", "drawn (Bezier stroke)", "Perlin")


def pairs_figure(pairs, n: int = 4):
    """Training pairs: composite (target) over its trimap (condition)."""
    import matplotlib.pyplot as plt

    n = min(n, len(pairs.images))
    fig, ax = plt.subplots(2, n, figsize=(2.4 * n, 5), squeeze=False)
    for i in range(n):
        ax[0, i].imshow(pairs.images[i])
        ax[0, i].set_title(pairs.prompts[i], fontsize=7)
        ax[1, i].imshow(pairs.trimaps[i], cmap="gray", vmin=0, vmax=255)
        ax[1, i].set_title("trimap 0/127/255", fontsize=7)
    for a in ax.ravel():
        a.axis("off")
    fig.tight_layout()
    return fig


def stages_figure(good: np.ndarray, result):
    """Good image, trimap, each stage's decoded image, and |final - good| (the change AdaBLDM made)."""
    import matplotlib.pyplot as plt

    panels = [("good + mask", overlay(good, result.mask)), ("trimap", result.trimap)]
    panels += [(name.replace("_", " "), to_rgb(img)) for name, img in result.stages.items()]
    diff = np.abs(to_rgb(result.image) - to_rgb(good)).max(axis=2)
    fig, ax = plt.subplots(1, len(panels) + 1, figsize=(2.3 * (len(panels) + 1), 2.6))
    for a, (title, img) in zip(ax, panels):
        a.imshow(np.clip(img, 0, 1))
        a.set_title(title, fontsize=8)
    ax[-1].imshow(diff, cmap="magma", vmin=0, vmax=max(float(diff.max()), 1e-3))
    ax[-1].set_title("|final - good|", fontsize=8)
    for a in ax:
        a.axis("off")
    fig.tight_layout()
    return fig


def make_mask(source: str, shape, rng, foreground=None, real_masks=()) -> np.ndarray:
    """A defect mask from one of MASK_SOURCES, inside the foreground."""
    from .. import masks

    if source == MASK_SOURCES[0]:
        placed, _ = masks.affine_jitter_place(real_masks[int(rng.integers(len(real_masks)))], foreground, rng,
                                              on_fail="clip")
        return placed
    if source == MASK_SOURCES[1]:
        return masks.bezier_scar(shape, rng, foreground=foreground)
    from ..synth.training import perlin_region

    return perlin_region(shape, rng, foreground)


@dataclass
class Panel:
    widget: object
    run_button: object
    output: object
    controls: dict
    last: object = None

    def run(self, *_):
        self.run_button.click()
        return self.last


def control_panel(model, goods, foregrounds, real_masks, object_name: str, defect_types: list[str],
                  quick: bool = False) -> Panel:
    """Sliders for every AdaBLDM parameter and a "Run AdaBLDM" button drawing each stage in an Output."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    sp, ap = model.sampler, model.adapt
    style = {"description_width": "150px"}
    c = {
        "object": w.Text(value=object_name, description="object", style=style),
        "defect": w.Dropdown(options=defect_types, description="defect type", style=style),
        "image": w.IntSlider(value=0, min=0, max=len(goods) - 1, description="good image", style=style),
        "mask": w.Dropdown(options=MASK_SOURCES, description="mask source", style=style),
        "steps": w.IntSlider(value=sp.steps, min=4, max=100, description="DDIM steps", style=style),
        "stages": w.FloatRangeSlider(value=(sp.latent_edit_from, sp.pixel_edit_from), min=0, max=1, step=0.02,
                                     description="stage boundaries", style=style),
        "dilation": w.IntSlider(value=sp.dilation, min=1, max=9, step=2, description="latent mask dilation", style=style),
        "guidance": w.FloatSlider(value=sp.guidance, min=1.0, max=15.0, step=0.5, description="guidance", style=style),
        "iterations": w.IntSlider(value=ap.iterations, min=0, max=400, step=10, description="adaptation iterations", style=style),
        "preservation": w.FloatLogSlider(value=ap.preservation, base=10, min=0, max=3, description="preservation weight",
                                         style=style),
        "seed": w.IntText(value=0, description="seed", style=style),
    }
    button = w.Button(description="Run AdaBLDM", button_style="primary")
    button.add_class("adabldm-run")
    out = w.Output()
    out.add_class("adabldm-output")
    panel = Panel(w.VBox([w.HBox([w.VBox(list(c.values())[:6]), w.VBox(list(c.values())[6:])]), button, out]),
                  button, out, c)
    panel.widget.add_class("adabldm-panel")

    def on_click(_):
        rng = np.random.default_rng(c["seed"].value)
        i = c["image"].value
        good, fg = goods[i], foregrounds[i]
        mask = make_mask(c["mask"].value, good.shape[:2], rng, fg, real_masks)
        sampler = SamplerParams(steps=c["steps"].value, guidance=c["guidance"].value, dilation=c["dilation"].value,
                                latent_edit_from=c["stages"].value[0], pixel_edit_from=c["stages"].value[1])
        adapt = AdaptParams(iterations=c["iterations"].value, preservation=c["preservation"].value)
        panel.last = model.generate(good, mask, fg, rng=rng, object_name=c["object"].value,
                                    defect_name=c["defect"].value, sampler=sampler, adapt=adapt, show_progress=not quick)
        with out:
            out.clear_output(wait=True)
            fig = stages_figure(good, panel.last)
            display(fig)
            plt.close(fig)

    button.on_click(on_click)
    return panel


@dataclass
class FewShot:
    goods: list  # good images at the working size
    foregrounds: list
    defects: list  # real few-shot defects (Samples) at the working size
    category: str

    @property
    def defect_types(self) -> list[str]:
        return sorted({d.meta["label"] for d in self.defects})


def few_shot_data(category: str = "washer", shots: int = 2, seed: int = 0, size: int = 128) -> FewShot:
    """The embedded data set's `category`: good images, foregrounds and `shots` real defects per type, resized."""
    from ..data import build_embedded, few_shot_split, foreground_for
    from ..sample import Sample
    from .pairs import _resize, _resize_mask

    split = few_shot_split(build_embedded(), category, shots=shots, seed=seed)
    goods = [r.image() for r in split.good_train]
    fgs = [_resize_mask(foreground_for(r, g), size) for r, g in zip(split.good_train, goods)]
    defects = [Sample(_resize(img, size), _resize_mask(m, size), {"label": r.label, "category": r.category})
               for r in split.support for img, m in [r.load()]]
    return FewShot([_resize(g, size) for g in goods], fgs, defects, category)


def quick_model(data: FewShot, rng, steps: int = 40, size: int = 64):
    """A tiny model trained for a few steps (seconds): shows the procedure, not the quality."""
    from .model import AdaBLDMModel
    from .pairs import make_pairs
    from .params import TrainParams, tiny_config
    from .pipeline import AdaBLDM
    from .prompts import vocabulary_for
    from .train import train

    pairs = make_pairs(data.goods, data.defects, rng, 16, size, data.foregrounds)
    model = AdaBLDMModel(tiny_config(vocabulary_for(pairs.prompts)), seed=int(rng.integers(2**31)))
    train(model, pairs, TrainParams(size=size, steps=steps, batch_size=4, lr=1e-3, unet_lr=1e-3, prompt_dropout=0.1),
          show_progress=False)
    return AdaBLDM(model, SamplerParams(steps=12), AdaptParams(iterations=20)), pairs
