"""Running one synthesis method many times: the one loop (`run_many`) and its data-set writer (`synthesize`).

Seeding rule (the same for every caller): item i draws everything it needs, the good image (`pick="random"`)
and then the defect, from its own generator `np.random.default_rng([*seed, i])`, where `seed` is an int or a
sequence of ints. So an item's bytes depend only on (seed, i), never on what ran before it, and a resumed run
produces the same bytes as an uninterrupted one. `synthesize` uses `seed` as given (`[seed, i]`); the benchmark's
`benchmark.prepare.synthesize_pool` adds the method's `stable_id(name)` (`[seed, stable_id(name), i]`).
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

from ..data.records import Record
from ..data.writer import DatasetWriter
from ..errors import DefectlabError
from ..methods import create
from ..progress import progress
from ..sample import Sample


def item_rng(seed: int | Sequence[int], i: int) -> np.random.Generator:
    """Item `i`'s generator: `np.random.default_rng([*seed, i])` (an int `seed` counts as `[seed]`)."""
    words = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    return np.random.default_rng([*words, i])


def run_many(method: Callable, goods: Sequence, n: int, seed: int | Sequence[int], *, foregrounds: Sequence | None = None,
             pick: str = "cycle", tries: int = 1, skip: Callable[[int], bool] | None = None, name: str | None = None,
             desc: str | None = None, show_progress: bool = True) -> Iterator[tuple[int, int, Sample | None]]:
    """Yield `(i, j, sample)` for i in range(n): `sample = method(goods[j], item_rng(seed, i), foreground=foregrounds[j])`.

    `pick`: "cycle" uses good image j = i % len(goods); "random" draws j from item i's generator (again at each
    try). A try that raises `DefectlabError` or returns an empty mask is repeated (up to `tries` in all, on the
    same generator); then a `DefectlabError` names the method and the last error. `skip(i)` true: item i is not
    made (its generator is not even built) and `(i, i % len(goods), None)` is yielded (resuming a written set).
    A good image may be an array or a `Record` (read when its item is made)."""
    name = name or getattr(method, "name", type(method).__name__.lower())
    if not goods:
        raise DefectlabError("synthesize: no good images given")
    if foregrounds is not None and len(foregrounds) != len(goods):
        raise DefectlabError(f"synthesize: {len(foregrounds)} foregrounds for {len(goods)} good images")
    words = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
    if any(w < 0 for w in words):
        raise DefectlabError(f"synthesize: seed must be >= 0, got {seed}")
    if pick not in ("cycle", "random"):
        raise DefectlabError(f"synthesize: pick must be 'cycle' or 'random', got {pick!r}")
    items = progress(range(n), desc=desc or f"synthesise {name}", total=n) if show_progress else range(n)
    for i in items:
        if skip is not None and skip(i):
            yield i, i % len(goods), None
            continue
        rng = item_rng(seed, i)
        last_error = None
        for _ in range(tries):
            j = i % len(goods) if pick == "cycle" else int(rng.integers(len(goods)))
            good = goods[j]
            image = good.image() if isinstance(good, Record) else good
            try:
                sample = method(image, rng, foreground=None if foregrounds is None else foregrounds[j])
            except DefectlabError as exc:
                last_error = exc
                continue
            if np.asarray(sample.mask, bool).any():
                yield i, j, sample
                break
        else:
            raise DefectlabError(f"synthesis method {name!r} produced no defect in {tries} tries"
                                 + (f" (last error: {last_error})" if last_error else "")) from last_error


def synthesize(method, goods: list, writer: DatasetWriter, *, seed: int, n: int | None = None, category: str,
               label: str | None = None, foregrounds: list | None = None, split: str = "test") -> list[dict]:
    """Write `n` synthetic defects (default one per good image) and return their manifest entries.

    `method` is a registered name or a built method; good image i % len(goods) makes item i, named
    `{i:05d}`, with its own generator `np.random.default_rng([seed, i])` (`run_many`), so a re-run skips what
    the writer already holds and produces the same bytes as an uninterrupted run. A method that needs
    fitting must be fitted before. `foregrounds[i % len(goods)]` restricts item i's defect."""
    method = create(method) if isinstance(method, str) else method
    name = getattr(method, "name", type(method).__name__.lower())
    label = label or name
    n = len(goods) if n is None else n
    keys = [writer.key(category, split, label, f"{i:05d}") for i in range(n)]
    entries = []
    for i, j, sample in run_many(method, goods, n, seed, foregrounds=foregrounds, skip=lambda i: writer.done(keys[i]),
                                 name=name, desc=f"{name} -> {writer.root.name}"):
        if sample is None:
            entries.append(writer.entries[keys[i]])
            continue
        good = goods[j]
        source = good.key if isinstance(good, Record) else f"goods[{j}]"
        entries.append(writer.add(sample.image, sample.mask, category=category, label=label, name=f"{i:05d}", split=split,
                                  method=name, params=sample.meta.get("params"), seed=seed, source=source,
                                  meta={k: v for k, v in sample.meta.items() if k != "params"}))
    return entries
