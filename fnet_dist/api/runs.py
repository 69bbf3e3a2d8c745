"""A finished (or partial) run folder in Python: ``open_run(path) -> Run``.

- ``Run.config``: the run's ``PipelineConfig`` (its ``config.yaml``); ``Run.status``: one row per stage of
  ``run.json`` (status, seconds, finished).
- ``Run.networks(corpus)``, ``Run.activations(corpus)``: the stores as lazy ``xarray.Dataset``s, templates labelled
  from 1 (``template`` 1..k, as in the report: ``news/5`` is ``template=5``), ``layer`` and ``neuron`` coordinates
  from 0, and each variable's ``description`` from its schema (``storage_schemas``).
- ``Run.zmap(name)``: a template's z-map as a ``(layer, neuron)`` DataArray; ``Run.mask(name, without_massive=)``:
  its network as a ``NeuronMask``; ``Run.top_mask(percent, corpus)``: the top percent of neurons by |z|. Names are
  the report's (``fnet_dist.core.names``): ``news/5``, ``news/all``.
- ``Run.findings``, ``Run.results``, ``Run.tables``: the findings, the evaluation's tidy rows and every table of
  the run (the paper's Tables 1-13 among them) as pandas DataFrames.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from storage_schemas import ACTIVATIONS, NETWORKS, StoreSchema

from ..core.config import PipelineConfig, load_config
from ..core.errors import InputError
from ..core.layout import RunLayout
from ..core.names import condition_names, network_name, parse_network_name
from ..core.networks import binarize
from ..model.masks import NeuronMask
from ..report.findings import read_table
from ..store.storage import open_store

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

__all__ = ["Run", "open_run"]

_FINDING_COLUMNS = ["id", "verdict", "claim", "test", "effect", "units", "interval_low", "interval_high", "p_value",
                    "alpha", "n_draws", "n_examples", "reason", "conditions", "tables"]


def open_run(path: str | Path) -> Run:
    """The run folder at ``path`` (written by ``fnet run``; its ``config.yaml`` says where its stores are)."""
    root = Path(path).expanduser()
    if not (root / "config.yaml").is_file():
        raise InputError(f"{str(path)!r} is not a run folder (no config.yaml): pass the --out of an fnet run, "
                         f"e.g. runs/default after make demo")
    return Run(root.resolve(), load_config(root / "config.yaml"))


def _described(ds: xr.Dataset, schema: StoreSchema) -> xr.Dataset:
    """``ds`` with each schema variable's doc as its ``description`` attr and layer / neuron coordinates."""
    for name, spec in schema.variables.items():
        if name in ds.variables and spec.doc:
            ds[name].attrs["description"] = spec.doc
    coords = {dim: np.arange(ds.sizes[dim]) for dim in ("layer", "neuron") if dim in ds.dims}
    return ds.assign_coords(coords)


class Run:
    """A run folder: its config, stage status, stores, tables and findings (see the module docstring)."""

    def __init__(self, root: Path, config: PipelineConfig) -> None:
        self.root, self.config = root, config
        self.layout = RunLayout(root, config.stores)

    # --- what the run is --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def corpora(self) -> list[str]:
        return list(self.config.corpora)

    @property
    def status(self) -> pd.DataFrame:
        """One row per stage: ``stage``, ``status`` (done, failed, incomplete, running), ``seconds``, ``finished``."""
        import pandas as pd

        path = self.layout.record_file
        stages = json.loads(path.read_text()).get("stages", {}) if path.is_file() else {}
        return pd.DataFrame([{"stage": name, "status": s.get("status"), "seconds": s.get("seconds"),
                              "finished": s.get("finished"), "error": s.get("error")} for name, s in stages.items()],
                            columns=["stage", "status", "seconds", "finished", "error"])

    # --- stores -----------------------------------------------------------------------------------
    def _corpus(self, corpus: str) -> str:
        if corpus not in self.config.corpora:
            raise InputError(f"run {self.name!r} has no corpus {corpus!r}; its corpora: {', '.join(self.corpora)}")
        return corpus

    def networks(self, corpus: str) -> xr.Dataset:
        """The networks store of ``corpus``: ``group_map(template, layer, neuron)`` z-maps with ``template``
        labelled 1..k (the report's numbers), individual maps and sources, every variable described."""
        ds = open_store(self.layout.networks(self._corpus(corpus)), NETWORKS)
        ds = ds.rename({"component": "template"}).assign_coords(template=np.arange(1, ds.sizes["component"] + 1))
        return _described(ds, NETWORKS)

    def activations(self, corpus: str) -> xr.Dataset:
        """The activations store of ``corpus``: ``activation(sample, token, layer, neuron)`` (lazy), ``n_tokens``,
        ``token_id``, ``text``, ``split``, every variable described."""
        return _described(open_store(self.layout.activations(self._corpus(corpus)), ACTIVATIONS), ACTIVATIONS)

    def zmap(self, name: str) -> xr.DataArray:
        """The z-map of network ``name`` (``news/5``): a ``(layer, neuron)`` float32 DataArray."""
        corpus, template = parse_network_name(name)
        if template is None:
            raise InputError(f"{name!r} names every template of {corpus}; a z-map is one template's, e.g. {corpus}/1")
        ds = self.networks(corpus)
        if template not in ds["template"].values:
            raise InputError(f"{name!r}: {corpus} has templates 1..{ds.sizes['template']}")
        zmap = ds["group_map"].sel(template=template).load()
        return zmap.assign_attrs(name=network_name(corpus, template), threshold=self.config.match.threshold,
                                 two_sided=self.config.match.two_sided)

    def massive_mask(self) -> np.ndarray:
        """The massive-activation channels the match stage found: bool ``(n_layers, d_model)``."""
        path = self.layout.match.massive_mask
        if not path.is_file():
            raise InputError(f"run {self.name!r} has no {path.name} yet: run its match stage (with anatomy) first")
        return np.load(path, allow_pickle=False)

    def mask(self, name: str, *, without_massive: bool = False) -> NeuronMask:
        """The network ``name`` (``news/5``, or ``news/all`` for every template united) at the run's rule
        (``match.threshold``, ``match.two_sided``) as a ``NeuronMask`` of shape (n_layers, d_model);
        ``without_massive``: less the massive-activation channels (the report's "news/5 without massive channels")."""
        corpus, template = parse_network_name(name)
        ds = open_store(self.layout.networks(self._corpus(corpus)), NETWORKS)
        count = ds.sizes["component"]
        if template is not None and not 1 <= template <= count:
            raise InputError(f"{name!r}: {corpus} has templates 1..{count} (numbered from 1, as in the report)")
        chosen = list(range(count)) if template is None else [template - 1]
        match = self.config.match
        mask = NeuronMask.from_networks(ds, chosen, threshold=match.threshold, two_sided=match.two_sided)
        label = network_name(corpus, "all" if template is None else template)
        if without_massive:
            return NeuronMask(mask.values & ~self.massive_mask(), f"{label} without massive channels",
                              dict(mask.meta, part="without massive channels"))
        return NeuronMask(mask.values, label, mask.meta)

    def top_mask(self, percent: float | None = None, corpus: str | None = None) -> NeuronMask:
        """The top ``percent`` % of neurons by max |z| over ``corpus``'s templates (defaults: the run's
        ``evaluate.top_percent`` and first evaluated corpus): the report's ``top5@news``."""
        corpus = corpus or self.config.evaluation_corpora()[0]
        percent = self.config.evaluate.top_percent if percent is None else percent
        ds = open_store(self.layout.networks(self._corpus(corpus)), NETWORKS)
        mask = NeuronMask.top_percent(ds, percent)
        return NeuronMask(mask.values, f"top{percent:g}@{corpus}", mask.meta)

    def network(self, name: str) -> xr.DataArray:
        """The network ``name`` as a boolean ``(layer, neuron)`` DataArray (the z-map thresholded)."""
        zmap = self.zmap(name)
        return zmap.copy(data=binarize(zmap.values, self.config.match.threshold, self.config.match.two_sided))

    # --- tables -----------------------------------------------------------------------------------
    @property
    def findings(self) -> pd.DataFrame:
        """One row per finding of ``report/findings.json``: verdict, claim, test, effect and interval, p-value,
        alpha, draws / examples, reason, the conditions (display names) and tables it rests on."""
        import pandas as pd

        path = self.layout.report.findings
        if not path.is_file():
            raise InputError(f"run {self.name!r} has no findings yet ({path}): run its report stage")
        rows = []
        for f in json.loads(path.read_text(encoding="utf-8"))["findings"]:
            low, high = f.get("interval") or (None, None)
            rows.append({**{k: f.get(k) for k in _FINDING_COLUMNS}, "interval_low": low, "interval_high": high,
                         "conditions": condition_names(f.get("conditions", [])), "tables": f.get("tables", [])})
        return pd.DataFrame(rows, columns=_FINDING_COLUMNS)

    @property
    def results(self) -> pd.DataFrame:
        """The evaluation's tidy rows (``evaluate/results.csv``): condition × task × metric with the condition's fields."""
        import pandas as pd

        path = self.layout.evaluate.results
        if not path.is_file():
            raise InputError(f"run {self.name!r} has no evaluation results yet ({path})")
        return pd.read_csv(path)

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table of the run by name: the match tables (``consistency``, ``cross_corpus``, …) and the
        evaluation's paper-shaped tables (``table3_networks_news``, …; controls' as ``controls/…``)."""
        folders = [("", self.layout.match.folder), ("", self.layout.evaluate.tables),
                   ("controls/", self.layout.controls.tables)]
        return {f"{prefix}{path.stem}": read_table(path)   # an empty table (no template that may count) is empty
                for prefix, folder in folders if folder.is_dir() for path in sorted(folder.glob("*.csv"))}

    # --- display ----------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Run({self.name!r}, {str(self.root)!r}, corpora={self.corpora})"

    def _repr_html_(self) -> str:
        esc = html.escape
        status = self.status
        stages = ", ".join(f"{r.stage}: {r.status}" for r in status.itertuples()) or "not run"
        verdicts = ""
        if self.layout.report.findings.is_file():
            counts = self.findings["verdict"].value_counts()
            verdicts = ", ".join(f"{n} {v}" for v, n in counts.items())
        page = self.layout.report.page
        rows = [("run", f"{esc(self.name)} <code>{esc(str(self.root))}</code>"), ("model", esc(self.config.model.id)),
                ("corpora", esc(", ".join(f"{k} ({v.spec})" for k, v in self.config.corpora.items()))),
                ("network rule", f"{'|z|' if self.config.match.two_sided else 'z'} &gt; {self.config.match.threshold:g}"),
                ("stages", esc(stages)), ("findings", esc(verdicts or "none yet")),
                ("report", f'<a href="{esc(page.as_uri())}">{esc(str(page))}</a>' if page.is_file() else "not written")]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>" for k, v in rows)
        return f"<table>{body}</table>"

