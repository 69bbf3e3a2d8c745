"""``fnet config show CONFIG [--set KEY=VALUE ...]``: the resolved pipeline config, every default filled in."""
from __future__ import annotations

import argparse

import yaml

from .run import add_config_arguments, config_from_args

HELP = "print a pipeline config resolved: its file, the --set overrides and every default, as YAML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help=HELP, description=HELP)
    add_config_arguments(show)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True), end="")
    return 0
