"""The run report: one self-contained HTML page (``report/index.html``) beside its PNG and CSV files.

``build_report(config, layout, model=None) -> Path`` (and ``findings.json`` beside the page) reads what the
stages left in the run folder
(stores' attrs, match / evaluate tables and figures, anatomy) and lays it out as the paper's results for
this model, with the paper's claims checked on the run's own numbers. Sections whose inputs a run did not
produce (evaluation disabled, say) are left out and named as such. A run whose stage failed still gets a
page of what exists, marked incomplete at the top with the failed stage and its error.

Order: provenance, then the Findings (``report/findings.json`` as one table, each claim linking to the
tables and figures behind it), then the evidence. ``TABLES`` declares, once, every table the report shows:
its caption, the columns the findings need (shown first; others fold away when the page is narrow) and the
figures drawn from the same numbers. Networks are named by ``fnet_dist.core.names`` everywhere.
"""
from __future__ import annotations

import html
import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from .. import __version__
from ..core.errors import StageError, one_line
from ..core.layout import PAPER_FIGURES, PAPER_TABLES, RunLayout
from ..core.names import display_name, display_names, network_name
from ..store.storage import store_exists
from .explain import explain_text
from .explain_page import attribution_fragment
from .findings import FindingSettings, NullRun, compute_findings, write_findings
from .findings_view import findings_html, read_findings
from .page import Page
from .sensitivity import sensitivity_figure, sensitivity_grid

__all__ = ["TABLES", "TableSpec", "build_report"]

_VARIANTS = {("model.init", "random"): "same architecture and tokenizer, randomly initialised weights",
             ("record.shuffle", "tokens_within_sample"): "each sample's tokens shuffled: token statistics kept, "
                                                         "sequence structure destroyed"}


def _describe_variant(overrides: dict) -> str:
    """Words for a null variant's overrides (the known ones; ``key=value`` for the rest)."""
    return "; ".join(_VARIANTS.get((k, str(v)), f"{k}={v}") for k, v in overrides.items())

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableSpec:
    """A table of the report: ``caption``; ``label``, its name in a finding's links; ``key``, the columns
    the findings rest on (shown first, never folded away); ``figures``, the file-name stems (``FIGURES``) of
    the figures drawn from the same numbers."""

    caption: str
    label: str
    key: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()


TABLES = {  # file-name stem (a corpus or task suffix may follow) -> how the report shows it
    "consistency": TableSpec("Templates: size, share of neurons, counterparts, samples with one", "Table 1",
                             ("template", "counterparts"), ("counterparts", "networks")),
    "cross_corpus": TableSpec("Template pairs by IoU", "Table 2", ("template", "other template", "iou"),
                              ("cross_corpus",)),
    "counterparts_null": TableSpec("Samples with a counterpart against random networks of each template's size and "
                                   "layer profile: uniform within layers, and frequency-preserving (each neuron swapped "
                                   "for one held by about as many maps); mean of theirs, Monte Carlo p-values "
                                   "(uncorrected), p_value the stricter", "counterparts null",
                                   ("template", "samples_with_counterpart", "p_value"), ("counterparts",)),
    "recurrence_null": TableSpec("Recurrence as an estimate: the mean best-match IoU across corpora of every template "
                                 "that may count, against each null (mean and central range of theirs)",
                                 "recurrence null", ("null", "observed", "p_value")),
    "sensitivity": TableSpec("Each structure finding in each cell of the grid: effect beyond the stricter null, its "
                             "interval, p-value (uncorrected) and verdict", "sensitivity", ("claim", "verdict")),
    "split_null": TableSpec("Split-half reproducibility: mean best-match IoU between the templates of disjoint "
                            "halves of the samples, against each null", "split-half null", ("null", "observed", "p_value")),
    "recurrence": TableSpec("Closest cross-corpus pairs against the exact layer-matched null, with and without "
                            "massive-channel neurons; flags: massive channels, first-token-dominated templates",
                            "recurrence", ("template", "other template", "iou_without_massive", "p_without_massive"),
                            ("cross_corpus",)),
    "massive_channels": TableSpec("Massive channels, strongest first (top 20)", "massive channels", ("neuron", "ratio")),
    "network_anatomy": TableSpec("Each template: neurons on massive channels, layer spread, source concentration "
                                 "on one token", "anatomy", ("template", "size", "on_massive", "massive_share")),
    PAPER_TABLES["networks"]: TableSpec(
        "Table 3: accuracy and perplexity with each network inhibited", "Table 3", (),
        (PAPER_FIGURES["perplexity"], f"{PAPER_FIGURES['changes']}_inhibit")),
    PAPER_TABLES["masked"]: TableSpec("Tables 10-11: normal vs a random 15 % mask vs all networks inhibited", "Tables 10-11"),
    PAPER_TABLES["top_inhibit"]: TableSpec("Table 9: top 5 % neurons inhibited (ICA vs LLM Localization)", "Table 9"),
    PAPER_TABLES["top_amplify"]: TableSpec(
        "Table 4: top 5 % neurons amplified (ICA vs LLM Localization)", "Table 4", (),
        (f"{PAPER_FIGURES['changes']}_top_amplified",)),
    PAPER_TABLES["iou"]: TableSpec("Table 5: IoU between the ICA top 5 % and LLM Localization", "Table 5"),
    PAPER_TABLES["probing"]: TableSpec("Tables 12-13: linear probing accuracy under each mask", "Tables 12-13"),
    PAPER_TABLES["controls"]: TableSpec(
        "Random controls as distributions (mean and 95 % interval of the draws; empirical p-values)", "controls",
        ("network", "task", "control", "draws", "network_value", "low", "high", "p_value"), ("controls",)),
    PAPER_TABLES["separated"]: TableSpec(
        "Each network with and without its massive-channel neurons", "massive split",
        ("network", "task", "damage_whole", "damage_minus_massive", "damage_massive_only"), ("controls",)),
    "flips": TableSpec("Figure 8: predictions that flip under an edit", "Figure 8", ("condition", "task", "effect", "text")),
}
_EDITING_TABLES = tuple(PAPER_TABLES[k] for k in ("networks", "masked", "top_inhibit", "top_amplify", "iou", "probing"))
_CONTROL_TABLES = (PAPER_TABLES["controls"], PAPER_TABLES["separated"])
FIGURES = {  # file-name stem (a suffix may follow) -> (caption, name in a finding's links)
    "networks": ("Figure 4: group templates as layer × neuron images", "Figure 4"),
    "counterparts": ("Counterparts of each template among the individual maps", "counterparts figure"),
    "layer_distribution": ("Per-layer distribution of network neurons", "layers figure"),
    "cross_corpus": ("IoU between templates of different corpora", "IoU figure"),
    "sensitivity": ("The structure findings' effects and verdicts across thresholds, sidedness and counterpart "
                    "cut-offs", "sensitivity figure"),
    PAPER_FIGURES["perplexity"]: ("Figure 2: perplexity with each network inhibited", "Figure 2"),
    PAPER_FIGURES["changes"]: ("Figure 3: each task's score minus the normal model's", "Figure 3"),
    PAPER_FIGURES["sweep"]: ("Figures 5-7: the metric against the edit's factor or added value", "Figures 5-7"),
    PAPER_FIGURES["controls"]: ("Each network against its random draws (left) and split at the massive channels "
                                "(right)", "controls figure"),
}
_MATCH_FIGURES = ("networks", "counterparts", "layer_distribution")  # of MATCH_FIGURES; cross_corpus has its section


class _Files:
    """Copies what the page shows into the report folder, so the page's files lie beside it, and shows
    tables and figures under anchors (``table-<stem>``, ``figure-<stem>``) the findings link to."""

    def __init__(self, folder: Path, labels: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.labels = labels or {}  # condition name -> display name, from the run's result rows (their fields)
        folder.mkdir(parents=True, exist_ok=True)
        self.anchors: dict[str, tuple[str, str]] = {}  # "table:<stem>" -> (element id, link label), page order

    def keep(self, path: Path, prefix: str) -> Path:
        target = self.folder / f"{prefix}{path.name}"
        shutil.copyfile(path, target)
        return target

    def table(self, page: Page, frame: pd.DataFrame, name: str, stem: str | None = None) -> None:
        """Show ``frame`` as the table ``TABLES[name]`` (``stem``: its file's stem, when a suffix follows ``name``)."""
        spec, stem = TABLES[name], stem or name
        suffix = _suffix(stem, name)
        anchor = f"table-{stem}"
        self.anchors[f"table:{stem}"] = (anchor, spec.label + suffix)
        frame = _display_names(frame, self.labels)
        page.table(frame, spec.caption + suffix, anchor=anchor, key=[k for k in spec.key if k in frame.columns])

    def figure(self, page: Page, path: Path, prefix: str) -> None:
        """Show the PNG ``path`` with its ``FIGURES`` caption (or its name), kept as ``<prefix><name>``."""
        name = _entry(path.stem, FIGURES)
        caption, label = FIGURES.get(name, (path.stem.replace("_", " "), path.stem))
        suffix = _suffix(path.stem, name)
        anchor = f"figure-{path.stem}"
        self.anchors[f"figure:{path.stem}"] = (anchor, label + suffix)
        page.image(self.keep(path, prefix), caption + suffix, anchor=anchor)

    def links(self, finding: dict) -> list[tuple[str, str]]:
        """(label, element id) of the tables and anchors a finding names and of its figures (those it names,
        else those drawn from its tables: of those, only the ones of the finding's task or corpus when its id
        names one, ``small-networks/wiki_ppl`` -> ``controls_wiki_ppl``), as far as the page shows them."""
        tables = [_entry(Path(str(t)).stem, TABLES) for t in finding.get("tables") or []]
        figures = [Path(str(f)).stem for f in finding.get("figures") or []]
        named = bool(figures)
        figures = figures or [f for t in tables if t in TABLES for f in TABLES[t].figures]
        ids = set(finding.get("anchors") or [])
        found = []
        for key, (anchor, label) in self.anchors.items():
            kind, stem = key.split(":", 1)
            wanted = tables if kind == "table" else figures
            if anchor in ids or any(stem == w or stem.startswith(f"{w}_") for w in wanted):
                found.append((kind, stem, label, anchor))
        parts = set(re.split(r"[/@]", str(finding.get("id", ""))))
        own = {stem for kind, stem, _, _ in found if kind == "figure" and _rest(stem, _entry(stem, FIGURES)) in parts}
        keep = named or not own
        return [(label, anchor) for kind, stem, label, anchor in found
                if keep or kind != "figure" or stem in own or not _rest(stem, _entry(stem, FIGURES))]


def _entry(stem: str, registry: dict) -> str:
    """The registry entry a file stem belongs to (``table3_networks_news`` -> ``table3_networks``)."""
    return max((n for n in registry if stem == n or stem.startswith(f"{n}_")), key=len, default=stem)


def _rest(stem: str, name: str) -> str:
    """What follows the entry's name in a file stem: ``controls_wiki_ppl`` -> ``wiki_ppl``."""
    return stem[len(name):].strip("_") if stem.startswith(name) else ""


def _suffix(stem: str, name: str) -> str:
    """``_rest`` as a caption suffix: `` (wiki_ppl)``."""
    rest = _rest(stem, name)
    return f" ({rest})" if rest else ""


def _labels(layout: RunLayout) -> dict[str, str]:
    """Condition name -> display name for every condition of the run's evaluation and controls (their rows carry
    the fields; results of an older run without them keep their names)."""
    frames = [pd.read_csv(path) for path in (layout.evaluate.results, layout.controls.results) if path.is_file()]
    frames = [f for f in frames if "kind" in f.columns]
    return display_names(pd.concat(frames, ignore_index=True)) if frames else {}


def _display_names(frame: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """Networks, conditions and templates named as everywhere in the report (``news/5``): a ``condition`` column
    from the row's fields, or (a table without them) a ``network`` or ``condition`` column and such an index by
    ``labels`` (condition name -> display name, from the run's result rows); ``corpus`` with ``template``, and the
    pairs ``corpus_1`` / ``template_1``, ``corpus_2`` / ``template_2``, as one name each."""
    frame = frame.copy()
    if "condition" in frame.columns and "kind" in frame.columns:  # rows with the condition's fields: named from them
        frame["condition"] = [display_name(row) for row in frame.to_dict("records")]
    for column in ("network", "condition"):
        if column in frame.columns and not (column == "condition" and "kind" in frame.columns):
            frame[column] = frame[column].map(lambda name: labels.get(name, name))
    if frame.index.name in ("network", "condition"):
        frame.index = frame.index.map(lambda name: labels.get(name, name)).rename(frame.index.name)
    frame = frame.rename(columns=lambda column: labels.get(column, column))  # a table of conditions side by side
    if "corpus" in frame.columns and "template" in frame.columns:
        named = [network_name(c, t) for c, t in zip(frame["corpus"], frame["template"])]
        frame = frame.drop(columns=["corpus", "template"])
        frame.insert(0, "template", named)
    pairs = [("corpus_1", "template_1", "template"), ("corpus_2", "template_2", "other template")]
    if all(c in frame.columns for d, t, _ in pairs for c in (d, t)):
        named = {label: [network_name(a, b) for a, b in zip(frame[d], frame[t])] for d, t, label in pairs}
        frame = frame.drop(columns=[c for d, t, _ in pairs for c in (d, t)])
        for position, (label, values) in enumerate(named.items()):
            frame.insert(position, label, values)
    return frame


def _provenance(page: Page, config, layout, run_record: dict) -> None:
    page.section("Run")
    rows = [("model", config.model.id), ("dtype", config.model.dtype), ("fnet-dist", __version__),
            ("corpora", ", ".join(f"{k} ({v.spec})" for k, v in config.corpora.items())),
            ("samples per corpus", f"{config.record.group_samples} group + {config.record.individual_samples} individual, "
                                   f"≤ {config.record.max_tokens} tokens"),
            ("ICA", f"{config.decompose.components} individual components, {config.decompose.group_components} group "
                    f"templates, {config.decompose.n_init} restarts, seed {config.decompose.seed}"),
            ("ICA method", f"individual: {config.decompose.individual_method}, {config.decompose.algorithm}, "
                           f"{config.decompose.fun}; group: CanICA, fastica, {config.decompose.group_fun}"),
            ("networks", f"|z| > {config.match.threshold:g}" if config.match.two_sided else f"z > {config.match.threshold:g}")]
    done = {stage: info for stage, info in run_record.get("stages", {}).items() if info.get("status") == "done"}
    for stage, info in run_record.get("stages", {}).items():
        if info.get("status") == "done":
            rows.append((f"stage {stage}", f"{info.get('seconds', 0):.1f} s, config hash {info.get('hash')}"))
        elif info.get("status") == "failed":
            rows.append((f"stage {stage}", f"failed: {info.get('error')}"))
    if done:
        total = sum(info.get("seconds", 0) for info in done.values())
        rows.append(("stages done before this report", f"{total:.1f} s ({total / 60:.1f} min)"))
    page.table(pd.DataFrame(rows, columns=["", "value"]).set_index(""), caption="Provenance")
    page.raw("<details><summary>Config</summary><pre>"
             + html.escape(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)) + "</pre></details>")


def _stores(page: Page, config, layout) -> int | None:
    """Recording and decomposition summaries; returns the number of neurons (n_layers × d_model)."""
    import xarray as xr


    record_rows, decompose_rows, total = [], [], None
    for corpus in config.corpora:
        act = layout.activations(corpus)  # a path or a URL (stores may live in object storage)
        if store_exists(act):
            ds = xr.open_zarr(act, consolidated=False)
            split = pd.Series(ds["split"].values).value_counts()
            total = int(ds.sizes["layer"] * ds.sizes["neuron"])
            record_rows.append({"corpus": corpus, "group": int(split.get("group", 0)),
                                "individual": int(split.get("individual", 0)),
                                "tokens": int(ds["n_tokens"].values.sum()),
                                "skipped (too short)": int(ds.attrs.get("n_skipped_short", 0)),
                                "peak |activation|": float(ds["peak"].values.max())})
        net = layout.networks(corpus)
        if store_exists(net):
            ds = xr.open_zarr(net, consolidated=False)
            status = pd.Series(ds["individual_status"].values)
            decompose_rows.append({
                "corpus": corpus, "templates": int(ds.sizes["component"]),
                "individual samples": int((status == "ok").sum()),
                "converged": ds.attrs.get("individual_converged_share", float(ds["individual_converged"].values.mean())),
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
    match = layout.match
    if not match.consistency.exists():
        page.section("Consistency").paragraph("No match results in this run.", muted=True)
        return
    page.section("Consistency across individual analyses (Tables 1, 6-8)", anchor="consistency")
    consistency = pd.read_csv(files.keep(match.consistency, "match_"))
    pivot = consistency.pivot(index="template", columns="corpus", values="counterparts")
    page.table(pivot, caption=f"Individual maps with IoU > {config.match.iou:g} to each template (counterparts)")
    files.table(page, consistency, "consistency")
    if match.counterparts_null.exists():
        null = pd.read_csv(files.keep(match.counterparts_null, "match_"))
        columns = ["corpus", "template", "counterparts", "samples_with_counterpart", "samples", "uniform_samples_mean",
                   "uniform_samples_p", "frequency_samples_mean", "frequency_samples_p", "p_value", "permutations"]
        files.table(page, null[[c for c in columns if c in null]], "counterparts_null")
    for name in _MATCH_FIGURES:
        if match.figure(name).exists():
            files.figure(page, match.figure(name), "match_")
    cross = pd.read_csv(match.cross_corpus) if match.cross_corpus.exists() else pd.DataFrame()
    if len(cross):  # one corpus has no pairs
        page.section("Templates across corpora (Table 2)", anchor="cross-corpus")
        files.keep(match.cross_corpus, "match_")
        similar = cross[cross["similar"].astype(bool)].sort_values("iou", ascending=False)
        if similar.empty:
            page.paragraph(f"No pair of templates from different corpora has IoU > {config.match.similar_iou:g}; "
                           f"the closest pairs:")
            similar = cross.sort_values("iou", ascending=False).head(5)
        files.table(page, similar.drop(columns=["similar"]).reset_index(drop=True), "cross_corpus")
        if match.figure("cross_corpus").exists():
            files.figure(page, match.figure("cross_corpus"), "match_")
    if match.recurrence.exists() and match.recurrence.stat().st_size > 1:
        recurrence = pd.read_csv(files.keep(match.recurrence, "match_"))
        top = recurrence.sort_values("iou", ascending=False).head(10).reset_index(drop=True)
        files.table(page, top, "recurrence")
    for path, name in ((match.recurrence_null, "recurrence_null"), (match.split_null, "split_null")):
        if path.exists() and path.stat().st_size > 1:
            files.table(page, pd.read_csv(files.keep(path, "match_")), name)


def _anatomy(page: Page, layout, files: _Files) -> None:
    massive, networks = layout.match.massive_channels, layout.match.network_anatomy
    if not massive.exists():
        return
    page.section("Anatomy: massive-activation channels", anchor="anatomy")
    table = pd.read_csv(files.keep(massive, "match_"))
    page.paragraph(f"{len(table)} channels where the peak |activation| dwarfs its layer's median "
                   f"(rule in fnet_dist/match/anatomy.py). Masks that hit them can break the model whatever they mean.")
    files.table(page, table.head(20).set_index("layer"), "massive_channels")
    if networks.exists():
        files.table(page, _markdown_free_csv(files.keep(networks, "match_")), "network_anatomy")


def _tables(page: Page, files: _Files, names, folders) -> None:
    """Every table file ``<name>*.csv`` of ``folders``, in the order of ``names``."""
    for name in names:
        for path in (p for folder in folders for p in sorted(folder.glob(f"{name}*.csv"))):
            if _entry(path.stem, TABLES) != name:
                continue
            files.table(page, _markdown_free_csv(files.keep(path, "evaluate_")), name, path.stem)


def _evaluation(page: Page, layout, files: _Files) -> None:
    evaluation, controls = layout.evaluate, layout.controls
    if not evaluation.results.exists():
        page.section("Editing", anchor="editing").paragraph("No evaluation in this run.", muted=True)
        return
    page.section("Editing networks (Tables 3-5, 9-13)", anchor="editing")
    files.keep(evaluation.results, "evaluate_")
    _tables(page, files, _EDITING_TABLES, [evaluation.tables])
    figures = sorted(evaluation.figures.glob("*.png"))
    if figures:
        page.section("Editing figures (Figures 2, 3, 5-8)", level=3)
        for path in figures:
            files.figure(page, path, "evaluate_")
    if evaluation.flips.exists():
        files.table(page, pd.read_csv(files.keep(evaluation.flips, "evaluate_")), "flips")
    if any(controls.tables.glob("*.csv")):
        page.section("Controls: random draws and massive channels", anchor="controls")
        _tables(page, files, _CONTROL_TABLES, [controls.tables])
        for path in sorted(controls.figures.glob("*.png")):
            files.figure(page, path, "evaluate_")


def _attribution(page: Page, config, layout, model) -> None:
    if model is None or not config.report.explain_texts:
        return
    import xarray as xr


    page.section("Token attribution (Figures 9-18)")
    for corpus in config.corpora:
        net, act = layout.networks(corpus), layout.activations(corpus)
        if not store_exists(net) or not store_exists(act):
            continue
        ds = xr.open_zarr(act, consolidated=False)
        texts = [str(t) for t, s in zip(ds["text"].values, ds["split"].values) if s == "individual"]
        for text in texts[: config.report.explain_texts]:
            attribution = explain_text(model, net, text[:600], match=config.match)
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
    """Write the report page (``layout.report.page``) and the files it shows; return the page's path.

    ``failed``: {stage: its error} of stages that did not finish; the page is then marked incomplete and
    names them. A section whose inputs cannot be read is left partial and named at the top; the page is
    still written, then ``StageError`` says which sections failed.
    """
    folder = layout.report.folder
    files = _Files(folder, _labels(layout))
    record = json.loads(layout.record_file.read_text()) if layout.record_file.exists() else {}
    failed, problems = dict(failed or {}), {}
    page = Page(config.report.title or f"Functional networks of {config.model.id}: run {config.name!r}")
    total = None

    def stores():
        nonlocal total
        total = _stores(page, config, layout)

    _section(page, "Run", lambda: _provenance(page, config, layout, record), problems)
    findings_at = page.size
    _section(page, "Recording and decomposition", stores, problems)
    _section(page, "Consistency", lambda: _match(page, layout, files, config), problems)
    _section(page, "Anatomy", lambda: _anatomy(page, layout, files), problems)
    _section(page, "Editing", lambda: _evaluation(page, layout, files), problems)
    _section(page, "Token attribution", lambda: _attribution(page, config, layout, model), problems)
    summary = Page("")
    _section(summary, "Findings", lambda: _findings(summary, config, layout, files, total), problems)
    page.insert(findings_at, summary)
    page.insert(0, _incomplete(failed, problems))
    out = layout.report.page
    out.write_text(page.render(), encoding="utf-8")
    if problems:
        raise StageError(f"report sections {', '.join(problems)} could not be built ({'; '.join(problems.values())}); "
                         f"the rest is at {out}")
    return out


def _findings(summary: Page, config, layout, files: _Files, total: int | None) -> None:
    """The Findings section: the checks written to ``findings.json`` (issue 13's records: verdict rule, alpha,
    level, correction), rendered from that file as one table whose rows link to the tables and figures the
    page shows."""
    settings = FindingSettings(config.report, config.evaluate)
    null_runs = [NullRun(name, layout.null_run(name).match, variant.description or _describe_variant(variant.set))
                 for name, variant in config.nulls.items()]
    findings = compute_findings(layout.match, layout.evaluate, layout.controls, settings, total_neurons=total,
                                null_runs=null_runs)
    selection_path = layout.controls.selection
    selection = json.loads(selection_path.read_text()) if selection_path.exists() else None
    path = write_findings(findings, layout.report.findings, settings, selection)
    recorded, records = json.loads(path.read_text(encoding="utf-8")), read_findings(path)
    summary.section("Findings: the paper's claims on this model", anchor="findings")
    summary.paragraph(f"{recorded['verdict_rule']} Alpha {recorded['alpha']}; intervals at {100 * recorded['level']:g} %; "
                      f"correction: {recorded['correction']}. Networks tested against random controls: "
                      f"{recorded['selection_rule']}. The same records: findings.json.", muted=True)
    if records:
        summary.raw(findings_html(records, files.links))
    else:
        summary.paragraph("This run produced none of the results the checks need.", muted=True)
    _sensitivity(summary, config, layout, files, settings)


def _sensitivity(page: Page, config, layout, files: _Files, settings: FindingSettings) -> None:
    """The structure findings across the match stage's sensitivity grid: a figure and the table behind it."""
    grid = sensitivity_grid(layout.match, settings)
    if grid.empty:
        return
    page.section("Sensitivity: the structure findings across the network rule", anchor="sensitivity")
    page.paragraph(f"Each structure finding recomputed from the stored z-maps at other thresholds, one- and two-sided, "
                   f"and other counterpart cut-offs ({config.match.sensitivity_permutations} random networks per null "
                   f"kind and cell; each cell judged on its own at alpha {settings.alpha:g}). The run's own rule: "
                   f"{'|z|' if config.match.two_sided else 'z'} > {config.match.threshold:g}, IoU > {config.match.iou:g}. "
                   f"Component count and sample length are variants of the config: fnet run CONFIG --set "
                   f"decompose.components=32 (or record.max_tokens=512) --out OTHER.", muted=True)
    png = sensitivity_figure(grid, {"threshold": config.match.threshold, "two_sided": config.match.two_sided,
                                    "iou": config.match.iou})
    with tempfile.TemporaryDirectory() as folder:   # the page keeps its own copy, beside it
        (Path(folder) / "sensitivity.png").write_bytes(png)
        files.figure(page, Path(folder) / "sensitivity.png", "")
        (Path(folder) / "sensitivity.csv").write_text(grid.to_csv(index=False))
        files.keep(Path(folder) / "sensitivity.csv", "")
    files.table(page, grid, "sensitivity")
