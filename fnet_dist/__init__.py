"""fnet-dist: functional networks of neurons in LLMs, found with ICA on Dask and edited under HF or vLLM.

Stages (each a module and an ``fnet`` subcommand): ``record`` (activations store), ``decompose``
(networks store), ``match`` (consistency tables), ``edit`` / ``evaluate`` (masks, hooks, baked
checkpoints, lm-eval), ``report``; ``pipeline`` runs them all from a config.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
