"""Consistency of functional networks: group templates against individual maps, and across corpora.

- Parameters: the ``match`` config section (``fnet_dist.core.config.MatchSection``): threshold, one- or two-sided,
  counterpart IoU, cross-corpus IoU, the massive-channel rule.
- ``CorpusNetworks`` / ``load_networks(url, section)`` and ``write_file(out, name, data)`` live in
  ``fnet_dist.match.io``, which the anatomy and the nulls share.
- ``match_networks(networks, out, ...) -> MatchResults``: the paper's Tables 1, 6-8 (counterparts per
  template), Table 2 (template IoU between corpora), network sizes, figures and ``results.json`` under ``out``.
- ``markdown_table(frame)``: a DataFrame as a GitHub Markdown table.

Templates are numbered from 1, as in the paper's tables.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..core.cluster import dask_client, gather
from ..core.config import MatchSection, with_overrides
from ..core.display import nonfinite_note
from ..core.errors import InputError
from ..core.networks import describe_networks, flatten_networks
from ..store.locks import output_lock
from ..store.outputs import prepare_output, replacing
from ..store.storage import filesystem, normalize_url
from . import figures
from .anatomy import write_anatomy
from .halves import halves_tables, split_maps, split_templates
from .io import FILES, CorpusNetworks, load_networks, write_file
from .iou import lazy_iou, pairwise_iou
from .nulls import CHANCE_LEVEL, match_nulls
from .sensitivity import sensitivity_tables, write_sensitivity

__all__ = ["MatchResults", "markdown_table", "match_networks"]

log = logging.getLogger(__name__)


def _check_layouts(corpora: Sequence[CorpusNetworks]) -> None:
    first = corpora[0]
    for other in corpora[1:]:
        if other.shape != first.shape:
            raise InputError(
                f"networks of different neuron layouts: {first.url} has (n_layers, d_model) = {first.shape} "
                f"({first.model_id}), {other.url} has {other.shape} ({other.model_id}); match stores of one model"
            )
        ours, theirs = (first.model_id, first.model_revision), (other.model_id, other.model_revision)
        if ours[0] != theirs[0] or (ours[1] and theirs[1] and ours[1] != theirs[1]):
            raise InputError(
                f"networks of different models: {first.url} comes from {ours[0]!r} (revision {ours[1] or '?'}), "
                f"{other.url} from {theirs[0]!r} (revision {theirs[1] or '?'}); match stores of one model"
            )


def _unique_names(corpora: Sequence[CorpusNetworks]) -> list[str]:
    """Corpus names, with ``-2``, ``-3`` … added where two stores share one."""
    seen: dict[str, int] = {}
    names = []
    for corpus in corpora:
        seen[corpus.name] = seen.get(corpus.name, 0) + 1
        names.append(corpus.name if seen[corpus.name] == 1 else f"{corpus.name}-{seen[corpus.name]}")
    return names


def consistency_rows(name: str, corpus: CorpusNetworks, iou: np.ndarray, threshold: float) -> pd.DataFrame:
    """Counterparts of each template among the individual maps (Tables 1, 6-8).

    iou : (n_templates, n_ok_samples * n_components) IoU of templates with individual maps.
    """
    templates = flatten_networks(corpus.templates)
    matched = iou > threshold
    per_sample = matched.reshape(len(templates), len(corpus.samples), corpus.n_components).any(axis=2)
    sizes = templates.sum(axis=1)
    return pd.DataFrame({
        "corpus": name,
        "template": np.arange(1, len(templates) + 1),
        "size": sizes,
        "share": sizes / templates.shape[1],
        "counterparts": matched.sum(axis=1),
        "samples_with_counterpart": per_sample.sum(axis=1),
        "individual_maps": iou.shape[1],
        "samples": len(corpus.samples),
        "skipped_samples": len(corpus.skipped),
        "counterparts_per_sample": matched.sum(axis=1) / max(len(corpus.samples), 1),
        "best_iou": iou.max(axis=1, initial=0.0),
    })


def sample_rows(name: str, corpus: CorpusNetworks, iou: np.ndarray, cut: float) -> pd.DataFrame:
    """Each template's counterparts in each usable sample (samples, not maps, are the unit of the counterpart
    claims): one row per template and sample. iou : (n_templates, n_ok_samples * n_components)."""
    per_sample = (iou > cut).reshape(len(iou), len(corpus.samples), corpus.n_components).sum(axis=2)
    templates, samples = np.meshgrid(np.arange(1, len(iou) + 1), np.arange(len(corpus.samples)), indexing="ij")
    return pd.DataFrame({"corpus": name, "template": templates.ravel(),
                         "sample": np.asarray(corpus.samples, dtype=object)[samples.ravel()] if corpus.samples else [],
                         "counterparts": per_sample.ravel()})


def cross_corpus_rows(names: Sequence[str], corpora: Sequence[CorpusNetworks], similar_iou: float) -> pd.DataFrame:
    """IoU between the templates of every pair of corpora (Table 2), with ``similar`` = IoU > ``similar_iou``."""
    frames = []
    for (i, a), (j, b) in itertools.combinations(enumerate(corpora), 2):
        iou = pairwise_iou(flatten_networks(a.templates), flatten_networks(b.templates))
        t1, t2 = np.meshgrid(np.arange(iou.shape[0]), np.arange(iou.shape[1]), indexing="ij")
        frames.append(pd.DataFrame({
            "corpus_1": names[i], "template_1": t1.ravel() + 1,
            "corpus_2": names[j], "template_2": t2.ravel() + 1, "iou": iou.ravel(),
        }))
    columns = ["corpus_1", "template_1", "corpus_2", "template_2", "iou"]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    frame["similar"] = frame["iou"].astype(float) > similar_iou
    return frame


def markdown_table(frame: pd.DataFrame, floats: str = "{:.4f}") -> str:
    """``frame`` as a GitHub Markdown table (floats formatted with ``floats``)."""
    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return floats.format(value)
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    note = nonfinite_note(frame)
    return "\n".join([header, rule, *rows]) + "\n" + (f"\n{note}\n" if note else "")


def consistency_markdown(consistency: pd.DataFrame, iou: float) -> str:
    """Table 1's layout: templates as rows, corpora as columns, 'counterparts (samples)' per cell."""
    cells = consistency.assign(cell=[f"{c} ({s})" for c, s in zip(consistency["counterparts"], consistency["samples_with_counterpart"])])
    wide = cells.pivot(index="template", columns="corpus", values="cell").fillna("")
    wide = wide[list(dict.fromkeys(consistency["corpus"]))].reset_index()
    wide.columns = ["TEMPLATES", *[str(c).upper() for c in wide.columns[1:]]]
    columns = ["individual_maps", "samples"] + (["skipped_samples"] if "skipped_samples" in consistency else [])
    totals = consistency.groupby("corpus", sort=False)[columns].first()
    note = "; ".join(f"{d}: {r.individual_maps} individual maps from {r.samples} usable samples"
                     + (f" ({r.skipped_samples} not usable, left out)" if getattr(r, "skipped_samples", 0) else "")
                     for d, r in totals.iterrows())
    return (f"Counterparts (individual maps with IoU > {iou:g}) of each group template; in brackets, the samples "
            f"with at least one counterpart. {note}.\n\n" + markdown_table(wide))


def cross_corpus_markdown(cross: pd.DataFrame, similar_iou: float) -> str:
    """Table 2's layout: the pairs of templates of different corpora with IoU > ``similar_iou``."""
    similar = cross[cross["similar"]].sort_values("iou", ascending=False)
    if similar.empty:
        return f"No pair of templates from different corpora has IoU > {similar_iou:g}.\n"
    table = pd.DataFrame({
        "TEMPLATE 1": [f"{d.upper()} COMPONENT {t}" for d, t in zip(similar["corpus_1"], similar["template_1"])],
        "TEMPLATE 2": [f"{d.upper()} COMPONENT {t}" for d, t in zip(similar["corpus_2"], similar["template_2"])],
        "IoU": similar["iou"].to_numpy(),
    })
    return f"Pairs of templates from different corpora with IoU > {similar_iou:g}.\n\n" + markdown_table(table)


@dataclass
class MatchResults:
    """Everything ``match_networks`` found; the tables are also files under ``out`` (see ``files``)."""

    section: MatchSection
    consistency: pd.DataFrame
    cross_corpus: pd.DataFrame
    network_sizes: pd.DataFrame
    counterpart_samples: pd.DataFrame
    corpora: list[dict]
    iou: dict[str, np.ndarray]
    files: dict[str, str]
    markdown: str = ""

    @property
    def similar_pairs(self) -> pd.DataFrame:
        return self.cross_corpus[self.cross_corpus["similar"]].reset_index(drop=True)


def _compute_ious(corpora: Sequence[CorpusNetworks], client):
    """All template × individual IoUs and individual sizes in one Dask computation."""
    lazy = []
    for corpus in corpora:
        iou, _, sizes = lazy_iou(flatten_networks(corpus.templates), corpus.individual)
        lazy += [iou, sizes]
    done = gather(client, lazy, "match: IoU per corpus")
    return [(done[i], done[i + 1]) for i in range(0, len(done), 2)]


def _corpus_summary(name: str, corpus: CorpusNetworks, individual_sizes: np.ndarray) -> dict:
    template_sizes = flatten_networks(corpus.templates).sum(axis=1)
    return {
        "corpus": name, "url": corpus.url, "model_id": corpus.model_id,
        "n_layers": corpus.n_layers, "d_model": corpus.d_model,
        "templates": len(template_sizes),
        "empty_templates": [int(i) + 1 for i in np.flatnonzero(template_sizes == 0)],
        "samples": len(corpus.samples), "components": corpus.n_components,
        "individual_maps": len(individual_sizes),
        "empty_individual_maps": int(np.count_nonzero(individual_sizes == 0)),
        "skipped_samples": {str(k): v for k, v in corpus.skipped.items()},
        "skipped_reasons": skipped_reasons(corpus.skipped),
    }


def skipped_reasons(skipped: dict) -> dict[str, int]:
    """{reason kind ("reduced", "skipped", …): samples} of a store's samples whose individual ICA is not ``ok``."""
    kinds: dict[str, int] = {}
    for reason in skipped.values():
        kind = str(reason).split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _report_empty(summaries: Sequence[dict], section: MatchSection) -> None:
    for s in summaries:
        if s["skipped_samples"]:
            kinds = skipped_reasons(s["skipped_samples"])
            log.warning("%s: %d of %d individual samples are not usable (%s) and are left out of the counts",
                        s["corpus"], len(s["skipped_samples"]), s["samples"] + len(s["skipped_samples"]),
                        ", ".join(f"{n} {k}" for k, n in kinds.items()))
        if s["empty_templates"]:
            log.warning("%s: template(s) %s have no neuron above the threshold %g (IoU 0 with everything)",
                        s["corpus"], s["empty_templates"], section.threshold)
        if s["empty_individual_maps"]:
            log.info("%s: %d of %d individual maps have no neuron above %g",
                     s["corpus"], s["empty_individual_maps"], s["individual_maps"], section.threshold)


def match_networks(networks: Sequence[str], out: str, section: MatchSection | None = None, *,
                   scheduler: str | None = None, anatomy: bool = False, overwrite: bool = False,
                   **overrides: Any) -> MatchResults:
    """Match the networks stores ``networks`` (one per corpus) and write the tables and figures under ``out``.

    section : the ``match`` config section (default: its defaults); ``overrides`` replace some of its fields.
    anatomy : also find the massive channels in the activations stores behind the networks and write the
        anatomy files the controls read (``fnet_dist.match.anatomy.write_anatomy``) and the layer-matched nulls of
        the counterparts and of cross-corpus recurrence (``fnet_dist.match.nulls.match_nulls``).
    ``out`` is locked from the start (``fnet_dist.store.locks``: a second writer is refused before any work),
    written whole beside and swapped in (``fnet_dist.store.outputs.replacing``): earlier match results there are
    replaced only with ``overwrite``, anything else never. A store given twice is refused.
    """

    section = with_overrides(section or MatchSection(), overrides)
    if not networks:
        raise InputError("no networks store given: pass one or more stores written by fnet decompose")
    urls = [normalize_url(url) for url in networks]
    _check_distinct(urls)
    out = normalize_url(out)
    with output_lock(out), ExitStack() as stack:
        prepare_output(out, "match", overwrite=overwrite)  # refused before any work
        corpora = [load_networks(url, section) for url in urls]
        _check_layouts(corpora)
        names = _unique_names(corpora)
        client = stack.enter_context(dask_client(scheduler))  # the IoUs, then the anatomy's scans (a task per sample)
        computed = _compute_ious(corpora, client)
        summaries = [_corpus_summary(n, c, sizes) for n, c, (_, sizes) in zip(names, corpora, computed)]
        _report_empty(summaries, section)
        consistency = pd.concat([consistency_rows(n, c, i, section.iou)
                                 for n, c, (i, _) in zip(names, corpora, computed)], ignore_index=True)
        cross = cross_corpus_rows(names, corpora, section.similar_iou)
        sizes = pd.concat([describe_networks(c.templates, {"corpus": n}) for n, c in zip(names, corpora)],
                          ignore_index=True)
        samples = pd.concat([sample_rows(n, c, i, section.iou) for n, c, (i, _) in zip(names, corpora, computed)],
                            ignore_index=True)
        results = MatchResults(section, consistency, cross, sizes, samples, summaries,
                               {n: i for n, (i, _) in zip(names, computed)}, {})
        results.markdown = consistency_markdown(consistency, section.iou)
        with replacing(out, "match", overwrite=overwrite) as staged:
            write_results(results, staged, {n: c.templates for n, c in zip(names, corpora)})
            if anatomy:
                _anatomy_and_nulls([c.url for c in corpora], staged, section, client)
    results.files = {name: f"{out}/{name}" for name in results.files}
    return results


def _check_distinct(urls: Sequence[str]) -> None:
    """Refuse a networks store given twice (by the same path, or by two paths to one local folder): matched with
    itself it would report every template as a perfect cross-corpus pair."""
    seen: dict[str, str] = {}
    for url in urls:
        key = os.path.realpath(url) if "://" not in url else url
        if key in seen:
            same = "twice" if seen[key] == url else f"twice ({seen[key]!r} and {url!r} are one store)"
            raise InputError(f"networks store {url!r} is given {same}; give each corpus's store once "
                             f"(matched with itself every template would be an IoU-1 'cross-corpus' pair)")
        seen[key] = url


def _anatomy_and_nulls(urls: list[str], out: str, section: MatchSection, client=None) -> None:
    """Massive channels and network anatomy (``fnet_dist.match.anatomy``; its scans on ``client``), then the nulls
    (``fnet_dist.match.nulls``), under ``out``."""
    union = write_anatomy(urls, out, section, client)
    log.info("anatomy: %d massive channels (peak ≥ %g × layer median and ≥ %g)", int(union.sum()),
             section.massive_ratio, section.massive_min_value)
    nulls = match_nulls(urls, out, section, massive=union, anatomy=network_anatomy_rows(out), seed=0)
    halves_maps = [split_maps(url) for url in urls]  # read once: the grid below thresholds them again
    halves, halves_null = halves_tables([split_templates(url, section, union, maps=m) for url, m in zip(urls, halves_maps)],
                                        nulls["frequency"], union, section.summary_permutations, 0, CHANCE_LEVEL)
    write_file(out, FILES.split_halves.name, halves.to_csv(index=False))
    write_file(out, FILES.split_null.name, halves_null.to_csv(index=False))
    if section.sensitivity_thresholds:
        write_sensitivity(sensitivity_tables(urls, section, union, nulls["first_token"], 0, halves_maps), out)
        log.info("sensitivity: %d thresholds × one/two-sided × %d IoU cut-offs, %d random networks per cell and null",
                 len(section.sensitivity_thresholds), len(section.sensitivity_ious), section.sensitivity_permutations)
    log.info("nulls: %d random networks per template and null kind (uniform, frequency-preserving); exact nulls of "
             "cross-corpus IoU; the recurrence summary against both kinds", section.permutations)


def network_anatomy_rows(out: str) -> pd.DataFrame:
    """``network_anatomy.csv`` under ``out`` (a folder or URL)."""
    fs, folder = filesystem(out)
    with fs.open(f"{folder}/{FILES.network_anatomy.name}", "rb") as handle:
        return pd.read_csv(handle)


def write_results(results: MatchResults, out: str, templates: dict[str, np.ndarray]) -> None:
    """Write tables (CSV + Markdown), figures (PNG) and ``results.json`` under ``out``; fills ``results.files``."""
    section = results.section
    texts = {
        FILES.consistency.name: results.consistency.to_csv(index=False),
        FILES.consistency_markdown.name: results.markdown,
        FILES.cross_corpus.name: results.cross_corpus.to_csv(index=False),
        FILES.cross_corpus_markdown.name: cross_corpus_markdown(results.cross_corpus, section.similar_iou),
        FILES.network_sizes.name: results.network_sizes.to_csv(index=False),
        FILES.counterpart_samples.name: results.counterpart_samples.to_csv(index=False),
    }
    for name, text in texts.items():
        results.files[name] = write_file(out, name, text)
    pngs = figures.match_figures(results.consistency, results.network_sizes, results.cross_corpus, templates)
    for name, png in pngs.items():
        results.files[FILES.figure(name).name] = write_file(out, FILES.figure(name).name, png)
    index = {
        "package_version": __version__,
        "parameters": section.model_dump(),
        "corpora": results.corpora,
        "similar_pairs": int(results.cross_corpus["similar"].sum()),
        "files": {k: v.rsplit("/", 1)[-1] for k, v in results.files.items()},
    }
    results.files[FILES.results.name] = write_file(out, FILES.results.name, json.dumps(index, indent=2) + "\n")
