"""The run report: one self-contained HTML page (``report/index.html``) beside its PNG and CSV files.

``build_report(config, layout, model=None) -> Path`` reads what the stages left in the run folder
(stores' attrs, match / evaluate tables and figures, anatomy) and lays it out as the paper's results for
this model, with the paper's claims checked on the run's own numbers. Sections whose inputs a run did not
produce (evaluation disabled, say) are left out and named as such. A run whose stage failed still gets a
page of what exists, marked incomplete at the top with the failed stage and its error.
"""
from __future__ import annotations

import html
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import yaml

from .. import __version__
from ..errors import StageError, one_line
from .findings import compute_findings
from .page import Page

__all__ = ["build_report"]

log = logging.getLogger(__name__)

_EVALUATE_TABLES = {
    "table3_networks": "Table 3: accuracy and perplexity with each network inhibited",
    "table10_masked": "Tables 10-11: normal vs a random 15 % mask vs all networks inhibited",
    "table9_top_inhibit": "Table 9: top 5 % neurons inhibited (ICA vs LLM Localization)",
    "table4_top_amplify": "Table 4: top 5 % neurons amplified (ICA vs LLM Localization)",
    "table5_iou": "Table 5: IoU between the ICA top 5 % and LLM Localization",
    "table12_probing": "Tables 12-13: linear probing accuracy under each mask",
    "controls": "Random controls as distributions (mean and 95 % interval of the draws; empirical p-values)",
    "separated": "Each network with and without its massive-channel neurons",
}
_MATCH_FIGURES = {
    "networks.png": "Figure 4: group templates as layer × neuron images",
    "counterparts.png": "Counterparts of each template among the individual maps",
    "layer_distribution.png": "Per-layer distribution of network neurons",
}


class _Files:
    """Copies what the page shows into the report folder, so the page's files lie beside it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def keep(self, path: Path, prefix: str) -> Path:
        target = self.folder / f"{prefix}{path.name}"
        shutil.copyfile(path, target)
        return target


def _provenance(page: Page, config, layout, run_record: dict) -> None:
    page.section("Run")
    rows = [("model", config.model.id), ("dtype", config.model.dtype), ("fnet-dist", __version__),
            ("corpora", ", ".join(f"{k} ({v.spec})" for k, v in config.corpora.items())),
            ("samples per corpus", f"{config.record.group_samples} group + {config.record.individual_samples} individual, "
                                   f"≤ {config.record.max_tokens} tokens"),
            ("ICA", f"{config.decompose.components} individual components, {config.decompose.group_components} group "
                    f"templates, {config.decompose.n_init} restarts, seed {config.decompose.seed}"),
            ("networks", f"|z| > {config.match.threshold:g}" if config.match.two_sided else f"z > {config.match.threshold:g}")]
    for stage, info in run_record.get("stages", {}).items():
        if info.get("status") == "done":
            rows.append((f"stage {stage}", f"{info.get('seconds', 0):.1f} s, config hash {info.get('hash')}"))
        elif info.get("status") == "failed":
            rows.append((f"stage {stage}", f"failed: {info.get('error')}"))
    page.table(pd.DataFrame(rows, columns=["", "value"]).set_index(""), caption="Provenance")
    page.raw("<details><summary>Config</summary><pre>"
             + html.escape(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)) + "</pre></details>")


def _stores(page: Page, config, layout) -> int | None:
    """Recording and decomposition summaries; returns the number of neurons (n_layers × d_model)."""
    import xarray as xr

    record_rows, decompose_rows, total = [], [], None
    for corpus in config.corpora:
        act = Path(layout.activations(corpus))
        if (act / "zarr.json").exists():
            ds = xr.open_zarr(act, consolidated=False)
            split = pd.Series(ds["split"].values).value_counts()
            total = int(ds.sizes["layer"] * ds.sizes["neuron"])
            record_rows.append({"corpus": corpus, "group": int(split.get("group", 0)),
                                "individual": int(split.get("individual", 0)),
                                "tokens": int(ds["n_tokens"].values.sum()),
                                "skipped (too short)": int(ds.attrs.get("n_skipped_short", 0)),
                                "peak |activation|": float(ds["peak"].values.max())})
        net = Path(layout.networks(corpus))
        if (net / "zarr.json").exists():
            ds = xr.open_zarr(net, consolidated=False)
            status = pd.Series(ds["individual_status"].values)
            decompose_rows.append({
                "corpus": corpus, "templates": int(ds.sizes["component"]),
                "individual samples": int((status == "ok").sum()),
                "converged": float(ds["individual_converged"].values.mean()),
                "mean stability": float(ds["individual_stability"].mean().values),
                "group variance explained": float(ds["group_explained_variance"].values.sum()),
            })
    if record_rows:
        page.section("Recording and decomposition")
        page.table(pd.DataFrame(record_rows).set_index("corpus"), caption="Activations stores")
    if decompose_rows:
        page.table(pd.DataFrame(decompose_rows).set_index("corpus"),
                   caption="Networks stores (converged: share of individual ICAs that reached the tolerance; "
                           "stability: best-match |correlation| of maps across seeds)")
    return total


def _markdown_free_csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    first = frame.columns[0]
    if first.startswith("Unnamed"):
        frame = frame.set_index(first)
        frame.index.name = ""
    return frame


def _match(page: Page, layout, files: _Files, config) -> None:
    folder = layout.match
    if not (folder / "consistency.csv").exists():
        page.section("Consistency").paragraph("No match results in this run.", muted=True)
        return
    page.section("Consistency across individual analyses (Tables 1, 6-8)")
    consistency = pd.read_csv(files.keep(folder / "consistency.csv", "match_"))
    pivot = consistency.pivot(index="template", columns="dataset", values="counterparts")
    page.table(pivot, caption=f"Individual maps with IoU > {config.match.iou:g} to each template (counterparts)")
    page.table(consistency.set_index("dataset"), caption="Templates: size, share of neurons, counterparts, samples with one")
    for name, caption in _MATCH_FIGURES.items():
        if (folder / name).exists():
            page.image(files.keep(folder / name, "match_"), caption)
    cross = pd.read_csv(folder / "cross_corpus.csv") if (folder / "cross_corpus.csv").exists() else pd.DataFrame()
    if len(cross):  # one corpus has no pairs
        page.section("Templates across corpora (Table 2)")
        files.keep(folder / "cross_corpus.csv", "match_")
        similar = cross[cross["similar"].astype(bool)].sort_values("iou", ascending=False)
        if similar.empty:
            page.paragraph(f"No pair of templates from different corpora has IoU > {config.match.similar_iou:g}; "
                           f"the closest pairs:")
            similar = cross.sort_values("iou", ascending=False).head(5)
        page.table(similar.drop(columns=["similar"]).set_index("dataset_1"), caption="Template pairs by IoU")


def _anatomy(page: Page, layout, files: _Files) -> None:
    massive, networks = layout.match / "massive_channels.csv", layout.match / "network_anatomy.csv"
    if not massive.exists():
        return
    page.section("Anatomy: massive-activation channels")
    table = pd.read_csv(files.keep(massive, "match_"))
    page.paragraph(f"{len(table)} channels where the peak |activation| dwarfs its layer's median "
                   f"(rule in fnet_dist/anatomy.py). Masks that hit them can break the model whatever they mean.")
    page.table(table.head(20).set_index("layer"), caption="Massive channels, strongest first (top 20)")
    if networks.exists():
        page.table(_markdown_free_csv(files.keep(networks, "match_")),
                   caption="Each template: neurons on massive channels, layer spread, source concentration on one token")


def _evaluation(page: Page, layout, files: _Files) -> None:
    folder = layout.evaluate
    if not (folder / "results.csv").exists():
        page.section("Editing").paragraph("No evaluation in this run.", muted=True)
        return
    page.section("Editing networks (Tables 3-5, 9-13)")
    files.keep(folder / "results.csv", "evaluate_")
    for stem, caption in _EVALUATE_TABLES.items():
        for path in sorted((folder / "tables").glob(f"{stem}*.csv")) + sorted((folder / "controls" / "tables").glob(f"{stem}*.csv")):
            suffix = path.stem[len(stem):].strip("_")
            page.table(_markdown_free_csv(files.keep(path, "evaluate_")), caption=f"{caption}{f' ({suffix})' if suffix else ''}")
    figures = sorted((folder / "figures").glob("*.png")) + sorted((folder / "controls" / "figures").glob("*.png"))
    if figures:
        page.section("Editing figures (Figures 2, 3, 5-8)", level=3)
        for path in figures:
            page.image(files.keep(path, "evaluate_"), path.stem.replace("_", " "))
    flips = folder / "flips.csv"
    if flips.exists():
        page.table(pd.read_csv(files.keep(flips, "evaluate_")).head(10), caption="Figure 8: predictions that flip under an edit")


def _attribution(page: Page, config, layout, model) -> None:
    if model is None or not config.report.explain_texts:
        return
    import xarray as xr

    from ..explain import attribution_fragment, explain_text

    page.section("Token attribution (Figures 9-18)")
    for corpus in config.corpora:
        net, act = layout.networks(corpus), Path(layout.activations(corpus))
        if not (Path(net) / "zarr.json").exists() or not (act / "zarr.json").exists():
            continue
        ds = xr.open_zarr(act, consolidated=False)
        texts = [str(t) for t, s in zip(ds["text"].values, ds["split"].values) if s == "individual"]
        for text in texts[: config.report.explain_texts]:
            attribution = explain_text(model, net, text[:600])
            page.section(f"{corpus}: {text[:60]}…", level=3).raw(attribution_fragment(attribution))


def _section(page: Page, title: str, build, problems: dict[str, str]) -> None:
    """Run one section builder; if it raises, keep what it added, say so on the page and in ``problems``."""
    try:
        build()
    except Exception as exc:  # one broken input must not cost the rest of the report
        log.error("report section %s could not be built", title, exc_info=True)
        problems[title] = one_line(exc)
        page.warning(f"{title}: this section could not be built ({problems[title]}); what it shows above is partial.")


def _incomplete(failed: dict[str, str], problems: dict[str, str]) -> Page:
    notice = Page("")
    if failed:
        named = "; ".join(f"stage {stage} failed ({error})" for stage, error in failed.items())
        notice.warning(f"Incomplete run: {named}. This report shows what the run folder holds; results of a stage "
                       f"that did not finish may be partial or from an earlier run. Fix the cause and rerun the "
                       f"same command to resume.")
    if problems:
        notice.warning("Incomplete report: " + "; ".join(f"{t} could not be built ({e})" for t, e in problems.items()) + ".")
    return notice


def build_report(config, layout, model=None, failed: dict[str, str] | None = None) -> Path:
    """Write ``layout.report / "index.html"`` and the files it shows; return the page's path.

    ``failed``: {stage: its error} of stages that did not finish; the page is then marked incomplete and
    names them. A section whose inputs cannot be read is left partial and named at the top; the page is
    still written, then ``StageError`` says which sections failed.
    """
    folder = layout.report
    files = _Files(folder)
    record = json.loads(layout.record_file.read_text()) if layout.record_file.exists() else {}
    failed, problems = dict(failed or {}), {}
    page = Page(config.report.title or f"Functional networks of {config.model.id}: run {config.name!r}")
    total = None

    def stores():
        nonlocal total
        total = _stores(page, config, layout)

    _section(page, "Run", lambda: _provenance(page, config, layout, record), problems)
    _section(page, "Recording and decomposition", stores, problems)
    findings_at = page.size
    _section(page, "Consistency", lambda: _match(page, layout, files, config), problems)
    _section(page, "Anatomy", lambda: _anatomy(page, layout, files), problems)
    _section(page, "Editing", lambda: _evaluation(page, layout, files), problems)
    _section(page, "Token attribution", lambda: _attribution(page, config, layout, model), problems)
    summary = Page("")
    _section(summary, "Findings", lambda: _findings(summary, config, layout, total), problems)
    page.insert(findings_at, summary)
    page.insert(0, _incomplete(failed, problems))
    out = folder / "index.html"
    out.write_text(page.render(), encoding="utf-8")
    if problems:
        raise StageError(f"report sections {', '.join(problems)} could not be built ({'; '.join(problems.values())}); "
                         f"the rest is at {out}")
    return out


def _findings(summary: Page, config, layout, total: int | None) -> None:
    e = config.evaluate
    findings = compute_findings(layout.match, layout.evaluate, total_neurons=total, iou=config.match.iou,
                                similar_iou=config.match.similar_iou,
                                random_condition=f"random{100 * e.random_fraction:g}:seed{e.seed}",
                                amplify_condition=f"top{e.top_percent:g}:multiply{e.amplify_factor:g}")
    summary.section("Findings: the paper's claims on this model").findings(findings)
    if not findings:
        summary.paragraph("This run produced none of the results the checks need.", muted=True)
