"""The structure statistics recomputed over a grid of the network rule, from the stored z-maps.

The paper's choices — |z| > 3.6, two-sided, counterpart IoU > 0.2 — are one cell of a grid: each threshold of
``match.sensitivity_thresholds``, one- and two-sided, and (for the counterparts) each cut-off of
``match.sensitivity_ious``. In every cell the same tables as the stage's own are computed (with
``match.sensitivity_permutations`` random networks per null kind), so the report judges each structure finding
there by the same functions and shows whether a verdict survives another choice.

- ``sensitivity_tables(urls, section, massive, first_token, seed) -> dict[str, DataFrame]``: ``counterparts``
  (``counterpart_table`` rows), ``samples`` (``counterpart_samples`` rows), ``nulls`` (the recurrence summary's and
  the split-half reproducibility's null rows, column ``claim``) and ``halves`` (split-half rows), each with the
  cell's ``threshold``, ``two_sided`` and (counterparts) ``iou`` columns; ``write_sensitivity(tables, out)``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.config import MatchSection
from ..core.networks import flatten_networks
from .halves import halves_tables, split_maps, split_templates
from .io import FILES, load_networks, write_file
from .iou import pairwise_iou
from .nulls import (
    CHANCE_LEVEL,
    NULL_KINDS,
    CounterpartNull,
    corpus_maps,
    counterpart_null,
    counterpart_table,
    frequency_strata,
    neuron_frequency,
    recurrence_summary,
)

__all__ = ["sensitivity_tables", "write_sensitivity"]

TABLES = ("counterparts", "samples", "nulls", "halves")


def _counterpart_rows(name: str, corpus, iou: np.ndarray, cut: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(consistency rows, per-sample rows) of one corpus at one IoU cut-off; iou (n_templates, n_maps)."""
    per_sample = (iou > cut).reshape(len(iou), len(corpus.samples), corpus.n_components).sum(axis=2)
    templates = np.arange(1, len(iou) + 1)
    consistency = pd.DataFrame({"corpus": name, "template": templates, "counterparts": (iou > cut).sum(axis=1),
                                "samples_with_counterpart": (per_sample > 0).sum(axis=1), "samples": len(corpus.samples)})
    t, s = np.meshgrid(templates, np.arange(len(corpus.samples)), indexing="ij")
    samples = pd.DataFrame({"corpus": name, "template": t.ravel(),
                            "sample": np.asarray(corpus.samples, dtype=object)[s.ravel()] if corpus.samples else [],
                            "counterparts": per_sample.ravel()})
    return consistency, samples


def sensitivity_tables(urls: list[str], section: MatchSection, massive: np.ndarray, first_token: dict[str, np.ndarray],
                       seed: int, halves_maps: list | None = None) -> dict[str, pd.DataFrame]:
    """The grid's tables (see the module). first_token: {corpus: bool (n_templates,)} (threshold-free: judged on the
    templates' sources); halves_maps: ``split_maps`` of each of ``urls`` when already read."""
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}
    halves_maps = halves_maps if halves_maps is not None else [split_maps(url) for url in urls]
    draws = section.sensitivity_permutations
    for threshold in section.sensitivity_thresholds:
        for two_sided in (True, False):
            cell = section.model_copy(update={"threshold": float(threshold), "two_sided": two_sided})
            keys = {"threshold": float(threshold), "two_sided": two_sided}
            corpora = {c.name: c for c in (load_networks(url, cell) for url in urls)}
            frequency = {}
            for name, corpus in corpora.items():
                maps = corpus_maps(corpus)
                frequency[name] = neuron_frequency(maps, corpus.shape)
                flat = flatten_networks(corpus.templates)
                iou = pairwise_iou(flat, maps) if maps.shape[0] else np.zeros((len(flat), 0))
                strata = {"uniform": None, "frequency": frequency_strata(frequency[name])}
                nulls = {kind: counterpart_null(corpus.templates, maps, section.sensitivity_ious, draws, seed,
                                                n_components=corpus.n_components, strata=strata[kind])
                         for kind in NULL_KINDS}
                for c, cut in enumerate(section.sensitivity_ious):
                    consistency, samples = _counterpart_rows(name, corpus, iou, cut)
                    at_cut = {name: {k: CounterpartNull(n.counterparts[c:c + 1], n.samples[c:c + 1]) for k, n in nulls.items()}}
                    frames["counterparts"].append(counterpart_table(consistency, at_cut, seed).assign(**keys, iou=cut))
                    frames["samples"].append(samples.assign(**keys, iou=cut))
            templates = {n: c.templates for n, c in corpora.items()}
            _, summary_null = recurrence_summary(templates, massive, first_token, frequency, draws, seed, CHANCE_LEVEL)
            frames["nulls"].append(summary_null.assign(claim="recurrence", **keys))
            split = [split_templates(url, cell, massive, maps=m) for url, m in zip(urls, halves_maps)]
            halves, halves_null = halves_tables(split, frequency, massive, draws, seed, CHANCE_LEVEL)
            frames["nulls"].append(halves_null.assign(claim="reproducibility", **keys))
            frames["halves"].append(halves.assign(**keys))
    return {name: pd.concat([f for f in parts if len(f)], ignore_index=True) if any(len(f) for f in parts)
            else pd.DataFrame() for name, parts in frames.items()}


def write_sensitivity(tables: dict[str, pd.DataFrame], out: str) -> None:
    """The grid's tables under ``out`` (the match folder): ``sensitivity_<name>.csv``."""
    for name, frame in tables.items():
        write_file(out, FILES.sensitivity(name).name, frame.to_csv(index=False))
