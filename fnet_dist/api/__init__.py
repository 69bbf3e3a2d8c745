"""The public Python API, ``import fnet_dist as fnet`` (these names are re-exported lazily by ``fnet_dist``).

Runs (``runs``): ``open_run(path) -> Run`` — config, stage status, ``networks(corpus)`` / ``activations(corpus)`` as
xarray Datasets (templates labelled from 1, as in the report), ``zmap("news/5")``, ``mask("news/5",
without_massive=False)``, ``top_mask(percent)``, ``findings`` / ``results`` / ``tables`` as DataFrames.

Models and edits (``editing``): ``load_model(spec)``; ``with inhibit(model, mask): ...``, ``amplify(model, mask,
factor)``, ``add(model, mask, value)``, ``edit(model, mask, Edit(...))`` on any HF causal LM; ``NeuronMask`` and
``Edit`` (``fnet_dist.model``).

Your own data: ``load_corpus(spec)``, ``record(model, texts) -> xarray.Dataset`` (``recording``); ``IndividualICA`` and ``CanICA``, the
stages' estimators, scikit-learn style (``fit``, ``transform``, ``components_``); ``score(model, tasks, masks)``
(lm-eval, ``scoring``).

Figures (``plots``): ``plot_zmap(run.zmap("news/5"))``, ``plot_counterparts(run, "news/5")``.
"""
from __future__ import annotations

from ..decompose.canica import GroupCanICA as CanICA
from ..decompose.individual import IndividualICA
from ..model.edit import Edit
from ..model.loading import LoadedModel, load_model
from ..model.masks import NeuronMask
from .editing import add, amplify, edit, inhibit
from .plots import plot_counterparts, plot_zmap
from .recording import load_corpus, record
from .runs import Run, open_run
from .scoring import score

__all__ = ["CanICA", "Edit", "IndividualICA", "LoadedModel", "NeuronMask", "Run", "add", "amplify", "edit", "inhibit",
           "load_corpus", "load_model", "open_run", "plot_counterparts", "plot_zmap", "record", "score"]
