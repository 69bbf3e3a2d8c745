"""The model-placement flags shared by ``record``, ``evaluate``, ``explain`` and ``bake``: ``--dtype``,
``--device-map``, ``--max-memory``, ``--offload-folder``, generated from ``config.ModelSection`` (its defaults and
help text; values checked by the section)."""
from __future__ import annotations

import argparse
from typing import Any

from ..core.config import ModelSection
from ..flags import add_section, section_from

PLACEMENT_FIELDS = ("dtype", "device_map", "max_memory", "offload_folder")


def add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    add_section(parser, ModelSection, only=PLACEMENT_FIELDS)


def placement(args: argparse.Namespace) -> dict[str, Any]:
    """``load_model`` keywords of the placement flags."""
    model = section_from(args, ModelSection)
    return {name: getattr(model, name) for name in PLACEMENT_FIELDS}
