"""Command line: ``python -m mllm_ood <command> ...``.

Each command lives in its own module exposing ``add_parser(subparsers)``, which registers the
sub-command and sets ``func`` (called with the parsed arguments, returns an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .validation import ParameterError

# Modules that contribute sub-commands, in the order they are listed in --help.
COMMAND_MODULES = ["mllm_ood.runner", "mllm_ood.data.world", "mllm_ood.paper_b.cli"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mllm_ood", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ParameterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
