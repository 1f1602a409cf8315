"""Run one synthesis method over many good images and write the results as a data set (resumable)."""
from __future__ import annotations

import numpy as np

from ..data.records import Record
from ..data.writer import DatasetWriter
from ..errors import DefectlabError
from ..progress import progress
from ..methods import create


def synthesize(method, goods: list, writer: DatasetWriter, *, seed: int, n: int | None = None, category: str,
               label: str | None = None, foregrounds: list | None = None, split: str = "test") -> list[dict]:
    """Write `n` synthetic defects (default one per good image) and return their manifest entries.

    `method` is a registered name or a built method; good image i % len(goods) makes item i, named
    `{i:05d}`, with its own generator `np.random.default_rng([seed, i])`, so a re-run skips what the
    writer already holds and produces the same bytes as an uninterrupted run. A method that needs
    fitting must be fitted before. `foregrounds[i % len(goods)]` restricts item i's defect."""
    method = create(method) if isinstance(method, str) else method
    name = getattr(method, "name", type(method).__name__.lower())
    label = label or name
    if not goods:
        raise DefectlabError("synthesize: no good images given")
    if foregrounds is not None and len(foregrounds) != len(goods):
        raise DefectlabError(f"synthesize: {len(foregrounds)} foregrounds for {len(goods)} good images")
    if seed < 0:
        raise DefectlabError(f"synthesize: seed must be >= 0, got {seed}")
    n = len(goods) if n is None else n
    entries = []
    for i in progress(range(n), desc=f"{name} -> {writer.root.name}", total=n):
        key = writer.key(category, split, label, f"{i:05d}")
        if writer.done(key):
            entries.append(writer.entries[key])
            continue
        good = goods[i % len(goods)]
        image, source = (good.image(), good.key) if isinstance(good, Record) else (good, f"goods[{i % len(goods)}]")
        fg = None if foregrounds is None else foregrounds[i % len(goods)]
        sample = method(image, np.random.default_rng([seed, i]), foreground=fg)
        entries.append(writer.add(sample.image, sample.mask, category=category, label=label, name=f"{i:05d}", split=split,
                                  method=name, params=sample.meta.get("params"), seed=seed, source=source,
                                  meta={k: v for k, v in sample.meta.items() if k != "params"}))
    return entries
