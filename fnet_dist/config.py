"""Pipeline configs: typed, versioned YAML validated on load; defaults live here and only here.

- ``PipelineConfig``: the whole run (model, corpora, one section per stage, dask, report).
- ``load_config(path, overrides=None) -> PipelineConfig``: read YAML, apply ``key.sub=value`` overrides,
  validate (an unknown key or a wrong type is an ``InputError`` naming it).
- ``stage_hash(config, stage)``: a stable hash of everything that determines a stage's output.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InputError

__all__ = [
    "CONFIG_VERSION",
    "CorpusEntry",
    "PipelineConfig",
    "STAGES",
    "load_config",
    "stage_hash",
]

CONFIG_VERSION = 1
STAGES = ("record", "decompose", "match", "evaluate", "report")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    id: str = "smollm2-135m-instruct"
    revision: str | None = None
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: the checkpoint's own dtype (bf16 for current models) on CUDA, float32 on the CPU")
    device: str = "auto"
    device_map: str | None = Field(
        None, description="auto, balanced or sequential: accelerate splits the layers over the GPUs (then the CPU, "
                          "then disk) within max_memory, for models larger than one GPU; unset: the whole model on device")
    max_memory: dict[str, str] | None = Field(
        None, description="with device_map: the most memory per device, e.g. {'0': '70GiB', '1': '70GiB', 'cpu': '200GiB'}")
    offload_folder: str | None = Field(
        None, description="with device_map: where layers beyond max_memory are offloaded (default: a temporary folder)")
    trust_remote_code: bool = False
    hook_module: str | None = None

    def placement(self) -> dict[str, Any]:
        """The ``load_model`` keywords of this section (dtype, device, device_map, max_memory, ...)."""
        return {"revision": self.revision, "dtype": self.dtype, "device": self.device, "device_map": self.device_map,
                "max_memory": self.max_memory, "offload_folder": self.offload_folder,
                "trust_remote_code": self.trust_remote_code}


class RecordSection(_Section):
    group_samples: int = Field(100, ge=0)
    individual_samples: int = Field(100, ge=0)
    max_tokens: int = Field(256, ge=2)
    min_tokens: int = Field(16, ge=1)
    batch_size: int = Field(8, ge=1, description="texts per forward pass when batch_tokens is 0 on the CPU")
    batch_tokens: int = Field(
        0, ge=0, description="padded tokens per forward pass; 0: batch_size texts on the CPU, sized to the free GPU "
                             "memory on CUDA")
    seed: int = 0
    store_dtype: Literal["float16", "float32"] = "float16"
    text_field: str = "text"
    pack_to_tokens: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="pack consecutive texts of a corpus into samples of at least this many tokens; "
        "auto: decompose.components + 1 + decompose.exclude_first_tokens (what an individual ICA needs); "
        "0: one text per sample (a short sample gets fewer components and is counted as not usable)")


class DecomposeSection(_Section):
    components: int = Field(64, ge=1)
    group_components: int = Field(10, ge=1)
    n_init: int = Field(10, ge=1)
    seed: int = 0
    stability_runs: int = Field(2, ge=1)
    exclude_first_tokens: int = Field(0, ge=0)
    levels: tuple[Literal["group", "individual"], ...] = ("group", "individual")


class MatchSection(_Section):
    threshold: float = Field(3.6, gt=0)
    two_sided: bool = True
    iou: float = Field(0.2, gt=0, le=1)
    similar_iou: float = Field(0.2, gt=0, le=1)
    massive_ratio: float = Field(300.0, gt=0)
    """A channel is massive when its peak |activation| ≥ massive_ratio × its layer's median |activation| …"""
    massive_min_value: float = Field(100.0, gt=0)
    """… and ≥ massive_min_value (fnet_dist/anatomy.py)."""
    permutations: int = Field(2999, ge=99)
    """Layer-matched random networks per template for the counterparts null (fnet_dist/nulls.py). "Most of m
    templates" is significant at alpha after Holm over F findings only if ceil(m / 2) * F / (permutations + 1)
    ≤ alpha: 2999 covers 40 templates and 7 findings at 0.05."""
    first_token_share: float = Field(0.5, gt=0, le=1)
    """A template whose source peaks at the first token in at least this share of samples is first-token-dominated
    (flagged; never a recurrence on its own)."""


class ControlsSection(_Section):
    """Random controls as distributions and network effects split at massive channels (fnet_dist/evaluate/controls.py)."""

    draws: int = Field(19, ge=0)
    """Random masks per kind (0 turns the controls off); 19 is the fewest whose Monte Carlo p can reach 0.05."""
    kinds: tuple[Literal["fraction", "matched_count", "matched_per_layer", "matched_avoid_massive"], ...] = (
        "fraction", "matched_count", "matched_per_layer", "matched_avoid_massive")
    networks: int = Field(3, ge=1)
    """Matched controls for this many networks per evaluated corpus: the templates with the most counterparts in
    the match stage (chosen without looking at any evaluation example)."""


class VLLMSection(_Section):
    """lm-eval's ``vllm`` model arguments (fnet_dist/evaluate/vllm_backend.py); batch size is vLLM's own (auto)."""

    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine spreads the model over (70B: 4-8)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="share of each GPU vLLM may take")
    max_model_len: int | None = Field(None, ge=16, description="longest prompt + continuation in tokens (default: the model's)")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="auto: the checkpoint's dtype (baked checkpoints keep the source's, so all conditions agree)")
    enforce_eager: bool = Field(False, description="no CUDA graphs (slower; less memory)")


class EvaluateSection(_Section):
    enabled: bool = True
    tasks: tuple[str, ...] = ("sentiment_rt", "wiki_ppl")
    limit: int | dict[str, int] | None = None
    """Documents per task: one number for every task, or {task: number} (tasks left out: all documents)."""
    backend: Literal["hf", "vllm"] = "hf"
    networks_of: tuple[str, ...] = ()
    """Corpora whose templates are each inhibited (default: the first corpus)."""
    random_fraction: float = Field(0.15, gt=0, lt=1)
    top_percent: float = Field(5.0, gt=0, lt=100)
    amplify_factor: float = 1.02
    localization: bool = True
    localizer_stimuli: int = Field(240, ge=2)
    probing: bool = True
    probe_texts: int = Field(400, ge=10)
    sweeps: bool = False
    batch_size: int = Field(8, ge=1)
    seed: int = 0
    controls: ControlsSection = ControlsSection()
    scratch: str | None = Field(
        None, description="folder for baked checkpoints of the vllm backend (an emptyDir in k8s; default: a "
                          "temporary folder); each is removed once its condition is evaluated")
    vllm: VLLMSection = VLLMSection()

    @field_validator("limit")
    @classmethod
    def _positive_limit(cls, value):
        values = value.values() if isinstance(value, dict) else [] if value is None else [value]
        if any(v < 1 for v in values):
            raise ValueError(f"limits are numbers of documents, at least 1; got {value}")
        return value


class DaskSection(_Section):
    scheduler: str | None = None
    n_workers: int | None = Field(None, ge=1)


class ReportSection(_Section):
    explain_texts: int = Field(2, ge=0)
    title: str | None = None
    alpha: float = Field(0.05, gt=0, lt=1)
    """Significance level of the findings (after Holm's correction across the run's findings)."""
    level: float = Field(0.95, gt=0, lt=1)
    """Confidence level of the findings' intervals."""
    bootstrap: int = Field(2000, ge=100)
    """Bootstrap resamples behind each interval over examples."""


class CorpusEntry(_Section):
    """A corpus spec (``offline:news``, ``hf:NAME[:CONFIG][@SPLIT]``, a local file) and its text field."""

    spec: str
    text_field: str | None = None


class PipelineConfig(_Section):
    version: int = CONFIG_VERSION
    name: str = "default"
    out: str = "runs/default"
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
        raise InputError(f"override {override!r} must look like section.key=value, e.g. record.group_samples=20")
    target = data
    parts = key.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise InputError(f"override {override!r}: {part!r} is not a section")
    target[parts[-1]] = yaml.safe_load(raw)


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key {where!r}; check its spelling against pipeline/default.yaml"
    return f"{source}: {where}: {first['msg']} (got {first.get('input')!r})"


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML; ``overrides`` are ``section.key=value`` strings."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no pipeline config at {str(path)!r}; see pipeline/default.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a pipeline config is a mapping of sections, got {type(data).__name__}")
    for override in overrides or []:
        _apply_override(data, override)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(_describe(exc, str(path))) from None


def stage_hash(config: PipelineConfig, stage: str) -> str:
    """Hash of the config parts that determine ``stage``'s output (its section and everything upstream)."""
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    upstream = STAGES[: STAGES.index(stage) + 1]
    parts: dict[str, Any] = {"model": config.model.model_dump(), "corpora": {k: v.model_dump() for k, v in config.corpora.items()}}
    for name in upstream:
        if name != "report":
            parts[name] = getattr(config, name).model_dump()
    parts["report"] = config.report.model_dump() if stage == "report" else None
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
