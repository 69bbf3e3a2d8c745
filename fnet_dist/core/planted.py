"""Planted ground truth for the decomposition: sparse spatial networks of known neurons with known time courses.

- ``planted_networks(...) -> Planted``: a small data set in memory, activations (n_samples, n_tokens, n_layers,
  d_model) built as time courses @ network maps + Gaussian noise (seeded), with the true binary networks (tests).
- ``PlantedModel.draw(n_layers, d_model, section, seed)``: a model of any shape with planted networks, a
  heavy-tailed background, massive-activation channels and first-token spikes (``PlantSection``);
  ``model.sample(index, n_tokens, out)`` fills one sample (n_tokens, n_layers, d_model) token block by token block,
  so memory is one sample in the store dtype plus one block in float32 (what ``fnet plant`` writes to a store).
- ``best_match_iou(truth, found)``: for each true network, the best IoU with any found network.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import PlantSection

__all__ = ["COURSES", "Planted", "PlantedModel", "best_match_iou", "planted_networks"]

COURSES = ("normal", "laplace")
_BLOCK_TOKENS = 32  # tokens generated at once in float32 (one store chunk at most)
_BANK_ROWS = 64  # the background bank holds this many rows of neurons (at least 2^20, at most 2^25 values)
_MIN_NETWORK = 8  # neurons of the smallest planted network
_DELIMITER_ID = 13  # the token id that carries massive activations besides the first token


@dataclass(frozen=True)
class Planted:
    """activations (S, T, L, D); networks (m, L, D) bool; time_courses (S, T, m)."""

    activations: np.ndarray
    networks: np.ndarray
    time_courses: np.ndarray


def _draw_networks(rng: np.random.Generator, n_neurons: int, n_networks: int, network_size: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, truth, loading): a random order of the neurons, ``n_networks`` disjoint networks of
    ``network_size`` neurons taken from it in turn ((m, n) bool), and each neuron's loading 1 + 0.5|N(0,1)| on its
    network ((m, n) float, 0 elsewhere)."""
    order = rng.permutation(n_neurons)
    truth = np.zeros((n_networks, n_neurons), dtype=bool)
    for j in range(n_networks):
        truth[j, order[j * network_size:(j + 1) * network_size]] = True
    loading = truth * (1.0 + 0.5 * np.abs(rng.standard_normal((n_networks, n_neurons))))
    return order, truth, loading


def _courses(rng: np.random.Generator, shape: tuple[int, ...], courses: str) -> np.ndarray:
    """Unit-variance time courses: Gaussian ("normal") or super-Gaussian ("laplace")."""
    if courses not in COURSES:
        raise ValueError(f"courses {courses!r}: expected one of {COURSES}")
    return rng.standard_normal(shape) if courses == "normal" else rng.laplace(scale=2 ** -0.5, size=shape)


def planted_networks(n_samples: int = 6, n_tokens: int = 80, n_layers: int = 2, d_model: int = 400,
                     n_networks: int = 4, network_size: int = 20, noise: float = 0.5, seed: int = 0,
                     first_token_spike: float = 0.0, courses: str = "normal", dtype=np.float32) -> Planted:
    """Disjoint networks of ``network_size`` random neurons, each neuron loading 1 + 0.5|N(0,1)|, driven by a
    unit-variance time course per sample, plus N(0, noise²) everywhere. ``courses`` "normal" (Gaussian time
    courses: only spatial ICA can separate the networks, by their sparse maps) or "laplace" (super-Gaussian time
    courses: temporal ICA recovers them too, with the networks as mixing columns). ``first_token_spike`` > 0 adds
    that value at token 0 to a further ``network_size`` neurons (a massive-activation artefact).
    ``dtype`` is the activations' dtype (float16 for store-sized benchmark data).
    """
    rng = np.random.default_rng(seed)
    n = n_layers * d_model
    order, truth, loading = _draw_networks(rng, n, n_networks, network_size)
    time_courses = _courses(rng, (n_samples, n_tokens, n_networks), courses)
    X = np.empty((n_samples, n_tokens, n), dtype=dtype)
    for i in range(n_samples):  # one sample at a time: peak memory stays one sample in float64
        X[i] = time_courses[i] @ loading + noise * rng.standard_normal((n_tokens, n))
    if first_token_spike:
        spike = order[n_networks * network_size:(n_networks + 1) * network_size]
        X[:, 0, spike] += np.asarray(first_token_spike, dtype=dtype)
    shape = (n_networks, n_layers, d_model)
    return Planted(X.reshape(n_samples, n_tokens, n_layers, d_model), truth.reshape(shape), time_courses)


@dataclass(frozen=True)
class PlantedModel:
    """A model shape with planted structure; every sample is drawn from ``seed`` and its index alone.

    networks (m, n_layers, d_model) bool: the planted networks (disjoint); ``network_neurons`` (K,) their neurons
    (flat indices) and ``loading`` (m, K) each one's loading on them. ``scale`` (n_neurons,) float32: the per-neuron
    scale of the background (log-normal, σ 0.5). ``spike_neurons``: flat indices raised by ``first_token_spike``
    at token 0; ``massive``: flat indices of the massive channels (``massive_dims`` dimensions in every layer from
    a third of the depth on), set to ``massive_value`` at token 0 and at every token whose id is the delimiter.
    """

    n_layers: int
    d_model: int
    seed: int
    section: PlantSection
    networks: np.ndarray
    network_neurons: np.ndarray
    loading: np.ndarray
    scale: np.ndarray
    spike_neurons: np.ndarray
    massive: np.ndarray
    bank: np.ndarray

    @classmethod
    def draw(cls, n_layers: int, d_model: int, section: PlantSection, seed: int) -> PlantedModel:
        rng = np.random.default_rng([seed, 7717])
        n = n_layers * d_model
        size = max(_MIN_NETWORK, round(section.network_share * n))
        if (section.networks + (1 if section.first_token_spike else 0)) * size > n:
            raise ValueError(f"{section.networks} networks of {size} neurons do not fit {n} neurons")
        order, truth, loading = _draw_networks(rng, n, section.networks, size)
        neurons = np.sort(order[: section.networks * size])
        spike = order[section.networks * size:(section.networks + 1) * size] if section.first_token_spike else order[:0]
        dims = rng.choice(d_model, size=min(section.massive_dims, d_model), replace=False)
        layers = np.arange(n_layers // 3, n_layers)
        massive = (layers[:, None] * d_model + dims[None, :]).ravel()
        scale = np.exp(0.5 * rng.standard_normal(n)).astype(np.float32)
        dof = section.background_dof
        bank_size = int(min(max(2 ** 20, _BANK_ROWS * n), 2 ** 25))
        bank = (rng.standard_t(dof, size=bank_size) * np.sqrt((dof - 2) / dof)).astype(np.float32)  # unit variance
        return cls(n_layers, d_model, int(seed), section, truth.reshape(section.networks, n_layers, d_model), neurons,
                   loading[:, neurons].astype(np.float32), scale, np.sort(spike), np.sort(massive), bank)

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.d_model

    def token_ids(self, index: int, n_tokens: int, vocabulary: int = 32000) -> np.ndarray:
        """Synthetic token ids of sample ``index`` (int32): 1 first, ~2 % delimiters, the rest uniform."""
        rng = np.random.default_rng([self.seed, 3301, index])
        ids = rng.integers(_DELIMITER_ID + 1, vocabulary, size=n_tokens).astype(np.int32)
        ids[rng.random(n_tokens) < 0.02] = _DELIMITER_ID
        ids[0] = 1
        return ids

    def sample(self, index: int, n_tokens: int, out: np.ndarray | None = None, dtype: str = "float16"
               ) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index``: ``(activation (n_tokens, n_layers, d_model) in out's dtype, peak |activation| per layer
        (n_layers,) float32)``. Each token's background is a window of the bank at a random start, times the
        per-neuron scale; the networks' time courses (× ``signal``) on their neurons; then spikes and massive values."""
        rng = np.random.default_rng([self.seed, 104729, index])
        s = self.section
        n = self.n_neurons
        out = np.empty((n_tokens, self.n_layers, self.d_model), dtype=dtype) if out is None else out
        flat = out.reshape(n_tokens, n)
        courses = (s.signal * _courses(rng, (n_tokens, s.networks), s.courses)).astype(np.float32)
        starts = rng.integers(0, len(self.bank) - n + 1, size=n_tokens)
        ids = self.token_ids(index, n_tokens)
        peak = np.zeros(self.n_layers, dtype=np.float32)
        block = np.empty((min(_BLOCK_TOKENS, n_tokens), n), dtype=np.float32)
        for first in range(0, n_tokens, _BLOCK_TOKENS):
            rows = slice(first, min(first + _BLOCK_TOKENS, n_tokens))
            x = block[: rows.stop - rows.start]
            for row, start in enumerate(starts[rows]):
                x[row] = self.bank[start:start + n]
            x *= self.scale
            x[:, self.network_neurons] += courses[rows] @ self.loading
            if first == 0 and len(self.spike_neurons):
                x[0, self.spike_neurons] += np.float32(s.first_token_spike)
            if len(self.massive):
                carriers = np.flatnonzero((ids[rows] == _DELIMITER_ID) | (np.arange(rows.start, rows.stop) == 0))
                x[np.ix_(carriers, self.massive)] = np.float32(s.massive_value)
            flat[rows] = x
            np.maximum(peak, np.abs(x).reshape(len(x), self.n_layers, self.d_model).max(axis=(0, 2)), out=peak)
        return out, peak

    def description(self) -> dict:
        """What was planted, as JSON-able attrs (the ground truth's neurons as flat indices layer × d_model + neuron)."""
        s = self.section
        return {"synthetic": True, "generator": "fnet plant (fnet_dist.core.planted)", **s.model_dump(),
                "n_layers": self.n_layers, "d_model": self.d_model,
                "network_size": int(self.networks[0].sum()) if len(self.networks) else 0,
                "network_neurons": [np.flatnonzero(net).tolist() for net in self.networks],
                "spike_neurons": self.spike_neurons.tolist(), "massive_neurons": self.massive.tolist(),
                "delimiter_token_id": _DELIMITER_ID}


def best_match_iou(truth, found) -> np.ndarray:
    """For each of ``truth`` (m, …) bool networks: the largest IoU with any of ``found`` (k, …) bool networks."""
    a = np.asarray(truth, dtype=bool).reshape(len(truth), -1).astype(np.float32)
    b = np.asarray(found, dtype=bool).reshape(len(found), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0).max(axis=1)
