"""Issue #36: what AdaBLDM's stages draw on the cached washer checkpoint (the control panel's model): stage 1 (free
diffusion) should show a washer, the final image a defect a reader can see inside its mask. One row per defect type:
each stage, a zoom on the defect, the difference to the good image (`adabldm.notebook.stages_figure`); and how much
the final image changed inside vs outside the mask.

    python benchmarks/adabldm_stages.py [--checkpoint RUN] [--seed 0]

Writes docs/adabldm_washer_stages_<type>.png and benchmarks/results/adabldm_stages_washer.json (machine described).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from defectlab.bench import write_result

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    import torch

    from defectlab.adabldm import AdaBLDM
    from defectlab.adabldm import notebook as nbk
    from defectlab.adabldm.cache import trained_checkpoint
    from defectlab.viz import save_figure

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="run folder (default: the cached washer checkpoint, make adabldm-weights)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = args.checkpoint or str(trained_checkpoint())
    model = AdaBLDM.from_checkpoint(folder)
    data = nbk.few_shot_data("washer", shots=2, seed=0, size=128)
    rows = {}
    for i, kind in enumerate(data.defect_types):
        rng = np.random.default_rng([args.seed, i])
        gi = int(rng.integers(len(data.goods)))
        good, fg = data.goods[gi], data.foregrounds[gi]
        mask = nbk.make_mask(nbk.MASK_SOURCES[0], good.shape[:2], rng, fg,
                             [d.mask for d in data.defects if d.meta["label"] == kind])
        result = model.generate(good, mask, fg, rng=rng, object_name="washer", defect_name=kind)
        changes = nbk.stage_changes(good, result)
        save_figure(nbk.stages_figure(good, result), HERE.parent / "docs" / f"adabldm_washer_stages_{kind}.png")
        rows[kind] = {"prompt": result.prompt, "changes": changes, "seconds": result.seconds}
        final = changes[list(result.stages)[-1]]
        print(f"{kind:14s} final |change| inside the mask {final['inside']:.3f}, outside {final['outside']:.3f}")
    write_result(HERE / "results" / "adabldm_stages_washer.json",
                 {"checkpoint_prior": model.model.cfg.prior, "rows": rows, "seed": args.seed})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
