"""The ``fnet`` command line: one subcommand per pipeline stage.

Each subcommand lives in ``fnet_dist/commands/<name>.py`` (loaded by name from ``COMMANDS``) and offers ``HELP``
(one line), ``add_arguments(parser)`` and ``run(args) -> int``. The package imports its own modules at the top;
heavy third-party packages (torch, transformers, Dask, lm-eval, zarr, xarray, matplotlib) are imported where they
are used, so that ``fnet --help`` stays fast.

Errors: an ``FnetError`` (bad input: exit 2; a failure of the environment or a stage: exit 1), and the failures
that are not bugs — object storage refusing credentials, a damaged store chunk, a full disk or a read-only folder —
are printed as ``error: …`` lines (one per problem, bounded), without a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from . import __version__
from .core.errors import MESSAGE_CHARS, FnetError, environment_failure
from .store.integrity import damage_error
from .store.storage import access_error

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = ("record", "plant", "decompose", "match", "explain", "evaluate", "bake", "run", "config", "compare-paper")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fnet",
        description="Find, match and edit functional networks of neurons in LLMs (record → decompose → match → evaluate).",
    )
    parser.add_argument("--version", action="version", version=f"fnet-dist {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log other libraries too (-v), or debug output (-vv)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"fnet_dist.commands.{name.replace('-', '_')}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # fnet's own progress at INFO; other libraries (distributed, transformers) only from -v on.
    logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("fnet_dist").setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO)
    if not args.verbose:  # distributed sets its loggers to INFO from Dask's config when imported (here and in workers);
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # the hub client warns on each retry
        logging.getLogger("distributed").setLevel(logging.WARNING)
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")  # read when huggingface_hub is imported (later, lazily)
    try:
        return int(args._run(args) or 0)
    except FnetError as exc:
        return _fail(exc)
    except Exception as exc:
        error = access_error(exc) or damage_error(exc) or environment_failure(exc)
        if error is None:
            raise
        return _fail(error)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


def _fail(error: FnetError) -> int:
    """Print ``error`` as ``error: …`` lines (one per problem, each at most ``MESSAGE_CHARS``); its exit status."""
    for line in str(error).strip().splitlines() or [type(error).__name__]:
        print(f"error: {line[:MESSAGE_CHARS]}", file=sys.stderr)
    return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
