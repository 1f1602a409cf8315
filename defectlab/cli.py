"""The `defectlab` command line: one sub-command per task.

Adding a sub-command: write `add_<name>_parser(subparsers)` that calls `subparsers.add_parser(...)`,
declares its arguments and sets `handler=<function(args) -> int>` with `set_defaults`; then list
it in `SUBCOMMANDS` (always present) or `OPTIONAL_SUBCOMMANDS` (module, function) for modules that
may not be installed. A handler raises `DefectlabError` for bad input: `main` prints
`defectlab: error: <message>` and returns 2 (also for an `OSError` such as an unwritable folder).
"""
from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import json
import sys
from typing import Callable, Sequence

from . import __version__
from .errors import DefectlabError


def add_export_parser(subparsers) -> None:
    from .export.exporter import FORMATS
    from .export.options import SEGMENTATION

    p = subparsers.add_parser("export", help="export a defect data set as COCO, YOLO or a clean MVTec copy",
                              description="Export a data set written by DatasetWriter (or any MVTec-layout "
                                          "set) for detector training. The output appears complete or not at all.")
    p.add_argument("--input", required=True, metavar="DIR", help="data set folder (MVTec layout, manifest.jsonl optional)")
    p.add_argument("--format", required=True, choices=FORMATS, help="output format")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist unless --overwrite)")
    p.add_argument("--class-from", default="label", choices=("label", "method"),
                   help="class names from the defect type (label) or the synthesis method (manifest)")
    p.add_argument("--merge-distance", type=int, default=0, metavar="K",
                   help="join defect components separated by at most K background pixels into one instance")
    p.add_argument("--segmentation", default="auto", choices=SEGMENTATION,
                   help="COCO masks: RLE for instances with holes and polygons otherwise (auto), or always one kind")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from .export import export

    summary = export(args.input, args.format, args.out, class_from=args.class_from,
                     merge_distance=args.merge_distance, overwrite=args.overwrite, segmentation=args.segmentation)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        n_empty = summary["empty_defect_masks"]
        empty = (f"; {n_empty} defect image{'s have empty masks' if n_empty > 1 else ' has an empty mask'}: exported "
                 "without annotations" if n_empty else "")
        print(f"exported {summary['images']} images ({summary['defect_images']} defect, {summary['good_images']} good), "
              f"{summary['instances']} instances of {len(summary['classes'])} classes as {summary['format']} "
              f"to {summary['out']}{empty}")
    return 0


ADABLDM_STEPS = {"train": "train (or resume) an AdaBLDM run folder on a few-shot split",
                 "generate": "write defects made by a trained AdaBLDM run as a data set, with a gallery"}


def add_adabldm_parser(subparsers) -> None:
    """`defectlab adabldm train|generate ...`. Each step's options are declared once, in
    `defectlab.adabldm.<step>.build_parser` (also run as `python -m defectlab.adabldm.<step>`): here a step takes
    its arguments whole (a parser whose prefix character no argument uses sees them all as one list) and hands
    them over, so torch is imported only when a step runs, and `defectlab adabldm train --help` is the step's help."""
    p = subparsers.add_parser("adabldm", help="AdaBLDM: train a run folder, or generate defects with one",
                              description="AdaBLDM (blended latent diffusion with online adaptation): "
                                          "`defectlab adabldm STEP --help` lists a step's options.")
    steps = p.add_subparsers(dest="step", metavar="STEP", required=True)
    for step, text in ADABLDM_STEPS.items():
        s = steps.add_parser(step, help=text, add_help=False, prefix_chars="\0",
                             usage=f"defectlab adabldm {step} [-h] [OPTIONS ...]")
        s.add_argument("args", nargs=argparse.REMAINDER)
        s.set_defaults(handler=functools.partial(run_adabldm, step))


def run_adabldm(step: str, args: argparse.Namespace) -> int:
    module = importlib.import_module(f"defectlab.adabldm.{step}")
    return module.main(args.args, prog=f"defectlab adabldm {step}")


SUBCOMMANDS: tuple[Callable, ...] = (add_export_parser, add_adabldm_parser)
# (module, function): registered when the module is installed; another engineer's sub-commands go here
OPTIONAL_SUBCOMMANDS: tuple[tuple[str, str], ...] = (("defectlab.benchmark", "add_benchmark_parser"),
                                                      ("defectlab.benchmark.merge", "add_merge_parser"),
                                                      ("defectlab.benchmark.prior", "add_prior_parser"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="defectlab", description="Industrial defect synthesis tools.")
    parser.add_argument("--version", action="version", version=f"defectlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    for module, function in OPTIONAL_SUBCOMMANDS:
        add = _optional(module, function)
        if add is not None:
            add(subparsers)
    return parser


def _optional(module: str, function: str) -> Callable | None:
    """The parser-adding function of an optional module; a module that fails to import only loses
    its own sub-command (with a warning), the others keep working."""
    try:
        if importlib.util.find_spec(module) is None:
            return None
        return getattr(importlib.import_module(module), function, None)
    except Exception as exc:  # noqa: BLE001 - a broken optional module must not break `export`
        print(f"defectlab: warning: '{module}' could not be loaded ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None


def run_handler(handler: Callable, args, prog: str = "defectlab") -> int:
    """Call a command's handler; bad input, a file-system refusal (permissions, a full disk) or a request
    too large for memory ends as one line `<prog>: error: ...` and exit status 2, never a traceback."""
    try:
        return int(handler(args) or 0)
    except DefectlabError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"{prog}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{prog}: error: out of memory; lower the sizes or counts asked for", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_handler(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
