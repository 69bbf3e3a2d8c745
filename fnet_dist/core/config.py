"""Pipeline configs: typed, versioned YAML validated on load; defaults live here and only here.

- ``PipelineConfig``: the whole run (model, corpora, one section per stage, dask, report).
- ``load_config(path, overrides=None) -> PipelineConfig``: read YAML (``fnet_dist.core.safe_yaml``: bounded, no
  Python tags), apply ``key.sub=value`` overrides, validate (an unknown key or a wrong type is an ``InputError``
  naming it, the bad value shortened).
- One section per stage (``RecordSection`` …): the only place a parameter, its default, bounds and help
  text live; stage functions take their section, and the command-line flags are generated from it
  (``fnet_dist.flags``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InputError, shorten
from .networks import DEFAULT_THRESHOLD, DEFAULT_TWO_SIDED
from .safe_yaml import load_yaml

__all__ = [
    "CONFIG_VERSION",
    "LOOPBACK_DASHBOARD",
    "ControlsSection",
    "CorpusEntry",
    "DaskSection",
    "DecomposeSection",
    "LEVELS",
    "EvaluateSection",
    "MatchSection",
    "ModelSection",
    "PlantSection",
    "RecordSection",
    "ReportSection",
    "PipelineConfig",
    "load_config",
    "with_overrides",
]

CONFIG_VERSION = 1
LOOPBACK_DASHBOARD = "127.0.0.1:0"  # a local cluster's dashboard: this machine only, any free port


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _help(text: str, **bounds: Any) -> Any:
    """A field's description (its help text on the command line) and bounds, in one place."""
    return dict(description=text, **bounds)


class ModelSection(_Section):
    id: str = Field("smollm2-135m-instruct", description="hub id, local folder, .gguf file, or smollm2-135m-instruct")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: the checkpoint's own dtype (bf16 for current models) on CUDA, float32 on the CPU")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N")
    device_map: str | None = Field(
        None, description="auto, balanced or sequential: accelerate splits the layers over the GPUs (then the CPU, "
                          "then disk) within max_memory, for models larger than one GPU; unset: the whole model on device")
    max_memory: dict[str, str] | None = Field(
        None, description="with device_map: the most memory per device, e.g. 0=70GiB 1=70GiB cpu=200GiB (in YAML also a mapping)")
    offload_folder: str | None = Field(
        None, description="with device_map: where layers beyond max_memory are offloaded (default: a temporary folder)")
    trust_remote_code: bool = Field(False, description="allow a model's own modelling code (ChatGLM3 …)")
    hook_module: str | None = Field(
        None, description="module of each layer's MLP block for an unregistered family, e.g. 'model.layers.{i}.mlp'")
    init: Literal["trained", "random"] = Field(
        "trained", description="trained: the checkpoint's weights; random: the same architecture and tokenizer with "
                               "weights from the model's own initialisation (seeded by init_seed), the untrained twin "
                               "a null-model run compares the trained model with")
    init_seed: int = Field(0, **_help("seed of the random initialisation (init: random)", ge=0))

    @field_validator("max_memory", mode="before")
    @classmethod
    def _memory_pairs(cls, value: Any) -> Any:
        """``{0: 70GiB}``, ``["0=70GiB", "cpu=200GiB"]`` or ``"0=70GiB cpu=200GiB"`` as ``{"0": "70GiB", …}``."""
        if value is None or isinstance(value, dict):
            return None if value is None else {str(k): str(v) for k, v in value.items()}
        items = value.replace(",", " ").split() if isinstance(value, str) else value
        pairs: dict[str, str] = {}
        for item in items:
            if isinstance(item, dict):
                pairs.update({str(k): str(v) for k, v in item.items()})
                continue
            device, sep, size = str(item).partition("=")
            if not sep or not device or not size:
                raise ValueError(f"{item!r} is not DEVICE=SIZE; write e.g. 0=70GiB cpu=200GiB")
            pairs[device] = size
        return pairs

    def placement(self) -> dict[str, Any]:
        """The ``load_model`` keywords of this section (dtype, device, device_map, max_memory, ...)."""
        return {"revision": self.revision, "dtype": self.dtype, "device": self.device, "device_map": self.device_map,
                "max_memory": self.max_memory, "offload_folder": self.offload_folder,
                "trust_remote_code": self.trust_remote_code, "init": self.init, "init_seed": self.init_seed}


class RecordSection(_Section):
    group_samples: int = Field(100, **_help("samples for the group level", ge=0))
    individual_samples: int = Field(100, **_help("samples for the individual level", ge=0))
    max_tokens: int = Field(256, **_help("cut texts to this many tokens", ge=2))
    min_tokens: int = Field(16, **_help("skip texts shorter than this many tokens", ge=1))
    batch_size: int = Field(8, **_help("texts per forward pass when batch_tokens is 0 on the CPU", ge=1))
    batch_tokens: int = Field(0, **_help(
        "padded tokens per forward pass; 0: batch_size texts on the CPU, sized to the free GPU memory on CUDA", ge=0))
    seed: int = Field(0, **_help("seed of the sample choice", ge=0))
    store_dtype: Literal["float16", "float32"] = Field(
        "float16", description="dtype of the stored activations (float32 for activations beyond ±65504)")
    text_field: str = Field("text", **_help("column holding the text in jsonl/csv/parquet/hf corpora", min_length=1))
    pack_to_tokens: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="pack consecutive texts of a corpus into samples of at least this many tokens; "
        "auto: decompose.components + 1 + decompose.exclude_first_tokens (what an individual ICA needs); "
        "0: one text per sample (a short sample gets fewer components and is counted as not usable)")
    shuffle: Literal["none", "tokens_within_sample"] = Field(
        "none", description="tokens_within_sample: each sample's tokens after the first in a seeded random order (the "
                            "corpus control of a null-model run: token statistics kept, sequence structure destroyed)")

    @model_validator(mode="after")
    def _consistent(self) -> "RecordSection":
        if self.group_samples + self.individual_samples == 0:
            raise ValueError("group_samples and individual_samples are both 0: nothing to record; ask for at least one sample")
        if self.max_tokens < self.min_tokens:
            raise ValueError(f"max_tokens {self.max_tokens} < min_tokens {self.min_tokens}: raise max_tokens or lower min_tokens")
        return self

    def content(self) -> dict[str, Any]:
        """The parameters that determine a store's content (not how they are batched); ``pack_to_tokens`` and
        ``shuffle`` only when they change something, so stores keep the hash they had before either existed."""
        content = self.model_dump(exclude={"batch_size", "batch_tokens", "pack_to_tokens", "shuffle"})
        if self.pack_to_tokens not in (0, "auto"):
            content["pack_to_tokens"] = int(self.pack_to_tokens)
        if self.shuffle != "none":
            content["shuffle"] = self.shuffle
        return content


class PlantSection(_Section):
    """What ``fnet plant`` plants in a synthetic activations store (``fnet_dist.core.planted``); the samples, their
    lengths (drawn between ``record.min_tokens`` and ``record.max_tokens``), seed and dtype are the record section's."""

    shape: str = Field("smollm2-135m", **_help(
        "the model shape: a known architecture (smollm2-135m, qwen2.5-7b, llama-3-70b … see fnet plant --help), "
        "LAYERSxWIDTH (e.g. 28x3584), or a transformers config.json (file or folder)", min_length=1))
    networks: int = Field(8, **_help("planted networks (each a set of known neurons, anywhere in the model)", ge=1))
    network_share: float = Field(0.005, **_help("share of all neurons in each planted network (at least 8 neurons)",
                                                gt=0, le=0.1))
    signal: float = Field(2.0, **_help("standard deviation of each network's time course (the background's is ~1)", gt=0))
    courses: Literal["normal", "laplace"] = Field(
        "laplace", description="time courses of the networks: normal (only spatial ICA separates them) or laplace")
    background_dof: float = Field(5.0, **_help(
        "degrees of freedom of the Student-t background (heavy-tailed; scaled per neuron by a log-normal)", gt=2))
    massive_dims: int = Field(2, **_help(
        "residual dimensions with massive activations (in every layer from a third of the depth on, at the first "
        "token and at one delimiter token id)", ge=0))
    massive_value: float = Field(1000.0, **_help("size of a massive activation", gt=0))
    first_token_spike: float = Field(20.0, **_help(
        "added at the first token to a further network's worth of neurons (an attention-sink artefact); 0: none", ge=0))


Level = Literal["group", "individual"]
LEVELS: tuple[str, ...] = get_args(Level)  # the decomposition's analysis levels, in their canonical order


class DecomposeSection(_Section):
    components: int = Field(64, **_help("individual-level components per sample", ge=1))
    group_components: int = Field(10, **_help("group templates", ge=1))
    n_init: int = Field(10, **_help("group FastICA restarts; the sparsest is kept", ge=1))
    seed: int = Field(0, **_help("seed all restarts and stability runs are drawn from", ge=0))
    stability_runs: int = Field(2, **_help("ICA seeds per sample to measure map stability", ge=1))
    exclude_first_tokens: int = Field(
        0, **_help("leave the first N tokens of each sample out (massive first-token activations; 0 = the paper's way)", ge=0))
    levels: tuple[Level, ...] = Field(
        LEVELS, **_help("analysis levels to run (a sequence, or a comma-separated string such as 'group,individual')",
                        min_length=1))
    individual_method: Literal["spatial", "temporal_raw"] = Field(
        "spatial", description="spatial: ICA over the neurons of each sample's standardised tokens x neurons matrix "
                               "(independent maps); temporal_raw: the paper code's first version, ICA over the tokens "
                               "of the raw matrix, maps = the mixing matrix's columns")
    algorithm: Literal["picard", "fastica"] = Field(
        "picard", description="individual-level ICA solver: picard (Picard-O for super-Gaussian sources, stopped at "
                              "FastICA's own fixed-point criterion) or fastica (symmetric FastICA)")
    max_iter: int = Field(500, **_help("ICA iterations per individual run", ge=1))
    group_max_iter: int = Field(1000, **_help("FastICA iterations per group restart", ge=1))
    tol: float = Field(1e-4, **_help("tolerance on FastICA's criterion (max |1 - |w_new . w||), both levels and solvers", gt=0))
    fun: Literal["logcosh", "cube", "exp"] = Field(
        "logcosh", description="individual-level ICA contrast (logcosh: converged on every SmolLM2 sample measured; cube "
                               "gives more reproducible maps but fails to converge on some, benchmarks/convergence.py)")
    group_fun: Literal["logcosh", "cube", "exp"] = Field(
        "cube", description="group-level FastICA contrast (cube: nilearn CanICA's and the paper's later code's)")
    power_iter: int = Field(3, **_help("power iterations of the group's randomized PCA", ge=0))
    splits: int = Field(3, **_help(
        "random splits of the group samples into two disjoint halves, each half decomposed at the group level like "
        "the whole (split-half reproducibility, and the interval of the recurrence estimate); 0: none", ge=0))
    single_token_share: float = Field(
        0.5, **_help("flag components whose source puts more than this share of its energy on one token", gt=0, le=1))

    @field_validator("levels", mode="before")
    @classmethod
    def _known_levels(cls, value: Any) -> Any:
        """``"group,individual"`` or a sequence of levels -> the known levels in their canonical order."""
        if not isinstance(value, (str, list, tuple)):
            return value
        items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
        unknown = [v for v in items if v not in LEVELS]
        if unknown:
            raise ValueError(f"levels {','.join(items)!r} names an unknown level {unknown}: expected a "
                             f"comma-separated subset of {','.join(LEVELS)}")
        return tuple(level for level in LEVELS if level in items)


class MatchSection(_Section):
    threshold: float = Field(DEFAULT_THRESHOLD, **_help("|z| (or z) above which a neuron belongs to a network", gt=0))
    two_sided: bool = Field(DEFAULT_TWO_SIDED, description="networks are |z| > threshold (--no-two-sided: z > threshold)")
    iou: float = Field(0.2, **_help("IoU above which an individual map is a counterpart of a template", ge=0, lt=1))
    similar_iou: float = Field(0.2, **_help("IoU above which templates of two corpora are listed as similar", ge=0, lt=1))
    massive_ratio: float = Field(300.0, **_help(
        "a channel is massive when its peak |activation| ≥ this × its layer's median |activation| (fnet_dist/match/anatomy.py)",
        gt=0))
    massive_min_value: float = Field(100.0, **_help("… and its peak |activation| ≥ this", gt=0))
    permutations: int = Field(2999, **_help(
        "layer-matched random networks per template for the counterparts null (fnet_dist/match/nulls.py); 'most of m "
        "templates' is significant at alpha only if ceil(m / 2) * F / (permutations + 1) ≤ alpha, with F = 1 (or the "
        "number of findings with report.correction: run): 2999 covers 40 templates and 7 findings at 0.05", ge=99))
    summary_permutations: int = Field(999, **_help(
        "random draws per null kind of a summary statistic (the recurrence summary, split-half reproducibility): one "
        "test each, so 999 reach p = 0.001", ge=19))
    sensitivity_thresholds: tuple[float, ...] = Field(
        (2.5, 3.0, 3.6, 4.5), description="thresholds of the sensitivity grid (each one- and two-sided); () for none")
    sensitivity_ious: tuple[float, ...] = Field((0.1, 0.2, 0.3, 0.5), description="counterpart IoU cut-offs of the grid")
    sensitivity_permutations: int = Field(199, **_help(
        "random networks per template and null kind in each cell of the sensitivity grid", ge=19))
    first_token_share: float = Field(0.5, **_help(
        "a template whose source peaks at the first token in at least this share of samples is first-token-dominated "
        "(flagged; never a recurrence on its own)", gt=0, le=1))


ControlKind = Literal["fraction", "matched_count", "matched_per_layer", "matched_activation", "matched_avoid_massive"]


class ControlsSection(_Section):
    """Random controls as distributions and network effects split at massive channels (fnet_dist/evaluate/controls.py)."""

    draws: int = Field(19, **_help(
        "random masks of the global fraction (evaluate.random_fraction), shared by every network (0 turns the controls "
        "off); 19 is the fewest whose Monte Carlo p can reach 0.05", ge=0))
    top_draws: int = Field(19, **_help(
        "random draws of as many neurons as the top percent (evaluate.top_percent), the null of the top neurons' "
        "damage (0: none); 19 is the fewest whose Monte Carlo p can reach 0.05", ge=0))
    matched_draws: int = Field(4, **_help(
        "draws of each matched kind per network: the claims pool over networks (a stratified permutation test), so a "
        "few per network suffice: with 4, two networks can reach p 0.04", ge=1))
    kinds: tuple[ControlKind, ...] = Field(
        ("fraction", "matched_count", "matched_per_layer", "matched_activation", "matched_avoid_massive"),
        description="kinds of random control: the global fraction, and draws matched to each network by count, by count "
                    "per layer, by activation statistics (layer, mean |activation| and kurtosis strata of the "
                    "recording) and by count avoiding massive channels")
    networks: int | Literal["all"] = Field(
        "all", description="networks tested against controls, declared before any evaluation: all (every non-empty "
                           "template of each evaluated corpus) or N (the N templates with the most counterparts in the "
                           "match stage, small ones that are not first-token artefacts first)")
    activation_strata: int = Field(4, **_help(
        "quantile bins per statistic (mean |activation|, kurtosis) within a layer for the activation-matched draws", ge=1))
    tasks: tuple[str, ...] = Field(
        (), description="evaluate tasks the draws are scored on (default: every one); the draws are most of a run's "
                        "evaluation, so a run sized for time scores them on the tasks its claims are about")


class VLLMSection(_Section):
    """The vllm backend's engine (fnet_dist/evaluate/vllm_backend.py): lm-eval's ``vllm`` model arguments and where
    it runs; batch size is vLLM's own (auto)."""

    python: str | None = Field(
        None, description="Python interpreter with vLLM that runs the engine, e.g. .venv-vllm/bin/python (make vllm-env); "
                          "default: $FNET_VLLM_PYTHON, else this one if it has vLLM, else the checkout's .venv-vllm")
    in_place: bool = Field(
        True, description="one engine per run, each condition's edit written into its weights and undone after; "
                          "false: each condition baked into a checkpoint served by a fresh engine")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine spreads the model over (70B: 4-8)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="share of each GPU vLLM may take")
    cpu_kv_cache_gib: float = Field(
        1.0, gt=0, description="vLLM's CPU build: GiB of host memory for the KV cache (there gpu_memory_utilization "
                               "would be a share of host memory)")
    max_model_len: int | None = Field(None, ge=16, description="longest prompt + continuation in tokens (default: the model's)")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="auto: the dtype the HF model was loaded in (float32 on the CPU), else the checkpoint's")
    enforce_eager: bool = Field(False, description="no CUDA graphs (slower; less memory)")


class EvaluateSection(_Section):
    enabled: bool = Field(True, description="run the evaluate stage")
    tasks: tuple[str, ...] = Field(
        ("sentiment_rt", "wiki_ppl"),
        **_help("lm-eval task names; the paper's: cola mnli mrpc qnli qqp rte sst2 wnli ag_news_fnet squad_fnet "
                "wikitext (need the hub)", min_length=1))
    limit: int | dict[str, int] | None = Field(
        None, description="documents per task: one number for every task, or {task: number} (tasks left out: all)")
    backend: Literal["hf", "vllm"] = Field(
        "hf", description="hf: hooks on the loaded model; vllm: one vLLM engine, edits written into its weights (evaluate.vllm)")
    networks_of: tuple[str, ...] = Field((), description="corpora whose templates are each inhibited (default: the first)")
    conditions: tuple[str, ...] = Field(
        (), description="keep only conditions whose names match these shell patterns, e.g. normal 'inhibit:*' (default all)")
    random_fraction: float = Field(0.15, **_help("share of all neurons in the random mask (the paper's 15 %)", gt=0, lt=1))
    top_percent: float = Field(5.0, **_help("percent of neurons with the largest |z| in the top mask", gt=0, le=100))
    amplify_factor: float = Field(1.02, description="multiplication factor of the amplified conditions")
    amplify_networks: bool = Field(False, description="also amplify each network by amplify_factor (the paper's Figure 3)")
    localization: bool = Field(True, description="the LLM Localization baseline")
    localization_site: Literal["residual", "mlp"] = Field(
        "residual", description="where LLM Localization selects and ablates its units: each decoder layer's output "
        "(residual: the method's own, AlKhamissi et al. 2024; hf backend) or each MLP-block output (mlp: the "
        "neurons ICA finds; what the vllm backend can edit)")
    localizer_stimuli: int = Field(240, **_help("sentences (and as many non-word strings) of the localizer", ge=2))
    probing: bool = Field(True, description="linear probes under the masks (Tables 12-13)")
    probe_texts: int = Field(400, **_help("labelled texts of the probes", ge=10))
    sweeps: bool = Field(False, description="sweep multiplicative / additive edits (Figures 5-7)")
    sweep_factors: tuple[float, ...] = Field((0.5, 0.9, 1.02, 1.1, 1.5, 2.0, 3.0), description="factors of the sweeps")
    sweep_values: tuple[float, ...] = Field((0.1, 0.5, 1.0, 1.5, 2.0, 3.0), description="added values of the sweeps")
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        8, description="documents per forward pass; auto: the largest that fits (lm-eval's own search, hf backend)")
    include_path: tuple[str, ...] = Field(
        (), description="folders of your own lm-eval task YAMLs; name their tasks in tasks")
    num_fewshot: int | None = Field(
        None, **_help("examples shown before each question (default: each task's own, else 0)", ge=0))
    apply_chat_template: bool = Field(
        False, description="format each prompt with the tokenizer's chat template (instruct models)")
    seed: int = Field(0, **_help("seed of the random masks, localizer stimuli, probes and lm-eval", ge=0))
    controls: ControlsSection = ControlsSection()
    scratch: str | None = Field(
        None, description="folder for baked checkpoints of the vllm backend (an emptyDir in k8s; default: a "
                          "temporary folder); each is removed once its condition is evaluated")
    vllm: VLLMSection = VLLMSection()

    @model_validator(mode="after")
    def _control_tasks(self) -> "EvaluateSection":
        unknown = [t for t in self.controls.tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"evaluate.controls.tasks {list(unknown)} are not among evaluate.tasks {list(self.tasks)}; "
                             "name some of those (or none: every task)")
        if self.backend == "vllm" and self.localization and self.localization_site == "residual":
            raise ValueError("evaluate.localization_site=residual needs evaluate.backend=hf: vLLM's edits are written "
                             "into weights, which cannot ablate the residual stream; set evaluate.localization_site=mlp "
                             "(units selected and ablated on MLP outputs) or evaluate.localization=false")
        return self

    def control_tasks(self) -> tuple[str, ...]:
        """Tasks the random draws are scored on: ``controls.tasks``, or every task."""
        return self.controls.tasks or self.tasks

    @field_validator("limit")
    @classmethod
    def _positive_limit(cls, value):
        values = value.values() if isinstance(value, dict) else [] if value is None else [value]
        if any(v < 1 for v in values):
            raise ValueError(f"limits are numbers of documents, at least 1; got {value}")
        return value


class DaskSection(_Section):
    scheduler: str | None = Field(
        None, description="Dask scheduler address (default: $DASK_SCHEDULER_ADDRESS, else a local cluster)")
    n_workers: int | None = Field(None, **_help("workers of the local cluster (default: Dask's CPU count)", ge=1))
    dashboard_address: str | None = Field(
        LOOPBACK_DASHBOARD, description="where the local cluster's dashboard listens: 127.0.0.1:0 (this machine only, "
                                        "any free port); ':8787' opens it to every interface (anyone who reaches the "
                                        "port sees the tasks and data); null: no dashboard")


class ReportSection(_Section):
    explain_texts: int = Field(2, **_help("texts whose token attribution the report shows", ge=0))
    title: str | None = Field(None, description="the report's title")
    alpha: float = Field(0.05, **_help("significance level of each finding (after its correction)", gt=0, lt=1))
    correction: Literal["finding", "run"] = Field(
        "finding", description="finding: each finding at alpha, its own tests (templates, networks, tasks) corrected "
                               "together; run: also Holm across the run's findings (family-wise over the report: the "
                               "controls then need about F times the draws for F findings)")
    level: float = Field(0.95, **_help("confidence level of the findings' intervals", gt=0, lt=1))
    bootstrap: int = Field(2000, **_help("bootstrap resamples behind each interval over examples", ge=100))
    min_accuracy: float = Field(0.02, **_help(
        "minimum effect of an editing claim on an accuracy task (share of examples): 'fails' needs the effect shown "
        "below it (equivalence test)", ge=0))
    min_perplexity: float = Field(0.05, **_help(
        "minimum effect of an editing claim on a perplexity task, relative (0.05: 5 % more perplexity, log(1.05) nats "
        "per word)", ge=0))
    min_structure: float = Field(0.0, **_help(
        "minimum effect of the structure claims in their own units (0: any effect; 'fails' then needs the interval "
        "wholly on the wrong side)", ge=0))


class CorpusEntry(_Section):
    """A corpus spec (``offline:news``, ``hf:NAME[:CONFIG][@SPLIT]``, a local file) and its text field."""

    spec: str
    text_field: str | None = None


NULL_SECTIONS = ("model", "record")  # what a null variant may change: what is recorded, never how it is analysed


class NullVariant(_Section):
    """A null-model run beside the trained one: the same config with ``set`` applied (keys as ``--set`` takes them,
    within ``NULL_SECTIONS``), recorded, decomposed and matched into ``nulls/<name>/`` of the run folder."""

    set: dict[str, Any] = Field(default_factory=dict, description="overrides, e.g. {model.init: random} or "
                                                                  "{record.shuffle: tokens_within_sample}")
    corpora: tuple[str, ...] = Field((), description="corpora the variant records (default: every corpus)")
    description: str = Field("", description="what the variant keeps and what it destroys, for the report")


class PipelineConfig(_Section):
    version: int = CONFIG_VERSION
    name: str = "default"
    out: str = Field("runs/default", description="the run folder: results, tables, report")
    stores: str | None = Field(
        None, description="where the activations and networks stores live, a path or URL such as s3://bucket/run "
                          "(default: under out)")
    model: ModelSection = ModelSection()
    corpora: dict[str, CorpusEntry] = Field(
        default_factory=lambda: {d: CorpusEntry(spec=f"offline:{d}") for d in ("news", "wiki", "math", "code")}
    )
    record: RecordSection = RecordSection()
    decompose: DecomposeSection = DecomposeSection()
    match: MatchSection = MatchSection()
    evaluate: EvaluateSection = EvaluateSection()
    dask: DaskSection = DaskSection()
    report: ReportSection = ReportSection()
    nulls: dict[str, NullVariant] = Field(
        default_factory=dict, description="null-model variants whose structure findings the trained model's are "
                                          "compared with, e.g. {random-init: {set: {model.init: random}}}")

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != CONFIG_VERSION:
            raise ValueError(f"config version {value} is not supported; this fnet-dist reads version {CONFIG_VERSION}")
        return value

    @field_validator("corpora", mode="before")
    @classmethod
    def _corpus_entries(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"spec": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("corpora")
    @classmethod
    def _corpus_names(cls, value: dict[str, CorpusEntry]) -> dict[str, CorpusEntry]:
        if not value:
            raise ValueError("at least one corpus is needed, e.g. {news: 'offline:news'}")
        for name in value:
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"corpus name {name!r} must be letters, digits, '-' or '_' (it names a store)")
        return value

    @model_validator(mode="after")
    def _known_networks_of(self) -> PipelineConfig:
        unknown = [c for c in self.evaluate.networks_of if c not in self.corpora] if self.evaluate.enabled else []
        if unknown:
            raise ValueError(f"evaluate.networks_of names corpora {unknown} that are not in corpora "
                             f"{list(self.corpora)}; name some of those (or none: the first)")
        return self

    @model_validator(mode="after")
    def _null_variants(self) -> "PipelineConfig":
        for name in self.nulls:
            self.null_variant(name)  # every variant is a valid config of its own
        return self

    def null_variant(self, name: str) -> "PipelineConfig":
        """The config of null variant ``name``: this one with its overrides, its corpora, no evaluation, no variants
        and no sensitivity grid of its own (the comparisons with the trained model read the match stage's own
        tables), writing into ``<out>/nulls/<name>`` (stores under ``<stores>/nulls/<name>`` when set)."""
        variant = self.nulls[name]
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"null variant name {name!r} must be letters, digits, '-' or '_' (it names a folder)")
        unknown = [c for c in variant.corpora if c not in self.corpora]
        if unknown:
            raise ValueError(f"nulls.{name}.corpora names {unknown}, not in corpora {list(self.corpora)}")
        outside = [k for k in variant.set if k.split(".", 1)[0] not in NULL_SECTIONS or "." not in k]
        if outside:
            raise ValueError(f"nulls.{name}.set changes {outside}: a null variant changes only what is recorded "
                             f"({', '.join(s + '.*' for s in NULL_SECTIONS)}), so its statistics compare with these")
        data = self.model_dump(mode="json")
        data.update(name=f"{self.name}-{name}", nulls={}, out=f"{str(self.out).rstrip('/')}/nulls/{name}",
                    stores=None if self.stores is None else f"{self.stores.rstrip('/')}/nulls/{name}")
        data["evaluate"]["enabled"] = False
        data["match"]["sensitivity_thresholds"] = []
        if variant.corpora:
            data["corpora"] = {c: data["corpora"][c] for c in variant.corpora}
        for key, value in variant.set.items():
            section, field = key.split(".", 1)
            data[section][field] = value
        try:
            return PipelineConfig.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"nulls.{name}: {describe_error(exc, '')}") from None

    def pack_to_tokens(self) -> int:
        """Tokens a recorded sample packs texts up to (``record.pack_to_tokens`` with ``auto`` resolved; 0: off)."""
        value = self.record.pack_to_tokens
        if value == "auto":
            return self.decompose.components + 1 + self.decompose.exclude_first_tokens
        return int(value)

    def evaluation_corpora(self) -> tuple[str, ...]:
        """Corpora whose templates are evaluated one by one."""
        chosen = self.evaluate.networks_of or (next(iter(self.corpora)),)
        unknown = [c for c in chosen if c not in self.corpora]
        if unknown:
            raise InputError(f"evaluate.networks_of names corpora {unknown} that are not in corpora {list(self.corpora)}")
        return tuple(chosen)


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise InputError(f"override {shorten(override)} must look like section.key=value, e.g. record.group_samples=20")
    target = data
    parts = key.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise InputError(f"override {shorten(override)}: {part!r} is not a section")
    target[parts[-1]] = load_yaml(raw, f"--set {key}")


def describe_error(error: ValidationError, source: str, flags: bool = False) -> str:
    """The first validation error in one line; ``flags``: name the field as a command-line flag."""
    first = error.errors()[0]
    where = (".".join(str(p) for p in first["loc"]) or "(top level)")[:200]
    if flags and first["loc"]:
        where = "--" + str(first["loc"][0]).replace("_", "-")
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key {where!r}; check its spelling against pipeline/default.yaml"
    head = f"{source}: " if source else ""
    if first["type"] == "value_error":  # a check of the section's own (it names the fields itself)
        return head + first["msg"].removeprefix("Value error, ")[:500]
    hint = "its help: fnet COMMAND --help" if flags else "its bounds and help text: fnet_dist/core/config.py"
    return f"{head}{where} {shorten(first.get('input'))}: {first['msg'].lower()}; see {hint}"


def with_overrides(section: _Section, overrides: dict[str, Any]) -> Any:
    """``section`` with some fields replaced, validated again; a bad value is an ``InputError`` naming the field."""
    unknown = [k for k in overrides if k not in type(section).model_fields]
    if unknown:
        raise InputError(f"unknown parameter(s) {unknown} of {type(section).__name__}; "
                         f"expected some of {', '.join(type(section).model_fields)}")
    try:
        return type(section).model_validate({**section.model_dump(), **overrides})
    except ValidationError as exc:
        raise InputError(describe_error(exc, "")) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML; ``overrides`` are ``section.key=value`` strings."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no pipeline config at {str(path)!r}; see pipeline/default.yaml")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the pipeline config {str(path)!r} ({exc.strerror if isinstance(exc, OSError) else exc.reason})") from None
    data = load_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: a pipeline config is a mapping of sections, got {type(data).__name__}")
    for override in overrides or []:
        _apply_override(data, override)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(describe_error(exc, str(path))) from None
