"""Tiny randomly initialised decoder models of every registered family, for tests and quick benchmarks.

- ``TINY_FAMILIES``: the family names ``build_tiny_model`` accepts.
- ``build_tiny_model(family, folder, seed=0)``: save a tiny model + byte-level tokenizer with
  ``save_pretrained`` (so tests load it through ``fnet_dist.model.loading.load_model``); returns the folder.
- ``ChatGLMStandIn``: a module tree shaped like ChatGLM3 (``transformer.encoder.layers[i].mlp``),
  whose real modelling code lives on the hub.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from .. import __version__

__all__ = ["TINY_FAMILIES", "ChatGLMStandIn", "build_tiny_model", "byte_tokenizer"]

_COMMON = dict(vocab_size=260, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
               bos_token_id=256, eos_token_id=257, pad_token_id=258)


def _configs() -> dict:
    import transformers as tf

    llama_like = {k: v for k, v in _COMMON.items()}
    return {
        "gpt2": lambda: tf.GPT2Config(vocab_size=260, n_embd=32, n_layer=2, n_head=4, n_positions=512,
                                      bos_token_id=256, eos_token_id=257),
        "llama": lambda: tf.LlamaConfig(**llama_like),
        "mistral": lambda: tf.MistralConfig(**llama_like),
        "qwen2": lambda: tf.Qwen2Config(**llama_like),
        "qwen3": lambda: tf.Qwen3Config(**llama_like, head_dim=8),
        "gemma2": lambda: tf.Gemma2Config(**llama_like, head_dim=8),
        "gemma3": lambda: tf.Gemma3TextConfig(**llama_like, head_dim=8, sliding_window=16),
        "gpt_neox": lambda: tf.GPTNeoXConfig(vocab_size=260, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4,
                                             max_position_embeddings=512, bos_token_id=256, eos_token_id=257),
        "phi3": lambda: tf.Phi3Config(**llama_like),
        "olmo2": lambda: tf.Olmo2Config(**llama_like),
    }


TINY_FAMILIES = ("gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "gpt_neox", "phi3", "olmo2")


def byte_tokenizer():
    """A byte-level tokenizer (256 byte tokens + bos/eos/pad/unk), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for i, special in enumerate(["<bos>", "<eos>", "<pad>", "<unk>"]):
        vocab[special] = 256 + i
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")


def build_tiny_model(family: str, folder: str | Path, seed: int = 0) -> Path:
    """Build, randomly initialise (seeded) and save a tiny ``family`` model with its tokenizer."""
    from transformers import AutoModelForCausalLM

    configs = _configs()
    if family not in configs:
        raise LookupError(f"no tiny config for {family!r}; known: {', '.join(TINY_FAMILIES)}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(configs[family]())
    with torch.no_grad():  # some families start norms at exactly 0 or 1: perturb them so edits are visible
        for name, param in model.named_parameters():
            if "norm" in name or "ln" in name:
                param.add_(0.1 * torch.randn_like(param))
    folder = Path(folder)
    model.save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


class _GLMMLP(torch.nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.dense_h_to_4h = torch.nn.Linear(hidden, 2 * inner, bias=False)
        self.dense_4h_to_h = torch.nn.Linear(inner, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.dense_h_to_4h(x).chunk(2, dim=-1)
        return self.dense_4h_to_h(torch.nn.functional.silu(gate) * up)


class _GLMBlock(torch.nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.input_layernorm = torch.nn.LayerNorm(hidden)
        self.self_attention = torch.nn.Linear(hidden, hidden)
        self.post_attention_layernorm = torch.nn.LayerNorm(hidden)
        self.mlp = _GLMMLP(hidden, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attention(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class ChatGLMStandIn(torch.nn.Module):
    """ChatGLM3's module tree (``transformer.encoder.layers[i].mlp.dense_4h_to_h``) with toy attention."""

    def __init__(self, vocab: int = 260, hidden: int = 32, inner: int = 64, layers: int = 2) -> None:
        super().__init__()
        self.config = SimpleNamespace(model_type="chatglm", num_layers=layers, hidden_size=hidden)
        self.transformer = torch.nn.Module()
        self.transformer.embedding = torch.nn.Embedding(vocab, hidden)
        self.transformer.encoder = torch.nn.Module()
        self.transformer.encoder.layers = torch.nn.ModuleList(_GLMBlock(hidden, inner) for _ in range(layers))
        self.transformer.output_layer = torch.nn.Linear(hidden, vocab, bias=False)

    def forward(self, input_ids: torch.Tensor, **_: object) -> SimpleNamespace:
        x = self.transformer.embedding(input_ids)
        for layer in self.transformer.encoder.layers:
            x = layer(x)
        return SimpleNamespace(logits=self.transformer.output_layer(x))


def activation_dataset(
    activation,
    n_tokens,
    split=None,
    *,
    model_id: str = "synthetic",
    corpus: str = "synthetic",
    seed: int = 0,
):
    """An ``xarray.Dataset`` in the activations schema around a given array.

    activation : array of shape (n_samples, n_tokens_max, n_layers, d_model); fill past ``n_tokens``.
    n_tokens : array of shape (n_samples,).
    split : sequence of "group" / "individual" (default: first half group, second half individual).
    Write it with ``fnet_dist.store.storage.write_store(ds, url, storage_schemas.ACTIVATIONS)``.
    """
    import numpy as np
    import xarray as xr


    activation = np.asarray(activation)
    n_samples, max_tokens, n_layers, _ = activation.shape
    n_tokens = np.asarray(n_tokens, dtype=np.int32)
    if split is None:
        split = ["group" if i < n_samples // 2 else "individual" for i in range(n_samples)]
    positions = np.arange(max_tokens)[None, :]
    token_id = np.where(positions < n_tokens[:, None], positions % 250, -1).astype(np.int32)
    peak = np.abs(activation.astype(np.float32)).max(axis=(1, 3))
    return xr.Dataset(
        {
            "activation": (("sample", "token", "layer", "neuron"), activation),
            "n_tokens": ("sample", n_tokens),
            "token_id": (("sample", "token"), token_id),
            "text": ("sample", np.array([f"synthetic text {i}" for i in range(n_samples)], dtype=object)),
            "split": ("sample", np.array(list(split), dtype=object)),
            "source_index": ("sample", np.arange(n_samples, dtype=np.int64)),
            "peak": (("sample", "layer"), peak),
            "complete": ("sample", np.ones(n_samples, dtype=bool)),
        },
        coords={"sample": np.arange(n_samples), "layer": np.arange(n_layers)},
        attrs={
            "model_id": model_id, "model_revision": "none", "architecture": "synthetic", "model_dtype": "float32",
            "hook_points": [f"synthetic.{i}" for i in range(n_layers)], "corpus": corpus, "seed": seed,
            "max_tokens": int(max_tokens), "min_tokens": 1, "n_skipped_short": 0,
            "package_version": __version__, "config_hash": "synthetic",
        },
    )


def networks_dataset(group_map, individual_map=None, *, status=None, corpus: str = "synthetic",
                     model_id: str = "synthetic", n_tokens: int = 8, seed: int = 0, split_map=None):
    """An ``xarray.Dataset`` with every variable and attr of the networks schema around given z-maps.

    group_map : (n_templates, n_layers, d_model); individual_map : (n_samples, n_components, n_layers,
    d_model), default 2 samples × 2 components of noise; split_map : (n_splits, 2, n_templates, n_layers, d_model),
    the split halves' templates (default none). The bookkeeping variables (convergence, seeds,
    stability …) get plausible constant values. Write it with ``fnet_dist.store.storage.write_store(ds, url, NETWORKS)``.
    """
    import numpy as np
    import xarray as xr


    group_map = np.asarray(group_map, dtype=np.float32)
    rng = np.random.default_rng(seed)
    if individual_map is None:
        individual_map = rng.normal(size=(2, 2, *group_map.shape[1:]))
    individual_map = np.asarray(individual_map, dtype=np.float32)
    n_samples, n_comp, n_layers, d_model = individual_map.shape
    n_templates, restarts, runs = len(group_map), 2, 2
    status = np.array(list(status) if status is not None else ["ok"] * n_samples, dtype=object)
    ok = status == "ok"
    split_map = (np.zeros((0, 2, *group_map.shape), np.float32) if split_map is None
                 else np.asarray(split_map, dtype=np.float32))
    n_splits = len(split_map)
    ind = ("sample", "individual_component")
    full = lambda dims, value, dtype: (dims, np.full([{"sample": n_samples, "individual_component": n_comp,
                                                         "component": n_templates, "restart": restarts,
                                                         "run": runs}[d] for d in dims], value, dtype))
    return xr.Dataset(
        {
            "group_map": (("component", "layer", "neuron"), group_map),
            "group_explained_variance": full(("component",), 0.1, np.float32),
            "group_stability": full(("component",), 1.0, np.float32),
            "group_seed": ("restart", np.arange(restarts, dtype=np.int64)),
            "group_n_iter": full(("restart",), 20, np.int64),
            "group_converged": full(("restart",), True, bool),
            "group_kept": ("restart", np.arange(restarts) == 0),
            "group_sample_status": ("group_sample", np.array(["ok"] * n_samples, dtype=object)),
            "group_blas_threads": ((), np.int64(1)),
            "individual_map": (ind + ("layer", "neuron"), individual_map),
            "individual_source": (ind + ("token",), rng.standard_normal((n_samples, n_comp, n_tokens)).astype(np.float32)),
            "individual_explained_variance": full(ind, 0.01, np.float32),
            "individual_status": ("sample", status),
            "individual_n_components": ("sample", np.where(ok, n_comp, 0).astype(np.int64)),
            "individual_converged": ("sample", ok),
            "individual_n_iter": full(("sample",), 50, np.int64),
            "individual_change": full(("sample",), 1e-5, np.float32),
            "individual_component_change": full(ind, 1e-5, np.float32),
            "individual_seed": (("sample", "run"), np.arange(n_samples * runs, dtype=np.int64).reshape(n_samples, runs)),
            "individual_blas_threads": full(("sample",), 1, np.int64),
            "individual_stability": full(ind, 1.0, np.float32),
            "individual_peak_token_share": full(ind, 0.2, np.float32),
            "individual_single_token": full(ind, False, bool),
            "individual_done": full(("sample",), True, bool),
            "split_map": (("split", "half", "component", "layer", "neuron"), split_map),
            "split_half": (("split", "group_sample"), np.tile(np.arange(n_samples) % 2, (n_splits, 1)).astype(np.int8)),
            "split_done": (("split",), np.ones(n_splits, bool)),
        },
        coords={"sample": np.arange(n_samples), "layer": np.arange(n_layers), "component": np.arange(n_templates),
                "individual_component": np.arange(n_comp), "split": np.arange(n_splits), "half": np.arange(2)},
        attrs={
            "corpus": corpus, "activations": f"memory://{corpus}-activations", "model_id": model_id,
            "n_layers": int(n_layers), "d_model": int(d_model), "package_version": __version__,
            "config_hash": "synthetic", "parameters": {"n_components": int(n_comp), "seed": seed},
            "levels": ["group", "individual"], "group_complete": True, "complete": True,
        },
    )
