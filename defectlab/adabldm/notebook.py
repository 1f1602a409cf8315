"""Pictures and an ipywidgets control panel for notebooks/05_adabldm.ipynb (kept here so the notebook stays thin)."""
from __future__ import annotations

from dataclasses import dataclass, replace

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


STAGE_TITLES = {"free": "1 free diffusion", "latent_edit": "2 latent editing", "pixel_edit": "3 pixel editing",
                "adapted": "4 decoder adapted"}


def defect_window(mask: np.ndarray, margin: float = 0.75, min_side: int = 24) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): a square around the mask's box grown by `margin` of its side (the panel's zoom)."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    side = int(min(max(np.ptp(ys) + 1, np.ptp(xs) + 1, min_side / (1 + 2 * margin)) * (1 + 2 * margin), h, w))
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    y0, x0 = int(np.clip(cy - side // 2, 0, h - side)), int(np.clip(cx - side // 2, 0, w - side))
    return y0, y0 + side, x0, x0 + side


def stage_changes(good: np.ndarray, result) -> dict[str, dict[str, float]]:
    """Per stage picture: mean |stage - good| inside the mask and outside it (what the heat maps show)."""
    out = {}
    for name, img in result.stages.items():
        diff = np.abs(to_rgb(img) - to_rgb(good)).mean(axis=2)
        out[name] = {"inside": float(diff[result.mask].mean()), "outside": float(diff[~result.mask].mean())}
    return out


def stages_figure(good: np.ndarray, result, cell: float = 2.6):
    """One column per stage that ran (after the good image): the full image with the zoom window drawn, the
    zoom on the defect window, and |stage - good| as a heat map (one colour scale for all stages)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    y0, y1, x0, x1 = defect_window(result.mask)
    cols = [("good + mask", overlay(good, result.mask))] + [(STAGE_TITLES.get(k, k), to_rgb(v))
                                                             for k, v in result.stages.items()]
    diffs = [np.abs(to_rgb(v) - to_rgb(good)).max(axis=2) for v in result.stages.values()]
    vmax = max(max(float(d.max()) for d in diffs), 1e-3)
    changes = stage_changes(good, result)
    fig, ax = plt.subplots(3, len(cols), figsize=(cell * len(cols), cell * 3 + 0.4), squeeze=False,
                           layout="constrained")
    for j, (title, img) in enumerate(cols):
        ax[0, j].imshow(np.clip(img, 0, 1), interpolation="nearest")
        ax[0, j].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="cyan", lw=1))
        ax[0, j].set_title(title, fontsize=9)
        zoomed = to_rgb(good) if j == 0 else img  # the good image itself, not its red overlay
        ax[1, j].imshow(np.clip(zoomed[y0:y1, x0:x1], 0, 1), interpolation="nearest")
    ax[1, 0].set_title("zoom on the defect window", fontsize=8)
    ax[2, 0].imshow(result.trimap, interpolation="nearest")
    ax[2, 0].set_title("trimap (condition)", fontsize=8)
    for j, (name, d) in enumerate(zip(result.stages, diffs), start=1):
        im = ax[2, j].imshow(d, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        c = changes[name]
        ax[2, j].set_title(f"|stage - good|: in {c['inside']:.3f}, out {c['outside']:.3f}", fontsize=7)
    fig.colorbar(im, ax=ax[2, :].tolist(), fraction=0.02, pad=0.01)
    for a in ax.ravel():
        a.set_xticks([]), a.set_yticks([])
    secs = getattr(result, "seconds", {}) or {}
    if secs:
        fig.suptitle(f"{result.prompt!r}: {sum(secs.values()):.1f} s (sampling {secs['sampling']:.1f} s, "
                     f"adaptation {secs['adaptation']:.1f} s)", fontsize=10)
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
    from ..synth.learned import perlin_region

    return perlin_region(shape, rng, foreground)


@dataclass
class Panel:
    widget: object
    run_button: object
    output: object
    controls: dict
    status: object = None
    last: object = None

    def run(self, *_):
        self.run_button.click()
        return self.last


def run_summary(result, sampler: SamplerParams, adapt: AdaptParams) -> str:
    """One line for the panel: seconds taken, the stages that ran, and departures from the paper."""
    from .params import deviations

    secs = result.seconds
    ran = ", ".join(STAGE_TITLES.get(k, k) for k in result.stages)
    dev = deviations(sampler, adapt)
    return (f"Run took {sum(secs.values()):.1f} s (sampling {secs['sampling']:.1f} s, adaptation "
            f"{secs['adaptation']:.1f} s). Stages run: {ran}." + (f" Deviations from the paper: {'; '.join(dev)}." if dev else ""))


def control_panel(model, goods, foregrounds, real_masks, object_name: str, defect_types: list[str],
                  quick: bool = False) -> Panel:
    """Sliders for every AdaBLDM parameter and a "Run AdaBLDM" button drawing each stage in an Output, with
    the seconds the run took."""
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
    button = w.Button(description="Run AdaBLDM", button_style="primary", layout=w.Layout(min_width="130px"))
    button.add_class("adabldm-run")
    status = w.HTML("Press <b>Run AdaBLDM</b>: stage boundaries (1, 1) switch all editing off.")
    status.add_class("adabldm-status")
    out = w.Output()
    out.add_class("adabldm-output")
    panel = Panel(w.VBox([w.HBox([w.VBox(list(c.values())[:6]), w.VBox(list(c.values())[6:])]), w.HBox([button, status]),
                          out]), button, out, c, status)
    panel.widget.add_class("adabldm-panel")

    def on_click(_):
        rng = np.random.default_rng(c["seed"].value)
        i = c["image"].value
        good, fg = goods[i], foregrounds[i]
        mask = make_mask(c["mask"].value, good.shape[:2], rng, fg, real_masks)
        sampler = replace(sp, steps=c["steps"].value, guidance=c["guidance"].value, dilation=c["dilation"].value,
                          latent_edit_from=c["stages"].value[0], pixel_edit_from=c["stages"].value[1])
        adapt = replace(ap, iterations=c["iterations"].value, preservation=c["preservation"].value)
        status.value = "running ..."
        panel.last = model.generate(good, mask, fg, rng=rng, object_name=c["object"].value,
                                    defect_name=c["defect"].value, sampler=sampler, adapt=adapt, show_progress=not quick)
        status.value = run_summary(panel.last, sampler, adapt)
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
    from ..resize import resize_image, resize_mask

    split = few_shot_split(build_embedded(), category, shots=shots, seed=seed)
    goods = [r.image() for r in split.good_train]
    fgs = [resize_mask(foreground_for(r, g), size, sampling="corner") for r, g in zip(split.good_train, goods)]
    defects = [Sample(resize_image(img, size, interpolation="area"), resize_mask(m, size, sampling="corner"), {"label": r.label, "category": r.category})
               for r in split.support for img, m in [r.load()]]
    return FewShot([resize_image(g, size, interpolation="area") for g in goods], fgs, defects, category)


def quick_model(data: FewShot, rng, steps: int = 40, size: int = 64, autoencoder: str = "taef2"):
    """A tiny denoiser trained for a few steps (seconds): shows the procedure, not the quality. With the pretrained
    TAEF2 autoencoder (default) the edited background really is the good image; "tiny" is a random one."""
    from .model import AdaBLDMModel
    from .pairs import make_pairs
    from .params import TrainParams, tiny_config
    from .pipeline import AdaBLDM
    from .prompts import vocabulary_for
    from .train import train

    pairs = make_pairs(data.goods, data.defects, rng, 16, size, data.foregrounds)
    cfg = tiny_config(vocabulary_for(pairs.prompts))
    if autoencoder != "tiny":
        cfg = replace(cfg, autoencoder=autoencoder, latent_channels=32)
    model = AdaBLDMModel(cfg, seed=int(rng.integers(2**31)))
    train(model, pairs, TrainParams(size=size, steps=steps, batch_size=4, lr=1e-3, unet_lr=1e-3, prompt_dropout=0.1),
          show_progress=False)
    return AdaBLDM(model, SamplerParams(steps=12), AdaptParams(iterations=20)), pairs


def panel_model(data: FewShot, rng, quick: bool, checkpoint=None, size: int = 64):
    """(model, where it comes from) for the notebook: in quick mode a tiny model trained for seconds; otherwise
    `checkpoint` (a run folder) or the cached offline checkpoint (`cache.trained_checkpoint`, trained on first use)."""
    from .cache import trained_checkpoint
    from .pipeline import AdaBLDM

    if quick and checkpoint is None:
        return quick_model(data, rng, size=size)[0], "a tiny model trained for seconds (quick mode)"
    from ..config import shown_path

    folder = checkpoint or trained_checkpoint()
    return AdaBLDM.from_checkpoint(folder), f"the trained checkpoint {shown_path(folder)}"


def guidance_figure(model, good, mask, foreground, object_name: str, defect_name: str,
                    guidances=(1.5, 3.0, 5.0, 9.0), seed: int = 0, iterations: int = 0, cell: float = 2.4):
    """The same mask and seed at several guidance scales: whole image and a zoom on the defect window.
    `iterations` of decoder adaptation (0: the sampler's output, faster; guidance acts on sampling only).
    Returns (figure, results)."""
    import matplotlib.pyplot as plt

    results = [model.generate(good, mask, foreground, rng=np.random.default_rng(seed), object_name=object_name,
                              defect_name=defect_name, sampler=replace(model.sampler, guidance=g),
                              adapt=replace(model.adapt, iterations=iterations)) for g in guidances]
    y0, y1, x0, x1 = defect_window(mask)
    fig, ax = plt.subplots(2, len(guidances) + 1, figsize=(cell * (len(guidances) + 1), cell * 2), squeeze=False,
                           layout="constrained")
    cols = [("good + mask", overlay(good, mask), to_rgb(good))] + [
        (f"guidance {g:g}", to_rgb(r.image), to_rgb(r.image)) for g, r in zip(guidances, results)]
    for j, (title, full, zsrc) in enumerate(cols):
        ax[0, j].imshow(np.clip(full, 0, 1), interpolation="nearest")
        ax[0, j].set_title(title, fontsize=9)
        ax[1, j].imshow(np.clip(zsrc[y0:y1, x0:x1], 0, 1), interpolation="nearest")
    for a in ax.ravel():
        a.set_xticks([]), a.set_yticks([])
    fig.suptitle(f"{results[0].prompt!r}, seed {seed}, {iterations} adaptation iterations", fontsize=10)
    return fig, results
