"""A placement prior learned from real defect masks, per defect type (issue #36, item 3).

Copy-paste and AdaBLDM move a real few-shot defect mask onto a good image. Turned uniformly over 0-360 degrees
and dropped anywhere on the foreground, a defect can land where and how such defects never occur (horizontal
cracks standing upright). `PlacementPrior.fit` learns, per defect type, from the support masks:

- where it occurs: a coarse heat-map of the masks' centres over normalised image coordinates (grid x grid
  cells), Gaussian-smoothed, mixed with a uniform floor so unseen cells stay possible but unlikely;
- how it is oriented: the principal-axis angle of each mask from second moments, per 8-connected region and
  averaged over the regions as axial data (angles modulo 180 degrees, doubled-angle mean). A mask whose regions
  are round (anisotropy (l1 - l2) / (l1 + l2) of the moment eigenvalues under `round_below`) has no orientation;
- how big it is: sqrt(mask area / image area), the relative linear size.

`prior.place(mask, type, foreground, rng)` turns, scales and moves one real mask so that it ends up in an
observed orientation (one observed angle + a jitter of +- the observed spread, at least `min_jitter`; a round
source turns freely), at a position drawn from the heat-map (within the foreground) and at a size inside the
type's observed range. Angles are degrees counter-clockwise on screen (image y pointing down), the convention of
`cv2.getRotationMatrix2D`, so rotating a mask of orientation a by r gives a + r.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import masks as mask_tools
from .errors import DefectlabError
from .sample import Sample


@dataclass
class PlacementParams:
    grid: int = 8  # ours (issue #36): heat-map cells per axis over normalised image coordinates
    smooth: float = 0.75  # ours: Gaussian sigma of the heat-map smoothing, in cells
    floor: float = 0.05  # ours: share of the probability spread evenly over all cells (unseen cells stay possible)
    round_below: float = 0.3  # ours: anisotropy under which a mask counts as round (minor/major axis ratio > ~0.73)
    min_jitter: float = 5.0  # ours: least half-width (degrees) of the jitter around an observed angle
    max_jitter: float = 30.0  # ours: largest half-width (degrees), reached when the observed angles spread widely


# ---------------------------------------------------------------- what one mask says
def orientation(mask: np.ndarray) -> tuple[float, float]:
    """(angle in [0, 180) degrees, anisotropy in [0, 1]) of a bool mask.

    Per 8-connected region, second moments give the principal axis and the anisotropy (l1 - l2) / (l1 + l2)
    (0: round, 1: a line); the mask's orientation is the region-area-weighted mean of the doubled angles, so
    several parallel scratches count as parallel whatever their arrangement. Anisotropy 0 (angle 0) for round
    or one-pixel regions."""
    m = np.asarray(mask, bool)
    if m.ndim != 2 or not m.any():
        raise DefectlabError(f"orientation: needs a non-empty 2-D mask, got shape {m.shape}")
    n, labels = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
    ys, xs = np.nonzero(m)
    lab = labels[ys, xs]
    area = np.bincount(lab, minlength=n).astype(np.float64)
    keep = area > 0
    def mean(v):
        return np.divide(np.bincount(lab, v, minlength=n), area, out=np.zeros(n), where=keep)
    mx, my = mean(xs.astype(np.float64)), mean(ys.astype(np.float64))
    dx, dy = xs - mx[lab], ys - my[lab]
    mu20, mu02, mu11 = mean(dx * dx), mean(dy * dy), mean(dx * dy)
    trace = mu20 + mu02
    diff = np.hypot(mu20 - mu02, 2 * mu11)  # l1 - l2
    aniso = np.divide(diff, trace, out=np.zeros(n), where=trace > 0)
    doubled = -np.arctan2(2 * mu11, mu20 - mu02)  # minus: y points down, angles count counter-clockwise on screen
    vec = np.sum(area * aniso * np.exp(1j * doubled)) / area.sum()
    return float(np.degrees(np.angle(vec) / 2) % 180.0), float(abs(vec))


def oriented_angle(mask: np.ndarray, round_below: float = PlacementParams.round_below) -> float | None:
    """The mask's orientation (degrees, [0, 180)), or None for a round mask (anisotropy under `round_below`)."""
    angle, aniso = orientation(mask)
    return angle if aniso >= round_below else None


def centre(mask: np.ndarray) -> tuple[float, float]:
    """The mask's pixel centroid (y, x), normalised to [0, 1] by the image size (pixel centres)."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return float((ys.mean() + 0.5) / h), float((xs.mean() + 0.5) / w)


def relative_size(mask: np.ndarray, shape: tuple[int, int] | None = None) -> float:
    """sqrt(mask area / image area), the image being `shape` (default: the mask's own)."""
    h, w = shape[:2] if shape is not None else mask.shape
    return math.sqrt(float(np.count_nonzero(mask)) / (h * w))


def defect_type(sample: Sample | tuple) -> str:
    """A real defect's type: `meta["label"]` (or `"defect"`), else the record key's label part
    ("category/split/label/name"), else "defect"."""
    meta = (sample.meta or {}) if isinstance(sample, Sample) else {}
    parts = str(meta.get("source", "")).split("/")
    return str(meta.get("label") or meta.get("defect") or (parts[2] if len(parts) >= 4 else "defect"))


def axial_stats(angles: np.ndarray) -> tuple[float, float]:
    """(mean, circular standard deviation) in degrees of axial angles (modulo 180): the doubled-angle mean,
    halved; spread = sqrt(-2 ln R) / 2. NaN for no angles; inf when they cancel out."""
    a = np.radians(np.asarray(angles, np.float64)) * 2
    if a.size == 0:
        return math.nan, math.nan
    vec = np.exp(1j * a).mean()
    r = min(abs(vec), 1.0)
    spread = math.degrees(math.sqrt(max(-2 * math.log(r), 0.0)) / 2) if r > 1e-12 else math.inf
    return float(math.degrees(np.angle(vec) / 2) % 180.0), spread


# ---------------------------------------------------------------- one type, all types
@dataclass
class TypePrior:
    """What the support masks of one defect type showed."""

    heat: np.ndarray  # (grid, grid) float64, sums to 1: where the centres fall (smoothed, with the floor)
    centres: np.ndarray  # (n, 2) observed centres (y, x), normalised
    angles: np.ndarray  # orientations (degrees, [0, 180)) of the masks that have one
    n_round: int  # masks without an orientation
    sizes: np.ndarray  # relative sizes of every mask
    jitter: float  # half-width (degrees) of the jitter around an observed angle
    dominant: float = math.nan  # axial mean of `angles`
    spread: float = math.nan  # axial circular standard deviation of `angles`

    @property
    def count(self) -> int:
        return len(self.sizes)

    def summary(self) -> dict:
        """JSON-ready: counts, orientation, size range and the heat-map's peak cell (row, column)."""
        peak = np.unravel_index(int(np.argmax(self.heat)), self.heat.shape)
        def num(v):
            return None if not math.isfinite(v) else round(float(v), 2)
        return {"count": self.count, "oriented": int(len(self.angles)), "round": self.n_round,
                "dominant_deg": num(self.dominant), "spread_deg": num(self.spread), "jitter_deg": round(self.jitter, 2),
                "size_min": round(float(self.sizes.min()), 4), "size_max": round(float(self.sizes.max()), 4),
                "mean_centre": [round(float(v), 3) for v in self.centres.mean(axis=0)],
                "peak_cell": [int(peak[0]), int(peak[1])]}


@dataclass
class PlacementPrior:
    """Per defect type: where (heat-map), how turned (observed axial angles) and how big (relative sizes)."""

    types: dict[str, TypePrior]
    params: PlacementParams = field(default_factory=PlacementParams)

    @classmethod
    def fit(cls, masks_by_type: dict[str, list[np.ndarray]], params: PlacementParams | None = None) -> "PlacementPrior":
        """Learn from real masks grouped by type (each mask at its own image size; empty masks are skipped)."""
        p = params or PlacementParams()
        if p.grid < 1 or not 0 <= p.floor <= 1 or p.smooth < 0 or not 0 < p.min_jitter <= p.max_jitter:
            raise DefectlabError(f"PlacementPrior: bad parameters {p}")
        types = {}
        for kind, group in masks_by_type.items():
            group = [np.asarray(m, bool) for m in group]
            group = [m for m in group if m.ndim == 2 and m.any()]
            if group:
                types[str(kind)] = _fit_type(group, p)
        if not types:
            raise DefectlabError("PlacementPrior.fit: no non-empty mask to learn from")
        return cls(types, p)

    @classmethod
    def from_samples(cls, samples, params: PlacementParams | None = None) -> "PlacementPrior":
        """Learn from real defects (`Sample`s; the type from `defect_type`, i.e. `meta["label"]`)."""
        by_type: dict[str, list[np.ndarray]] = {}
        for s in samples:
            by_type.setdefault(defect_type(s), []).append(s.mask)
        return cls.fit(by_type, params)

    def __getitem__(self, kind: str) -> TypePrior:
        if kind not in self.types:
            known = ", ".join(sorted(self.types))
            raise DefectlabError(f"placement prior: unknown defect type {kind!r}; known: {known}")
        return self.types[kind]

    def summary(self) -> dict:
        return {k: t.summary() for k, t in sorted(self.types.items())}

    # ------------------------------------------------------------ draws
    def draw_angle(self, kind: str, rng: np.random.Generator) -> float | None:
        """An orientation (degrees, [0, 180)) near an observed one; None (turn freely) with the type's share of
        round masks, or when it has no oriented mask."""
        t = self[kind]
        if not len(t.angles) or rng.random() < t.n_round / t.count:
            return None
        return float((t.angles[rng.integers(len(t.angles))] + rng.uniform(-t.jitter, t.jitter)) % 180.0)

    def centre_sampler(self, kind: str, foreground: np.ndarray):
        """A function rng -> (y, x) pixel: a heat-map cell (among those holding foreground, by their share of the
        heat), then a uniform foreground pixel inside it."""
        heat, g = self[kind].heat, self.params.grid
        fg = np.asarray(foreground, bool)
        h, w = fg.shape
        flat = np.flatnonzero(fg)
        if flat.size == 0:
            raise DefectlabError("placement prior: the foreground is empty")
        ys, xs = np.divmod(flat, w)
        cell = (ys * g // h) * g + xs * g // w
        order = np.argsort(cell, kind="stable")
        flat, cell = flat[order], cell[order]
        starts = np.searchsorted(cell, np.arange(g * g + 1))
        counts = np.diff(starts)
        weight = heat.ravel() * (counts > 0)
        weight = weight / weight.sum() if weight.sum() > 0 else (counts > 0) / np.count_nonzero(counts)

        def draw(rng: np.random.Generator) -> tuple[int, int]:
            c = int(rng.choice(g * g, p=weight))
            i = int(flat[starts[c] + rng.integers(counts[c])])
            return divmod(i, w)
        return draw

    def draw(self, kind: str, rng: np.random.Generator,
             foreground: np.ndarray) -> tuple[tuple[int, int], float | None, float]:
        """(centre (y, x) pixel in the foreground, orientation in degrees or None = any, relative size) for a new
        defect of `kind`: an angle near an observed one, a cell from the heat-map, an observed size x U(0.85, 1.15)."""
        t = self[kind]
        angle = self.draw_angle(kind, rng)
        size = float(t.sizes[rng.integers(len(t.sizes))] * rng.uniform(0.85, 1.15))
        return self.centre_sampler(kind, foreground)(rng), angle, size

    def place(self, mask: np.ndarray, kind: str, foreground: np.ndarray | None, rng: np.random.Generator, *,
              shape: tuple[int, int] | None = None, rotation=(0, 360), scale=(0.85, 1.15), max_tries: int = 50,
              on_fail: str = "raise") -> tuple[np.ndarray, np.ndarray, dict]:
        """Move a real `mask` of type `kind` onto the target (`foreground`'s size, or `shape`): (placed mask,
        2x3 affine, what was drawn) through `masks.affine_jitter_place` (same retries and fallbacks).

        The turn brings the mask's own orientation onto a drawn one (either way along the axis); a round mask
        turns by U(rotation). The size factor is U(scale) around the mask's relative size in the target, first
        brought into the type's observed range (a defect from a larger image keeps its relative size)."""
        src = np.asarray(mask, bool)
        target = tuple(foreground.shape[:2]) if foreground is not None else tuple(shape or src.shape)
        fg = mask_tools.foreground_or_all(foreground, target)
        t = self[kind]
        own, aniso = orientation(src)
        oriented = aniso >= self.params.round_below and len(t.angles) > 0
        rel = relative_size(src, target)
        wanted = float(np.clip(rel, t.sizes.min(), t.sizes.max()))
        centre_of = self.centre_sampler(kind, fg)

        def propose(rng):
            if oriented:
                goal = t.angles[rng.integers(len(t.angles))] + rng.uniform(-t.jitter, t.jitter)
                turn = float(goal - own + 180.0 * rng.integers(2))
            else:
                turn = float(rng.uniform(*rotation))
            factor = wanted / rel * float(rng.uniform(*scale))
            return turn, factor, centre_of(rng)

        placed, m = mask_tools.affine_jitter_place(src, fg, rng, max_tries=max_tries, on_fail=on_fail, propose=propose)
        return placed, m, placement_record("prior", src, placed, m, own if oriented else None)

    # ------------------------------------------------------------ a picture
    def figure(self, title: str | None = None, cell: float = 2.2):
        """Per type (one column): the heat-map with the observed centres, and a rose of the observed
        orientations (axial, so drawn both ways), with the share of round masks."""
        import matplotlib.pyplot as plt

        kinds = sorted(self.types)
        fig = plt.figure(figsize=(cell * len(kinds), cell * 2.3))
        bins = np.linspace(0, 2 * np.pi, 37)
        for j, kind in enumerate(kinds):
            t = self.types[kind]
            ax = fig.add_subplot(2, len(kinds), j + 1)
            ax.imshow(t.heat, cmap="magma", extent=(0, 1, 1, 0), vmin=0)
            ax.scatter(t.centres[:, 1], t.centres[:, 0], s=14, c="cyan", edgecolors="black", linewidths=0.5)
            ax.set_title(f"{kind} (n={t.count})", fontsize=9)
            ax.set_xticks([0, 0.5, 1]), ax.set_yticks([0, 0.5, 1])
            ax.tick_params(labelsize=7)
            rose = fig.add_subplot(2, len(kinds), len(kinds) + j + 1, projection="polar")
            both = np.radians(np.concatenate([t.angles, t.angles + 180.0]))
            counts, _ = np.histogram(both, bins)
            rose.bar(bins[:-1], counts, width=np.diff(bins), align="edge", color="tab:blue", edgecolor="white")
            rose.set_yticks([]), rose.set_xticks(np.radians([0, 45, 90, 135, 180, 225, 270, 315]))
            rose.tick_params(labelsize=6)
            spread = "n/a" if not math.isfinite(t.spread) else f"{t.spread:.0f}°"
            dom = "n/a" if not math.isfinite(t.dominant) else f"{t.dominant:.0f}°"
            rose.set_title(f"mean {dom}, spread {spread}\nround {t.n_round}/{t.count}", fontsize=8, pad=12)
        fig.suptitle(title or "placement prior: where (centres, smoothed heat-map) and how turned (orientations)",
                     fontsize=10)
        fig.tight_layout()
        return fig


def _fit_type(group: list[np.ndarray], p: PlacementParams) -> TypePrior:
    centres = np.array([centre(m) for m in group])
    counts = np.zeros((p.grid, p.grid))
    for y, x in centres:
        counts[min(int(y * p.grid), p.grid - 1), min(int(x * p.grid), p.grid - 1)] += 1
    heat = cv2.GaussianBlur(counts, (0, 0), p.smooth, borderType=cv2.BORDER_REFLECT) if p.smooth > 0 else counts
    heat = (1 - p.floor) * heat / heat.sum() + p.floor / heat.size
    oriented = [orientation(m) for m in group]
    angles = np.array([a for a, e in oriented if e >= p.round_below])
    dominant, spread = axial_stats(angles)
    jitter = float(np.clip(spread if math.isfinite(spread) else p.max_jitter, p.min_jitter, p.max_jitter))
    return TypePrior(heat, centres, angles, len(group) - len(angles), np.array([relative_size(m) for m in group]),
                     jitter, dominant, spread)


def placement_record(mode: str, src: np.ndarray, placed: np.ndarray, m: np.ndarray, own: float | None) -> dict:
    """What a placement did, for a sample's meta: mode, turn (degrees), scale, the placed defect's orientation
    (None: the source has none) and centre (y, x, normalised)."""
    turn = math.degrees(math.atan2(m[0, 1], m[0, 0]))
    return {"mode": mode, "rotation": round(turn % 360.0, 3), "scale": round(math.hypot(m[0, 0], m[0, 1]), 4),
            "angle": None if own is None else round((own + turn) % 180.0, 3),
            "center": [round(v, 4) for v in centre(placed)]}
