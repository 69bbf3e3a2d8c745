"""Where every artifact lies: one typed path per file, declared once for the stages that write it and
everything that reads it (the report, ``fnet compare-paper``, the runners).

- ``MatchFiles(folder)``: a match results folder (``fnet match --out``, or ``<run>/match``): its tables,
  ``results.json`` and the massive-channel mask the controls read.
- ``ConditionFiles(folder)``: one evaluated condition's folder (lm-eval's JSON, its tidy rows, its record).
- ``EvaluationFiles(folder)``: an evaluation results folder (``fnet evaluate --out``, ``<run>/evaluate``, and
  the controls' ``<run>/evaluate/controls``): ``results.csv``, the paper's tables, one ``ConditionFiles`` per
  condition slug, the plan of a sharded run and the evaluation's own files.
- ``ReportFiles(folder)``: the report page and ``findings.json``.
- ``RunLayout(root, stores=None)``: a run folder: results under ``root``; activations and networks stores
  under ``stores`` (default: ``root``; a local path or a URL such as ``s3://bucket/run``); ``run.json``.

Nothing else in the package spells one of these file names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import PipelineConfig

__all__ = ["MATCH_FIGURES", "PAPER_FIGURES", "PAPER_TABLES", "ConditionFiles", "EvaluationFiles", "MatchFiles",
           "ReportFiles", "RunLayout"]

MATCH_FIGURES = ("networks", "counterparts", "layer_distribution", "cross_corpus")  # stems of the match figures
PAPER_FIGURES = {  # kind -> file-name stem of an evaluation figure (parts such as corpus and task follow: ``_news``)
    "perplexity": "figure2_perplexity",
    "changes": "figure3_changes",
    "sweep": "figure5_7_sweep",
    "controls": "controls",
}

PAPER_TABLES = {  # kind -> file-name stem of the paper-shaped table (a corpus suffix may follow: ``_news``)
    "networks": "table3_networks",
    "masked": "table10_masked",
    "top_inhibit": "table9_top_inhibit",
    "top_amplify": "table4_top_amplify",
    "iou": "table5_iou",
    "probing": "table12_probing",
    "controls": "controls",
    "separated": "separated",
}


@dataclass(frozen=True)
class MatchFiles:
    """The files of a match results folder."""

    folder: Path

    @property
    def consistency(self) -> Path:
        """One row per corpus and template: counterparts (paper Tables 1, 6-8)."""
        return self.folder / "consistency.csv"

    @property
    def consistency_markdown(self) -> Path:
        """The paper's Table 1 layout of ``consistency``."""
        return self.folder / "consistency.md"

    @property
    def cross_corpus_markdown(self) -> Path:
        """The paper's Table 2 layout of the similar cross-corpus pairs."""
        return self.folder / "cross_corpus.md"

    @property
    def cross_corpus(self) -> Path:
        """Template × template IoU between corpora (paper Table 2)."""
        return self.folder / "cross_corpus.csv"

    @property
    def network_sizes(self) -> Path:
        return self.folder / "network_sizes.csv"

    @property
    def counterparts_null(self) -> Path:
        """``consistency`` with each template's random-network null."""
        return self.folder / "counterparts_null.csv"

    @property
    def counterpart_samples(self) -> Path:
        """One row per corpus, template and usable sample: that sample's counterparts of the template."""
        return self.folder / "counterpart_samples.csv"

    @property
    def recurrence(self) -> Path:
        """Cross-corpus pairs against chance overlap."""
        return self.folder / "recurrence.csv"

    @property
    def recurrence_summary(self) -> Path:
        """Every template that may count, its best IoU (without massive channels) with each other corpus."""
        return self.folder / "recurrence_summary.csv"

    @property
    def recurrence_null(self) -> Path:
        """The recurrence summary against each null kind (uniform, frequency-preserving)."""
        return self.folder / "recurrence_null.csv"

    @property
    def split_halves(self) -> Path:
        """Per corpus, split and template: best IoU of half A's templates with half B's (reproducibility), and
        the recurrence summary of each half across corpora."""
        return self.folder / "split_halves.csv"

    @property
    def split_null(self) -> Path:
        """The split-half reproducibility against each null kind."""
        return self.folder / "split_null.csv"

    def sensitivity(self, table: str) -> Path:
        """A table of the structure statistics over the grid of thresholds, sidedness and IoU cut-offs
        (``counterparts``, ``samples``, ``nulls``, ``halves``: ``fnet_dist.match.sensitivity``)."""
        return self.folder / f"sensitivity_{table}.csv"

    @property
    def network_anatomy(self) -> Path:
        return self.folder / "network_anatomy.csv"

    @property
    def massive_channels(self) -> Path:
        return self.folder / "massive_channels.csv"

    @property
    def massive_mask(self) -> Path:
        """bool array of shape (n_layers, d_model): the massive-activation channels (``.npy``)."""
        return self.folder / "massive_mask.npy"

    @property
    def channel_stats(self) -> Path:
        """Per channel over every real token of the evaluated corpus's recording: ``mean_abs`` and ``kurtosis``,
        float arrays of shape (n_layers, d_model) (``.npz``; the activation-matched draws' strata)."""
        return self.folder / "channel_stats.npz"

    def figure(self, name: str) -> Path:
        """A match figure (``MATCH_FIGURES``), ``networks`` -> ``networks.png``."""
        if name not in MATCH_FIGURES:
            raise KeyError(f"no match figure {name!r}; expected one of {', '.join(MATCH_FIGURES)}")
        return self.folder / f"{name}.png"

    @property
    def results(self) -> Path:
        """``results.json``: the match's parameters, corpora and files."""
        return self.folder / "results.json"

    def written(self, anatomy: bool = True) -> tuple[Path, ...]:
        """The files every finished match folder holds (``anatomy``: with the anatomy and the nulls)."""
        tables = (self.consistency, self.consistency_markdown, self.cross_corpus, self.cross_corpus_markdown,
                  self.network_sizes, self.results)
        extra = (self.network_anatomy, self.massive_channels, self.massive_mask, self.counterparts_null,
                 self.recurrence)
        return tables + (extra if anatomy else ())


@dataclass(frozen=True)
class ConditionFiles:
    """The files of one evaluated condition."""

    folder: Path

    @property
    def lm_eval(self) -> Path:
        """lm-eval's own results JSON."""
        return self.folder / "results.json"

    @property
    def rows(self) -> Path:
        """The condition's tidy result rows."""
        return self.folder / "rows.csv"

    def samples(self, task: str) -> Path:
        """lm-eval's logged samples of ``task`` (one JSON object per example)."""
        return self.folder / f"samples_{task}.jsonl"

    @property
    def record(self) -> Path:
        """What was evaluated (the condition's fingerprint, tasks, limits); written last: the resume marker."""
        return self.folder / "condition.json"


@dataclass(frozen=True)
class EvaluationFiles:
    """The files of an evaluation results folder (the evaluate stage's, or the controls')."""

    folder: Path

    @property
    def conditions(self) -> Path:
        """The folder of one ``ConditionFiles`` per condition slug."""
        return self.folder / "conditions"

    def condition(self, slug: str) -> ConditionFiles:
        return ConditionFiles(self.conditions / slug)

    @property
    def masks(self) -> Path:
        """The folder of each evaluated condition's neuron mask."""
        return self.folder / "masks"

    def mask(self, slug: str) -> Path:
        """A condition's neuron mask (``NeuronMask.save``)."""
        return self.masks / f"{slug}.npz"

    @property
    def engine_log(self) -> Path:
        """The vllm backend's engine output (vLLM's own log, appended per engine; where a failure's cause is)."""
        return self.folder / "vllm-engine.log"

    @property
    def task_definitions(self) -> Path:
        """The folder of the lm-eval task YAMLs the evaluation ran (offline data paths made absolute)."""
        return self.folder / "tasks"

    @property
    def results(self) -> Path:
        """Every condition's rows in one tidy table."""
        return self.folder / "results.csv"

    @property
    def tables(self) -> Path:
        """The folder of the paper-shaped tables."""
        return self.folder / "tables"

    @staticmethod
    def table_name(kind: str, corpus: str | None = None) -> str:
        """The stem of a ``PAPER_TABLES`` kind's table: ``("networks", "news")`` -> ``table3_networks_news``."""
        return PAPER_TABLES[kind] + (f"_{corpus}" if corpus else "")

    def table(self, kind: str, corpus: str | None = None) -> Path:
        """A paper-shaped table's CSV, ``("networks", "news")`` -> ``tables/table3_networks_news.csv``."""
        return self.tables / f"{self.table_name(kind, corpus)}.csv"

    @property
    def figures(self) -> Path:
        """The folder of the evaluation's figures (PNG)."""
        return self.folder / "figures"

    def figure(self, kind: str, *parts: str) -> Path:
        """A ``PAPER_FIGURES`` kind's figure, ``("perplexity", "news", "wiki_ppl")`` ->
        ``figures/figure2_perplexity_news_wiki_ppl.png``."""
        return self.figures / f"{'_'.join([PAPER_FIGURES[kind], *parts])}.png"

    @property
    def sweeps(self) -> Path:
        """The sweeps' own evaluation folder (Figures 5-7)."""
        return self.folder / "sweeps"

    @property
    def plan(self) -> Path:
        """The conditions of a sharded run, written once by whichever shard starts first."""
        return self.folder / "plan.json"

    @property
    def selection(self) -> Path:
        """The controls' choice of networks and draws."""
        return self.folder / "selection.json"

    @property
    def experiment(self) -> Path:
        """What an evaluation ran: conditions, tasks, limits, versions."""
        return self.folder / "experiment.json"

    @property
    def flips(self) -> Path:
        return self.folder / "flips.csv"

    @property
    def probing(self) -> Path:
        return self.folder / "probing.csv"


@dataclass(frozen=True)
class ReportFiles:
    """The files of a report folder."""

    folder: Path

    @property
    def page(self) -> Path:
        return self.folder / "index.html"

    @property
    def findings(self) -> Path:
        return self.folder / "findings.json"


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run: results under ``root``; activations and networks stores under ``stores`` (default: root)."""

    root: Path
    stores: str | None = None

    def _store(self, kind: str, corpus: str) -> str:
        base = (self.stores or str(self.root)).rstrip("/")
        return f"{base}/{kind}/{corpus}.zarr"

    def activations(self, corpus: str) -> str:
        return self._store("activations", corpus)

    def networks(self, corpus: str) -> str:
        return self._store("networks", corpus)

    @property
    def match(self) -> MatchFiles:
        return MatchFiles(self.root / "match")

    @property
    def evaluate(self) -> EvaluationFiles:
        return EvaluationFiles(self.root / "evaluate")

    @property
    def controls(self) -> EvaluationFiles:
        return EvaluationFiles(self.root / "evaluate" / "controls")

    @property
    def report(self) -> ReportFiles:
        return ReportFiles(self.root / "report")

    @property
    def record_file(self) -> Path:
        """``run.json``: each stage's config hash, status, timings and outputs."""
        return self.root / "run.json"

    def null_run(self, name: str) -> "RunLayout":
        """The run folder of null variant ``name`` (``PipelineConfig.null_variant``): ``<root>/nulls/<name>``, its
        stores under ``<stores>/nulls/<name>`` when the run keeps its stores elsewhere."""
        stores = None if self.stores is None else f"{self.stores.rstrip('/')}/nulls/{name}"
        return RunLayout(self.root / "nulls" / name, stores)

    @classmethod
    def of(cls, config: PipelineConfig) -> "RunLayout":
        return cls(Path(config.out).expanduser().resolve(), config.stores)
