"""`python -m defectlab.benchmark ...`: the benchmark command line without the `defectlab` front end."""
import argparse
import sys

from ..cli import run_handler
from . import __doc__ as protocol
from .cli import add_arguments, main

if __name__ == "__main__":  # --workers N starts fresh processes that import this module again: only the first runs
    parser = add_arguments(argparse.ArgumentParser(prog="python -m defectlab.benchmark", description=protocol,
                                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    sys.exit(run_handler(main, parser.parse_args(), prog="python -m defectlab.benchmark"))
