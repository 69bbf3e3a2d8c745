"""A baked checkpoint's folder and provenance, for both bake paths (``fnet_dist.model.bake``,
``fnet_dist.model.bake_stream``).

- ``EDIT_FILE`` (``fnet_edit.json``) and ``MASK_FILE`` (``fnet_mask.npz``): what a baked checkpoint holds beside
  the model's own files.
- ``edit_provenance(info, arch, mask, edit, method)``: the contents of ``fnet_edit.json``.
- ``write_provenance(folder, provenance, mask)``: both files into a checkpoint folder.
- ``write_checkpoint_folder(out, overwrite, fill)``: fill a staging folder and swap it in at ``out`` when complete.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from .. import __version__
from ..store.outputs import replacing
from .architectures import Architecture
from .edit import Edit
from .masks import NeuronMask

__all__ = ["EDIT_FILE", "MASK_FILE", "edit_provenance", "write_checkpoint_folder", "write_provenance"]

EDIT_FILE = "fnet_edit.json"
MASK_FILE = "fnet_mask.npz"


def edit_provenance(info: dict, arch: Architecture, mask: NeuronMask, edit: Edit, method: str = "loaded") -> dict:
    return {
        "format": "fnet-edit", "version": 1, "package_version": __version__, "bake_method": method,
        "source_model": info, "architecture": arch.name,
        "bake_module": arch.bake_module, "bake_kind": arch.bake_kind, "edit": edit.to_dict(),
        "mask": {"name": mask.name, "shape": list(mask.values.shape), "count": mask.count, "meta": mask.meta,
                 "file": MASK_FILE},
    }


def write_checkpoint_folder(out: str | os.PathLike, overwrite: bool, fill: Callable[[Path], None]) -> str:
    """Run ``fill(folder)`` on the staging folder ``outputs.replacing`` gives for ``out`` and swap it in when
    complete: an interrupted bake never leaves a checkpoint that looks finished nor harms the old one, and
    ``out`` may hold an earlier baked checkpoint (replaced only with ``overwrite``), never anything else."""
    out = Path(os.path.expanduser(os.fspath(out))).resolve()
    with replacing(str(out), "checkpoint", overwrite=overwrite) as staged:
        fill(Path(staged))
    return str(out)


def write_provenance(folder: Path, provenance: dict, mask: NeuronMask) -> None:
    """``fnet_mask.npz`` and ``fnet_edit.json`` into a baked checkpoint ``folder``."""
    mask.save(str(folder / MASK_FILE))
    (folder / EDIT_FILE).write_text(json.dumps(provenance, indent=2, default=str) + "\n")
