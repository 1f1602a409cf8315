"""`defectlab benchmark`: the command line (argparse) and its handler."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from ..errors import DefectlabError
from .config import DETECTORS
from .protocol import run_benchmark

DETECTOR_STEPS = None  # default of --detector-steps (run_benchmark's `steps`): each detector's own


def _csv(kind):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            return [kind(t) for t in items]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}: {text!r}") from exc
    return parse


def _seed_list(text: str) -> list[int]:
    """--seeds: comma-separated seeds and inclusive ranges, e.g. "0-4" or "0,2,5-7"."""
    seeds = []
    for part in (t.strip() for t in text.split(",")):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if dash and lo else [int(part)]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected seeds such as 0,1,2 or 0-4, got {text!r}") from exc
    return seeds


def _at_least(low: int):
    """argparse type: an integer >= `low` (a bad value is a usage error, not a traceback later)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--data", help="data set folder (not needed with --format embedded)")
    p.add_argument("--format", default="auto", help="auto, mvtec, magnetic_tile, btad, ksdd2, visa or embedded")
    p.add_argument("--category", required=True,
                   help="category to benchmark (magnetic_tile for Magnetic Tile); all: every category of the data set, "
                        "each in its own folder under --out, as units of one grid (with an index in --out/results.md)")
    p.add_argument("--methods", type=_csv(str), default=[], help="comma-separated synthesis methods")
    p.add_argument("--shots", type=_at_least(0), default=10, help="real defects per type for training (default 10)")
    p.add_argument("--seeds", type=_seed_list, default=[0, 1, 2],
                   help="seeds, comma-separated or as a range (default 0,1,2; claims about methods want >= 5: 0-4)")
    p.add_argument("--size", type=int, default=256,
                   help="long side of every image; the aspect is kept and the rest zero-padded (default 256)")
    p.add_argument("--squash", action="store_true", help="squash every image to a size x size square instead")
    p.add_argument("--detector", default="destseg",
                   help=f"one or more of {', '.join(DETECTORS)}, comma-separated: destseg, DeSTSeg-style on a pretrained "
                        "EfficientNet-Lite0 teacher (default); supersimplenet, SuperSimpleNet on the same frozen features; "
                        "unet, compact U-Net from scratch. With two (destseg,supersimplenet) every supervised run is "
                        "trained under both (the second's runs named <run>~supersimplenet), and results say whether "
                        "they agree")
    p.add_argument("--real-share", type=float, metavar="X",
                   help="in <method>+fewshot runs, the share of defective training draws taken from the real defects "
                        "(0..1; default: the detector's own, recorded in results)")
    p.add_argument("--no-patchcore", action="store_true", help="leave out the unsupervised PatchCore row")
    p.add_argument("--diad", action="store_true",
                   help="add the unsupervised DiAD row (guided latent-diffusion reconstruction; trains minutes on a CPU)")
    p.add_argument("--detector-steps", type=_at_least(1), metavar="N",
                   help="detector training steps per run (destseg: per stage; default: the detector's own, destseg 400, "
                        "supersimplenet see SuperSimpleNetParams.steps); a synthesis "
                        "method's own steps are --method-param METHOD.steps=N")
    p.add_argument("--steps", type=_at_least(1), metavar="N", help="deprecated: the old name of --detector-steps")
    p.add_argument("--n-synthetic", type=_at_least(1), default=200, help="synthetic defects per method and seed (default 200)")
    p.add_argument("--quality", choices=("all", "first", "none"), default="all",
                   help="KID / FID of each method's synthetic defects for all seeds (default), the first only, "
                        "or none (each FID costs an eigen-decomposition of a 2048 x 2048 matrix)")
    p.add_argument("--quality-images", type=_at_least(2), default=100,
                   help="at most this many real and synthetic images per KID / FID (default 100)")
    p.add_argument("--embedded-counts", type=_csv(int), metavar="TRAIN,GOOD,DEFECT",
                   help="with --format embedded: good training images, good test images and defects per type "
                        "to build (e.g. 60,20,15; the small default allows --shots <= 2)")
    p.add_argument("--method-param", action="append", type=_method_param, default=[], metavar="METHOD.NAME=VALUE",
                   help="override one of a method's parameters (repeatable), e.g. texture_gan.steps=600 "
                        "(and of the --diad row: diad.steps=300); "
                        "VALUE is read as JSON, else as a string")
    p.add_argument("--transfer-from", metavar="CATEGORY",
                   help="also run every defect-learning method fitted on CATEGORY's few-shot defects and drawn on this "
                        "category's good images (runs <method>@CATEGORY); detector and test set stay this category's")
    p.add_argument("--transfer-types", type=_csv(str), default=[], metavar="TYPE,...",
                   help="the transferred methods learn only these defect types (of --transfer-from, or without it of "
                        "--category itself, e.g. Magnetic Tile: --transfer-types Crack)")
    p.add_argument("--threads", type=_at_least(1),
                   help="torch CPU threads of each unit of work (default: torch's with one local worker, else 1)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the units of work run: local (default; --workers processes on this machine) or ray "
                        "(a Ray cluster, see --address; pip install defectlab[distributed])")
    p.add_argument("--workers", type=_at_least(1), default=1, help="local worker processes (default 1: this process)")
    p.add_argument("--address", metavar="auto|HOST:PORT",
                   help="with --executor ray: the cluster's head node (auto: the one started here with `ray start "
                        "--head`; default: a new local cluster)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    return p


def _method_param(text: str) -> tuple[str, str, object]:
    key, sep, value = text.partition("=")
    method, dot, name = key.partition(".")
    if not (sep and dot and method and name):
        raise argparse.ArgumentTypeError(f"expected METHOD.NAME=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return method.strip(), name.strip(), parsed


def _method_params(args) -> dict:
    out: dict[str, dict] = {}
    for method, name, value in getattr(args, "method_param", None) or []:
        out.setdefault(method, {})[name] = value
    return out


def add_benchmark_parser(subparsers) -> argparse.ArgumentParser:
    """Register `defectlab benchmark` on a CLI's subparsers."""
    from . import __doc__ as protocol

    p = subparsers.add_parser("benchmark", help="train a detector on each method's synthetic defects and test on real ones",
                              description=protocol, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(handler=main)
    return p


add_parser = add_benchmark_parser


def _embedded_counts(args) -> dict:
    counts = getattr(args, "embedded_counts", None)
    if not counts:
        return {}
    if args.format != "embedded" or len(counts) != 3:
        raise DefectlabError("--embedded-counts: three numbers (TRAIN,GOOD,DEFECT), only with --format embedded")
    return dict(zip(("n_train", "n_test_good", "n_test_defect"), counts))


def command_line(args: argparse.Namespace) -> str:
    """The command, rebuilt from the parsed arguments, for results.md."""
    import shlex

    parts = ["defectlab", "benchmark"]
    for flag, value in (("--data", args.data), ("--format", args.format), ("--category", args.category),
                        ("--methods", ",".join(args.methods)), ("--shots", args.shots),
                        ("--seeds", ",".join(map(str, args.seeds))), ("--size", args.size),
                        ("--detector", args.detector), ("--detector-steps", _steps_value(args)),
                        ("--real-share", getattr(args, "real_share", None)),
                        ("--n-synthetic", args.n_synthetic), ("--quality", args.quality),
                        ("--quality-images", args.quality_images), ("--threads", args.threads),
                        ("--embedded-counts", ",".join(map(str, args.embedded_counts or [])) or None),
                        ("--transfer-from", getattr(args, "transfer_from", None)),
                        ("--transfer-types", ",".join(getattr(args, "transfer_types", None) or []) or None),
                        ("--out", args.out)):
        if value not in (None, ""):
            parts += [flag, str(value)]
    for method, name, value in getattr(args, "method_param", None) or []:
        parts += ["--method-param", f"{method}.{name}={value if isinstance(value, str) else json.dumps(value)}"]
    parts += ["--squash"] if args.squash else []
    parts += ["--no-patchcore"] if args.no_patchcore else []
    parts += ["--diad"] if getattr(args, "diad", False) else []
    parts += ["--overwrite"] if args.overwrite else []
    return shlex.join(parts)


def _steps_value(args: argparse.Namespace) -> int:
    """The detector's steps: --detector-steps, else the deprecated --steps, else the default."""
    new, old = getattr(args, "detector_steps", None), getattr(args, "steps", None)
    return new if new is not None else old if old is not None else DETECTOR_STEPS


def _detector_steps(args: argparse.Namespace) -> int:
    """`_steps_value`, after refusing --steps and --detector-steps with different values and warning that --steps
    (confused with a synthesis method's own `steps` parameter) is deprecated."""
    new, old = getattr(args, "detector_steps", None), getattr(args, "steps", None)
    if old is not None:
        if new is not None and new != old:
            raise DefectlabError(f"--steps {old} and --detector-steps {new}: --steps is the deprecated name of "
                                 "--detector-steps; give --detector-steps only")
        _warn_deprecated("--steps is deprecated and will be removed: use --detector-steps (the detector's training "
                         "steps; a synthesis method's own steps are --method-param METHOD.steps=N)")
    return _steps_value(args)


def _warn_deprecated(message: str) -> None:
    """A DeprecationWarning that a command-line user sees: Python shows one by default only when it is raised in
    __main__, so unless warnings were configured (-W, PYTHONWARNINGS) this one is always shown."""
    with warnings.catch_warnings():
        if not sys.warnoptions:
            warnings.simplefilter("always", DeprecationWarning)
        warnings.warn(message, DeprecationWarning, stacklevel=3)


def main(args: argparse.Namespace) -> int:
    steps = _detector_steps(args)
    results = run_benchmark(args.data, args.category, args.methods, args.out, format=args.format, shots=args.shots,
                            seeds=args.seeds, size=args.size, steps=steps, n_synthetic=args.n_synthetic,
                            detector_name=args.detector, real_share=args.real_share, keep_aspect=not args.squash, patchcore=not args.no_patchcore,
                            diad=args.diad, quality=args.quality, quality_images=args.quality_images, overwrite=args.overwrite, embedded=_embedded_counts(args),
                            threads=args.threads, method_params=_method_params(args),
                            command=command_line(args), transfer_from=args.transfer_from,
                            transfer_types=args.transfer_types, executor=args.executor, workers=args.workers,
                            address=args.address)
    out = Path(args.out)
    print((out / "results.md").read_text())
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'pr_curves.png'}, {out / 'detections.png'} "
          f"({results['wall_seconds']:.0f} s)")
    return 0
