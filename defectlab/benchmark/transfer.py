"""Transferred runs (`--transfer-from`, `--transfer-types`; issue 22): checks, the source defects of each seed,
the data fingerprint with the source category, the source split on this category's canvases, the results.md note."""
from __future__ import annotations

from ..errors import DefectlabError
from .config import FEWSHOT, BenchmarkConfig


def check_transfer(cfg: BenchmarkConfig, dataset) -> None:
    """--transfer-from / --transfer-types: a category with defects (not the benchmarked one unless types
    restrict it), types it has (names matched without case, then spelt as in the data), a method to transfer."""
    if not cfg.transfer:
        return
    source = cfg.transfer_from or cfg.category
    if cfg.shots <= 0:
        raise DefectlabError("--transfer-from / --transfer-types: the transferred methods learn from few-shot "
                             "defects; use --shots > 0")
    if source == cfg.category and not cfg.transfer_types:
        raise DefectlabError(f"--transfer-from {source}: the category benchmarked itself; name another category "
                             "(or restrict the source to some defect types with --transfer-types)")
    if source != cfg.category:
        if source not in dataset.categories():
            raise DefectlabError(f"--transfer-from: unknown category {source!r} in {dataset.root}; "
                                 f"found: {', '.join(sorted(dataset.categories()))}")
        dataset.check_files(source)
    known = dataset.defect_types(source)
    if not known:
        raise DefectlabError(f"--transfer-from {source}: the category has no defect images to learn from")
    lower = {t.lower(): t for t in known}
    unknown = [t for t in cfg.transfer_types if t.lower() not in lower]
    if unknown:
        raise DefectlabError(f"--transfer-types: {', '.join(unknown)} not among {source}'s defect types "
                             f"({', '.join(known)})")
    types = [lower[t.lower()] for t in cfg.transfer_types]
    if len(set(types)) != len(types):
        raise DefectlabError(f"--transfer-types: a type is listed twice: {', '.join(cfg.transfer_types)}")
    cfg.transfer_types = types
    if not cfg.transfer_methods():
        raise DefectlabError(f"--transfer-from: none of --methods ({', '.join(cfg.methods) or 'none'}) learns from "
                             "defects, so none can be transferred (e.g. copypaste, texture_gan, defectfill, adabldm)")


def transfer_sources(cfg: BenchmarkConfig, dataset, splits: dict) -> dict:
    """{seed: the real defect records the transferred methods learn from}: the source category's few-shot
    support under the same shots / seed rule (`few_shot_split`, whose held-out part is not needed here;
    the benchmarked category's own split when it is the source), of the chosen types."""
    from ..data import few_shot_split

    if not cfg.transfer:
        return {}
    source = cfg.transfer_from or cfg.category
    out = {}
    for s in cfg.seeds:
        split = splits[s] if source == cfg.category else few_shot_split(dataset, source, cfg.shots, seed=s, min_heldout=0)
        out[s] = [r for r in split.support if not cfg.transfer_types or r.label in cfg.transfer_types]
    return out


def transferred_split(cfg: BenchmarkConfig, prepared, source: list, channels: int):
    """`prepared` with the source's few-shot defects (`source`, records) as `support`: those of the benchmarked
    category's own support when it is the source, else loaded on canvases of this size and channel count; goods,
    foregrounds and the test set stay the benchmarked category's."""
    from dataclasses import replace

    from .prepare import ImageCache, load_support

    if (cfg.transfer_from or cfg.category) == cfg.category:
        keys = {r.key for r in source}
        support = [s for s in prepared.support if s.meta["source"] in keys]
    else:
        support = load_support(source, ImageCache(cfg.size, cfg.keep_aspect, channels=channels))
    if not support:
        raise DefectlabError(f"--transfer-from: no defect of {cfg.transfer_label()} is visible at --size {cfg.size}")
    return replace(prepared, support=support)


def benchmark_fingerprint(cfg: BenchmarkConfig, dataset, splits: dict, sources: dict) -> dict:
    """`data_fingerprint` of the benchmarked category, and with a transfer from another category its files
    too and each seed's source records (split keys "<seed>@<category>")."""
    from ..fingerprint import data_fingerprint, digest

    fp = data_fingerprint(dataset, cfg.category, splits)
    if cfg.transfer_from in (None, cfg.category):
        return fp
    other = data_fingerprint(dataset, cfg.transfer_from, {})
    files = {**fp["files"], **other["files"]}
    extra = {f"{s}@{cfg.transfer_from}": digest(sorted(r.key for r in recs)) for s, recs in sources.items()}
    return {"files": files, "files_sha256": digest(files), "splits": {**fp["splits"], **extra}}


def transfer_note(cfg: BenchmarkConfig, results: dict) -> str:
    """The paragraph that says which rows are transferred, from where, and what they are compared with."""
    source = cfg.transfer_from or cfg.category
    first = next((r for r in results["runs"] if "transfer" in r), None)
    n = len(first["transfer"]["support"]) if first else "?"
    types = ", ".join(cfg.transfer_types) or ", ".join(sorted({k.split("/")[2] for k in first["transfer"]["support"]})
                                                       if first else []) or "all"
    params = [f"`{m}` {', '.join(f'{k}={v}' for k, v in cfg.transfer_params(m).items())}"
              for m in cfg.transfer_methods() if cfg.transfer_params(m)]
    rows = ", ".join(f"`{cfg.transferred(m)}`" for m in cfg.transfer_methods())
    left = [m for m in cfg.methods if m not in cfg.transfer_methods()]
    if source == cfg.category:
        text = (f"**Transferred rows** ({rows} and their `+{FEWSHOT}`): the method is fitted only on the few-shot "
                f"defects of type {types} ({n} images at seed {cfg.seeds[0]}, the same ones the other runs see among "
                f"theirs) and draws them on the good images; the real defects of `+{FEWSHOT}` and the test set keep "
                f"every type. So `{FEWSHOT}` = no synthesis, `<method>` rows = synthesis learned from every type, "
                f"`<method>@...` rows = synthesis learned from {types} only.")
    else:
        text = (f"**Transferred rows** ({rows} and their `+{FEWSHOT}`): the method is fitted on `{source}`'s few-shot "
                f"defects ({n} images at seed {cfg.seeds[0]}, types {types}, {cfg.shots} per type as in `{source}`'s "
                f"own split) and draws them on `{cfg.category}`'s good images (its foregrounds and textures); the "
                f"detector's goods, the real defects of `+{FEWSHOT}` and the test set are `{cfg.category}`'s. So "
                f"`{FEWSHOT}` = no synthesis, `<method>` rows = synthesis learned in-category, `<method>@...` rows = "
                "synthesis transferred.")
    if params:
        text += " Transferred runs' parameters: " + "; ".join(params) + "."
    if left:
        text += (" Not transferred (they learn nothing from defects, a transferred row would repeat theirs): "
                 + ", ".join(f"`{m}`" for m in left) + ".")
    return text
