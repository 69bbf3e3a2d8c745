"""fnet-dist: functional networks of neurons in LLMs, found with ICA on Dask and edited under HF or vLLM.

In Python, ``import fnet_dist as fnet``: ``fnet.open_run("runs/default")``, ``fnet.load_model(...)``, ``with
fnet.inhibit(model, run.mask("news/5")): ...``, ``fnet.record(model, texts)``, ``fnet.IndividualICA``,
``fnet.CanICA``, ``fnet.score(...)``, ``fnet.plot_zmap(...)`` (``fnet_dist.api``, imported on first use so that the
``fnet`` command line starts fast).

Stages (each a module and an ``fnet`` subcommand): ``record`` (activations store), ``decompose``
(networks store), ``match`` (consistency tables), ``edit`` / ``evaluate`` (masks, hooks, baked
checkpoints, lm-eval), ``report``; ``pipeline`` runs them all from a config.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"
_API = ("CanICA", "Edit", "IndividualICA", "LoadedModel", "NeuronMask", "Run", "add", "amplify", "edit", "inhibit",
        "load_corpus", "load_model", "open_run", "plot_counterparts", "plot_zmap", "record", "score")
__all__ = ["CanICA", "Edit", "IndividualICA", "LoadedModel", "NeuronMask", "Run", "__version__", "add", "amplify", "edit",
           "inhibit", "load_corpus", "load_model", "open_run", "plot_counterparts", "plot_zmap", "record", "score"]  # _API and the version


def __getattr__(name: str) -> Any:
    """The public API's names (``fnet_dist.api``), imported when first asked for."""
    if name in _API:
        return getattr(importlib.import_module("fnet_dist.api"), name)
    raise AttributeError(f"module 'fnet_dist' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


class _Package(types.ModuleType):
    """``fnet_dist`` whose API names win over its subpackages of the same name: ``fnet.record`` stays the in-memory
    recording after the record stage (the package ``fnet_dist.record``, imported by its dotted path) is loaded."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return  # the import system binds the subpackage to its parent here; the API's name is resolved lazily
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
