"""The model-placement flags shared by ``record``, ``evaluate``, ``explain`` and ``bake``: ``--dtype``,
``--device-map``, ``--max-memory``, ``--offload-folder`` (defaults and help from ``config.ModelSection``)."""
from __future__ import annotations

import argparse
from typing import Any, get_args

from ..config import ModelSection

DTYPE_CHOICES = get_args(ModelSection.model_fields["dtype"].annotation)


def add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    fields = ModelSection.model_fields
    parser.add_argument("--dtype", default=fields["dtype"].default, choices=DTYPE_CHOICES, help=fields["dtype"].description)
    parser.add_argument("--device-map", default=None, metavar="MAP", help=fields["device_map"].description)
    parser.add_argument("--max-memory", nargs="+", default=None, metavar="DEVICE=SIZE", help=fields["max_memory"].description)
    parser.add_argument("--offload-folder", default=None, metavar="DIR", help=fields["offload_folder"].description)


def placement(args: argparse.Namespace) -> dict[str, Any]:
    """``load_model`` keywords of the placement flags."""
    return {"dtype": args.dtype, "device_map": args.device_map, "max_memory": args.max_memory,
            "offload_folder": args.offload_folder}
